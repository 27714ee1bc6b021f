"""Rerun a row of the README's fresh-clone table and compare it with what the README states.

The README's first command is ``ebt train`` with PyTorch's default thread count (2 on the project's machine); the
thread count changes the order of float sums and hence the numbers, so the README states them for that count. This
script trains the row's preset exactly as ``ebt train --preset PRESET`` does (``fit`` with the preset's config,
seed 33) in a temporary directory, scores the first 64 windows of each split at the run's thinking steps as
``ebt train``'s evaluation does, prints both figures beside the README's, and exits 1 when one differs by more
than ``--rtol`` (default 1 %: float noise across CPUs stays far below it; a changed default, data or training
step moves it by more)::

    python scripts/fresh_clone_numbers.py                  # the main job (`ebt train`), 2 threads: 2–4 minutes
    python scripts/fresh_clone_numbers.py --preset tiny    # the smoke row (also tests/test_readme.py)

``--threads`` defaults to 2, the default of the machine the README's numbers come from (not this machine's).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
HEADER = "| fresh clone, PyTorch's default threads"


def readme_rows(text: str | None = None) -> dict[str, dict]:
    """``{preset: {"val": float, "ood": float, "windows": str, "threads": int}}`` from the README's fresh-clone table."""
    text = README.read_text(encoding="utf-8") if text is None else text
    start = text.index(HEADER)
    header = text[start:text.index("\n", start)]
    threads = int(re.search(r"\((\d+) here\)", header).group(1))
    rows = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        cmd = re.search(r"`ebt train(?: --preset (\S+))?`", cells[0])
        rows[cmd.group(1) or "cpu"] = {"windows": cells[1], "val": float(cells[2]), "ood": float(cells[3]),
                                       "threads": threads}
    return rows


def rerun(preset: str, threads: int, out: Path, log=print) -> dict:
    """Train ``preset`` as ``ebt train --preset PRESET`` does and score the first 64 windows of each split."""
    import torch

    import ebtkit
    from ebtkit.data.text import prepare_text_data
    from ebtkit.eval.metrics import perplexity

    torch.set_num_threads(threads)
    t0 = time.time()
    ebtkit.fit("text", ebtkit.preset(preset), out, progress=False, log=lambda *a, **k: None)
    b = ebtkit.load(out)
    data = prepare_text_data(b.config.data, b.config.model.context, b.tokenizer)
    res = {split: perplexity(b.model, tokens, b.config.model.context, steps=b.eval_steps, batch_size=16,
                             max_windows=64)["ppl"]
           for split, tokens in (("val", data.val), ("ood", data.ood))}
    return {**res, "threads": torch.get_num_threads(), "seconds": round(time.time() - t0, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu", help="the row: cpu (the main job, `ebt train`) or tiny")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the README table's)")
    p.add_argument("--rtol", type=float, default=0.01)
    a = p.parse_args(argv)
    stated = readme_rows()[a.preset]
    with tempfile.TemporaryDirectory() as tmp:
        got = rerun(a.preset, a.threads or stated["threads"], Path(tmp) / "run")
    ok = all(abs(got[k] - stated[k]) <= a.rtol * stated[k] for k in ("val", "ood"))
    print(json.dumps({"preset": a.preset, "threads": got["threads"], "seconds": got["seconds"],
                      "val": round(got["val"], 3), "ood": round(got["ood"], 3),
                      "readme_val": stated["val"], "readme_ood": stated["ood"], "within_rtol": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
