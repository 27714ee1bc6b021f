"""Peak memory of training from token shards vs corpus size (``ebt prepare`` + ``ebt train --data DIR``).

For each corpus size this generates random-word UTF-8 text, runs ``ebt prepare`` on it (byte tokenizer: prepare's
throughput and peak RSS) and trains the ``tiny`` text EBT for ``--steps`` steps on the shards, each in its own
subprocess; the peak RSS of each child is its ``ru_maxrss`` (from ``os.wait4``). For contrast, the in-memory path
(``ebt train --data FILE``) is measured on the sizes in ``--in-memory-mb``, and the built-in corpus gives the
floor (the interpreter, torch and the model). A third child per size runs only the data path (open and verify the
shards, draw the run's batches) with each shard reader, ``pread`` (the default) and ``np.memmap``. Single-threaded. Writes ``results/corpus_rss.json`` and ``.md``
and removes the generated corpora unless ``--keep``::

    python benchmarks/bench_corpus_rss.py                      # 64 MB and 1 GB (≈ 3 GB of disk while it runs)
    python benchmarks/bench_corpus_rss.py --sizes-mb 16 --steps 10 --in-memory-mb ""   # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1",
       "TOKENIZERS_PARALLELISM": "false"}


def write_text(path: Path, mb: float, seed: int = 0, block: int = 4 << 20, pool: int = 8) -> int:
    """Random words from a 5000-word vocabulary of 2–9 letters in lines of 4–20 words: ``pool`` distinct blocks of
    ``block`` characters written in random order until ``mb`` MB (fast enough for gigabytes)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    vocab = ["".join(rng.choice(letters, rng.integers(2, 10))) for _ in range(5000)]
    blocks = []
    for _ in range(pool):
        words = rng.integers(0, len(vocab), block // 5)
        line_end = np.zeros(len(words), dtype=bool)
        ends = np.cumsum(rng.integers(4, 21, len(words) // 4 + 1))
        line_end[ends[ends < len(words)]] = True
        blocks.append("".join(vocab[w] + ("\n" if e else " ") for w, e in zip(words.tolist(), line_end.tolist())))
    target, done = int(mb * 1e6), 0
    with open(path, "w", encoding="utf-8") as f:
        while done < target:
            text = blocks[int(rng.integers(0, pool))][: target - done]
            f.write(text)
            done += len(text)
    return done


def measure(cmd: list[str]) -> dict:
    """Run ``cmd``; wall seconds and the child's own peak RSS (MB)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{out}")
    kb = usage.ru_maxrss if sys.platform != "darwin" else usage.ru_maxrss / 1024
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(kb / 1024, 1), "output": out}


def ebt(*args: str) -> list[str]:
    return [sys.executable, "-m", "ebtkit.cli", *args]


def train_cmd(data: str | None, out: Path, steps: int) -> list[str]:
    return ebt("train", *(["--data", data] if data else []), "--preset", "tiny", "--steps", str(steps),
               "--out", str(out), "--no-progress", "--no-eval")


READER = """
import sys
from ebtkit.data.shards import open_shards
from ebtkit.data.text import get_batch
from ebtkit.training.optim import step_generator
s = open_shards(sys.argv[1], reader=sys.argv[2], progress=False)
for step in range(int(sys.argv[3])):
    get_batch(s.train, 8, 33, step_generator(33, step))
"""


def reader_cmd(shards: Path, reader: str, steps: int) -> list[str]:
    """Only the data path of a tiny run: open (verify) the shards and draw ``steps`` batches of 8 × 33 tokens."""
    return [sys.executable, "-c", READER, str(shards), reader, str(steps)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes-mb", default="64,1024", help="corpus sizes in MB (default 64,1024)")
    p.add_argument("--in-memory-mb", default="64", help="sizes also trained from the text file itself (default 64)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--workdir", default=None, help="where the corpora go (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the generated corpora")
    p.add_argument("--out", default=str(RESULTS / "corpus_rss.json"))
    a = p.parse_args(argv)
    sizes = [float(s) for s in a.sizes_mb.split(",") if s.strip()]
    in_mem = {float(s) for s in a.in_memory_mb.split(",") if s.strip()}
    work = Path(a.workdir or tempfile.mkdtemp(prefix="ebt-corpus-rss-"))
    work.mkdir(parents=True, exist_ok=True)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    rows, baselines = [], []
    try:
        r = measure(train_cmd(None, work / "run-builtin", a.steps))
        baselines.append({"data": "built-in corpus (4.3 MB KJV, in memory)", "train_s": r["wall_s"],
                          "train_peak_rss_mb": r["peak_rss_mb"]})
        log(f"built-in corpus: {r['peak_rss_mb']} MB peak RSS")
        for mb in sizes:
            txt, shards = work / f"corpus-{mb:g}MB.txt", work / f"shards-{mb:g}MB"
            t0 = time.perf_counter()
            nbytes = write_text(txt, mb)
            log(f"{mb:g} MB: generated {nbytes:,} bytes in {time.perf_counter() - t0:.0f}s")
            prep = measure(ebt("prepare", str(txt), "--out", str(shards), "--no-progress"))
            m = json.loads((shards / "manifest.json").read_text())
            disk = sum((shards / s["file"]).stat().st_size for s in m["shards"])
            tr = measure(train_cmd(str(shards), work / f"run-{mb:g}MB", a.steps))
            rd = {r: measure(reader_cmd(shards, r, a.steps))["peak_rss_mb"] for r in ("pread", "mmap")}
            own = float(re.search(r"in ([0-9.]+)s$", prep["output"].splitlines()[0]).group(1))  # without start-up
            rows.append({"corpus_mb": mb, "text_bytes": nbytes, "tokens": m["total_tokens"],
                         "shards": len(m["shards"]), "shard_bytes": disk, "prepare_wall_s": prep["wall_s"],
                         "prepare_s": own, "prepare_mb_per_s": round(nbytes / 1e6 / max(own, 1e-3), 1),
                         "prepare_peak_rss_mb": prep["peak_rss_mb"],
                         "train_s": tr["wall_s"], "train_peak_rss_mb": tr["peak_rss_mb"],
                         "batches_only_peak_rss_mb": rd})
            log(f"{mb:g} MB: prepare {prep['wall_s']}s ({rows[-1]['prepare_mb_per_s']} MB/s, {prep['peak_rss_mb']} MB "
                f"RSS); train from shards {tr['wall_s']}s, {tr['peak_rss_mb']} MB RSS; batches only: {rd}")
            if mb in in_mem:
                r = measure(train_cmd(str(txt), work / f"run-{mb:g}MB-file", a.steps))
                baselines.append({"data": f"{mb:g} MB text file (in memory)", "train_s": r["wall_s"],
                                  "train_peak_rss_mb": r["peak_rss_mb"]})
                log(f"{mb:g} MB from the text file in memory: {r['wall_s']}s, {r['peak_rss_mb']} MB RSS")
            shutil.rmtree(shards)
            txt.unlink()
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    res = {"benchmark": "corpus_rss", "steps": a.steps, "preset": "tiny", "tokenizer": "byte", "threads": 1,
           "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "page_size": resource.getpagesize()},
           "rows": rows, "baselines": baselines}
    lines = ["| corpus | tokens | shards | prepare s (MB/s) | prepare peak RSS | train s | train peak RSS | "
             "batches only: pread / mmap reader |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rd = r["batches_only_peak_rss_mb"]
        lines.append(f"| {r['corpus_mb']:g} MB | {r['tokens']:,} | {r['shards']} | {r['prepare_s']:.1f} "
                     f"({r['prepare_mb_per_s']:.0f}) | {r['prepare_peak_rss_mb']:.0f} MB | {r['train_s']:.1f} | "
                     f"{r['train_peak_rss_mb']:.0f} MB | {rd['pread']:.0f} / {rd['mmap']:.0f} MB |")
    for b in baselines:
        lines.append(f"| {b['data']} | | | | | {b['train_s']:.1f} | {b['train_peak_rss_mb']:.0f} MB | |")
    table = "\n".join(lines)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    os.replace(tmp, out)
    out.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"\nwrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
