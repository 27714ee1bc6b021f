"""The routes to benchmark data: ``ebt data bigbench --from`` a clone, its task folder, Hugging Face exports or
the sdist (all indexed the same way); ``--tasks hf:DATASET[:CONFIG[:SPLIT]]`` with the GSM8K, SQuAD and
BIG-bench-export adapters (local parquet written here with pyarrow; the Hub through a stand-in ``datasets``);
``dyck_languages`` generated when BIG-bench is absent, with the real task's statistics; one-line offline errors."""
import json
import math
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from ebtkit.cli import main
from ebtkit.data import bigbench as bb
from ebtkit.data import bigbench_sources as sources
from ebtkit.data import dyck
from ebtkit.data.bigbench_format import Example
from ebtkit.data.text import DataError
from tests.test_downstream import FIX, make_sdist

pq = pytest.importorskip("pyarrow.parquet")
import pyarrow as pa  # noqa: E402

TASKS = FIX / "benchmark_tasks"
NAMES = ["tiny_choice", "tiny_gen", "tiny_parent", "tiny_parent/sub_a", "tiny_parent/sub_b"]
CHECKPOINT = Path(__file__).parent / "fixtures" / "checkpoints" / "text-ebt-tiny"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EBTKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "bigbench"


def reference(name: str) -> list[Example]:
    return bb.read_task_json(TASKS / name / "task.json").examples


def export_rows(name: str) -> list[dict]:
    """A fixture task as the HF ``bigbench`` dataset stores it: BIG-bench's formatted zero-shot ``inputs``."""
    task = json.loads((TASKS / name / "task.json").read_text())
    rows = []
    for i, ex in enumerate(task["examples"]):
        target = ex.get("target", [])
        rows.append({"idx": i, "inputs": bb.format_question(task, ex),
                     "targets": [target] if isinstance(target, str) else target,
                     "multiple_choice_targets": list(ex.get("target_scores", {})),
                     "multiple_choice_scores": list(ex.get("target_scores", {}).values())})
    return rows


def write_parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sources_of(tmp: Path) -> dict[str, Path]:
    """The same tasks in each of the four layouts ``--from`` accepts."""
    clone = tmp / "BIG-bench"
    shutil.copytree(TASKS, clone / "bigbench" / "benchmark_tasks")
    exports = tmp / "exports"
    write_parquet(exports / "tiny_choice.parquet", export_rows("tiny_choice"))
    write_jsonl(exports / "tiny_gen.jsonl", export_rows("tiny_gen"))
    # the Hub's layout: a folder per task; the 'default' split (the whole task) wins over the others
    write_parquet(exports / "tiny_parent" / "default-00000-of-00001.parquet", export_rows("tiny_parent/sub_a"))
    write_parquet(exports / "tiny_parent" / "train-00000-of-00001.parquet", export_rows("tiny_parent/sub_b"))
    return {"clone": clone, "folder": clone / "bigbench" / "benchmark_tasks", "exports": exports,
            "sdist": make_sdist(tmp / "dl" / bb.SDIST)}


# ------------------------------------------------------------------------------------------ --from
@pytest.mark.parametrize("kind", ["clone", "folder", "sdist", "exports"])
def test_every_source_is_indexed_the_same_way(kind, cache, tmp_path, capsys):
    srcs = sources_of(tmp_path)
    src = srcs[kind]
    assert main(["data", "bigbench", "--from", str(src), "--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    listed = out[1:]
    if kind == "exports":
        assert listed == ["tiny_choice", "tiny_gen", "tiny_parent"] and "(hf)" in out[0]
        assert bb.load_task("tiny_parent").examples == reference("tiny_parent/sub_a")      # the default split
    else:
        assert listed == NAMES
        assert bb.load_task("tiny_parent").examples == reference("tiny_parent/sub_a") + reference("tiny_parent/sub_b")
    assert out[0].startswith(f"indexed {len(listed)} tasks from {(srcs['folder'] if kind == 'clone' else src).resolve()}")
    for name in ("tiny_choice", "tiny_gen"):                 # the same examples from every source
        t = bb.load_task(name)
        assert t.examples == reference(name) and t.note is None
    index = json.loads((cache / "index.json").read_text())
    assert index["source"]["kind"] == {"clone": "folder", "folder": "folder", "sdist": "tarball", "exports": "hf"}[kind]
    extracted = sorted(p.relative_to(cache / "tasks").as_posix() for p in (cache / "tasks").rglob("task.json")) \
        if (cache / "tasks").exists() else []
    assert extracted == ([] if kind != "sdist" else sorted(f"{n}/task.json" for n in NAMES))    # only a tarball's
    with pytest.raises(DataError, match="no BIG-bench JSON task 'tiny_chioce'.*did you mean tiny_choice"):
        bb.load_task("tiny_chioce")


def test_a_new_source_replaces_the_old_one_and_a_gone_one_is_one_line(cache, tmp_path, monkeypatch):
    srcs = sources_of(tmp_path)
    monkeypatch.setattr(sources, "PAPER_TASKS", ("tiny_gen",))
    bb.index_from(srcs["sdist"], cache)
    assert (cache / "tasks" / "tiny_gen" / "task.json").is_file()
    srcs["sdist"].unlink()                                   # a deleted tarball: what was extracted stays readable
    assert bb.load_task("tiny_gen").examples == reference("tiny_gen")
    with pytest.raises(DataError, match="is gone and 'tiny_choice' was not extracted"):
        bb.load_task("tiny_choice")
    bb.index_from(srcs["folder"], cache)                     # a folder: read in place, nothing extracted
    assert not (cache / "tasks").exists()
    shutil.rmtree(srcs["clone"])
    with pytest.raises(DataError) as e:
        bb.load_task("tiny_gen")
    assert "indexed by 'ebt data bigbench --from' is gone" in str(e.value) and "\n" not in str(e.value)


def test_bad_sources_are_one_line_and_write_nothing(cache, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not a tarball")
    write_parquet(tmp_path / "other" / "gsm8k.parquet", [{"question": "q", "answer": "a"}])
    cases = [(tmp_path / "nope", "no such file or folder"), (tmp_path / "empty", "no BIG-bench tasks inside"),
             (tmp_path / "notes.txt", "not a tarball"),
             (tmp_path / "other", "gsm8k.parquet is not a BIG-bench export (no column inputs, multiple_choice")]
    for path, msg in cases:
        assert main(["data", "bigbench", "--from", str(path)]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1 and err.startswith("ebt: error:")
        assert not cache.parent.exists()


def test_download_shows_no_pip_noise_and_names_the_routes(cache, monkeypatch, capsys):
    """pip's six lines stay captured; the one error line carries pip's reason and every other route."""
    seen = {}
    noise = ("Looking in indexes: https://pypi.org/simple\nWARNING: Retrying (Retry(total=4)) ...\n"
             "ERROR: Could not find a version that satisfies the requirement bigbench==1.0.0\n"
             "ERROR: No matching distribution found for bigbench==1.0.0\n")

    def fake_run(cmd, **kw):
        seen.update(kw, cmd=cmd)
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr=noise)

    monkeypatch.setattr(sources.subprocess, "run", fake_run)
    assert main(["data", "bigbench"]) == 2
    out, err = capsys.readouterr()
    assert seen["capture_output"] is True and "bigbench==1.0.0" in seen["cmd"]
    assert err.count("\n") == 1 and "No matching distribution found for bigbench==1.0.0" in err
    assert "WARNING" not in err + out and "Looking in indexes" not in err + out
    assert "--from PATH" in err and "hf:DATASET" in err and "dyck_languages is generated" in err
    assert not cache.parent.exists()


# ------------------------------------------------------------------------------------------ hf:
GSM8K = [{"question": "Tom has 3 apples and buys 2. How many?", "answer": "3 + 2 = 5\n#### 5"},
         {"question": " Half of 8? ", "answer": "8 / 2 = 4\n#### 4 "}]
SQUAD = [{"id": "a", "title": "T", "context": "The sky is blue. ", "question": "What colour is the sky?",
          "answers": {"text": ["blue", "Blue"], "answer_start": [11, 11]}},
         {"id": "b", "title": "T", "context": "Grass is green.", "question": "Is the moon cheese?",
          "answers": {"text": [], "answer_start": []}}]


def hub_folder(root: Path) -> Path:
    """GSM8K in the Hub's layout (``main/test-*.parquet``, ``main/train-*.parquet``, another config)."""
    write_parquet(root / "main" / "test-00000-of-00001.parquet", GSM8K[:1])
    write_parquet(root / "main" / "train-00000-of-00001.parquet", GSM8K[1:])
    write_parquet(root / "socratic" / "test-00000-of-00001.parquet", GSM8K)
    return root


def test_hf_local_tables_through_the_adapters(tmp_path):
    g = bb.load_task(f"hf:{write_parquet(tmp_path / 'gsm8k.parquet', GSM8K)}")
    assert g.name == "gsm8k" and "GSM8K adapter" in g.source
    assert g.examples == [Example("Tom has 3 apples and buys 2. How many?", "3 + 2 = 5\n#### 5"),
                          Example("Half of 8?", "8 / 2 = 4\n#### 4")]
    assert g.examples[0].text == "Question: Tom has 3 apples and buys 2. How many?\nAnswer: 3 + 2 = 5\n#### 5"
    s = bb.load_task(f"hf:{write_parquet(tmp_path / 'squad_v2.parquet', SQUAD)}")
    assert s.examples == [Example("The sky is blue.\nWhat colour is the sky?", "blue")]     # the first answer
    assert "SQuAD adapter; 1 rows without an answer skipped" in s.source
    b = bb.load_task(f"hf:{write_jsonl(tmp_path / 'choice.jsonl', export_rows('tiny_choice'))}")
    assert b.examples == reference("tiny_choice") and "BIG-bench export adapter" in b.source
    own = bb.load_task(f"hf:{write_jsonl(tmp_path / 'own.jsonl', [{'input': 'q?', 'target': 'a'}])}")
    assert own.examples == [Example("q?", "a")]
    # a folder in the Hub's layout: config and split pick the files; without a split, 'test' before 'train'
    root = hub_folder(tmp_path / "gsm8k_hub")
    assert bb.load_task(f"hf:{root}:main").examples == g.examples[:1]
    assert bb.load_task(f"hf:{root}:main:train").examples == g.examples[1:]
    assert len(bb.load_task(f"hf:{root}:socratic").examples) == 2
    assert len(bb.load_task(f"hf:{root}").examples) == 3                               # both configs' test
    bad = [(f"hf:{root}:main:dev", "has no split 'dev' (it has test, train)"),
           (f"hf:{root}:nope", "no .parquet or .jsonl files under a folder 'nope'"),
           (f"hf:{write_parquet(tmp_path / 'x.parquet', [{'text': 'a'}])}", "no adapter for columns text; known"),
           (f"hf:{write_parquet(tmp_path / 'y.parquet', [{'question': 'q', 'answer': 3}])}",
            "row 0: GSM8K rows need string 'question' and 'answer'"),
           (f"hf:{write_parquet(tmp_path / 'z.parquet', SQUAD[1:])}", "no usable rows (1 skipped)"),
           ("hf:", "expected hf:DATASET[:CONFIG[:SPLIT]]"), ("hf:a:b:c:d", "expected hf:DATASET")]
    for spec, msg in bad:
        with pytest.raises(DataError, match=re.escape(msg)) as e:
            bb.load_task(spec)
        assert "\n" not in str(e.value)


class FakeHub(types.ModuleType):
    """A stand-in for ``datasets``: records its calls; a DatasetDict is a dict of row lists."""

    def __init__(self, tables=None, error=None):
        super().__init__("datasets")
        self.tables, self.error, self.calls = tables or {}, error, []

    def load_dataset(self, name, config=None, split=None):
        self.calls.append((name, config, split))
        if self.error:
            raise self.error
        splits = self.tables[name]
        return splits[split] if split else splits


def test_hf_hub_names_load_through_datasets_or_fail_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)           # not installed
    with pytest.raises(DataError) as e:
        bb.load_task("hf:openai/gsm8k")
    msg = str(e.value)
    assert "\n" not in msg and "pip install 'ebtkit[hf]'" in msg
    assert "hf:PATH" in msg and "ebt data bigbench --from PATH" in msg and "dyck_languages is generated" in msg
    hub = FakeHub(error=ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (LocalEntryNotFoundError)\nmore"))
    monkeypatch.setitem(sys.modules, "datasets", hub)           # installed, offline
    with pytest.raises(DataError) as e:
        bb.load_task("hf:openai/gsm8k")
    assert "\n" not in str(e.value) and "could not load hf:openai/gsm8k" in str(e.value)
    assert "ConnectionError: Couldn't reach" in str(e.value) and "ebt data bigbench --from PATH" in str(e.value)
    assert hub.calls == [("openai/gsm8k", "main", None)]         # GSM8K's config defaults to 'main'
    hub = FakeHub({"openai/gsm8k": {"train": GSM8K[1:], "test": GSM8K[:1]},
                   "rajpurkar/squad_v2": {"train": [], "validation": SQUAD}})
    monkeypatch.setitem(sys.modules, "datasets", hub)
    t = bb.load_task("hf:openai/gsm8k")
    assert t.name == "openai/gsm8k" and t.examples == [Example(GSM8K[0]["question"], GSM8K[0]["answer"])]
    assert t.source == "hf:openai/gsm8k (config main) split test; GSM8K adapter"
    assert bb.load_task("hf:openai/gsm8k::train").examples[0].question == "Half of 8?"
    assert bb.load_task("hf:rajpurkar/squad_v2").examples[0].answer == "blue"            # validation: the paper's
    assert hub.calls == [("openai/gsm8k", "main", None), ("openai/gsm8k", "main", "train"),
                         ("rajpurkar/squad_v2", None, None)]


def test_eval_tasks_reads_hf_tables(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(CHECKPOINT, run)
    data = write_parquet(tmp_path / "gsm8k" / "main" / "test-00000-of-00001.parquet", GSM8K)
    assert main(["eval", str(run), "--tasks", f"hf:{tmp_path / 'gsm8k'}:main", "--task-steps", "1", "--task-bon",
                 "1", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    (task,) = res["tasks"]
    assert task["task"] == "gsm8k" and task["examples"] == 2 and str(data) in task["source"]
    assert all(math.isfinite(r["ppl"]) and r["answer_tokens"] == len("3 + 2 = 5\n#### 5") + len("8 / 2 = 4\n#### 4")
               for r in task["rows"])


# ------------------------------------------------------------------------------------------ dyck_languages
def real_excerpt() -> list[tuple[list[str], list[str]]]:
    exs = json.loads((Path(__file__).parent / "fixtures" / "dyck_real_excerpt.json").read_text())["examples"]
    assert all(e["input"].startswith(dyck.PREFIX) for e in exs)
    return [(e["input"][len(dyck.PREFIX):].split(), e["target"].split()) for e in exs]


def test_generated_dyck_has_the_real_tasks_format_and_size(cache):
    t = bb.load_task("dyck_languages")                        # no BIG-bench anywhere: generated
    assert t.note and "generated" in t.note and "there is no BIG-bench in" in t.note and "--from PATH" in t.note
    assert t.source.startswith("generated") and len(t.examples) == dyck.SIZE == 1000
    assert not cache.exists()                                 # nothing downloaded or written
    runs = dyck.choices()
    assert len(runs) == len(set(runs)) == 84
    questions = set()
    for e in t.examples:
        assert e.question.startswith(dyck.PREFIX) and e.question.endswith("\nA:")
        brackets = e.question[len(dyck.PREFIX):-len("\nA:")].split()
        assert " ".join(dyck.closing_run(brackets)) == e.answer            # the target closes the input
        assert e.choices == tuple(runs) and [e.choices[i] for i in e.correct] == [e.answer]
        questions.add(e.question)
    assert len(questions) == 1000                             # distinct inputs, as in BIG-bench
    assert dyck.generated_task("x").examples == t.examples    # deterministic (seeded)
    # the real examples are in the same format: every target closes its input, runs of 1-3
    for inp, target in real_excerpt():
        assert list(dyck.closing_run(inp)) == target and 1 <= len(target) <= 3
    # the JSON the generator writes is BIG-bench's task.json format, about the real file's 2.4 MB
    assert 2.0e6 < len(json.dumps(dyck.task_json(), indent=4)) < 2.8e6


def test_generated_dyck_matches_the_real_statistics():
    """Depth, length and closing-run length of the 1,000 generated examples against the 250 real ones
    (``dyck.REAL``): each mean within 3 standard errors of the difference of two sample means (so the
    tolerance follows the samples' sizes and spreads), the ranges within BIG-bench's bounds."""
    gen, real = dyck.stats(dyck.generate()), dyck.REAL
    n, m = gen["examples"], real["examples"]
    assert dyck.stats(real_excerpt())["examples"] == 20
    for key in ("length", "depth"):
        g, r = gen[key], real[key]
        se = math.sqrt(r["sd"] ** 2 / m + g["sd"] ** 2 / n)
        assert abs(g["mean"] - r["mean"]) < 3 * se, (key, g, r)
        assert abs(g["sd"] - r["sd"]) < 0.25 * r["sd"], (key, g, r)
        assert abs(g["median"] - r["median"]) <= 3 * 1.2533 * se * math.sqrt(2), (key, g, r)   # median's SE
        assert g["min"] >= 1 and r["min"] >= 1
    assert gen["length"]["max"] < dyck.MAX_LEN and gen["length"]["min"] >= 1
    for k in (1, 2, 3):                                      # closing runs: shares within 3 SE
        p, q = real["run"][k] / m, gen["run"][k] / n
        assert abs(p - q) < 3 * math.sqrt(p * (1 - p) * (1 / m + 1 / n)), (k, p, q)
    assert sum(gen["run"].values()) == n


def test_dyck_is_generated_when_the_source_lacks_it_and_eval_says_so(cache, tmp_path, capsys):
    bb.index_from(TASKS, cache)                               # a source without dyck_languages
    t = bb.load_task("dyck_languages")
    assert f"BIG-bench task folder {TASKS.resolve()} has no dyck_languages" in t.note
    run = tmp_path / "run"
    shutil.copytree(CHECKPOINT, run)
    assert main(["eval", str(run), "--tasks", "dyck_languages", "--task-examples", "2", "--task-steps", "1",
                 "--task-bon", "1"]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines()[0].startswith("note: dyck_languages:") and "generated" in err.splitlines()[0]
    assert out.splitlines()[-1].startswith("note: dyck_languages:")
    res = json.loads((run / "eval_tasks.json").read_text())
    assert res["tasks"][0]["note"] == t.note and res["tasks"][0]["source"].startswith("generated")
    assert res["tasks"][0]["chance"] == pytest.approx(1 / 84)
