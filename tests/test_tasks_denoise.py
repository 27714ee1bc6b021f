"""The denoising task (tasks/denoise.py) through the one loop, end to end on the bundled mini set: one
training step of each model, resume, evaluation (with inference policies), and the CLI contract (bad input
fails before anything is written)."""
import json
from types import SimpleNamespace

import pytest
import torch

import ebtkit
from ebtkit.cli import main
from ebtkit.commands.train import resolve
from ebtkit.core import checkpoint as ckpt
from ebtkit.core.models.image import build_image_model
from ebtkit.data.images import ImageDataConfig, get_image_batch, load_image_data
from ebtkit.eval.denoise import EvalSpec, evaluate, format_table
from ebtkit.eval.inference import Policy
from ebtkit.tasks.denoise import DenoiseRunConfig, ebt_denoise_loss, preset
from tests.helpers import train

QUICK = {"train.eval_every": 1000, "train.save_every": 1000, "train.log_every": 1, "train.steps": 2,
         "train.batch_size": 4, "data.dataset": "mini"}


@pytest.mark.parametrize("model", ["ebt", "dit"])
def test_one_training_step_on_the_fallback_data(tmp_path, model):
    cfg = preset("tiny", model=model, **{**QUICK, "train.steps": 1})
    res = train(cfg, tmp_path / "run")
    assert res["run"] == str(tmp_path / "run") and res["checkpoint"].endswith("checkpoint")
    assert res["val_psnr"] is not None and res["val_psnr"] > 5
    rec = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rec[0]["step"] == 1 and rec[0]["loss"] > 0
    meta = ckpt.read_config(tmp_path / "run")
    assert meta["task"] == "denoise" and meta["config"]["data"]["dataset"] == "mini"
    bundle = ebtkit.load(tmp_path / "run")
    loaded = bundle.model
    assert bundle.config.model.model == model and bundle.task == "denoise"
    fresh = build_image_model(cfg.model)
    changed = [n for (n, p), q in zip(loaded.named_parameters(), fresh.parameters()) if not torch.equal(p, q)]
    assert changed, "one optimizer step changed no parameter"
    if model == "ebt":
        # the first step of a zero-initialised EBT can only move the energy head (via the second-order term)
        assert any(n.startswith("head.linear") for n in changed)


@pytest.mark.parametrize("system", ["s1", "s2"])
def test_ebt_objective_scores_the_right_steps(system):
    cfg = preset("tiny", system=system, **{"thinking.steps": 2, "thinking.max_steps": None})
    model = build_image_model(cfg.model)
    clean = get_image_batch(load_image_data(ImageDataConfig(dataset="mini")).train, 4, torch.Generator().manual_seed(0))
    noisy = clean + 0.3 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    loss, m = ebt_denoise_loss(model, clean, noisy, cfg, torch.Generator().manual_seed(2), steps=2)
    assert set(m) >= {"loss", "mse_step0", "mse_step1", "mse_step2", "energy_gap", "alpha"}
    # S1 averages every step's loss, S2 scores the last step only
    want = (m["mse_step1"] + m["mse_step2"]) / 2 if system == "s1" else m["mse_step2"]
    torch.testing.assert_close(loss.detach(), want)
    loss.backward()
    assert model.head.linear.weight.grad.abs().sum() > 0


def test_resume_is_bit_for_bit(tmp_path):
    cfg = preset("tiny", **{**QUICK, "train.save_every": 2, "train.steps": 4})
    train(cfg, tmp_path / "a")
    train(cfg.replace(**{"train.steps": 2}), tmp_path / "b")
    train(None, tmp_path / "b", resume=True, steps=4)
    a, b = ebtkit.load(tmp_path / "a").model, ebtkit.load(tmp_path / "b").model
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), n


def test_evaluation_table_shares_noise_and_counts_nfes():
    data = load_image_data(ImageDataConfig(dataset="mini"))
    cfg = preset("tiny")
    ebt, dit = build_image_model(cfg.model), build_image_model(cfg.replace(**{"model.model": "dit"}).model)
    spec = EvalSpec(sigmas=[0.01, 0.02], ebt_nfe=[1, 2], dit_nfe=[1, 2], dit_recurse=[2], recurse_steps=5, images=6)
    res = evaluate({"EBT": ebt, "DiT": dit}, data.test, cfg.noise.diffusion(), spec)
    lv = res["levels"][1]
    assert lv["t"] == 19 and res["images"] == 6
    assert [r["nfe"] for r in lv["models"]["EBT"]] == [1, 2]
    assert [(r["nfe"], r["method"]) for r in lv["models"]["DiT"]] == [(1, "ddim"), (2, "ddim"), (10, "ddim 5x2"),
                                                                      (20, "ddim")]
    # at init the EBT's first step is the identity and the DiT predicts ε = 0: both return the noisy input
    assert lv["models"]["EBT"][0]["mse"] == pytest.approx(lv["noisy"]["mse"])
    dit_one = lv["models"]["DiT"][0]["mse"]
    assert dit_one != pytest.approx(lv["noisy"]["mse"])        # x̂0 = x_t/√ᾱ is rescaled, not the input
    table = format_table(res)
    assert "σ = 0.02" in table and "EBT PSNR" in table and "10 (5x2)" in table


def args(**kw):
    base = dict(task="denoise", model=None, preset="tiny", data=None, steps=None, out=None, resume=None, seed=None,
                batch_size=None, lr=None, system=None, alpha=None, set=[], no_progress=True, dataset="mini",
                loss=None, think_steps=None, train_sigma=None, context=None, tokenizer=None, config=None)
    base.update(kw)
    return SimpleNamespace(**base)


def test_config_from_args_and_bad_input():
    task, cfg = resolve(args(model="ebt", alpha=30.0, loss="smooth_l1", think_steps=2, set=["model.d_model=48"]))
    assert task.name == "denoise" and isinstance(cfg, DenoiseRunConfig)
    assert (cfg.model.alpha, cfg.noise.loss, cfg.thinking.steps, cfg.model.d_model) == (30.0, "smooth_l1", 2, 48)
    assert resolve(args(system="s2"))[1].thinking.system == "s2"
    for bad, msg in ((dict(model="unet"), "unknown model"), (dict(model="dit", system="s2"), "--model ebt only"),
                     (dict(set=["model.nope=1"]), "model.nope"), (dict(train_sigma=1.5), "fractions of the schedule"),
                     (dict(preset="huge"), "unknown preset"), (dict(context=64), "--context"),
                     (dict(set=["model.patch_size=5"]), "divisible")):
        with pytest.raises(ValueError, match=msg):
            resolve(args(**bad))
    with pytest.raises(ValueError):
        DenoiseRunConfig.from_dict({"model": {"bogus": 1}})


@pytest.mark.slow
def test_cli_train_and_eval(tmp_path, capsys):
    e, d = tmp_path / "ebt", tmp_path / "dit"
    common = ["train", "--task", "denoise", "--preset", "tiny", "--dataset", "mini", "--steps", "2", "--no-progress"]
    assert main(common + ["--model", "ebt", "--out", str(e)]) == 0
    assert main(common + ["--model", "dit", "--out", str(d)]) == 0
    capsys.readouterr()
    assert main(["eval", str(e), "--compare", str(d), "--images", "8", "--sigmas", "0.01,0.02",
                 "--ebt-nfe", "1,2,3", "--dit-nfe", "1,3"]) == 0
    out = capsys.readouterr().out
    assert "EBT PSNR" in out and "DiT PSNR" in out and "σ = 0.02" in out
    res = json.loads((e / "eval_denoise.json").read_text())
    assert set(res["params"]) == {"EBT", "DiT"} and len(res["levels"]) == 2
    assert (e / "psnr_vs_nfe.png").stat().st_size > 0 and (e / "samples.png").stat().st_size > 0
    # an existing run directory is refused, and nothing is written on bad input
    assert main(common + ["--model", "ebt", "--out", str(e)]) == 2
    for bad in (["--model", "unet"], ["--data", str(tmp_path / "missing")], ["--model", "dit", "--system", "s2"]):
        out_dir = tmp_path / "bad"
        assert main(common + bad + ["--out", str(out_dir)]) == 2
        assert not out_dir.exists()
    assert "ebt: error:" in capsys.readouterr().err
    # resume extends the run; other options with --resume are refused
    assert main(["train", "--task", "denoise", "--resume", str(e), "--steps", "3", "--no-progress"]) == 0
    assert ckpt.read_state(e)["step"] == 3
    assert main(["train", "--task", "denoise", "--resume", str(e), "--steps", "4", "--lr", "0.1"]) == 2


def test_image_evaluation_takes_the_inference_policies():
    """Best-of-N, accept-lower and early stop reach image evaluation through the same Policy path as text."""
    data = load_image_data(ImageDataConfig(dataset="mini"))
    cfg = preset("tiny")
    torch.manual_seed(0)
    ebt = build_image_model(cfg.model)
    torch.nn.init.normal_(ebt.head.linear.weight, std=0.05)      # non-trivial energies (the head starts at zero)
    spec = EvalSpec(sigmas=[0.05], ebt_nfe=[1, 3], images=6)
    diff = cfg.noise.diffusion()
    plain = evaluate({"EBT": ebt}, data.test, diff, spec)["levels"][0]["models"]["EBT"]
    same = evaluate({"EBT": ebt}, data.test, diff, spec, policy=Policy())["levels"][0]["models"]["EBT"]
    assert [r["mse"] for r in plain] == [r["mse"] for r in same]
    acc = evaluate({"EBT": ebt}, data.test, diff, spec, policy=Policy(accept_lower=True))["levels"][0]["models"]["EBT"]
    assert acc[1]["energy"] <= plain[1]["energy"] + 1e-9            # accepted steps never raise the energy
    bon = evaluate({"EBT": ebt}, data.test, diff, spec, policy=Policy(samples=3, langevin_sigma=0.05))
    assert bon["levels"][0]["models"]["EBT"][1]["nfe_spent"] == 9     # 3 samples × 3 steps per image
    stop = evaluate({"EBT": ebt}, data.test, diff, spec, policy=Policy(tol=1e9))["levels"][0]["models"]["EBT"]
    assert stop[1]["nfe_spent"] < 3                                  # every image stops early
