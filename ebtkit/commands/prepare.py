"""``ebt prepare``: tokenize text corpora larger than memory into memory-mapped token shards.

``ebt prepare FILES... --out DIR`` reads plain UTF-8 text, ``.jsonl`` (a ``text`` field per line) or
``.parquet`` (a ``text`` column; needs pyarrow) as a stream, tokenizes it (byte level, or a BPE trained first on
a bounded sample of the input) and writes ``DIR/train-*.bin``, ``DIR/val-*.bin``, the tokenizer's files and
``DIR/manifest.json`` (format: :mod:`ebtkit.data.shards`). ``ebt train --data DIR`` trains on it. ``DIR`` is built
beside itself under a temporary name and appears only when complete.
"""
from __future__ import annotations

import time

from ..data.shard_writer import DEFAULT_BPE_SAMPLE, DEFAULT_SHARD_TOKENS, MAX_SHARD_TOKENS, prepare_shards
from . import checks
from .output import check_new_dir


def add_parser(sub):
    p = sub.add_parser("prepare", help="tokenize a large corpus into memory-mapped token shards",
                       description="Tokenize text files (.txt or any UTF-8 file: one document each; .jsonl: a "
                       "'text' field per line; .parquet: a 'text' column) into token shards for "
                       "'ebt train --data DIR'. Input is streamed; one shard is held in memory.")
    p.add_argument("files", nargs="+", metavar="FILE", help="input files, read in this order")
    p.add_argument("--out", required=True, metavar="DIR", help="the new directory to write (must not exist or be empty)")
    p.add_argument("--tokenizer", default="byte", choices=["byte", "bpe"],
                   help="byte (default) or a byte-level BPE trained here on the first --bpe-sample-mb of the input")
    p.add_argument("--bpe-vocab", type=checks.int_range(257, 1 << 20), default=1024,
                   help="BPE vocabulary size (default 1024)")
    p.add_argument("--bpe-sample-mb", type=checks.finite_float(0, 1e6, lo_open=True),
                   default=DEFAULT_BPE_SAMPLE / (1 << 20),
                   help=f"MiB of text (characters) the BPE is trained on (default {DEFAULT_BPE_SAMPLE >> 20})")
    p.add_argument("--val-fraction", type=checks.finite_float(0, 0.5, lo_open=True, hi_open=True), default=0.05,
                   help="validation share: the last F of every shard-sized block of tokens (default 0.05)")
    p.add_argument("--shard-tokens", type=checks.int_range(2, MAX_SHARD_TOKENS), default=DEFAULT_SHARD_TOKENS,
                   help=f"tokens per block (= per train + val shard pair; one block is held in memory; default "
                        f"{DEFAULT_SHARD_TOKENS}, at most {MAX_SHARD_TOKENS})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args) -> int:
    check_new_dir(args.out, "--out")            # before anything is read or tokenized
    t0 = time.time()
    m = prepare_shards(args.files, args.out, tokenizer=args.tokenizer, bpe_vocab=args.bpe_vocab,
                       val_fraction=args.val_fraction, shard_tokens=args.shard_tokens,
                       bpe_sample=int(args.bpe_sample_mb * (1 << 20)), progress=not args.no_progress)
    dt = time.time() - t0
    size = sum(s["bytes"] for s in m["sources"])
    print(f"prepared {args.out}: {m['train_tokens']:,} train / {m['val_tokens']:,} val tokens "
          f"({m['tokenizer']['name']}, V={m['tokenizer']['vocab_size']}, {m['dtype']}) in {len(m['shards'])} shards "
          f"from {m['documents']:,} documents, {size / 1e6:.1f} MB in {dt:.1f}s")
    print(f"train on it: ebt train --data {args.out}")
    return 0
