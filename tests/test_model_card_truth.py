"""Model cards tell the truth (issue 22, item 5): the card shows the headline metrics of the latest evaluation of
the weights it ships — after ``ebt eval``, after ``ebt eval --thinking`` (whose eval.json is larger than any cut),
and not after a resume, which moves earlier evaluations aside — and no run metadata among the metrics."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

import ebtkit
from ebtkit.cli import main
from ebtkit.core import hub
from ebtkit.tasks import hub as task_hub
from ebtkit.training.rundir import STALE_DIR, set_aside_evaluations

TEXT = "In the beginning God created the heaven and the earth. "


def card(run: Path, folder: Path) -> tuple[dict, str]:
    ebtkit.save_pretrained(run, folder)
    text = (folder / "README.md").read_text(encoding="utf-8")
    return yaml.safe_load(text.split("---\n")[1])["ebtkit"], text


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("card")
    (root / "corpus.txt").write_text(TEXT * 80, encoding="utf-8")
    out = root / "run"
    assert main(["train", "--preset", "tiny", "--steps", "4", "--set", "model.d_model=16", "--set", "model.n_layers=1",
                 "--data", str(root / "corpus.txt"), "--out", str(out), "--no-progress", "--no-eval"]) == 0
    return out


def plain_row(doc: dict) -> dict:
    return next(r for r in doc["table"] if r["family"] == "plain")


def test_card_after_eval_then_eval_thinking_then_resume(run, tmp_path, capsys):
    # 1. ebt eval: the card's headline is the plain row of eval.json, with its window and token counts
    assert main(["eval", str(run), "--max-windows", "4"]) == 0
    doc = json.loads((run / "eval.json").read_text())
    assert doc["weights"] == hub.weights_stamp(run)                        # the evaluation names its weights
    meta, text = card(run, tmp_path / "a")
    m = meta["metrics"]["eval.json"]
    row = plain_row(doc)
    assert m["evaluated_at_step"] == 4 and m["policy"] == row["label"]
    assert m["val"]["perplexity"] == row["splits"]["val"]["ppl"] and m["val"]["windows"] == 4
    assert m["val"]["tokens"] == row["splits"]["val"]["tokens"]
    bpb = row["splits"]["val"]["bpb"]                                      # a byte run: bits per byte = log2(ppl)
    assert bpb == pytest.approx(math.log2(row["splits"]["val"]["ppl"])) and m["val"]["bits_per_byte"] == bpb
    ood = next(k for k in m if k.startswith("ood"))
    assert m[ood]["perplexity"] == row["splits"]["ood"]["ppl"] and m[ood]["windows"] == 4
    assert f"| val | {row['splits']['val']['ppl']:.6g} |" in text and "these weights at training step 4" in text
    for meta_key in ("world_size", "elapsed_s"):                           # run metadata is not a metric
        assert meta_key not in text
    assert set(meta["validation"]) == {"val_ppl"}

    # 2. ebt eval --thinking: eval.json is far past the old 6,000-character cut; the perplexity stays
    assert main(["eval", str(run), "--thinking", "--max-windows", "4", "--think-steps", "2,4", "--bon", "2"]) == 0
    capsys.readouterr()
    doc = json.loads((run / "eval.json").read_text())
    assert len(json.dumps(doc)) > 6000
    meta, text = card(run, tmp_path / "b")
    m = meta["metrics"]["eval.json"]
    assert m["val"]["perplexity"] == plain_row(doc)["splits"]["val"]["ppl"]
    others = m["other policies"]
    assert len(others) == len(doc["table"]) - 1 and any("best-of-2" in k for k in others)
    assert all(isinstance(v["nfe_per_token"], float) for v in others.values())

    # 3. resume --no-eval: the step-4 evaluation is moved aside; the card says steps 6 and shows no eval
    files = {f.name for f in run.iterdir()}
    assert {"eval.json", "thinking.json", "thinking.png", "energy_heatmap.png"} <= files
    assert main(["train", "--resume", str(run), "--steps", "6", "--no-eval", "--no-progress"]) == 0
    aside = run / STALE_DIR / "step-4"
    assert {"eval.json", "thinking.json", "thinking.png", "energy_heatmap.png"} <= {f.name for f in aside.iterdir()}
    assert not list(run.glob("eval*.json")) and not (run / "thinking.json").exists()
    meta, text = card(run, tmp_path / "c")
    assert meta["steps"] == 6 and "metrics" not in meta and "No `ebt eval` result of these weights" in text
    assert "val_ppl" in meta["validation"]                                  # the step-6 checkpoint's own figure

    # an evaluation of the older weights put back by hand is named as stale, never shown as these weights'
    shutil.copy(aside / "eval.json", run / "eval.json")
    meta, text = card(run, tmp_path / "d")
    assert "metrics" not in meta and meta["stale"] == {"eval.json": 4}
    assert "scored earlier weights (step 4)" in text
    (run / "eval.json").unlink()


def test_an_unstamped_evaluation_of_other_training_steps_is_stale(tmp_path):
    """Files written before weight stamps: their recorded training steps must be the run's."""
    src = Path(__file__).resolve().parent / "fixtures" / "checkpoints" / "text-ebt-tiny"
    run = tmp_path / "run"
    shutil.copytree(src, run)
    doc = {"title": "EBT (S1, tiny preset, 30 training steps; evaluated at 2 thinking steps)",
           "table": [{"family": "plain", "label": "EBT, 2 steps", "splits": {"val": {"ppl": 9.0, "tokens": 64}}}],
           "splits": [{"name": "val", "label": "val", "windows": 2, "tokens": 64}]}
    (run / "eval.json").write_text(json.dumps(doc))
    bundle = ebtkit.load(run)
    assert bundle.config.train.steps != 30
    metrics, stale = task_hub.evaluations(bundle, run)
    assert metrics == {} and stale == {"eval.json": 30}
    doc["title"] = doc["title"].replace("30 training", f"{bundle.config.train.steps} training")
    (run / "eval.json").write_text(json.dumps(doc))
    metrics, stale = task_hub.evaluations(bundle, run)
    assert stale == {} and metrics["eval.json"]["val"] == {"perplexity": 9.0, "windows": 2, "tokens": 64}


def test_headlines_of_denoising_sequence_and_other_evaluations():
    den = {"images": 8, "policy": {"samples": 4, "accept_lower": True, "steps": None, "select": "min"},
           "levels": [{"sigma": 0.1, "noisy": {"psnr": 17.1, "mse": 1253.0},
                       "models": {"EBT": [{"nfe": 1, "psnr": 17.2, "mse": 1236.0}],
                                  "DiT": [{"nfe": 10, "psnr": 18.0, "mse": 1000.0}]}}],
           "params": {"EBT": 3}, "seed": 0}
    h = task_hub.headline("eval_denoise.json", den)
    assert h["policy"] == "samples=4, accept_lower=True" and h["test images"] == 8
    assert h["σ = 0.1"]["EBT, 1 NFE"] == {"PSNR (dB)": 17.2, "MSE": 1236.0}
    assert h["σ = 0.1"]["noisy input"]["PSNR (dB)"] == 17.1 and h["σ = 0.1"]["DiT, 10 NFE"]["MSE"] == 1000.0
    seq = {"windows": 16, "observed": 6, "horizon": 4, "units": "model units",
           "models": {"EBT": {"next_step": {"mse": 0.01, "mae": 0.03},
                              "rollout": {"mse": {"mean": 0.02}, "mae": {"mean": 0.05}}}},
           "persistence": {"next_step": {"mse": 0.011}, "rollout": {"mse": {"mean": 0.022}}}}
    h = task_hub.headline("eval_sequence.json", seq)
    assert h["EBT"] == {"next-step mse": 0.01, "next-step mae": 0.03, "rollout mse": 0.02, "rollout mae": 0.05}
    assert h["persistence (copy last)"] == {"next-step mse": 0.011, "rollout mse": 0.022}
    other = {"accuracy": 0.75, "examples": 200, "seed": 3, "world_size": 1, "elapsed_s": 2.0, "task": "parity"}
    assert task_hub.headline("eval_reason.json", other) == {"accuracy": 0.75, "examples": 200}


def test_run_metadata_is_not_validation(tmp_path):
    src = Path(__file__).resolve().parent / "fixtures" / "checkpoints" / "text-ebt-tiny"
    run = tmp_path / "run"
    shutil.copytree(src, run)
    state = run / "checkpoint" / "state.json"
    state.write_text(json.dumps({**json.loads(state.read_text()), "world_size": 2, "elapsed_s": 3.5}))
    info = task_hub.card_info(ebtkit.load(run), run)
    assert set(info["validation"]) == {"val_ppl"}


def test_set_aside_evaluations_moves_what_they_list_and_keeps_earlier_sets(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "eval_denoise.json").write_text(json.dumps({"files": [str(run / "eval_denoise.json"),
                                                                 "elsewhere/psnr_vs_nfe.png", "samples.png"]}))
    (run / "psnr_vs_nfe.png").write_bytes(b"png")
    (run / "samples.png").write_bytes(b"png")
    (run / "metrics.jsonl").write_text("{}\n")
    dest = set_aside_evaluations(run, 20)
    assert dest == run / STALE_DIR / "step-20"
    assert {f.name for f in dest.iterdir()} == {"eval_denoise.json", "psnr_vs_nfe.png", "samples.png"}
    assert {f.name for f in run.iterdir()} == {"metrics.jsonl", STALE_DIR}
    assert set_aside_evaluations(run, 20) is None                            # nothing left to move
    (run / "eval.json").write_text("{not json")                             # a damaged file moves too
    assert set_aside_evaluations(run, 20) == run / STALE_DIR / "step-20-2"
