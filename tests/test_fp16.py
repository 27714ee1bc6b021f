"""fp16 trains (training/optim.py::diverged, the loop's non-finite guard): a step the ``GradScaler`` skips for
overflowed gradients is how fp16 finds its loss scale, not divergence. Every task and model trains a few steps
with ``--precision fp16`` on the CPU (autocast fp16 has CPU kernels for everything the models use in torch 2.13),
ends with finite fp32 weights that moved; a genuinely non-finite loss, or a loss scale that collapses because
every gradient overflows, still stops the run before anything is saved."""
import json

import pytest
import torch
from safetensors.torch import load_file

from ebtkit.core import checkpoint as ckpt
from ebtkit.core.config import preset as text_preset
from ebtkit.tasks.denoise import preset as denoise_preset
from ebtkit.tasks.sequence import preset as sequence_preset
from ebtkit.tasks.text import TextTask
from ebtkit.training.optim import SCALE_FLOOR, diverged
from tests.helpers import train

STEPS = 12
FP16 = {"train.precision": "fp16", "train.steps": STEPS, "train.log_every": 1, "train.eval_every": STEPS,
        "train.save_every": STEPS}


def _config(task, model):
    if task == "text":
        return text_preset("tiny", **{"model.model": model, "model.context": 16, "train.batch_size": 4,
                                      "train.eval_batches": 1, **FP16})
    if task == "denoise":
        return denoise_preset("tiny", model=model, **{"train.batch_size": 4, "data.dataset": "mini", **FP16})
    return sequence_preset("tiny", model=model, **{"train.batch_size": 4, "data.eval_sequences": 4, **FP16})


@pytest.mark.parametrize("task,model", [("text", "ebt"), ("text", "transformer++"), ("denoise", "ebt"),
                                        ("denoise", "dit"), ("sequence", "ebt"), ("sequence", "transformer++")])
def test_fp16_trains_every_task_and_model(tmp_path, task, model):
    """The text EBT is the case that used to abort at step 1: its first steps overflow at the initial scale 2**16;
    the scaler skips them and halves the scale, and the run trains on."""
    out = tmp_path / "run"
    cfg = _config(task, model)
    train(cfg, out)
    assert ckpt.read_state(out)["step"] == STEPS
    weights = load_file(str(out / "checkpoint" / "model.safetensors"))
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    train_recs = [r for r in recs if r["split"] == "train"]
    assert len(train_recs) == STEPS and all(r["loss_scale"] > SCALE_FLOOR for r in train_recs)
    # at least one step was taken (not all skipped): its gradient norm is finite, and the weights moved
    assert any(torch.isfinite(torch.tensor(r["grad_norm"])) for r in train_recs), train_recs
    assert _moved(out, task)
    if (task, model) == ("text", "ebt"):
        assert train_recs[0]["loss_scale"] < 2.0 ** 16, "no step skipped: the test no longer exercises the skip"
        assert not torch.isfinite(torch.tensor(train_recs[0]["grad_norm"]))      # step 1: skipped, an overflow
        assert torch.isfinite(torch.tensor(train_recs[-1]["grad_norm"]))


def _moved(out, task) -> bool:
    """Whether the trained weights differ from the initial ones (the loop builds the model from the seed)."""
    from ebtkit import load
    from ebtkit.tasks import get_task
    bundle = load(out)
    torch.manual_seed(bundle.config.train.seed)
    fresh = get_task(task).build_model(bundle.config)
    return any(not torch.equal(p, q) for p, q in zip(bundle.model.parameters(), fresh.parameters()))


def _patch_loss(monkeypatch, make):
    real, n = TextTask.loss, {"i": 0}

    def loss(self, model, gen):
        n["i"] += 1
        out, metrics = real(self, model, gen)
        return make(n["i"], out, model), metrics

    monkeypatch.setattr(TextTask, "loss", loss)


def test_fp16_non_finite_loss_still_stops_the_run(tmp_path, monkeypatch):
    _patch_loss(monkeypatch, lambda i, out, model: out * float("nan") if i >= 3 else out)
    cfg = _config("text", "transformer++")
    with pytest.raises(ckpt.NonFiniteError, match="NaN/inf at or before step 3; nothing was saved"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_fp16_collapsed_loss_scale_stops_the_run(tmp_path, monkeypatch):
    """A finite loss whose gradient is infinite on every step: every step is skipped and the scale halves from
    2**16 until it passes the floor 2**-16 (33 halvings), which stops the run with a message that says so."""
    def inf_grad(i, out, model):
        p = next(model.parameters())
        return out + torch.sqrt(p.sum() - p.sum().detach())          # value 0, gradient +inf
    _patch_loss(monkeypatch, inf_grad)
    cfg = _config("text", "transformer++").replace(**{"train.steps": 40, "train.eval_every": 40,
                                                       "train.save_every": 40})
    with pytest.raises(ckpt.NonFiniteError, match=r"fp16: the loss scale fell to 7\.63e-06 \(below 2\*\*-16\) at or "
                                                  r"before step 33.*nothing was saved"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_diverged_flags():
    """The flag itself: fp32 flags any non-finite loss or gradient norm; fp16 flags a non-finite scaled loss or a
    collapsed scale, never an overflowed gradient norm alone."""
    one, inf, nan = torch.tensor(1.0), torch.tensor(float("inf")), torch.tensor(float("nan"))
    assert not diverged(one, one) and diverged(one, inf) and diverged(nan, one) and diverged(inf, one)
    scaler = torch.amp.GradScaler("cpu")
    scaler.scale(one)                                       # creates the scale tensor (2**16)
    assert not diverged(one, inf, scaler) and not diverged(one, nan, scaler)
    assert diverged(nan, one, scaler) and diverged(inf, one, scaler)
    assert diverged(torch.tensor(1e35), one, scaler)        # finite loss, scaled by 2**16: inf in fp32
    scaler.update(SCALE_FLOOR / 2)
    assert diverged(one, one, scaler)
    scaler.update(SCALE_FLOOR)
    assert not diverged(one, one, scaler)
