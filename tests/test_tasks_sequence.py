"""The sequence task through the loop and the CLI: objectives, replay, resume, a user's array in one command, the
evaluation (rollouts, pictures), and bad input that fails in one line and leaves nothing behind."""
import json

import numpy as np
import pytest
import torch

import ebtkit
from ebtkit.cli import main
from ebtkit.core import checkpoint as ckpt
from ebtkit.core.models.sequence import build_sequence_model
from ebtkit.data.sequences import load_sequence_data
from ebtkit.eval.sequence import evaluate_sequence
from ebtkit.tasks.sequence import SequenceRunConfig, ebt_sequence_loss, preset
from tests.helpers import train

QUICK = {"train.steps": 2, "train.eval_every": 2, "train.save_every": 2, "train.log_every": 1, "train.batch_size": 4,
         "data.eval_sequences": 4}


def _cfg(system="s1", **kw):
    cfg = preset("tiny", system=system, **{**QUICK, **kw})
    return cfg.replace(**{"model.features": cfg.data.canvas ** 2})


@pytest.mark.parametrize("system", ["s1", "s2"])
def test_ebt_objective_scores_the_right_steps(system):
    cfg = _cfg(system, **{"thinking.max_steps": "none", "thinking.replay_fraction": 0.0, "thinking.replay_size": 0})
    torch.manual_seed(0)
    model = build_sequence_model(cfg.model)
    torch.nn.init.normal_(model.head.weight, std=0.5)
    window = torch.rand(3, cfg.model.context + 1, cfg.model.features)
    loss, m, traj = ebt_sequence_loss(model, window, cfg, torch.Generator().manual_seed(0))
    target = window[:, 1:]
    sl1 = [torch.nn.functional.smooth_l1_loss(c.detach(), target) for c in traj.candidates[1:]]
    want = torch.stack(sl1).mean() if system == "s1" else sl1[-1]
    torch.testing.assert_close(loss.detach(), want)
    torch.testing.assert_close(m["mse_step0"], torch.nn.functional.mse_loss(window[:, :-1], target))  # init = last
    loss.backward()
    assert model.head.weight.grad.abs().sum() > 0


def test_system2_replays_windows_and_resumes_bit_for_bit(tmp_path):
    cfg = preset("tiny", system="s2", **{**QUICK, "train.steps": 4, "train.save_every": 2,
                                        "thinking.replay_size": 8})
    train(cfg, tmp_path / "a")
    rec = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["replayed"] for r in rec if r["split"] == "train"] == [0.0, 2.0, 2.0, 2.0]
    train(cfg.replace(**{"train.steps": 2}), tmp_path / "b")
    assert (tmp_path / "b" / "checkpoint" / "replay.safetensors").exists()
    train(None, tmp_path / "b", resume=True, steps=4)
    a, b = ebtkit.load(tmp_path / "a").model, ebtkit.load(tmp_path / "b").model
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), n


def test_config_checks():
    with pytest.raises(ValueError, match="horizon"):
        preset("tiny", **{"data.horizon": 12})
    with pytest.raises(ValueError, match="model.features cannot be set"):
        preset("tiny", **{"model.features": 3})
    with pytest.raises(ValueError, match="unknown loss"):
        preset("tiny", loss="l3")
    with pytest.raises(ValueError, match="init"):
        preset("tiny", **{"model.init": "mean"})
    assert SequenceRunConfig.from_dict(preset("cpu").to_dict()) == preset("cpu")


def test_evaluation_of_both_models_on_shared_windows(tmp_path):
    cfg = _cfg()
    data = load_sequence_data(cfg.data, cfg.model.context + 1)
    torch.manual_seed(0)
    ebt = build_sequence_model(cfg.model)
    tpp = build_sequence_model(cfg.model.replace(model="transformer++"))
    res = evaluate_sequence({"EBT": (ebt, 2), "Transformer++": (tpp, None)}, data, tmp_path, max_windows=3,
                            think_steps=(1, 3), bon=(2,), log=lambda *a: None)
    assert res["windows"] == 3 and res["horizon"] == cfg.data.horizon and res["video"]
    e = res["models"]["EBT"]
    # an untrained EBT (zero energy head) predicts the last observed frame: exactly the persistence forecast
    assert e["rollout"]["frame_mse"]["per_step"] == pytest.approx(res["persistence"]["rollout"]["frame_mse"]["per_step"])
    assert [s["nfe"] for s in e["thinking"]] == [1, 2, 3, 4]
    assert len(e["rollout"]["frame_mse"]["per_step"]) == cfg.data.horizon
    assert "thinking" not in res["models"]["Transformer++"]
    for f in ("error_vs_horizon.png", "error_vs_nfe.png", "rollout.png", "rollout.gif"):
        assert (tmp_path / f).stat().st_size > 0


@pytest.mark.slow
def test_cli_train_eval_and_a_users_array(tmp_path, capsys):
    e, t = tmp_path / "ebt", tmp_path / "tpp"
    common = ["train", "--task", "sequence", "--preset", "tiny", "--steps", "2", "--no-progress"]
    assert main(common + ["--out", str(e)]) == 0
    assert main(common + ["--model", "transformer++", "--loss", "mse", "--out", str(t)]) == 0
    capsys.readouterr()
    assert main(["eval", str(e), "--compare", str(t), "--windows", "4", "--think-steps", "1,2", "--bon", "2"]) == 0
    out = capsys.readouterr().out
    assert "EBT" in out and "Transformer++" in out and "persistence" in out and "SSIM" in out
    res = json.loads((e / "eval_sequence.json").read_text())
    assert set(res["models"]) == {"EBT", "Transformer++"} and res["compare"] == str(t)
    assert (e / "rollout.gif").stat().st_size > 0
    # a user's (N, T, F) array trains with one command, and evaluates in its own units
    arr = np.cumsum(np.random.default_rng(0).normal(size=(6, 40, 3)), axis=1).astype(np.float32)
    np.save(tmp_path / "walk.npy", arr)
    u = tmp_path / "user"
    assert main(["train", "--task", "sequence", "--preset", "tiny", "--data", str(tmp_path / "walk.npy"),
                 "--steps", "2", "--no-progress", "--out", str(u)]) == 0
    b = ebtkit.load(u)
    assert b.config.model.features == 3 and b.config.data.source == "file"
    assert len(b.extras["stats"]["mean"]) == 3
    assert main(["eval", str(u), "--windows", "4", "--think-steps", "1", "--bon", "2"]) == 0
    res = json.loads((u / "eval_sequence.json").read_text())
    assert not res["video"] and len(res["models"]["EBT"]["rollout"]["per_feature"]["mae"]) == 3
    assert (u / "rollout.png").stat().st_size > 0
    # comparing runs on different data is refused
    assert main(["eval", str(u), "--compare", str(t)]) == 2
    assert ckpt.read_state(e)["step"] == 2


def _bad(tmp_path, kind):
    f = tmp_path / f"{kind}.npy"
    if kind == "2d":
        np.save(f, np.zeros((40, 3), np.float32))
    elif kind == "nan":
        a = np.zeros((4, 40, 3), np.float32)
        a[1, 5, 2] = np.nan
        np.save(f, a)
    elif kind == "short":
        np.save(f, np.zeros((4, 6, 3), np.float32))
    elif kind == "complex":
        np.save(f, np.zeros((4, 40, 3), np.complex64))
    elif kind == "pickle":
        np.save(f, np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
    elif kind == "text":
        f = tmp_path / "data.csv"
        f.write_text("1,2,3\n")
    elif kind == "missing":
        f = tmp_path / "nope.npy"
    return f


@pytest.mark.parametrize("kind,msg", [("2d", "x[None]"), ("nan", "NaN"), ("short", "model.context"),
                                      ("complex", "dtype"), ("pickle", "pickle"), ("text", ".npy"),
                                      ("missing", "no such")])
def test_bad_arrays_fail_in_one_line_and_leave_nothing(tmp_path, capsys, kind, msg):
    out = tmp_path / "run"
    rc = main(["train", "--task", "sequence", "--preset", "tiny", "--data", str(_bad(tmp_path, kind)),
               "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("ebt: error:") and msg in err and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.parametrize("name", ["tiny", "cpu", "mmnist", "weather"])
@pytest.mark.parametrize("system", ["s1", "s2"])
def test_every_preset_builds_with_matched_block_stacks(name, system):
    from ebtkit.tasks.sequence import PRESETS, RECIPES
    assert set(PRESETS) == {"tiny", "cpu", "mmnist", "weather"} and set(RECIPES) == {"s1", "s2"}
    counts = []
    for model in ("ebt", "transformer++"):
        cfg = preset(name, model=model, system=system).replace(**{"model.features": 16})
        with torch.device("meta"):
            counts.append(build_sequence_model(cfg.model).non_embedding_params())
    assert counts[0] == counts[1] > 0
