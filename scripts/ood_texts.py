"""Out-of-distribution text sets for the thinking study (issue 16; research script, not part of the package).

Writes one UTF-8 text file per set into ``--out``, each from data already on the machine, none of which any run
here trained on:

* BIG-bench tasks (from ``ebt data bigbench``'s cache): every example as the downstream protocol's teacher-forced
  text ``"Question: {q}\\nAnswer: {a}"``, examples separated by a blank line, file order —
  ``dyck`` (dyck_languages), ``mathqa`` (elementary_math_qa/question_only), ``logic``
  (logical_deduction/three_objects... all its subtasks);
* ``pysrc``: Python source, the standard library's ``*.py`` files under ``--pysrc`` (sorted, first 2 MB).

Score them with ``thinking_budget.py budget RUN --ood-full NAME=FILE`` (the whole file, windows from its start).

    python scripts/ood_texts.py --out /work/data16/ood
"""
from __future__ import annotations

import argparse
import sysconfig
from pathlib import Path

from ebtkit.data.bigbench import load_task

TASKS = {"dyck": "dyck_languages", "mathqa": "elementary_math_qa/question_only", "logic": "logical_deduction"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--pysrc", default=sysconfig.get_paths()["stdlib"])
    p.add_argument("--max-bytes", type=int, default=2_000_000)
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, task in TASKS.items():
        data = load_task(task)
        text = "\n\n".join(e.text for e in data.examples)[: a.max_bytes]
        (out / f"{name}.txt").write_text(text, encoding="utf-8")
        print(name, task, len(data.examples), "examples", len(text.encode()), "bytes")
        if getattr(data, "note", None):                # e.g. dyck generated because no BIG-bench is indexed
            print(f"  note: {data.note}")
    parts, n = [], 0
    for f in sorted(Path(a.pysrc).glob("*.py")):
        t = f.read_text(encoding="utf-8", errors="replace")
        parts.append(t)
        n += len(t)
        if n >= a.max_bytes:
            break
    text = "\n".join(parts)[: a.max_bytes]
    (out / "pysrc.txt").write_text(text, encoding="utf-8")
    print("pysrc", a.pysrc, len(parts), "files", len(text.encode()), "bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
