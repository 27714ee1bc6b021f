"""Token shards: text corpora larger than memory (``ebt prepare`` writes them, ``ebt train --data DIR`` reads them).

**Format** (``manifest.json`` version 1). A prepared directory holds raw little-endian token files
``train-00000.bin``, ``val-00000.bin``, … (``uint16`` when the vocabulary has ≤ 65535 tokens, else
``uint32``; ``numpy.memmap(path, dtype=manifest["dtype"])`` reads one), the tokenizer's files (``tokenizer.json``
for BPE) and ``manifest.json``: format version, tokenizer (name, vocab size, files with their sha256), dtype, every
shard's file name, split, token count and sha256 (in stream order), the split rule, total counts and the source
files.

**The token stream.** Input files are read in the order given, each as documents: a plain-text file (any suffix
but ``.jsonl`` / ``.parquet``; UTF-8, no NUL bytes) is one document, a ``.jsonl`` line holds one (its ``text``
field), a ``.parquet`` row holds one (its ``text`` column; null rows are skipped). A document that does not end
with a newline gets one, and the documents' tokens are concatenated. Text is read in blocks (never a whole file)
and encoded at cut points where the byte-level BPE pre-tokenizer splits anyway — after an ASCII letter or digit,
before a space or newline — so the tokens equal ``tokenizer.encode(document)``; a document with no such point
for 8 MiB is cut anyway (``forced_cuts`` in the manifest; byte tokens are exact at every cut).

**Validation split** (streaming and deterministic): the stream is cut into blocks of ``shard_tokens`` tokens
(the last block shorter); block *i* puts its first ``n − round(F·n)`` tokens in ``train-i.bin`` and its last
``round(F·n)`` in ``val-i.bin``. Validation text is thus spread through the whole corpus in stretches of
``F·shard_tokens`` tokens and never overlaps training text; a one-block corpus splits like the in-memory path
(the last fraction is validation). Only one block is held in RAM while preparing.

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

import codecs
import hashlib
import json
import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .tokenizers import BPETokenizer, ByteTokenizer, build_tokenizer

FORMAT = "ebtkit-token-shards"
VERSION = 1
MANIFEST = "manifest.json"
DEFAULT_SHARD_TOKENS = 1 << 25          # 32 Mi tokens: 64 MiB of uint16 held in RAM while preparing
DEFAULT_BPE_SAMPLE = 16 << 20           # characters of input the BPE is trained on
BLOCK = 4 << 20                         # bytes read at a time from a text file
CHUNK_CHARS = 1 << 20                   # characters encoded at a time
DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}


class ShardError(ValueError):
    """Unusable input or prepared data (a one-line message naming the file)."""


def token_dtype(vocab_size: int) -> str:
    """``uint16`` for vocabularies of ≤ 65535 tokens, else ``uint32``."""
    return "uint16" if vocab_size <= 65535 else "uint32"


# ----------------------------------------------------------------------------------------- reading input
# Each reader yields events: (text, bytes consumed) for a piece of the current document, (None, bytes) at its end.

def _text_events(path: Path) -> Iterator[tuple[str | None, int]]:
    dec = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    with open(path, "rb") as f:
        while raw := f.read(BLOCK):
            if b"\x00" in raw:
                raise ShardError(f"{path} looks binary (a NUL byte at byte {offset + raw.index(0)})")
            try:
                text = dec.decode(raw)
            except UnicodeDecodeError as e:
                raise ShardError(f"{path} is not valid UTF-8 ({e.reason} near byte {offset + e.start})") from None
            offset += len(raw)
            yield text, len(raw)
        try:
            dec.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ShardError(f"{path} is not valid UTF-8 (truncated character at the end)") from None
    yield None, 0


def _jsonl_events(path: Path) -> Iterator[tuple[str | None, int]]:
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                yield "", len(line)
                continue
            try:
                obj = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ShardError(f"{path}:{lineno}: not valid JSON ({str(e).splitlines()[0]})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise ShardError(f"{path}:{lineno}: expected a JSON object with a string 'text' field")
            yield obj["text"], len(line)
            yield None, 0


def _parquet_file(path: Path):
    try:
        import pyarrow.parquet as pq   # optional: only .parquet inputs need it
    except ImportError:
        raise ShardError(f"{path}: reading .parquet files needs pyarrow (pip install pyarrow)") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 — pyarrow raises its own types
        raise ShardError(f"{path}: not a readable parquet file ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    schema = pf.schema_arrow
    if "text" not in schema.names:
        raise ShardError(f"{path}: no 'text' column (columns: {', '.join(schema.names) or 'none'})")
    kind = str(schema.field("text").type)
    if kind not in ("string", "large_string", "string_view"):
        raise ShardError(f"{path}: the 'text' column holds {kind}, not strings")
    return pf


def _parquet_events(path: Path) -> Iterator[tuple[str | None, int]]:
    pf = _parquet_file(path)
    size, rows = path.stat().st_size, max(pf.metadata.num_rows, 1)
    done = 0
    for batch in pf.iter_batches(batch_size=1024, columns=["text"]):   # row group by row group
        for text in batch.column(0).to_pylist():
            if text is not None:                                         # null rows are skipped
                yield text, 0
                yield None, 0
        share = size * (done + batch.num_rows) // rows - size * done // rows   # progress: the file's bytes, pro rata
        done += batch.num_rows
        yield "", share


def _events(path: Path) -> Iterator[tuple[str | None, int]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl_events(path)
    if suffix == ".parquet":
        return _parquet_events(path)
    return _text_events(path)


def _check_inputs(files) -> list[Path]:
    if not files:
        raise ShardError("no input files given")
    paths = [Path(f) for f in files]
    for p in paths:
        if not p.exists():
            raise ShardError(f"input file not found: {p}")
        if not p.is_file():
            raise ShardError(f"input path is not a file: {p}")
        if p.suffix.lower() == ".parquet":
            _parquet_file(p)                                   # pyarrow present, a 'text' column: fail early
    return paths


# ----------------------------------------------------------------------------------------- encoding
def _safe_cut(text: str) -> int:
    """The last index p with ``text[p-1]`` an ASCII letter/digit and ``text[p]`` a space or newline (0 if none):
    GPT-2's pre-tokenizer ends a piece there whatever follows, so encoding ``text[:p]`` and ``text[p:]``
    separately gives the tokens of ``text``."""
    p = len(text)
    while True:
        p = max(text.rfind(" ", 0, p), text.rfind("\n", 0, p))
        if p <= 0:
            return 0
        c = text[p - 1]
        if c.isascii() and c.isalnum():
            return p


class _Encoder:
    """Documents, fed in pieces, → token arrays passed to ``sink`` (see the module docstring for the cut rule)."""

    def __init__(self, tok, sink: Callable[[np.ndarray], None], chunk_chars: int = CHUNK_CHARS):
        self.tok, self.sink, self.chunk = tok, sink, chunk_chars
        self.byte = tok.kind == "byte"
        self.pending: list[str] = []
        self.size, self.last = 0, ""
        self.documents = self.forced_cuts = 0

    def ids(self, text: str) -> np.ndarray:
        if self.byte:
            return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        return np.asarray(self.tok.encode(text), dtype=np.int64)

    def feed(self, text: str) -> None:
        if text:
            self.pending.append(text)
            self.size += len(text)
            self.last = text[-1]
            if self.size >= self.chunk:
                self._encode(final=False)

    def end(self) -> None:
        if not self.last:
            return                                               # an empty document adds nothing
        if self.last != "\n":
            self.pending.append("\n")
        self._encode(final=True)
        self.last = ""
        self.documents += 1

    def _encode(self, final: bool) -> None:
        text = "".join(self.pending)
        cut = len(text)
        if not (final or self.byte):
            cut = _safe_cut(text)
            if cut == 0:
                if len(text) < 8 * self.chunk:
                    self.pending = [text]
                    return
                cut = len(text)
                self.forced_cuts += 1
        if cut:
            self.sink(self.ids(text[:cut]))
        rest = text[cut:]
        self.pending, self.size = ([rest], len(rest)) if rest else ([], 0)


class _ShardWriter:
    """Fills one block of ``shard_tokens`` tokens in RAM; a full block is split (train / val) and written."""

    def __init__(self, root: Path, dtype: str, shard_tokens: int, val_fraction: float):
        self.root, self.dtype, self.val_fraction = root, dtype, val_fraction
        self.buf = np.empty(shard_tokens, dtype=DTYPES[dtype])
        self.n = self.index = 0
        self.shards: list[dict] = []

    def add(self, ids: np.ndarray) -> None:
        pos = 0
        while pos < len(ids):
            take = min(len(ids) - pos, len(self.buf) - self.n)
            self.buf[self.n:self.n + take] = ids[pos:pos + take]
            self.n += take
            pos += take
            if self.n == len(self.buf):
                self.flush()

    def flush(self) -> None:
        n = self.n
        if not n:
            return
        n_val = math.floor(n * self.val_fraction + 0.5)
        for split, part in (("train", self.buf[:n - n_val]), ("val", self.buf[n - n_val:n])):
            if len(part):
                name = f"{split}-{self.index:05d}.bin"
                with open(self.root / name, "wb") as f:
                    part.tofile(f)
                self.shards.append({"file": name, "split": split, "tokens": int(len(part)),
                                    "sha256": hashlib.sha256(part).hexdigest()})
        self.index += 1
        self.n = 0


def _sample(paths: list[Path], limit: int) -> str:
    """The first ``limit`` characters of the document stream (documents newline-terminated): the BPE's sample."""
    out, size, last = [], 0, "\n"
    for p in paths:
        events = _events(p)
        try:
            for text, _ in events:
                piece = ("\n" if last != "\n" else "") if text is None else text
                if not piece:
                    continue
                piece = piece[: limit - size]
                out.append(piece)
                size, last = size + len(piece), piece[-1]
                if size >= limit:
                    return "".join(out)
        finally:
            events.close()
    return "".join(out)


# ----------------------------------------------------------------------------------------- ebt prepare
def prepare_shards(files, out, *, tokenizer: str = "byte", bpe_vocab: int = 1024, val_fraction: float = 0.05,
                   shard_tokens: int = DEFAULT_SHARD_TOKENS, bpe_sample: int = DEFAULT_BPE_SAMPLE,
                   progress: bool = True, chunk_chars: int = CHUNK_CHARS) -> dict:
    """Tokenize ``files`` into token shards in the new directory ``out``; returns the manifest.

    Built in ``out.tmp-<pid>`` beside it and renamed on success; on any error (or interrupt) nothing is left.
    """
    from tqdm import tqdm

    if not 0 < val_fraction < 0.5:
        raise ShardError(f"--val-fraction must be in (0, 0.5), got {val_fraction}")
    if shard_tokens < 2:
        raise ShardError(f"--shard-tokens must be >= 2, got {shard_tokens}")
    if tokenizer not in ("byte", "bpe"):
        raise ShardError(f"unknown tokenizer {tokenizer!r}; choose from byte, bpe")
    if bpe_sample < 1:
        raise ShardError(f"the BPE sample must be positive, got {bpe_sample}")
    paths = _check_inputs(files)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ShardError(f"--out {out} already exists and is not empty; choose a new directory")
    created = [p for p in reversed(out.parents) if not p.exists()]
    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        if tokenizer == "bpe":
            sample = _sample(paths, bpe_sample)
            if not sample.strip():
                raise ShardError(f"no text to train the BPE tokenizer on in {', '.join(map(str, paths))}")
            tok = build_tokenizer("bpe", sample, bpe_vocab)
            del sample
        else:
            tok = ByteTokenizer()
        tok_files = {}
        for name, data in tok.files().items():
            (tmp / name).write_bytes(data)
            tok_files[name] = hashlib.sha256(data).hexdigest()
        dtype = token_dtype(tok.vocab_size)
        writer = _ShardWriter(tmp, dtype, shard_tokens, val_fraction)
        enc = _Encoder(tok, writer.add, chunk_chars)
        sources = []
        total = sum(p.stat().st_size for p in paths)
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="prepare", file=sys.stderr,
                  dynamic_ncols=True, leave=False, disable=True if not progress else None) as bar:
            for p in paths:
                docs = enc.documents
                for text, nbytes in _events(p):
                    if text is None:
                        enc.end()
                    else:
                        enc.feed(text)
                    if nbytes:
                        bar.update(nbytes)
                enc.end()
                sources.append({"path": str(p), "bytes": p.stat().st_size, "documents": enc.documents - docs})
            writer.flush()
        counts = {s: sum(x["tokens"] for x in writer.shards if x["split"] == s) for s in ("train", "val")}
        if counts["train"] == 0:
            raise ShardError(f"no text found in {', '.join(map(str, paths))}")
        manifest = {
            "format": FORMAT, "version": VERSION,
            "tokenizer": {"name": tok.kind, "vocab_size": tok.vocab_size, "files": tok_files,
                          **({"bpe_vocab": bpe_vocab, "bpe_sample_chars": bpe_sample} if tok.kind == "bpe" else {})},
            "dtype": dtype, "byte_order": "little",
            "split": {"val_fraction": val_fraction, "shard_tokens": shard_tokens,
                      "rule": "each block of shard_tokens tokens (the last one shorter) of the stream: the first "
                              "n - round(val_fraction * n) tokens are train-<i>.bin, the rest val-<i>.bin"},
            "shards": writer.shards,
            "train_tokens": counts["train"], "val_tokens": counts["val"],
            "total_tokens": counts["train"] + counts["val"], "documents": enc.documents,
            "forced_cuts": enc.forced_cuts, "sources": sources,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()                      # empty (checked above)
        os.replace(tmp, out)
        return manifest
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for p in reversed(created):
            try:
                p.rmdir()
            except OSError:
                pass
        raise


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
    if token_dtype(tok.vocab_size) != m["dtype"] and m["dtype"] == "uint16":
        raise _bad(root / MANIFEST, f"dtype uint16 cannot hold a vocabulary of {tok.vocab_size} tokens")
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


__all__ = ["DEFAULT_SHARD_TOKENS", "MANIFEST", "ShardError", "ShardSet", "ShardTokens", "check_tokenizer",
           "open_shards", "prepare_shards", "read_manifest", "token_dtype"]
