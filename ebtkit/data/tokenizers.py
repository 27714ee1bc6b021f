"""Tokenizers: byte-level (V = 256, the default: small V keeps the B×S×V candidates cheap) and a byte-level
BPE trained locally with Hugging Face ``tokenizers`` and saved with the run. Nothing is downloaded."""
from __future__ import annotations

from pathlib import Path

import torch


class ByteTokenizer:
    """UTF-8 bytes as tokens. Decoding replaces invalid byte sequences (a model may emit any byte)."""

    kind = "byte"
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def files(self) -> dict[str, bytes]:
        return {}


class BPETokenizer:
    """Byte-level BPE (Sennrich et al., 2016; GPT-2 style pre-tokenization) trained on the training split."""

    kind = "bpe"
    FILE = "tokenizer.json"

    def __init__(self, tok):
        self.tok = tok
        self.vocab_size = tok.get_vocab_size()

    @classmethod
    def train(cls, text: str, vocab_size: int) -> "BPETokenizer":
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        if vocab_size < 257:
            raise ValueError(f"bpe_vocab must be >= 257 (256 byte tokens + merges), got {vocab_size}")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
        chunk = 1 << 16
        tok.train_from_iterator((text[i:i + chunk] for i in range(0, len(text), chunk)), trainer=trainer)
        return cls(tok)

    @classmethod
    def load(cls, path: str | Path) -> "BPETokenizer":
        from tokenizers import Tokenizer
        return cls(Tokenizer.from_file(str(path)))

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def decode(self, ids) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self.tok.decode([int(i) for i in ids])

    def files(self) -> dict[str, bytes]:
        return {self.FILE: self.tok.to_str().encode("utf-8")}


def build_tokenizer(kind: str, train_text: str = "", bpe_vocab: int = 1024):
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        return BPETokenizer.train(train_text, bpe_vocab)
    raise ValueError(f"unknown tokenizer {kind!r}; choose from byte, bpe")


def tokenizer_from_dir(kind: str, ckpt_dir: str | Path):
    """Rebuild the tokenizer saved with a checkpoint."""
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        f = Path(ckpt_dir) / BPETokenizer.FILE
        if not f.exists():
            raise FileNotFoundError(f"checkpoint {ckpt_dir} uses a BPE tokenizer but has no {BPETokenizer.FILE}")
        return BPETokenizer.load(f)
    raise ValueError(f"unknown tokenizer {kind!r}; choose from byte, bpe")
