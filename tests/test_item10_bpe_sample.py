"""``ebt train --data FILE --tokenizer bpe`` trains its BPE on a bounded sample, as ``ebt prepare`` does
(issue 22 item 10): the trainer receives at most ``DEFAULT_BPE_SAMPLE`` characters, the first of the training
split, however long the file."""
from __future__ import annotations

import random

from ebtkit.cli import main
from ebtkit.data import shard_writer, tokenizers
from ebtkit.data.tokenizers import BPETokenizer


def _text(n_lines: int) -> str:
    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "lambda", "omega", "sigma"]
    return "".join(" ".join(rng.choice(words) for _ in range(10)) + "\n" for _ in range(n_lines))


def test_train_trains_the_bpe_on_at_most_the_bound(tmp_path, monkeypatch):
    assert shard_writer.DEFAULT_BPE_SAMPLE is tokenizers.DEFAULT_BPE_SAMPLE      # one bound for train and prepare
    text = _text(2000)                                  # ~130k characters
    (tmp_path / "big.txt").write_text(text)
    bound = 20_000
    monkeypatch.setattr(tokenizers, "DEFAULT_BPE_SAMPLE", bound)
    seen: list[str] = []
    real = BPETokenizer.train.__func__

    def train(cls, t, vocab_size):
        seen.append(t)
        return real(cls, t, vocab_size)

    monkeypatch.setattr(BPETokenizer, "train", classmethod(train))
    assert main(["train", "--preset", "tiny", "--steps", "1", "--data", str(tmp_path / "big.txt"), "--tokenizer",
                 "bpe", "--set", "data.bpe_vocab=300", "--out", str(tmp_path / "run"), "--no-progress",
                 "--no-eval"]) == 0
    assert len(seen) == 1
    assert len(seen[0]) == bound < len(text)             # at most the bound, the first characters of the file
    assert text.startswith(seen[0])


def test_a_short_file_trains_the_bpe_on_all_its_training_split(tmp_path, monkeypatch):
    text = _text(300)
    (tmp_path / "small.txt").write_text(text)
    seen: list[int] = []
    real = BPETokenizer.train.__func__
    monkeypatch.setattr(BPETokenizer, "train", classmethod(lambda cls, t, v: seen.append(len(t)) or real(cls, t, v)))
    assert main(["train", "--preset", "tiny", "--steps", "1", "--data", str(tmp_path / "small.txt"), "--tokenizer",
                 "bpe", "--set", "data.bpe_vocab=300", "--out", str(tmp_path / "run"), "--no-progress",
                 "--no-eval"]) == 0
    assert len(text) * 0.85 < seen[0] < len(text)         # the training split (val_fraction held out), not capped
