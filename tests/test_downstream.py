"""Downstream tasks: BIG-bench read from the sdist (a fake one with the real layout), users' JSONL files, exact
teacher-forced perplexity, multiple-choice picks by likelihood and by energy, ``ebt eval --tasks`` and
``ebt data bigbench`` (never downloads: pip is replaced). The other sources (--from, hf:, the generated Dyck
task) are tests/test_data_routes.py's."""
import io
import json
import math
import tarfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ebtkit.cli import main
from ebtkit.data import bigbench as bb
from ebtkit.data import bigbench_sources as sources
from ebtkit.data.bigbench import Example
from ebtkit.data.text import DataError
from ebtkit.data.tokenizers import ByteTokenizer
from ebtkit.eval import downstream as ds
from ebtkit.eval.inference import Policy, think_text
from tests.helpers import tiny_model

FIX = Path(__file__).parent / "fixtures" / "bigbench"
TOK = ByteTokenizer()


def make_sdist(path: Path, tasks: Path = FIX / "benchmark_tasks", extra: dict | None = None) -> Path:
    """A gzip tar with the sdist's layout: ``bigbench-1.0.0/bigbench/benchmark_tasks/<task>/task.json``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    files = {"bigbench-1.0.0/PKG-INFO": b"Name: bigbench\n",
             "bigbench-1.0.0/bigbench/api/json_task.py": b"# not a task\n"}
    for f in sorted(tasks.rglob("task.json")):
        files[bb.ROOT + f.relative_to(tasks).as_posix()] = f.read_bytes()
    files.update(extra or {})
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("EBTKIT_CACHE", str(root))
    make_sdist(root / "bigbench" / bb.SDIST)
    return root / "bigbench"


# ------------------------------------------------------------------------------------------ reading tasks
def test_reads_tasks_from_the_sdist_and_then_from_the_extracted_files(cache, monkeypatch):
    assert bb.cache_dir() == cache
    assert bb.list_tasks() == ["tiny_choice", "tiny_gen", "tiny_parent", "tiny_parent/sub_a", "tiny_parent/sub_b"]
    t = bb.load_task("tiny_choice")
    assert len(t.examples) == 3 and t.multiple_choice == 3 and t.source.endswith("tiny_choice/task.json")
    e = t.examples[0]
    # BIG-bench's zero-shot format: task_prefix + input prefix + input + output prefix, stripped
    assert e.question == "Close the brackets. \n\nInput: ( [\nOutput:"
    assert e.choices == (")", "] )", "]") and e.correct == (1,) and e.answer == "] )"
    assert e.text == "Question: Close the brackets. \n\nInput: ( [\nOutput:\nAnswer: ] )"
    g = bb.load_task("tiny_gen")
    assert [(x.question, x.answer, x.choices) for x in g.examples] == [
        ("Q: What is 2 plus 2?\nA:", "4", ()), ("Q: Name a colour.\nA:", "red", ())]
    # a parent without examples = its subtasks in name order; choices appended with the task's choice_prefix
    p = bb.load_task("tiny_parent")
    assert [x.question for x in p.examples] == ["What is the answer?:1 + 1 ?\n choice:3\n choice:2\nA:",
                                                "Q: 2 + 2 ?\nA:"]
    assert p.examples[0].correct == (1,) and bb.load_task("tiny_parent/sub_b").examples == p.examples[1:]
    # everything read so far was extracted: the archive is not opened again
    assert (cache / "tasks" / "tiny_choice" / "task.json").is_file()
    monkeypatch.setattr(tarfile, "open", lambda *a, **k: pytest.fail("archive reopened"))
    assert bb.load_task("tiny_choice").examples == t.examples
    assert bb.load_task("tiny_parent").examples == p.examples


def test_a_changed_sdist_invalidates_the_index_and_unknown_names_get_suggestions(cache, tmp_path):
    bb.load_task("tiny_gen")
    other = tmp_path / "other"
    (other / "tiny_gen").mkdir(parents=True)
    (other / "tiny_gen" / "task.json").write_text(json.dumps({"examples": [{"input": "x", "target": "changed"}]}))
    make_sdist(cache / bb.SDIST, other)
    assert [e.answer for e in bb.load_task("tiny_gen").examples] == ["changed"]
    assert bb.list_tasks() == ["tiny_gen"]
    with pytest.raises(DataError, match="no BIG-bench JSON task 'tiny_ge' .*did you mean tiny_gen"):
        bb.load_task("tiny_ge")


def test_missing_bigbench_names_every_route(tmp_path, monkeypatch):
    monkeypatch.setenv("EBTKIT_CACHE", str(tmp_path / "empty"))
    with pytest.raises(DataError) as e:
        bb.load_task("elementary_math_qa")
    msg = str(e.value)
    assert "\n" not in msg and "'elementary_math_qa'" in msg and str(tmp_path / "empty" / "bigbench") in msg
    for route in ("ebt data bigbench --from PATH", "Hugging Face exports", bb.SDIST, "'ebt data bigbench' downloads",
                  "hf:DATASET", "dyck_languages is generated"):
        assert route in msg
    assert not (tmp_path / "empty").exists()


def test_malformed_task_json_names_the_file_and_line(tmp_path, monkeypatch):
    bad = tmp_path / "bad"
    (bad / "syntax").mkdir(parents=True)
    (bad / "syntax" / "task.json").write_text('{"examples": [\n {"input": "a", "target": "b"},\n {"input": }\n]}')
    (bad / "schema").mkdir()
    (bad / "schema" / "task.json").write_text(
        '{"name": "schema", "keywords": ["x", {"a": [1, "]"]}],\n "examples": [\n  {"input": "a", "target": "b"},\n'
        '  {"input": "c",\n   "target_scores": {"x": 0, "y": 0}}\n ]\n}')
    monkeypatch.setenv("EBTKIT_CACHE", str(tmp_path / "c"))
    make_sdist(tmp_path / "c" / "bigbench" / bb.SDIST, bad)
    with pytest.raises(DataError, match=r"bigbench-1.0.0.tar.gz:.*/syntax/task.json:3: invalid JSON"):
        bb.load_task("syntax")
    with pytest.raises(DataError, match=r"/schema/task.json:4: 'target_scores' needs .* a right one"):
        bb.load_task("schema")
    cases = [('{"examples": [{"target": "b"}]}', ":1: 'input' must be a string"),
             ('{"examples": [{"input": "a"}]}', ":1: an example needs 'target' or 'target_scores'"),
             ('{"examples": [\n{"input": "a", "target": []}]}', ":2: 'target' must be a string or a non-empty"),
             ('{"examples": [{"input": "a", "target_scores": {"x": true, "y": 1}}]}', "must map choices to numbers"),
             ('{"examples": []}', ":1: 'examples' must be a non-empty list"),
             ('[1]', ":1: a task file must hold a JSON object"),
             ('{"choice_prefix": 3, "examples": [{"input": "a", "target": "b"}]}', "'choice_prefix' must be a string")]
    for text, msg in cases:
        with pytest.raises(DataError, match=msg.replace("[", r"\[").replace("(", r"\(")):
            bb.parse_task_json(text, "f.json")


def test_example_lines_finds_every_example():
    text = '{"a": {"examples": [1]},\n "examples": [\n {"input": "[,]"},\n\n {"x": [1,\n2]}, {"y": "}"}\n]}'
    assert bb.example_lines(text) == [3, 5, 6]


def test_jsonl_tasks_both_forms_and_one_line_errors(tmp_path):
    t = bb.load_task(str(FIX / "good.jsonl"))
    assert t.name == "good" and len(t.examples) == 3 and t.multiple_choice == 2
    assert t.examples[0] == Example("What is 3 times 3?", "9")
    assert t.examples[1] == Example("Pick the even number.", "8", ("3", "8", "5"), (1,))
    assert t.examples[2].correct == (1,) and t.examples[2].answer == "apple"
    assert t.examples[1].prompt == "Question: Pick the even number.\nAnswer: "
    for name, msg in (("bad_json.jsonl", ":2: invalid JSON"), ("bad_answer.jsonl", ":3: 'answer' index 2 is out of range")):
        with pytest.raises(DataError, match=msg) as e:
            bb.load_task(str(FIX / name))
        assert str(FIX / name) in str(e.value) and "\n" not in str(e.value)
    lines = [('"text"', "each line must be a JSON object"),
             ('{"input": "q", "targets": "a"}', "unknown key(s) 'targets'"),
             ('{"input": "q", "target": "a", "choices": ["a", "b"], "answer": 0}', "not both"),
             ('{"input": "q", "choices": ["a", "b"]}', "needs 'target', or 'choices' and 'answer'"),
             ('{"input": "q", "choices": ["a", "a"], "answer": 0}', "at least two distinct choices"),
             ('{"input": "q", "choices": ["a", ""], "answer": 0}', "list of non-empty strings"),
             ('{"input": "q", "choices": ["a", "b"], "answer": true}', "index (0-based) or its text"),
             ('{"input": "q", "choices": ["a", "b"], "answer": "c"}', "'c' is not one of the choices"),
             ('{"input": 3, "target": "a"}', "'input' must be a string")]
    for k, (line, msg) in enumerate(lines):
        f = tmp_path / f"t{k}.jsonl"
        f.write_text('{"input": "fine", "target": "x"}\n' + line + "\n")
        with pytest.raises(DataError, match=f"t{k}.jsonl:2: .*" + msg.replace("(", r"\(").replace(")", r"\)")):
            bb.load_task(str(f))
    own = tmp_path / "mine" / "task.json"                  # a task of one's own in BIG-bench's format
    own.parent.mkdir()
    own.write_text(json.dumps({"examples": [{"input": "x", "target_scores": {"a": 0, "b": 1}}]}))
    t = bb.load_task(str(own))
    assert t.name == "mine" and t.examples == [Example("Q: x\n  choice: a\n  choice: b\nA:", "b", ("a", "b"), (1,))]
    own.write_text('{"examples": [\n{"input": "x"}]}')
    with pytest.raises(DataError, match="mine/task.json:2: an example needs"):
        bb.load_task(str(own))
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="no examples"):
        bb.load_task(str(tmp_path / "empty.jsonl"))
    with pytest.raises(DataError, match="task file not found"):
        bb.load_task(str(tmp_path / "nope.jsonl"))


# ------------------------------------------------------------------------------------------ scoring
EXAMPLES = [Example("1+1?", "2", ("1", "2", "33"), (1,)), Example("a rather long question here", "an answer"),
            Example("ab", "c", ("xy", "c"), (1,)), Example("q", "zz")]


def _reference_nll(model, ids: list[int]) -> torch.Tensor:
    """Per-token NLL of one window, computed on its own (no batching, no padding)."""
    t = torch.tensor([ids])
    if hasattr(model, "lm_head"):
        with torch.no_grad():
            return F.cross_entropy(model(t[:, :-1])[0], t[0, 1:], reduction="none").double()
    logits = think_text(model, t[:, :-1], steps=2).candidates[0]
    return F.cross_entropy(logits.detach(), t[0, 1:], reduction="none")


@pytest.mark.parametrize("kind", ["transformer++", "ebt"])
def test_perplexity_is_exact_over_all_tokens_of_left_truncated_windows(kind):
    """A zero-start EBT is deterministic, so batched/padded scoring must equal each window scored alone."""
    model = tiny_model(kind, vocab_size=256, context=22, init="zeros")
    context = 22
    scorer = ds.Scorer("m", model, Policy(steps=2) if kind == "ebt" else None, "2 steps")
    res = ds.evaluate_examples(scorer, EXAMPLES, TOK, context, batch_size=3)
    tot, n, ans_tot, ans_n, cut = 0.0, 0, 0.0, 0, 0
    for e in EXAMPLES:
        ids = TOK.encode(e.prompt) + TOK.encode(e.answer)
        cut += len(ids) > context + 1
        w = ids[-(context + 1):]
        nll = _reference_nll(model, w)
        tot, n = tot + float(nll.sum()), n + len(w) - 1
        a = min(len(TOK.encode(e.answer)), len(w) - 1)
        ans_tot, ans_n = ans_tot + float(nll[-a:].sum()), ans_n + a
    assert res["tokens"] == n == 22 + 22 + 21 + 21 and res["truncated"] == cut == 2   # two are padded
    assert res["ppl"] == pytest.approx(math.exp(tot / n), rel=1e-10)
    assert res["nll_sum"] == pytest.approx(tot, rel=1e-10)
    assert res["answer_tokens"] == ans_n == 1 + 9 + 1 + 2
    assert res["answer_ppl"] == pytest.approx(math.exp(ans_tot / ans_n), rel=1e-10)
    assert res["nfe_per_token"] == (2.0 if kind == "ebt" else 0.0)
    # multiple choice: every choice after the same prompt (cut once for the longest choice)
    assert res["mc_examples"] == 2 and res["mc_truncated"] == 1
    for bs in (1, 7):   # batching changes only the order of floating-point sums
        assert ds.evaluate_examples(scorer, EXAMPLES, TOK, context, batch_size=bs) == pytest.approx(res, rel=1e-12)


def test_choice_scores_and_verifier_energies_match_direct_computation():
    """Each distinct prediction context is thought about once; the scores equal each choice scored alone."""
    model = tiny_model("ebt", vocab_size=256, context=10, init="zeros")
    context = 10
    prompt = TOK.encode(EXAMPLES[0].prompt)
    choices = [TOK.encode(c) for c in ("1", "2", "33", "3")]
    wins, think, refs, cut = ds.choice_plan(prompt, choices, context)
    assert cut and all(w.tokens[:context - 1] == prompt[-(context - 1):] for w in wins)   # longest choice: 2
    # rows to think about: after the prompt (every choice's first token) and after "3" (for "33"): 2, not 5
    assert [w.rows for w in think] == [[8], [9]] and refs[2] == [(0, ord("3")), (1, ord("3"))]
    scorer = ds.Scorer("m", model, Policy(steps=3), verifier=True)
    nll, energy, truncated = ds.choice_scores(scorer, [(prompt, choices)], context, batch_size=2,
                                              generator=torch.Generator().manual_seed(0))
    assert truncated == 1 and len(nll[0]) == len(energy[0]) == 4
    for k, w in enumerate(wins):
        t = torch.tensor([w.tokens])
        direct = F.cross_entropy(think_text(model, t[:, :-1], steps=3).candidates[0].detach(), t[0, 1:],
                                 reduction="none")
        with torch.no_grad():
            e = model.energy_fn(t[:, :-1])(F.one_hot(t[:, 1:], 256).double(), model.cfg.n_landscapes - 1)[0]
        L = len(choices[k])
        assert w.rows == list(range(len(w.tokens) - 1 - L, len(w.tokens) - 1))
        assert nll[0][k] == pytest.approx(float(direct[-L:].mean()), rel=1e-10)
        assert energy[0][k] == pytest.approx(float(e[-L:].mean()), rel=1e-10)
    # the Transformer++ gets the same plan: one forward per window
    tpp = tiny_model("transformer++", vocab_size=256, context=10)
    nll, energy, _ = ds.choice_scores(ds.Scorer("t", tpp), [(prompt, choices)], context, batch_size=3,
                                      generator=torch.Generator())
    with torch.no_grad():
        t = torch.tensor([wins[2].tokens])
        direct = F.cross_entropy(tpp(t[:, :-1])[0], t[0, 1:], reduction="none")
    assert energy is None and nll[0][2] == pytest.approx(float(direct[-2:].mean()), rel=1e-10)


def test_multiple_choice_picks_the_lowest_mean_score_and_breaks_ties_to_the_first(monkeypatch):
    assert ds.pick([3.0, 1.0, 2.0]) == (1, False)
    assert ds.pick([2.0, 1.0, 1.0]) == (1, True)
    items = [([1], [[2], [3, 3]], (1,)), ([1], [[2], [3]], (0,)), ([1], [[2], [3]], (1,))]
    # stub mean scores: ex0 picks choice 1 (right), ex1 a tie → the first (right), ex2 a tie → the first (wrong);
    # by energy: ex0 choice 0 (wrong), ex1 choice 1 (wrong), ex2 choice 1 (right)
    nll = [[5.0, 4.0], [2.0, 2.0], [2.0, 2.0]]
    energy = [[1.0, 9.0], [3.0, 0.5], [3.0, 1.0]]
    seen = []

    def stub(scorer, its, context, *, batch_size, generator):
        seen.append(its)
        return nll, energy, 1

    monkeypatch.setattr(ds, "choice_scores", stub)
    ebt = tiny_model("ebt", vocab_size=256, context=16)
    res = ds.multiple_choice(ds.Scorer("m", ebt, Policy(steps=1), verifier=True), items, 16)
    assert seen == [[(p, cs) for p, cs, _ in items]]
    assert res == {"mc_examples": 3, "mc_acc": pytest.approx(2 / 3), "mc_ties": 2, "mc_truncated": 1,
                   "mc_acc_energy": pytest.approx(1 / 3), "mc_ties_energy": 0}
    res = ds.multiple_choice(ds.Scorer("m", ebt, Policy(steps=1)), items, 16)   # not the verifier row
    assert "mc_acc_energy" not in res
    assert ds.chance([Example("q", "b", ("a", "b"), (1,)), Example("q", "b", ("a", "b", "c", "d"), (1, 2))]) == 0.5


def test_energy_pick_runs_for_an_ebt_and_policies_are_deterministic():
    model = tiny_model("ebt", vocab_size=256, context=12, init="normal", dtype=torch.float32)
    pols = ds.default_policies(2, ds.random_start(model), bon=2)
    assert [p.label() for _, p in pols] == ["2 steps", "8 steps", "2 steps, BoN-2", "8 steps, BoN-2"]
    assert ds.default_policies(2, False)[-1][1] == Policy(steps=8)         # zero start: no best-of-N rows
    scorers = [ds.Scorer("EBT", model, p, name, verifier=i == 0) for i, (name, p) in enumerate(pols[::2])]
    task = bb.TaskData("t", "s", EXAMPLES)
    a = ds.evaluate_task(scorers, task, TOK, 12, batch_size=8, seed=1)
    assert a == ds.evaluate_task(scorers, task, TOK, 12, batch_size=8, seed=1)
    assert a != ds.evaluate_task(scorers, task, TOK, 12, batch_size=8, seed=2)
    first, bon = a["rows"]
    assert 0 <= first["mc_acc_energy"] <= 1 and "mc_acc_energy" not in bon
    assert bon["nfe_per_token"] == 2 * first["nfe_per_token"] == 4.0
    assert a["chance"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    table = ds.format_table([a])
    assert "EBT, 2 steps (trained)" in table and "(chance)" in table


# ------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("ds_runs")
    for name, args in (("ebt", ["--system", "s2"]), ("tpp", ["--model", "transformer++"])):
        assert main(["train", "--preset", "tiny", "--steps", "2", "--out", str(d / name), "--no-progress",
                     "--no-eval", "--set", "train.eval_batches=1", *args]) == 0
    return d


def test_eval_tasks_end_to_end(runs, cache, capsys):
    run = runs / "ebt"
    out_file = run / "eval_tasks.json"
    out_file.unlink(missing_ok=True)
    capsys.readouterr()
    args = ["eval", str(run), "--tasks", f"tiny_choice,{FIX / 'good.jsonl'}", "--baseline", str(runs / "tpp"),
            "--task-examples", "2", "--task-steps", "1,3", "--task-bon", "2"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "tiny_choice" in out and "good" in out and "Transformer++" in out and "EBT, 3 steps, BoN-2" in out
    assert "good: EBT, 3 steps, BoN-2: ppl" in err.splitlines()[-1]          # progress on stderr
    res = json.loads(out_file.read_text())
    assert [t["task"] for t in res["tasks"]] == ["tiny_choice", "good"] and res["task_examples"] == 2
    rows = res["tasks"][0]["rows"]
    assert [(r["model"], r["policy"]) for r in rows] == [
        ("Transformer++", "forward"), ("EBT", "1 step"), ("EBT", "3 steps (trained)"), ("EBT", "1 step, BoN-2"),
        ("EBT", "3 steps, BoN-2")]
    assert res["tasks"][0]["examples"] == 2 and res["tasks"][1]["mc_examples"] == 1
    assert "mc_acc_energy" in rows[1] and all(math.isfinite(r["ppl"]) for r in rows)
    assert main(args + ["--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["tasks"] == res["tasks"]           # deterministic


@pytest.mark.parametrize("extra, msg", [
    (["--tasks", "tiny_choice", "--task-examples", "0"], "--task-examples must be >= 1"),
    (["--tasks", "nope_task"], "no BIG-bench JSON task 'nope_task'"),
    (["--tasks", "tiny_choice", "--task-bon", "0"], "--task-bon must be >= 1"),
    (["--tasks", str(FIX / "bad_json.jsonl")], "bad_json.jsonl:2: invalid JSON"),
    (["--tasks", "tiny_gen", "--baseline", "EBT"], "must be a Transformer++ run"),
])
def test_eval_tasks_bad_input_is_one_line_and_writes_nothing(runs, cache, capsys, extra, msg):
    run = runs / "tpp"
    (run / "eval_tasks.json").unlink(missing_ok=True)
    extra = [str(runs / "ebt") if a == "EBT" else a for a in extra]
    assert main(["eval", str(run), *extra]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1
    assert not (run / "eval_tasks.json").exists()


def test_eval_tasks_without_bigbench_names_the_routes(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EBTKIT_CACHE", str(tmp_path / "none"))
    assert main(["eval", str(runs / "tpp"), "--tasks", "elementary_math_qa/question_only"]) == 2
    err = capsys.readouterr().err
    assert "ebt data bigbench --from PATH" in err and "hf:DATASET" in err and err.count("\n") == 1


def test_data_bigbench_offline_fails_in_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    root = tmp_path / "fresh"
    monkeypatch.setenv("EBTKIT_CACHE", str(root))

    def offline(dest):
        (dest / "partial.tmp").write_bytes(b"x")          # pip may leave pieces: they must go too
        return 1

    monkeypatch.setattr(sources, "pip_download", offline)
    assert main(["data", "bigbench"]) == 2
    err = capsys.readouterr().err
    assert "could not download bigbench==1.0.0" in err and "exit status 1" in err and err.count("\n") == 1
    assert "--from PATH" in err and "hf:DATASET" in err and "dyck_languages is generated" in err
    assert not root.exists()

    def wrong_file(dest):                               # a tarball that is not PyPI's
        make_sdist(dest / bb.SDIST)
        return 0

    monkeypatch.setattr(sources, "pip_download", wrong_file)
    assert main(["data", "bigbench"]) == 2
    assert "SHA-256" in capsys.readouterr().err and not root.exists()


def test_data_bigbench_moves_the_download_in_and_indexes_it(tmp_path, monkeypatch, capsys):
    root = tmp_path / "c"
    monkeypatch.setenv("EBTKIT_CACHE", str(root))
    fake = make_sdist(tmp_path / "src" / bb.SDIST)
    monkeypatch.setattr(sources, "SDIST_SHA256", bb.sha256(fake))
    monkeypatch.setattr(sources, "PAPER_TASKS", ("tiny_parent",))
    monkeypatch.setattr("ebtkit.commands.data.PAPER_TASKS", ("tiny_parent",))
    monkeypatch.setattr(sources, "pip_download", lambda dest: (dest / bb.SDIST).write_bytes(fake.read_bytes()) and 0)
    assert main(["data", "bigbench", "--list"]) == 0
    out = capsys.readouterr().out
    assert "indexed 5 tasks" in out and out.strip().endswith("tiny_parent/sub_b")
    c = root / "bigbench"
    assert sorted(p.name for p in c.iterdir()) == [bb.SDIST, "index.json", "tasks"]
    assert sorted(p.relative_to(c / "tasks").as_posix() for p in (c / "tasks").rglob("task.json")) == [
        "tiny_parent/sub_a/task.json", "tiny_parent/sub_b/task.json", "tiny_parent/task.json"]
    monkeypatch.setattr(sources, "pip_download", lambda dest: pytest.fail("downloaded again"))
    assert main(["data", "bigbench"]) == 0
    assert "already downloaded" in capsys.readouterr().out


def test_table_columns_stay_apart_for_large_perplexities():
    row = {"model": "EBT", "policy": "3 steps", "policy_kwargs": {}, "ppl": 1385.259, "answer_ppl": 192131.225,
           "nfe_per_token": 3.0, "mc_acc": 0.25}
    line = ds.format_table([{"task": "t", "examples": 2, "chance": None, "rows": [row]}]).splitlines()[2]
    assert line.split()[-6:] == ["steps", "1385.3", "192131.2", "0.250", "-", "3.0"]
    assert ds._num(float("inf")) == "inf" and ds._num(2.5e7) == "2.5e+07" and ds._num(12.3456) == "12.346"
