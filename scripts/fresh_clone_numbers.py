"""Rerun a row of the README's fresh-clone table and compare it with what the README states.

The README's first command is ``ebt train`` with PyTorch's default thread count (2 on the project's machine); the
thread count changes the order of float sums and hence the numbers, so the README states them for that count. This
script trains the row's preset exactly as ``ebt train --preset PRESET`` does (``fit`` with the preset's config,
seed 33) in a temporary directory, scores the first 64 windows of each split at the run's thinking steps as
``ebt train``'s evaluation does, prints both figures beside the README's, and exits 1 when one differs by more
than the row's stated tolerance. The README names the CPU and ISA behind each figure (an AMD EPYC, Zen 3, with
AVX2), and the tolerance beside each row is the spread measured across the ISAs that PyTorch can run
(``ATEN_CPU_CAPABILITY`` default and avx2 on that machine, and an Intel Xeon with AVX-512): 800 training steps
amplify the float-order differences of another SIMD width into a few percent of perplexity (most on the OOD
split), so the main job's figures reproduce only within that spread, not to the digit; ``--rtol`` overrides it::

    python scripts/fresh_clone_numbers.py                  # the main job (`ebt train`), 2 threads: 2–4 minutes
    python scripts/fresh_clone_numbers.py --preset tiny    # the smoke row (also tests/test_readme.py)

``--threads`` defaults to 2, the default of the machine the README's numbers come from (not this machine's).
The output names this machine's CPU and PyTorch's CPU capability beside the figures.
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
    """``{preset: {"val", "ood": float, "windows", "cpu": str, "threads": int, "rtol": {"val", "ood": float}}}``
    from the README's fresh-clone table (the tolerance column reads ``val 2 %, OOD 15 %``)."""
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
        rtol = {k.lower(): float(v) / 100 for k, v in re.findall(r"(val|OOD) ([\d.]+) ?%", cells[6])}
        rows[cmd.group(1) or "cpu"] = {"windows": cells[1], "val": float(cells[2]), "ood": float(cells[3]),
                                       "cpu": cells[5], "threads": threads, "rtol": rtol}
    return rows


def this_cpu() -> str:
    """This machine's CPU model and PyTorch's CPU capability (``ATEN_CPU_CAPABILITY``), e.g. ``AMD EPYC, AVX2``."""
    import platform

    import torch
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {torch.backends.cpu.get_cpu_capability()}"


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
    p.add_argument("--rtol", type=float, default=None,
                   help="relative tolerance for both splits (default: the row's, measured across ISAs)")
    a = p.parse_args(argv)
    stated = readme_rows()[a.preset]
    rtol = {k: a.rtol for k in ("val", "ood")} if a.rtol is not None else stated["rtol"]
    with tempfile.TemporaryDirectory() as tmp:
        got = rerun(a.preset, a.threads or stated["threads"], Path(tmp) / "run")
    ok = all(abs(got[k] - stated[k]) <= rtol[k] * stated[k] for k in ("val", "ood"))
    print(json.dumps({"preset": a.preset, "cpu": this_cpu(), "threads": got["threads"], "seconds": got["seconds"],
                      "val": round(got["val"], 3), "ood": round(got["ood"], 3), "readme_cpu": stated["cpu"],
                      "readme_val": stated["val"], "readme_ood": stated["ood"], "rtol": rtol, "within_rtol": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
