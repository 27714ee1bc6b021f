"""Tokenizers: byte-level (V = 256, the default: small V keeps the B×S×V candidates cheap) and a byte-level
BPE trained locally with Hugging Face ``tokenizers`` and saved with the run. Nothing is downloaded."""
from __future__ import annotations

import codecs
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers


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

    def token_bytes(self, i: int) -> bytes:
        return bytes([int(i)])

    def byte_lengths(self) -> torch.Tensor:
        """Bytes each token id stands for (V,): all 1 (bits per token = bits per byte)."""
        return torch.ones(self.vocab_size, dtype=torch.long)

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
        return cls(Tokenizer.from_file(str(path)))

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def decode(self, ids) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self.tok.decode([int(i) for i in ids])

    def token_bytes(self, i: int) -> bytes:
        """The UTF-8 bytes a token stands for (byte-level BPE tokens are spelled in GPT-2's byte alphabet)."""
        piece = self.tok.id_to_token(int(i)) or ""
        table = _byte_level_decoder()
        return bytes(table[c] for c in piece if c in table)

    def byte_lengths(self) -> torch.Tensor:
        """Bytes each token id stands for (V,): what turns a per-token loss into bits per byte."""
        if getattr(self, "_lengths", None) is None:
            self._lengths = torch.tensor([len(self.token_bytes(i)) for i in range(self.vocab_size)], dtype=torch.long)
        return self._lengths

    def files(self) -> dict[str, bytes]:
        return {self.FILE: self.tok.to_str().encode("utf-8")}


def _byte_level_decoder() -> dict[str, int]:
    """Character → byte of the byte-level alphabet (Radford et al., 2019): printable Latin-1 bytes stand for
    themselves, the other 68 bytes for the code points 256, 257, … in byte order."""
    if not _BYTE_LEVEL:
        printable = set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1)) | set(range(ord("®"), 256))
        n = 0
        for b in range(256):
            if b in printable:
                _BYTE_LEVEL[chr(b)] = b
            else:
                _BYTE_LEVEL[chr(256 + n)] = b
                n += 1
    return _BYTE_LEVEL


_BYTE_LEVEL: dict[str, int] = {}


class StreamDecoder:
    """Decodes tokens to text as they arrive without ever emitting invalid UTF-8: the bytes of each token go
    through an incremental UTF-8 decoder that holds back an incomplete multi-byte sequence until it completes
    and replaces invalid bytes with U+FFFD."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, ids) -> str:
        """Text completed by these tokens (possibly empty)."""
        if isinstance(ids, int):
            ids = [ids]
        return self.decoder.decode(b"".join(self.tokenizer.token_bytes(int(i)) for i in ids))

    def flush(self) -> str:
        """The rest at the end of the stream (an incomplete sequence becomes U+FFFD)."""
        return self.decoder.decode(b"", final=True)


# characters of text a BPE is trained on: ``ebt prepare`` takes the first this many of its input (``--bpe-sample-mb``)
# and ``ebt train --data FILE --tokenizer bpe`` the first this many of the training split. BPE training takes about
# 80 bytes of memory per character (a 64 MB file took 4.9 GB and 80 s), and a vocabulary of a few thousand merges
# is settled long before 16 Mi characters.
DEFAULT_BPE_SAMPLE = 16 << 20


def bpe_sample(text: str, limit: int | None = None) -> str:
    """The text a BPE is trained on: the first ``limit`` (default :data:`DEFAULT_BPE_SAMPLE`) characters of
    ``text`` (all of a shorter one)."""
    limit = DEFAULT_BPE_SAMPLE if limit is None else limit
    return text if len(text) <= limit else text[:limit]


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
        try:
            return BPETokenizer.load(f)
        except Exception as e:  # the tokenizers library raises its own exception types
            raise ValueError(f"corrupt tokenizer file {f}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    raise ValueError(f"unknown tokenizer {kind!r}; choose from byte, bpe")
