"""Token shards: text corpora larger than memory (``ebt prepare`` writes them, ``ebt train --data DIR`` reads them).

**Format** (``manifest.json`` version 1). A prepared directory holds raw little-endian token files
``train-00000.bin``, ``val-00000.bin``, … (``uint8`` when the vocabulary has ≤ 256 tokens — the byte
tokenizer —, ``uint16`` up to 65535, else ``uint32``; corpora written before ``uint8`` hold byte tokens as
``uint16`` and are read as they are; ``numpy.memmap(path, dtype=manifest["dtype"])`` reads one), the tokenizer's files (``tokenizer.json``
for BPE) and ``manifest.json``: format version, tokenizer (name, vocab size, files with their sha256), dtype, every
shard's file name, split, token count and sha256 (in stream order), the split rule, total counts and the source
files.

**Writing** (:mod:`ebtkit.data.shard_writer`, ``ebt prepare``): how input files become the token stream and how
the stream is split into training and validation shards.

**Reading.** :func:`open_shards` checks the manifest, every shard's presence and size (``tokens × itemsize``)
and — always, at start, with a progress bar on a terminal — every shard's sha256 (hashing runs at disk speed,
~1 s per GB; a damaged corpus fails before a run directory is touched rather than mid-run). Each split is a
:class:`ShardTokens`: ``len()`` and ``[a:b]`` like a 1-D token tensor, copying only the requested tokens to RAM;
windows may span the seam between two shards, as they span documents. Tokens are read with ``pread`` by
default, not through ``np.memmap`` (``reader="mmap"``): on a Linux 6.x kernel a fault on a mapped shard maps the
whole page-cache folio around it (~1 MB here), so a memory-mapped reader's RSS grows by about 1 MB per window
drawn until it approaches the corpus size (reclaimable page cache, but counted as the process's memory), while
``pread`` keeps it flat (``benchmarks/bench_corpus_rss.py``, docs/speed.md).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .tokenizers import BPETokenizer, ByteTokenizer

FORMAT = "ebtkit-token-shards"
VERSION = 1
MANIFEST = "manifest.json"
DTYPES = {"uint8": np.dtype("u1"), "uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}


class ShardError(ValueError):
    """Unusable input or prepared data (a one-line message naming the file)."""


def token_dtype(vocab_size: int) -> str:
    """The narrowest type that holds every token id: ``uint8`` for vocabularies of ≤ 256 tokens (the byte
    tokenizer: one byte per token on disk), ``uint16`` for ≤ 65535, else ``uint32``."""
    return "uint8" if vocab_size <= 256 else "uint16" if vocab_size <= 65535 else "uint32"


# ----------------------------------------------------------------------------------------- reading shards
class ShardTokens:
    """One split's shards as one 1-D token stream: ``len()`` and ``[a:b]`` (an int64 tensor of just those
    tokens), so :func:`ebtkit.data.text.get_batch` and ``eval_windows`` take it like a tensor.
    ``torch.unique(shards)`` is computed block by block (the thinking study's random-token vocabulary).

    ``reader``: ``"pread"`` (default; each slice reads its bytes from the file, nothing stays mapped) or
    ``"mmap"`` (one ``np.memmap`` per shard, opened lazily; see the module docstring for its RSS)."""

    def __init__(self, files: list[Path], counts: list[int], dtype: str, reader: str = "pread"):
        if reader not in ("pread", "mmap"):
            raise ValueError(f"unknown shard reader {reader!r}; choose from pread, mmap")
        self.files, self.counts, self.dtype, self.reader = files, counts, DTYPES[dtype], reader
        self.offsets = np.cumsum([0, *counts])
        self._maps: list[np.memmap | None] = [None] * len(files)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _map(self, i: int) -> np.memmap:
        if self._maps[i] is None:
            self._maps[i] = np.memmap(self.files[i], dtype=self.dtype, mode="r", shape=(self.counts[i],))
        return self._maps[i]

    def _read(self, i: int, lo: int, n: int) -> np.ndarray:
        if self.reader == "mmap":
            return self._map(i)[lo:lo + n]
        size = self.dtype.itemsize
        fd = os.open(self.files[i], os.O_RDONLY)
        try:
            raw = os.pread(fd, n * size, lo * size)
        finally:
            os.close(fd)
        if len(raw) != n * size:
            raise ShardError(f"truncated shard {self.files[i]}: it ended while reading tokens {lo}..{lo + n}")
        return np.frombuffer(raw, dtype=self.dtype)

    def __getitem__(self, key) -> torch.Tensor:
        if not isinstance(key, slice):
            raise TypeError("ShardTokens supports slices [a:b] only")
        start, stop, step = key.indices(len(self))
        if step != 1:
            raise TypeError("ShardTokens supports contiguous slices only")
        out = np.empty(max(stop - start, 0), dtype=np.int64)
        i = int(np.searchsorted(self.offsets, start, side="right")) - 1
        pos = start
        while pos < stop:
            lo = pos - int(self.offsets[i])
            take = min(stop - pos, self.counts[i] - lo)
            out[pos - start:pos - start + take] = self._read(i, lo, take)
            pos += take
            i += 1
        return torch.from_numpy(out)

    def unique(self, block: int = 1 << 24) -> torch.Tensor:
        seen = np.zeros(1, dtype=bool)
        for a in range(0, len(self), block):
            ids = self[a:a + block].numpy()
            counts = np.bincount(ids)
            if len(counts) > len(seen):
                seen = np.pad(seen, (0, len(counts) - len(seen)))
            seen[: len(counts)] |= counts > 0
        return torch.from_numpy(np.flatnonzero(seen).astype(np.int64))

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kw = dict(kwargs or {})
        if func is torch.unique and len(args) == 1 and kw.pop("sorted", True) and not any(kw.values()):
            return args[0].unique()                        # sorted, without inverse, counts or dim
        return NotImplemented


@dataclass
class ShardSet:
    """A prepared directory: its manifest, tokenizer and the two splits."""

    root: Path
    manifest: dict
    tokenizer: object
    train: ShardTokens
    val: ShardTokens

    def describe(self) -> str:
        m = self.manifest
        return f"{self.root} ({len(m['shards'])} {m['dtype']} shards)"


def _bad(path: Path, what: str) -> ShardError:
    return ShardError(f"{path}: {what}")


def read_manifest(root: str | Path) -> dict:
    """``root/manifest.json``, checked field by field (one-line errors naming the file)."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise ShardError(f"{root} has no {MANIFEST}; prepare a corpus with 'ebt prepare FILES --out {root}'")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _bad(path, f"malformed manifest ({str(e).splitlines()[0]})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise _bad(path, f"not an ebt prepare manifest (format {m.get('format') if isinstance(m, dict) else None!r})")
    if m.get("version") != VERSION:
        raise _bad(path, f"manifest version {m.get('version')!r} is not supported (this ebtkit reads {VERSION})")
    tok = m.get("tokenizer")
    if not (isinstance(tok, dict) and tok.get("name") in ("byte", "bpe") and isinstance(tok.get("vocab_size"), int)
            and isinstance(tok.get("files", {}), dict)):
        raise _bad(path, "malformed manifest: 'tokenizer' needs a name (byte | bpe), a vocab_size and files")
    if m.get("dtype") not in DTYPES:
        raise _bad(path, f"malformed manifest: dtype {m.get('dtype')!r} is not one of {', '.join(DTYPES)}")
    shards = m.get("shards")
    if not isinstance(shards, list):
        raise _bad(path, "malformed manifest: 'shards' must be a list")
    for i, s in enumerate(shards):
        ok = (isinstance(s, dict) and isinstance(s.get("file"), str) and s.get("split") in ("train", "val")
              and isinstance(s.get("tokens"), int) and s["tokens"] > 0 and isinstance(s.get("sha256"), str))
        if not ok or Path(s["file"]).name != s["file"] or s["file"] in ("", ".", ".."):
            raise _bad(path, f"malformed manifest: shard entry {i} needs a plain file name, split (train | val), "
                             "a positive token count and a sha256")
    return m


def _sha256(path: Path, bar) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
            bar.update(len(block))
    return h.hexdigest()


def open_shards(root: str | Path, *, verify: bool = True, progress: bool = True, reader: str = "pread") -> ShardSet:
    """Open a prepared directory: manifest, tokenizer, shard presence and sizes, and (``verify``) checksums;
    ``reader``: how :class:`ShardTokens` reads (``pread`` or ``mmap``)."""
    from tqdm import tqdm

    root = Path(root)
    m = read_manifest(root)
    itemsize = DTYPES[m["dtype"]].itemsize
    files: dict[str, list] = {"train": [], "val": []}
    for s in m["shards"]:
        f = root / s["file"]
        if not f.is_file():
            raise ShardError(f"missing shard {f} (listed in {root / MANIFEST})")
        size, want = f.stat().st_size, s["tokens"] * itemsize
        if size != want:
            raise ShardError(f"{'truncated' if size < want else 'oversized'} shard {f}: {size} bytes, expected "
                             f"{s['tokens']} tokens × {itemsize} = {want}")
        files[s["split"]].append((f, s["tokens"]))
    tm = m["tokenizer"]
    for name, digest in tm.get("files", {}).items():
        f = root / Path(name).name
        if not f.is_file():
            raise ShardError(f"missing tokenizer file {f} (listed in {root / MANIFEST})")
        if hashlib.sha256(f.read_bytes()).hexdigest() != digest:
            raise ShardError(f"checksum mismatch: {f} differs from the one {root / MANIFEST} was prepared with")
    if tm["name"] == "byte":
        tok = ByteTokenizer()
    else:
        f = root / BPETokenizer.FILE
        if BPETokenizer.FILE not in tm.get("files", {}):
            raise _bad(root / MANIFEST, f"malformed manifest: a bpe tokenizer needs its file {BPETokenizer.FILE}")
        try:
            tok = BPETokenizer.load(f)
        except Exception as e:  # noqa: BLE001 — the tokenizers library raises its own types
            raise ShardError(f"corrupt tokenizer file {f}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if tok.vocab_size != tm["vocab_size"]:
        raise _bad(root / MANIFEST, f"tokenizer vocab_size {tm['vocab_size']} ≠ {tok.vocab_size} of its files")
    if DTYPES[m["dtype"]].itemsize < DTYPES[token_dtype(tok.vocab_size)].itemsize:   # a wider one (old) is fine
        raise _bad(root / MANIFEST, f"dtype {m['dtype']} cannot hold a vocabulary of {tok.vocab_size} tokens")
    if verify:
        total = sum(s["tokens"] for s in m["shards"]) * itemsize
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="verifying shards",
                  file=sys.stderr, dynamic_ncols=True, leave=False,
                  disable=True if not progress or total < (64 << 20) else None) as bar:
            for s in m["shards"]:
                f = root / s["file"]
                if _sha256(f, bar) != s["sha256"]:
                    raise ShardError(f"checksum mismatch in shard {f}: its sha256 differs from {root / MANIFEST}'s; "
                                     "the file changed after 'ebt prepare' (prepare the corpus again)")
    split = {k: ShardTokens([f for f, _ in v], [n for _, n in v], m["dtype"], reader) for k, v in files.items()}
    return ShardSet(root, m, tok, split["train"], split["val"])


def check_tokenizer(run_tok, shards: ShardSet) -> None:
    """Refuse a run whose tokenizer (a resumed or evaluated run's saved one) differs from the manifest's."""
    mine, theirs = shards.tokenizer, run_tok
    where = shards.root
    if theirs.kind != mine.kind:
        raise ShardError(f"{where} was prepared with the {mine.kind} tokenizer, but the run uses {theirs.kind}; "
                         "prepare the corpus with the run's tokenizer")
    if theirs.files() != mine.files() or theirs.vocab_size != mine.vocab_size:
        raise ShardError(f"{where} was prepared with another {mine.kind} tokenizer than the run's "
                         f"({BPETokenizer.FILE} differs); use the corpus the run was trained on")


__all__ = ["DTYPES", "FORMAT", "MANIFEST", "VERSION", "ShardError", "ShardSet", "ShardTokens", "check_tokenizer",
           "open_shards", "read_manifest", "token_dtype"]
