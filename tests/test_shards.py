"""Token shards (ebtkit/data/shards.py, `ebt prepare`, `ebt train --data DIR`): exact round trips, the manifest,
the split rule, one-line errors that leave nothing behind, training and exact resume from shards."""
import hashlib
import json
import math
import random
import shutil
import sys

import numpy as np
import pytest
import torch

from ebtkit.cli import main
from ebtkit.commands.eval import evaluate_text_run
from ebtkit.core.config import preset
from ebtkit.data.shard_writer import prepare_shards
from ebtkit.data.shards import MANIFEST, ShardError, ShardTokens, check_tokenizer, open_shards
from ebtkit.data.text import eval_windows, get_batch
from ebtkit.data.tokenizers import BPETokenizer, ByteTokenizer
from ebtkit.training.optim import step_generator
from tests.helpers import train
from tests.test_training import _assert_same_run

WORDS = "the of and to in that is was he for it with as his on be at by unto Lord said".split()


def _text(n_lines=400, seed=0):
    rng = random.Random(seed)
    return "".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))) + ".\n" for _ in range(n_lines))


def _stream(d):
    """Every shard's tokens in stream order (train-i, val-i, train-i+1, ...), read back with numpy."""
    m = json.loads((d / MANIFEST).read_text())
    return np.concatenate([np.fromfile(d / s["file"], dtype=m["dtype"]) for s in m["shards"]]).tolist(), m


def _run_cli(args, capsys):
    try:
        rc = main(args)
    except SystemExit as e:          # a flag refused while parsing (argparse exits)
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def _listing(p):
    return sorted(x.name for x in p.iterdir())


# ------------------------------------------------------------------------------------------- prepare
def test_byte_shards_round_trip_with_manifest_and_split(tmp_path):
    text = _text() + "no newline at the end"
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    m = prepare_shards([tmp_path / "a.txt"], tmp_path / "c", shard_tokens=4000, val_fraction=0.1, progress=False)
    ids, saved = _stream(tmp_path / "c")
    assert saved == m
    assert ids == list((text + "\n").encode())                     # the document gets its newline
    assert m["dtype"] == "uint8" and m["tokenizer"] == {"name": "byte", "vocab_size": 256, "files": {}}
    n = len(ids)
    assert m["total_tokens"] == n and m["train_tokens"] + m["val_tokens"] == n and m["documents"] == 1
    assert m["sources"] == [{"path": str(tmp_path / "a.txt"), "bytes": len(text.encode()), "documents": 1}]
    blocks = [min(4000, n - a) for a in range(0, n, 4000)]
    want = []
    for i, b in enumerate(blocks):                                 # the split rule, block by block
        v = int(np.floor(0.1 * b + 0.5))
        want += [(f"train-{i:05d}.bin", "train", b - v), (f"val-{i:05d}.bin", "val", v)]
    assert [(s["file"], s["split"], s["tokens"]) for s in m["shards"]] == want
    for s in m["shards"]:
        raw = (tmp_path / "c" / s["file"]).read_bytes()
        assert len(raw) == s["tokens"] and hashlib.sha256(raw).hexdigest() == s["sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "c"]   # no temporary directory left


def test_bpe_shards_equal_the_tokenizer_at_every_cut(tmp_path):
    """Encoding 50-character chunks cut at the pre-tokenizer's own boundaries gives the tokenizer's encoding of
    the whole document, on text full of runs of spaces, newlines, punctuation and multi-byte characters."""
    rng = random.Random(1)
    text = "".join(rng.choice("ab cd\n\n  ef, g.h's  \t1 2 éü中\n") for _ in range(6000)) + " end"
    (tmp_path / "b.txt").write_text(text, encoding="utf-8")
    m = prepare_shards([tmp_path / "b.txt"], tmp_path / "c", tokenizer="bpe", bpe_vocab=300, shard_tokens=700,
                       chunk_chars=50, progress=False)
    tok = BPETokenizer.load(tmp_path / "c" / "tokenizer.json")
    ids, _ = _stream(tmp_path / "c")
    assert ids == tok.encode(text + "\n") and m["forced_cuts"] == 0
    raw = (tmp_path / "c" / "tokenizer.json").read_bytes()
    assert m["tokenizer"]["name"] == "bpe" and m["tokenizer"]["vocab_size"] == tok.vocab_size
    assert m["tokenizer"]["files"] == {"tokenizer.json": hashlib.sha256(raw).hexdigest()}
    assert open_shards(tmp_path / "c").tokenizer.files() == tok.files()


def test_jsonl_documents_and_several_files(tmp_path):
    docs = ["first document\nwith two lines", "", "second, ending in a newline\n", "ünïcödé ✓"]
    lines = [json.dumps({"text": d, "id": i}) for i, d in enumerate(docs)]
    (tmp_path / "d.jsonl").write_text("\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n", encoding="utf-8")
    (tmp_path / "e.md").write_text("a plain file", encoding="utf-8")
    m = prepare_shards([tmp_path / "d.jsonl", tmp_path / "e.md"], tmp_path / "c", progress=False)
    ids, _ = _stream(tmp_path / "c")
    want = "first document\nwith two lines\nsecond, ending in a newline\nünïcödé ✓\na plain file\n"
    assert ids == list(want.encode())
    assert m["documents"] == 4 and [s["documents"] for s in m["sources"]] == [3, 1]


def test_parquet_text_column(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    texts = [f"row {i}: " + " ".join(WORDS[: i % 7 + 1]) for i in range(300)]
    texts[5] = None                                               # null rows are skipped
    pq.write_table(pa.table({"text": texts, "n": list(range(300))}), tmp_path / "p.parquet", row_group_size=64)
    m = prepare_shards([tmp_path / "p.parquet"], tmp_path / "c", tokenizer="bpe", bpe_vocab=280, progress=False)
    tok = open_shards(tmp_path / "c").tokenizer
    ids, _ = _stream(tmp_path / "c")
    assert ids == [i for t in texts if t is not None for i in tok.encode(t + "\n")]
    assert m["documents"] == 299
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "q.parquet")
    with pytest.raises(ShardError, match="no 'text' column"):
        prepare_shards([tmp_path / "q.parquet"], tmp_path / "d", progress=False)
    assert not (tmp_path / "d").exists()


def test_missing_pyarrow_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    (tmp_path / "p.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)            # import pyarrow → ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    rc, _, err = _run_cli(["prepare", str(tmp_path / "p.parquet"), "--out", str(tmp_path / "c")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "pip install pyarrow" in err and "p.parquet" in err
    assert _listing(tmp_path) == ["p.parquet"]


@pytest.mark.parametrize("case,msg", [
    ("latin1", "not valid UTF-8"), ("binary", "binary"), ("badjson", "b.jsonl:2: not valid JSON"),
    ("notext", "b.jsonl:1: expected a JSON object"), ("missing", "not found"), ("empty", "no text found"),
    ("exists", "already exists"), ("fraction", "--val-fraction"),
])
def test_bad_prepare_inputs_are_one_line_and_leave_nothing(tmp_path, capsys, case, msg):
    """Errors anywhere (even in the second file, after shards of the first were written) leave no directory."""
    (tmp_path / "a.txt").write_text(_text(200), encoding="utf-8")
    second = {"latin1": ("b.txt", "caf\xe9".encode("latin-1") * 50), "binary": ("b.txt", b"ab\x00cd"),
              "badjson": ("b.jsonl", b'{"text": "ok"}\n{"text": broken\n'), "notext": ("b.jsonl", b'{"body": "x"}\n'),
              "empty": ("b.txt", b"")}
    files = [tmp_path / "a.txt"]
    if case in second:
        name, data = second[case]
        (tmp_path / name).write_bytes(data)
        files = [tmp_path / name] if case == "empty" else [tmp_path / "a.txt", tmp_path / name]
    if case == "missing":
        files.append(tmp_path / "nope.txt")
    out = tmp_path / "new" / "deeper" / "c"
    if case == "exists":
        out = tmp_path / "c"
        out.mkdir()
        (out / "keep").write_text("x")
    before = _listing(tmp_path)
    extra = ["--val-fraction", "0.5"] if case == "fraction" else []
    rc, _, err = _run_cli(["prepare", *map(str, files), "--out", str(out), "--shard-tokens", "1000", *extra], capsys)
    assert rc == 2 and err.startswith("ebt: error:") and err.count("\n") == 1 and msg in err, err
    assert _listing(tmp_path) == before                          # no DIR, no DIR.tmp-<pid>, no parents
    if case == "exists":
        assert _listing(out) == ["keep"]


def test_prepare_into_an_empty_directory_and_cli_summary(tmp_path, capsys):
    (tmp_path / "a.txt").write_text(_text(100), encoding="utf-8")
    (tmp_path / "c").mkdir()
    rc, out, err = _run_cli(["prepare", str(tmp_path / "a.txt"), "--out", str(tmp_path / "c"), "--no-progress"], capsys)
    assert rc == 0, err
    assert "prepared" in out and "ebt train --data" in out
    assert (tmp_path / "c" / MANIFEST).is_file() and _listing(tmp_path) == ["a.txt", "c"]


# ------------------------------------------------------------------------------------------- reading
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    (d / "a.txt").write_text(_text(600, seed=3), encoding="utf-8")
    prepare_shards([d / "a.txt"], d / "byte", shard_tokens=3000, progress=False)
    prepare_shards([d / "a.txt"], d / "bpe", tokenizer="bpe", bpe_vocab=300, shard_tokens=3000, progress=False)
    return d


def test_shard_tokens_behave_like_the_tensor(corpus):
    """Slices across shard seams, get_batch with the same generator, eval_windows and torch.unique equal the
    in-memory tensor's; the split's streams are the stream's train and val parts in order."""
    s = open_shards(corpus / "byte")
    ids, m = _stream(corpus / "byte")
    parts = {"train": [], "val": []}
    pos = 0
    for sh in m["shards"]:
        parts[sh["split"]] += ids[pos:pos + sh["tokens"]]
        pos += sh["tokens"]
    for split in ("train", "val"):
        src, ref = getattr(s, split), torch.tensor(parts[split], dtype=torch.long)
        assert isinstance(src, ShardTokens) and len(src) == len(ref) and len(s.train.files) > 3
        for a, b in [(0, 5), (2800, 2900), (100, len(ref)), (len(ref) - 3, len(ref) + 10), (7, 7)]:
            assert torch.equal(src[a:b], ref[a:b]), (split, a, b)
        assert src[:10].dtype == torch.long
        for step in range(3):
            assert torch.equal(get_batch(src, 8, 33, step_generator(5, step)), get_batch(ref, 8, 33, step_generator(5, step)))
        assert torch.equal(eval_windows(src, 33, 20), eval_windows(ref, 33, 20))
        assert torch.equal(torch.unique(src), torch.unique(ref))
        mm = getattr(open_shards(corpus / "byte", verify=False, reader="mmap"), split)
        assert torch.equal(mm[100:len(ref) - 5], ref[100:len(ref) - 5])        # both readers give the same tokens


def test_each_rank_draws_its_own_batches(corpus):
    s = open_shards(corpus / "byte")
    a = get_batch(s.train, 8, 33, step_generator(33, 4, rank=0))
    assert torch.equal(a, get_batch(s.train, 8, 33, step_generator(33, 4, rank=0)))   # a step's batch repeats
    assert not torch.equal(a, get_batch(s.train, 8, 33, step_generator(33, 4, rank=1)))
    assert not torch.equal(a, get_batch(s.train, 8, 33, step_generator(33, 5, rank=0)))


def _copy(corpus, name, tmp_path):
    d = tmp_path / name
    shutil.copytree(corpus / name, d)
    return d


@pytest.mark.parametrize("damage,msg", [
    ("truncate", "truncated shard"), ("checksum", "checksum mismatch in shard"), ("missing", "missing shard"),
    ("json", "malformed manifest"), ("no_manifest", "has no manifest.json"), ("tokenizer", "prepared with the byte"),
    ("version", "version 7"), ("path", "plain file name"),
])
def test_bad_shards_are_one_line_errors_naming_the_file(corpus, tmp_path, capsys, damage, msg):
    d = _copy(corpus, "byte", tmp_path)
    target = d / "train-00001.bin"
    extra = []
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:-2])
    elif damage == "checksum":
        raw = bytearray(target.read_bytes())
        raw[10] ^= 1
        target.write_bytes(bytes(raw))
    elif damage == "missing":
        target.unlink()
    elif damage == "json":
        target = d / MANIFEST
        target.write_text(target.read_text()[:-20])
    elif damage == "no_manifest":
        target = d
        (d / MANIFEST).unlink()
    elif damage == "tokenizer":
        target, extra = d, ["--tokenizer", "bpe"]
    else:
        target = d / MANIFEST
        m = json.loads(target.read_text())
        if damage == "version":
            m["version"] = 7
        else:
            m["shards"][0]["file"] = "../elsewhere.bin"
        target.write_text(json.dumps(m))
    out = tmp_path / "run"
    rc, _, err = _run_cli(["train", "--data", str(d), "--preset", "tiny", "--out", str(out), "--no-progress", *extra],
                          capsys)
    assert rc == 2 and err.startswith("ebt: error:") and err.count("\n") == 1, err
    assert msg in err and str(target) in err, err
    assert not out.exists()


def test_a_run_refuses_a_corpus_from_another_tokenizer(corpus, tmp_path):
    bpe = open_shards(corpus / "bpe")
    check_tokenizer(BPETokenizer.load(corpus / "bpe" / "tokenizer.json"), bpe)       # the same one: fine
    with pytest.raises(ShardError, match="prepared with the bpe tokenizer, but the run uses byte"):
        check_tokenizer(ByteTokenizer(), bpe)
    other = BPETokenizer.train(_text(100, seed=9), 290)
    with pytest.raises(ShardError, match="another bpe tokenizer"):
        check_tokenizer(other, bpe)


# ------------------------------------------------------------------------------------------- training
def test_train_on_bpe_shards_end_to_end_then_resume_checks_the_tokenizer(corpus, tmp_path, capsys):
    """`ebt train --data DIR` takes the manifest's tokenizer (saved with the run, recorded in its config) and
    `ebt eval` reads the val shards; resuming on a corpus re-prepared with another tokenizer is refused."""
    d = _copy(corpus, "bpe", tmp_path)
    run = tmp_path / "run"
    rc, out, err = _run_cli(["train", "--data", str(d), "--preset", "tiny", "--steps", "2", "--out", str(run),
                             "--no-progress", "--no-eval"], capsys)
    assert rc == 0, err
    assert "uint16 shards" in out and "val ppl" in out
    res = evaluate_text_run(run, steps_list=[1], max_windows=4, quiet=True)
    assert res["rows"][0]["val_tokens"] == 4 * 32 and math.isfinite(res["rows"][0]["val_ppl"])
    cfg = json.loads((run / "checkpoint" / "config.json").read_text())["config"]
    V = json.loads((d / MANIFEST).read_text())["tokenizer"]["vocab_size"]
    assert cfg["data"]["tokenizer"] == "bpe" and cfg["data"]["bpe_vocab"] == 300 and cfg["model"]["vocab_size"] == V
    assert (run / "checkpoint" / "tokenizer.json").read_bytes() == (d / "tokenizer.json").read_bytes()
    shutil.rmtree(d)
    prepare_shards([corpus / "a.txt"], d, tokenizer="bpe", bpe_vocab=290, shard_tokens=3000, progress=False)
    rc, _, err = _run_cli(["train", "--resume", str(run), "--steps", "4", "--no-progress", "--no-eval"], capsys)
    assert rc == 2 and err.count("\n") == 1 and "another bpe tokenizer" in err, err


def test_resume_from_shards_is_exact(corpus, tmp_path, monkeypatch):
    """Train 6 steps from shards == train, die after the step-3 checkpoint, resume (weights and losses)."""
    from ebtkit.tasks.text import TextTask
    cfg = preset("tiny", **{"data.path": str(corpus / "byte"), "train.steps": 6, "train.save_every": 3,
                            "train.eval_every": 3, "train.log_every": 1, "train.eval_batches": 1})
    train(cfg, tmp_path / "full")
    calls = {"n": 0}
    real = TextTask.loss

    def dying(self, model, gen):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(self, model, gen)

    monkeypatch.setattr(TextTask, "loss", dying)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "part")
    monkeypatch.setattr(TextTask, "loss", real)
    train(None, tmp_path / "part", resume=True)
    _assert_same_run(tmp_path / "full", tmp_path / "part")


def test_a_run_refuses_its_corpus_replaced_by_another(corpus, tmp_path, capsys):
    """A run records its prepared corpus by the manifest's fingerprint (the manifest holds every shard's sha256):
    `ebt eval` of the run after the folder was re-prepared from other text is one line naming the stored path."""
    d = _copy(corpus, "byte", tmp_path)
    run = tmp_path / "run"
    rc, _, err = _run_cli(["train", "--data", str(d), "--preset", "tiny", "--steps", "2", "--out", str(run),
                           "--no-progress", "--no-eval"], capsys)
    assert rc == 0, err
    cfg = json.loads((run / "checkpoint" / "config.json").read_text())["config"]["data"]
    assert cfg["path"] == str(d.resolve()) and len(cfg["path_sha256"]) == 64
    shutil.rmtree(d)
    (tmp_path / "b.txt").write_text(_text(600, seed=4), encoding="utf-8")
    prepare_shards([tmp_path / "b.txt"], d, shard_tokens=3000, progress=False)
    rc, _, err = _run_cli(["eval", str(run), "--max-windows", "2"], capsys)
    assert rc == 2 and err.count("\n") == 1 and "changed since the run recorded it" in err and str(d.resolve()) in err, err
