"""``ebt prepare`` stores byte-tokenizer tokens as ``uint8`` (one byte per token on disk), and corpora prepared
before that (byte tokens as ``uint16``) are still read, with the same tokens (issue 22 item 10)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from ebtkit.cli import main
from ebtkit.data.shard_writer import prepare_shards
from ebtkit.data.shards import MANIFEST, ShardError, open_shards, token_dtype

TEXT = "".join(f"line {i}: in the beginning — ünïcödé ✓\n" for i in range(300))


def _prepare(tmp_path, name="c"):
    src = tmp_path / "a.txt"
    src.write_text(TEXT, encoding="utf-8")
    return prepare_shards([src], tmp_path / name, shard_tokens=3000, val_fraction=0.1, progress=False)


def _tokens(s) -> list[int]:
    return s.train[0:len(s.train)].tolist() + s.val[0:len(s.val)].tolist()


def test_byte_tokens_are_one_byte_each_on_disk(tmp_path):
    m = _prepare(tmp_path)
    assert m["dtype"] == "uint8"
    d = tmp_path / "c"
    for s in m["shards"]:
        assert (d / s["file"]).stat().st_size == s["tokens"]          # 1 byte per token (uint16 took 2)
    assert sum(s["tokens"] for s in m["shards"]) == len(TEXT.encode())
    s = open_shards(d, progress=False)
    assert sorted(_tokens(s)) == sorted(TEXT.encode())
    assert max(_tokens(s)) > 127                                       # bytes above 127 survive unsigned
    assert token_dtype(256) == "uint8" and token_dtype(257) == "uint16" and token_dtype(70000) == "uint32"


def _as_uint16(d):
    """Rewrite a uint8 corpus the way ebt prepare wrote byte tokens before: uint16 shards, their sha256s."""
    m = json.loads((d / MANIFEST).read_text())
    for s in m["shards"]:
        f = d / s["file"]
        f.write_bytes(np.fromfile(f, dtype="u1").astype("<u2").tobytes())
        s["sha256"] = hashlib.sha256(f.read_bytes()).hexdigest()
    m["dtype"] = "uint16"
    (d / MANIFEST).write_text(json.dumps(m))


def test_old_uint16_byte_shards_are_still_read(tmp_path, capsys):
    _prepare(tmp_path, "new")
    _prepare(tmp_path, "old")
    _as_uint16(tmp_path / "old")
    new, old = open_shards(tmp_path / "new", progress=False), open_shards(tmp_path / "old", progress=False)
    assert old.manifest["dtype"] == "uint16"
    assert (tmp_path / "old" / old.manifest["shards"][0]["file"]).stat().st_size == 2 * old.manifest["shards"][0]["tokens"]
    assert _tokens(old) == _tokens(new)
    assert old.train[5:40].tolist() == new.train[5:40].tolist()
    # both train (the same batches: the same tokens)
    for name in ("new", "old"):
        assert main(["train", "--preset", "tiny", "--steps", "1", "--data", str(tmp_path / name), "--context", "16",
                     "--out", str(tmp_path / f"run-{name}"), "--no-progress", "--no-eval"]) == 0
    losses = [json.loads((tmp_path / f"run-{n}" / "metrics.jsonl").read_text().splitlines()[0])["loss"]
              for n in ("new", "old")]
    assert losses[0] == losses[1]


def test_a_dtype_narrower_than_the_vocabulary_is_refused(tmp_path):
    _prepare(tmp_path)
    d = tmp_path / "c"
    m = json.loads((d / MANIFEST).read_text())
    m["tokenizer"]["vocab_size"] = 300                     # a manifest that claims more tokens than uint8 holds
    (d / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(ShardError):
        open_shards(d, progress=False)
