"""Writing token shards (``ebt prepare``): input files → one token stream → training and validation shards.

The format and the reader are :mod:`ebtkit.data.shards`.

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
"""
from __future__ import annotations

import codecs
import hashlib
import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .shards import DTYPES, FORMAT, MANIFEST, VERSION, ShardError, token_dtype
from .tokenizers import DEFAULT_BPE_SAMPLE, ByteTokenizer, build_tokenizer   # the BPE's sample: shared with train

DEFAULT_SHARD_TOKENS = 1 << 25          # 32 Mi tokens: 32 MiB (bytes, uint8) to 64 MiB (BPE, uint16) held in RAM
BLOCK = 4 << 20                         # bytes read at a time from a text file
CHUNK_CHARS = 1 << 20                   # characters encoded at a time
MAX_SHARD_TOKENS = 1 << 31              # one block is held in RAM: at most 8 GiB of uint32
BPE_BYTES_PER_CHAR = 80                 # peak memory of BPE training per character of its sample (measured: a 64 MB
                                        # sample took 4.9 GB)


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


def _check_memory(paths: list[Path], tokenizer: str, bpe_vocab: int, shard_tokens: int, bpe_sample: int) -> None:
    """Refuse, before anything is allocated, a block (``shard_tokens`` tokens held in RAM) or a BPE sample whose
    training does not fit the memory the machine has free (``EBT_CHECK_MEMORY=0`` skips the check)."""
    from ..core.estimate import ENV_SWITCH, available_memory, check_enabled, human_bytes
    if not check_enabled():
        return
    free, where = available_memory("cpu")
    if free is None:
        return
    itemsize = DTYPES[token_dtype(bpe_vocab if tokenizer == "bpe" else 256)].itemsize
    block = shard_tokens * itemsize
    if block > free:
        raise ShardError(f"--shard-tokens {shard_tokens} holds {human_bytes(block)} of tokens in memory, but the "
                         f"machine has {human_bytes(free)} {where}; give fewer (or set {ENV_SWITCH}=0)")
    if tokenizer == "bpe":
        chars = min(bpe_sample, sum(p.stat().st_size for p in paths))
        need = chars * BPE_BYTES_PER_CHAR
        if need > free:
            raise ShardError(f"training the BPE on {human_bytes(chars)} of text (--bpe-sample-mb) needs about "
                             f"{human_bytes(need)}, but the machine has {human_bytes(free)} {where}; give a smaller "
                             f"sample (or set {ENV_SWITCH}=0)")


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
    if not 2 <= shard_tokens <= MAX_SHARD_TOKENS:
        raise ShardError(f"--shard-tokens must be in [2, {MAX_SHARD_TOKENS}], got {shard_tokens}")
    if tokenizer not in ("byte", "bpe"):
        raise ShardError(f"unknown tokenizer {tokenizer!r}; choose from byte, bpe")
    if bpe_sample < 1:
        raise ShardError(f"the BPE sample must be positive, got {bpe_sample}")
    paths = _check_inputs(files)
    _check_memory(paths, tokenizer, bpe_vocab, shard_tokens, bpe_sample)
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


__all__ = ["DEFAULT_BPE_SAMPLE", "DEFAULT_SHARD_TOKENS", "MAX_SHARD_TOKENS", "prepare_shards"]
