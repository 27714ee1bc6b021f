"""Scaling fit of a sequence-task width sweep: EBT vs Transformer++ slopes of the error against non-embedding
parameters, with the paired two-level bootstrap of :func:`ebtkit.study.fit.compare`.

Input: ``ROOT/w<D>/<variant>/s<seed>/eval_sequence.json`` as written by ``scripts/sequence_grid.py`` (one grid per
width, e.g. ``--common '--preset cpu --set model.d_model=64'``). Output: a table per metric and ``ROOT/scaling.json``.

    python scripts/sequence_scaling.py /work/seqruns/width
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ebtkit.study.fit import compare, describe

METRICS = {"next-step MSE per frame": ("next_step", "frame_mse"), "rollout MSE per frame": ("rollout", "frame_mse")}


def main(root: Path) -> dict:
    out = {}
    for title, (part, key) in METRICS.items():
        triples: dict[str, list] = {"EBT": [], "Transformer++": []}
        for f in sorted(root.glob("w*/*/s*/eval_sequence.json")):
            res = json.loads(f.read_text())
            seed = int(f.parent.name[1:])
            for label, m in res["models"].items():
                v = m[part][key]
                y = v["mean"] if isinstance(v, dict) else v
                triples[label].append((float(m["non_embedding_params"]), seed, float(y)))
        fits, comp = compare(triples, "EBT", "Transformer++")
        print(f"\n{title}")
        for name, fit in fits.items():
            pts = ", ".join(f"{x / 1e6:.3f}M: {y:.4g}" for x, y in zip(fit.x, fit.y_mean))
            print(f"  {name:<14} slope {fit.slope:+.4f} [{fit.ci[0]:+.4f}, {fit.ci[1]:+.4f}]  ({pts})"
                  + (f"  flags: {', '.join(fit.flags)}" if fit.flags else ""))
        print("  " + describe(comp))
        out[title] = {"fits": {n: f.to_dict() for n, f in fits.items()},
                      "comparison": comp.to_dict() if comp is not None else None}
    (root / "scaling.json").write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main(Path(sys.argv[1]))
