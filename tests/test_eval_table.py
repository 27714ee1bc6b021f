"""A readable ``ebt eval`` (issue 17, item 6): one table per text run whose header counts the windows and tokens
of every split (the OOD set named), one perplexity per split and policy, NFEs and cost per row, notes on rows that
equal the plain evaluation, ``--json`` with the same numbers, and the thinking study only on request."""
import json
import math

import pytest
import torch

from ebtkit.cli import main
from ebtkit.core.config import preset
from ebtkit.data.text import prepare_text_data
from ebtkit.eval.inference import Policy
from ebtkit.eval.metrics import perplexity
from ebtkit.eval.text_table import IDENTICAL_NOTE, deterministic_samples
from ebtkit.tasks import load
from tests.helpers import train


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    text = root / "corpus.txt"
    text.write_text("".join(f"verse {i}: and the lord spake unto moses, saying.\n" for i in range(300)))
    kw = {"train.steps": 4, "train.eval_every": 4, "train.save_every": 4, "train.eval_batches": 1,
          "model.d_model": 16, "model.n_layers": 1, "model.context": 16, "train.batch_size": 4,
          "data.path": str(text)}                                       # OOD: the built-in pydoc text
    train(preset("tiny", system="s1", **kw), root / "s1")              # zeros start: deterministic candidates
    train(preset("tiny", system="s2", **kw, **{"thinking.replay_size": 8}), root / "s2")   # N(0, 1) start
    train(preset("tiny", **kw, **{"model.model": "transformer++"}), root / "tpp")
    return root


def _eval(capsys, *args):
    rc = main(["eval", *map(str, args)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out, out.err


def _line(out: str, start: str) -> str:
    (line,) = [ln for ln in out.splitlines() if ln.startswith(start)]
    return line


def test_header_counts_and_one_number_per_split(runs, capsys):
    out, _ = _eval(capsys, runs / "s1", "--max-windows", "3")
    b = load(runs / "s1")
    data = prepare_text_data(b.config.data, 16, b.tokenizer)
    assert "val (" in out and "its last 5 %): 3 windows = 48 tokens" in out
    assert "pydoc (out of distribution): 3 windows = 48 tokens" in out
    assert "windows of 16 predicted tokens, the first 3 of each split" in out
    head = _line(out, "policy")
    assert "val ppl" in head and "pydoc ppl" in head and "NFE/token" in head and "cost" in head
    plain = _line(out, "EBT, 2 steps (trained)")
    for split, tokens in (("val", data.val), ("ood", data.ood)):
        ppl = perplexity(b.model, tokens, 16, steps=2, max_windows=3)["ppl"]     # exact, the same windows
        assert f"{ppl:.3f}" in plain
        assert out.count(f"{ppl:.3f}") == 1                                     # one number per set
    assert plain.split()[4:6] == ["2.00", "×1.0"]
    assert _line(out, "EBT, 4 steps").split()[3:5] == ["4.00", "×2.0"]
    assert len([ln for ln in out.splitlines() if ln.startswith("EBT,")]) == 2


def test_json_is_the_table(runs, capsys):
    out, _ = _eval(capsys, runs / "s1", "--max-windows", "2", "--bon", "2")
    doc_out, _ = _eval(capsys, runs / "s1", "--max-windows", "2", "--bon", "2", "--json")
    doc = json.loads(doc_out)                                            # nothing but JSON on stdout
    assert doc == json.loads((runs / "s1" / "eval.json").read_text())
    assert [(s["name"], s["label"], s["windows"], s["tokens"]) for s in doc["splits"]] == \
        [("val", "val", 2, 32), ("ood", "pydoc", 2, 32)]
    assert [r["label"] for r in doc["table"]] == ["EBT, 2 steps (trained)", "EBT, 4 steps",
                                                  "EBT, best-of-2 (min E), 2 steps"]
    for r in doc["table"]:
        line = _line(out, r["label"])
        cells = [f"{r['nfe_per_token']:.2f}", f"×{r['cost']:.1f}",
                 *(f"{r['splits'][s][k]:.3f}" for s in ("val", "ood") for k in ("ppl", "bpb"))]
        assert line[len(r["label"]):].split()[:6] == cells                # bits per byte beside each perplexity
    assert doc["rows"][0]["steps"] == 2 and doc["rows"][0]["val_ppl"] == doc["table"][0]["splits"]["val"]["ppl"]
    assert doc["thinking"] is None


def test_cost_column_and_the_identical_best_of_n_note(runs, capsys):
    doc = json.loads(_eval(capsys, runs / "s1", "--max-windows", "2", "--bon", "2,4", "--json")[0])
    rows = {r["label"]: r for r in doc["table"]}
    plain = rows["EBT, 2 steps (trained)"]
    assert [r["cost"] for r in doc["table"]] == [1.0, 2.0, 2.0, 4.0]    # 2 steps, 4 steps, best-of-2, best-of-4
    for n in (2, 4):
        r = rows[f"EBT, best-of-{n} (min E), 2 steps"]
        assert r["nfe_per_token"] == 2.0 * n and r["identical_to_plain"] and r["note"] == IDENTICAL_NOTE
        assert {s: v["ppl"] for s, v in r["splits"].items()} == {s: v["ppl"] for s, v in plain["splits"].items()}
    assert plain["note"] == "plain evaluation" and not rows["EBT, 4 steps"]["identical_to_plain"]
    # a random start: the samples differ, nothing is claimed
    doc = json.loads(_eval(capsys, runs / "s2", "--max-windows", "2", "--bon", "2", "--json")[0])
    bon = doc["table"][-1]
    assert bon["label"] == "EBT, best-of-2 (min E), 3 steps" and bon["cost"] == 2.0
    assert not bon["identical_to_plain"] and bon["note"] == ""
    assert bon["splits"]["val"]["ppl"] != doc["table"][0]["splits"]["val"]["ppl"]


def test_deterministic_samples_rule():
    m = type("M", (), {"cfg": type("C", (), {"init": "zeros"})()})()
    plain = Policy(steps=2)
    assert deterministic_samples(m, Policy(steps=2, samples=4), plain)
    assert deterministic_samples(m, Policy(steps=2, samples=4, select="max_drop"), plain)
    assert not deterministic_samples(m, Policy(steps=2, samples=4, langevin_sigma=0.5), plain)   # noise
    assert not deterministic_samples(m, Policy(steps=4, samples=4), plain)                       # other steps
    m.cfg.init = "normal"
    assert not deterministic_samples(m, Policy(steps=2, samples=4), plain)


def test_the_thinking_study_is_off_by_default(runs, capsys, monkeypatch):
    import ebtkit.eval.runs as ev

    def boom(*a, **k):
        raise AssertionError("the thinking study ran")
    monkeypatch.setattr(ev, "evaluate_thinking", boom)
    (runs / "s1" / "thinking.json").unlink(missing_ok=True)
    _eval(capsys, runs / "s1", "--max-windows", "2")
    out, err = _eval(capsys, runs / "s1", "--max-windows", "2", "--no-thinking")
    assert "--no-thinking is deprecated" in err and "Spearman" not in out
    assert not (runs / "s1" / "thinking.json").exists()
    assert main(["eval", str(runs / "s1"), "--thinking"]) == 2            # asked for: it runs
    assert "the thinking study ran" in capsys.readouterr().err


@pytest.mark.slow
def test_thinking_rows_join_the_table_on_the_same_windows(runs, capsys):
    out, err = _eval(capsys, runs / "s1", "--max-windows", "2", "--thinking", "--think-steps", "4", "--bon", "2",
                     "--tols", "0.01", "--baseline", runs / "tpp")
    doc = json.loads((runs / "s1" / "eval.json").read_text())
    fams = [r["family"] for r in doc["table"]]
    assert fams == ["plain", "steps", "best-of-N", "early stop", "transformer++"]
    four = doc["table"][1]
    assert four["label"] == "EBT, 4 steps" and "gain_pct" in four["splits"]["val"] and "gain_ci95" in four["splits"]["ood"]
    study = json.loads((runs / "s1" / "thinking.json").read_text())
    trained = next(r for r in study["table"] if r["family"] == "trained")
    assert math.isclose(trained["ood_ppl"], doc["table"][0]["splits"]["ood"]["ppl"], rel_tol=1e-12)
    assert doc["table"][2]["note"] == IDENTICAL_NOTE and doc["table"][4]["cost"] is None
    same = sum(r["identical_to_plain"] for r in doc["table"])                          # best-of-2: the same numbers
    assert out.count(f"{doc['table'][0]['splits']['ood']['ppl']:.3f}") == 1 + same == 2  # one plain OOD number
    assert len([ln for ln in out.splitlines() if ln.startswith("EBT, 2 steps")]) == 1
    assert "Spearman" in out and "random vs real" in out and "thinking table" in err   # progress on stderr
    assert _line(out, "Transformer++ baseline").split()[4:7] == ["1", "fwd", "—"]
    # fewer study windows: a second table that says why its numbers differ
    out, _ = _eval(capsys, runs / "s1", "--max-windows", "3", "--thinking-windows", "2", "--think-steps", "4",
                   "--bon", "2", "--tols", "0.01")
    assert "thinking study on fewer windows (--thinking-windows 2)" in out
    assert out.count("EBT, 2 steps (trained)") == 2


def test_transformer_runs_have_one_row_and_no_study(runs, capsys):
    doc = json.loads(_eval(capsys, runs / "tpp", "--max-windows", "2", "--json")[0])
    (row,) = doc["table"]
    assert row["label"] == "Transformer++ (1 forward per token)" and row["cost"] == 1.0 and row["nfe_per_token"] == 0
    assert doc["rows"] == [{"steps": 0, "val_ppl": row["splits"]["val"]["ppl"], "val_tokens": 32,
                            "ood_ppl": row["splits"]["ood"]["ppl"], "ood_tokens": 32, "nfe_per_token": 0.0}]
    for bad in (["--thinking"], ["--baseline", str(runs / "tpp")], ["--thinking", "--no-thinking"]):
        assert main(["eval", str(runs / "tpp"), *bad]) == 2, bad
        err = capsys.readouterr().err
        assert err.startswith("ebt: error:") and err.count("\n") == 1, err
    assert torch.isfinite(torch.tensor(row["splits"]["ood"]["ppl"]))
