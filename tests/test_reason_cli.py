"""`ebt train --task reason` and `ebt eval` of reasoning runs: the rows document, the staged files, and one-line errors
that write nothing."""
import json

import pytest

from ebtkit.cli import main
from tests.test_no_writes_on_error import fails_cleanly

ROW_KEYS = {"model", "problem", "difficulty", "steps", "policy", "metric", "value", "nfe", "samples"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("reason")
    out = {}
    for model in ("ebt", "feedforward", "looped"):
        out[model] = root / model
        assert main(["train", "--task", "reason", "--problem", "parity", "--preset", "tiny", "--model", model,
                     "--steps", "6", "--no-progress", "--out", str(out[model])]) == 0
    out["other"] = root / "other"
    assert main(["train", "--task", "reason", "--problem", "addition", "--preset", "tiny", "--steps", "4",
                 "--no-progress", "--out", str(out["other"])]) == 0
    return root, out


def test_eval_writes_rows_for_every_model_policy_and_uncertainty(runs, capsys):
    root, r = runs
    capsys.readouterr()
    assert main(["eval", str(r["ebt"]), "--compare", str(r["feedforward"]), "--compare", str(r["looped"]),
                 "--difficulty", "16,24", "--steps", "1,2,4", "--samples", "2", "--instances", "12",
                 "--accept-lower", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (r["ebt"] / "eval_reason.json").is_file() and (r["ebt"] / "reason_curves.png").is_file()
    assert json.loads((r["ebt"] / "eval_reason.json").read_text())["rows"] == doc["rows"]
    rows = doc["rows"]
    assert rows and all(ROW_KEYS <= set(row) for row in rows)
    assert {row["model"] for row in rows} == {"EBT", "feed-forward", "looped"}
    ebt = [row for row in rows if row["model"] == "EBT"]
    assert {row["policy"] for row in ebt} == {"plain", "accept-lower", "best-of-N", "mean-of-N", "oracle-of-N"}
    assert {"cell_acc", "exact_acc", "auroc_wrong", "auroc_ood", "auroc_wrong_dy", "auroc_ood_dy"} <= \
        {row["metric"] for row in ebt}
    assert {row["steps"] for row in ebt} == {1, 2, 4} and {row["difficulty"] for row in rows} == {16.0, 24.0}
    bon = [row for row in ebt if row["policy"] == "best-of-N" and row["steps"] == 4]
    assert all(row["nfe"] == 8 and row["samples"] == 2 for row in bon)
    ff = [row for row in rows if row["model"] == "feed-forward"]
    assert all(row["steps"] is None and row["nfe"] == 1 for row in ff)
    looped = {row["metric"] for row in rows if row["model"] == "looped"}
    assert "auroc_wrong" not in looped and "auroc_wrong_dy" in looped     # no energy, a residual
    oracle = {(row["difficulty"], row["steps"]): row["value"] for row in ebt
              if row["policy"] == "oracle-of-N" and row["metric"] == "cell_acc"}
    mean = {(row["difficulty"], row["steps"]): row["value"] for row in ebt
            if row["policy"] == "mean-of-N" and row["metric"] == "cell_acc"}
    assert all(oracle[k] >= mean[k] - 1e-9 for k in oracle)
    assert doc["batch_size"] == 256                           # the reasoning default, not the text eval's 16
    assert main(["eval", str(r["ebt"]), "--steps", "1", "--samples", "1", "--instances", "12", "--batch-size", "4",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["batch_size"] == 4


def test_eval_table_is_printed_without_json(runs, capsys):
    _, r = runs
    assert main(["eval", str(r["looped"]), "--steps", "1,3", "--samples", "1", "--instances", "8"]) == 0
    out = capsys.readouterr().out
    assert "reason: parity" in out and "looped [plain]" in out and "eval_reason.json" in out


@pytest.mark.parametrize("extra", [["--difficulty", "nan"], ["--difficulty", "-3"], ["--difficulty", "4.5"],
                                   ["--difficulty", "x"], ["--steps", "0"], ["--steps", "a,b"],
                                   ["--steps", "100000"], ["--samples", "0"], ["--samples", "100000"],
                                   # trajectories of 4096 steps × batches of 256 strings of 4096 bits: ~100 GB,
                                   # refused up front
                                   ["--difficulty", "4096", "--steps", "4096", "--instances", "256",
                                    "--batch-size", "256"]])
def test_bad_eval_options_are_one_line_errors_and_write_nothing(runs, capsys, monkeypatch, extra):
    root, r = runs
    # the memory refusal must not depend on this machine's RAM: it reports 16 GiB free
    monkeypatch.setattr("ebtkit.core.estimate.available_memory", lambda dev: (16 << 30, "available RAM"))
    monkeypatch.setenv("EBT_CHECK_MEMORY", "1")
    err = fails_cleanly(root, ["eval", str(r["ebt"]), *extra], capsys)
    assert "Traceback" not in err


def test_compare_needs_the_same_problem(runs, capsys):
    root, r = runs
    err = fails_cleanly(root, ["eval", str(r["ebt"]), "--compare", str(r["other"])], capsys)
    assert "not a reasoning run of problem 'parity'" in err


def test_sudoku_difficulty_out_of_the_generators_range(tmp_path, capsys):
    err = fails_cleanly(tmp_path, ["train", "--task", "reason", "--problem", "sudoku", "--preset", "tiny",
                                   "--set", "data.eval_difficulties=90", "--out", str(tmp_path / "r")], capsys)
    assert "[24, 81]" in err


@pytest.mark.parametrize("argv,needle", [
    (["--model", "transformer++"], "unknown model"),
    (["--problem", "chess"], "unknown problem"),
    (["--set", "model.arch=mlp", "--problem", "parity"], "does not fit problem"),
    (["--alpha", "2", "--model", "looped"], "apply to --model ebt only"),
])
def test_bad_train_options_are_one_line_errors(tmp_path, capsys, argv, needle):
    err = fails_cleanly(tmp_path, ["train", "--task", "reason", "--preset", "tiny", "--out", str(tmp_path / "r"),
                                   *argv], capsys)
    assert needle in err


def test_presets_show_each_problems_table_and_recipe_refinement(capsys):
    """``ebt presets --task reason`` lists what ``--problem`` sets, including a problem's refinement of the recipe
    (addition's Langevin noise), and what it lists is what a run resolves."""
    from ebtkit.tasks.reason import PROBLEM_PRESETS, PROBLEM_RECIPES, preset
    assert main(["presets", "--task", "reason"]) == 0
    out = capsys.readouterr().out
    for problem in PROBLEM_PRESETS:
        assert f"\n  {problem} " in out
    sigma = PROBLEM_RECIPES["addition"]["s2"]["thinking.langevin_sigma"]
    assert f"with recipe s2: thinking.langevin_sigma={sigma}" in out
    assert preset("cpu", "addition").thinking.langevin_sigma == sigma > 0
    assert preset("cpu", "addition", system="s1").thinking.langevin_sigma == 0       # s1 is not refined
    assert preset("cpu", "parity").thinking.langevin_sigma == 0
    assert preset("cpu", "addition", **{"thinking.langevin_sigma": 0.0}).thinking.langevin_sigma == 0   # user wins
