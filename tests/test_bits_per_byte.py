"""Bits per byte beside every text perplexity, so byte and BPE runs compare (issue 22, item 10)."""
from __future__ import annotations

import math

import pytest
import torch

from ebtkit.data.tokenizers import BPETokenizer, ByteTokenizer
from ebtkit.eval.text_table import add_bits_per_byte, bits_per_byte, format_table, split_info

TEXT = "In the beginning God created the heaven and the earth. And the earth was without form, and void. " * 30


def test_split_bytes_are_the_bytes_of_the_scored_targets():
    byte = ByteTokenizer()
    ids = torch.tensor(byte.encode(TEXT))
    info = split_info({"val": ("val", ids)}, 8, 3, byte)[0]
    assert info["tokens"] == 24 and info["bytes"] == 24                       # one byte per token
    bpe = BPETokenizer.train(TEXT, 300)
    ids = torch.tensor(bpe.encode(TEXT))
    info = split_info({"val": ("val", ids)}, 8, 3, bpe)[0]
    targets = ids[: 3 * 9].view(3, 9)[:, 1:].flatten().tolist()              # the tokens that are scored
    assert info["bytes"] == len(b"".join(bpe.token_bytes(i) for i in targets)) > info["tokens"]
    assert "bytes" not in split_info({"val": ("val", ids)}, 8, 3)[0]         # no tokenizer: no byte count


def test_bits_per_byte_is_nll_in_bits_over_bytes():
    assert bits_per_byte(2.0, 10, 10) == pytest.approx(1.0)                    # a byte run: log2(ppl)
    nll = 3 * 7.0                                                             # 3 tokens of 7 nats
    assert bits_per_byte(math.exp(7.0), 3, 12) == pytest.approx(nll / math.log(2) / 12)
    assert bits_per_byte(5.0, 10, None) is None and bits_per_byte(math.inf, 4, 4) == math.inf


def test_the_table_prints_bpb_beside_each_perplexity():
    splits = [{"name": "val", "label": "val", "windows": 2, "tokens": 16, "bytes": 40},
              {"name": "ood", "label": "pydoc", "windows": 2, "tokens": 16, "bytes": 16}]
    row = {"family": "plain", "label": "EBT, 2 steps (trained)", "policy": {"samples": 1}, "steps": 2,
           "nfe_per_token": 2.0, "cost": 1.0, "note": "plain evaluation", "identical_to_plain": False,
           "splits": {"val": {"ppl": 8.0, "tokens": 16, "nfe_per_token": 2.0},
                      "ood": {"ppl": 4.0, "tokens": 16, "nfe_per_token": 2.0}}}
    doc = {"title": "EBT", "run": "r", "context": 8, "max_windows": 2, "data": "bible", "val_fraction": 0.05,
           "splits": splits, "table": [row], "plain_steps": 2, "thinking": None}
    add_bits_per_byte(doc)
    assert row["splits"]["val"]["bpb"] == pytest.approx(3 * 16 / 40) and row["splits"]["ood"]["bpb"] == 2.0
    text = format_table(doc)
    head, line = text.splitlines()[2], text.splitlines()[4]
    assert head.split() == ["policy", "NFE/token", "cost", "val", "ppl", "bpb", "pydoc", "ppl", "bpb", "note"]
    assert "8.000  1.200" in line and "4.000  2.000" in line
    assert "= 40 bytes" in text and "bpb: bits per byte" in text
