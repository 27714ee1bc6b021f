"""Checkpoints (core/checkpoint.py) and the save/load pair (tasks): exact round-trip, atomic writes, corrupt
and non-finite files."""
import os
import shutil

import pytest
import torch

import ebtkit
from ebtkit.core import checkpoint as ckpt
from ebtkit.core.config import preset
from ebtkit.eval.inference import think_text
from tests.helpers import train


def test_save_pretrained_load_round_trip(tmp_path):
    m = ebtkit.build("ebt", preset="tiny", vocab_size=256, step_cond="token", n_landscapes=2)
    torch.nn.init.normal_(m.head.weight, std=0.5)            # non-trivial energies (the head starts at zero)
    ebtkit.save(m, tmp_path / "m")
    b = ebtkit.load(tmp_path / "m")
    m2 = b.model
    assert type(m2) is type(m) and m2.cfg == m.cfg and b.task == "text" and b.tokenizer.kind == "byte"
    x = torch.randint(0, 256, (2, 12))
    y = torch.randn(2, 12, 256)
    torch.testing.assert_close(m2.energy(x, y, 1), m.energy(x, y, 1), rtol=0, atol=0)
    assert m.energy(x, y).abs().min() > 0
    a = think_text(m, x, steps=3, generator=torch.Generator().manual_seed(0))
    b = think_text(m2, x, steps=3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a.candidates, b.candidates, rtol=0, atol=0)
    torch.testing.assert_close(a.energy_trajectory, b.energy_trajectory, rtol=0, atol=0)


def test_transformer_round_trip(tmp_path):
    m = ebtkit.build("transformer++", preset="tiny", vocab_size=256)
    ebtkit.save(m, tmp_path / "t")
    m2 = ebtkit.load(tmp_path / "t").model
    x = torch.randint(0, 256, (2, 10))
    torch.testing.assert_close(m2(x), m(x), rtol=0, atol=0)


def test_bpe_tokenizer_travels_with_the_run(tmp_path):
    txt = tmp_path / "t.txt"
    txt.write_text(("the quick brown fox jumps over the lazy dog. " * 40 + "\n") * 30)
    cfg = preset("tiny", **{"data.path": str(txt), "data.tokenizer": "bpe", "data.bpe_vocab": 300,
                            "data.ood": "", "train.steps": 2, "train.eval_every": 2, "train.save_every": 2})
    train(cfg, tmp_path / "run")
    b = ebtkit.load(tmp_path / "run")
    assert b.tokenizer.kind == "bpe" and b.model.cfg.vocab_size == b.tokenizer.vocab_size <= 300
    assert b.tokenizer.decode(b.tokenizer.encode("the lazy fox")) == "the lazy fox"
    (tmp_path / "run" / "checkpoint" / "tokenizer.json").write_text("{broken")
    with pytest.raises(ckpt.CheckpointError, match="corrupt tokenizer file .*tokenizer.json"):
        ebtkit.load(tmp_path / "run")


def test_interrupted_write_keeps_previous_checkpoint(tmp_path):
    m = ebtkit.build("ebt", preset="tiny", vocab_size=256)
    run = tmp_path / "run"
    ebtkit.save(m, run)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    # a kill mid-write leaves a partial checkpoint.tmp: loading ignores it
    (run / ckpt.TMP).mkdir()
    (run / ckpt.TMP / "model.safetensors").write_bytes(b"\x00partial")
    assert ckpt.find_checkpoint(run) == run / ckpt.CKPT
    # a kill between the two renames leaves only checkpoint.old: loading falls back to it
    os.replace(run / ckpt.CKPT, run / ckpt.OLD)
    shutil.rmtree(run / ckpt.TMP)
    m2 = ebtkit.load(run).model
    for k, v in m2.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    # the next save cleans up and succeeds
    ebtkit.save(m, run)
    assert sorted(p.name for p in run.iterdir()) == [ckpt.CKPT]


@pytest.mark.parametrize("damage", ["weights", "config", "missing", "wrong_shape"])
def test_corrupt_checkpoint_raises_clear_error(tmp_path, damage):
    m = ebtkit.build("ebt", preset="tiny", vocab_size=256)
    run = tmp_path / "run"
    ebtkit.save(m, run)
    c = run / ckpt.CKPT
    if damage == "weights":
        data = (c / "model.safetensors").read_bytes()
        (c / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "config":
        (c / "config.json").write_text("{not json")
    elif damage == "missing":
        (c / "model.safetensors").unlink()
    else:
        m2 = ebtkit.build("ebt", preset="tiny", vocab_size=300)
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in m2.state_dict().items()}, str(c / "model.safetensors"))
    with pytest.raises(ckpt.CheckpointError):
        ebtkit.load(run)


def test_optimizer_state_loads_without_unpickling_code(tmp_path):
    cfg = preset("tiny", **{"train.steps": 2, "train.eval_every": 2, "train.save_every": 2})
    train(cfg, tmp_path / "run")
    state = ckpt.load_optimizer_state(tmp_path / "run")      # weights_only=True inside
    assert "state" in state and "param_groups" in state
    (tmp_path / "run" / "checkpoint" / "optimizer.pt").write_bytes(b"garbage")
    with pytest.raises(ckpt.CheckpointError):
        ckpt.load_optimizer_state(tmp_path / "run")


def test_non_finite_weights_are_never_saved_and_never_loaded(tmp_path):
    m = ebtkit.build("ebt", preset="tiny", vocab_size=256)
    with torch.no_grad():
        m.head.weight[0, 0] = float("nan")
    with pytest.raises(ckpt.NonFiniteError, match="non-finite"):
        ebtkit.save(m, tmp_path / "nan")
    assert not (tmp_path / "nan" / ckpt.CKPT).exists()
    # a checkpoint written elsewhere with a NaN is refused on load (eval/generate say so in one line)
    good = ebtkit.build("ebt", preset="tiny", vocab_size=256)
    ebtkit.save(good, tmp_path / "run")
    from safetensors.torch import save_file
    sd = {k: v.contiguous() for k, v in good.state_dict().items()}
    sd["head.weight"] = torch.full_like(sd["head.weight"], float("inf"))
    save_file(sd, str(tmp_path / "run" / ckpt.CKPT / "model.safetensors"))
    with pytest.raises(ckpt.CheckpointError, match="non-finite weights"):
        ebtkit.load(tmp_path / "run")


def test_load_returns_a_typed_bundle_for_every_task(tmp_path):
    from ebtkit.tasks import TASKS
    from ebtkit.tasks.denoise import preset as denoise_preset
    cfg = denoise_preset("tiny", model="dit", **{"data.dataset": "mini"})
    model = TASKS["denoise"].build_model(cfg)
    ebtkit.save(model, tmp_path / "d", config=cfg)
    b = ebtkit.load(tmp_path / "d")
    assert isinstance(b, ebtkit.Bundle) and b.task == "denoise" and b.tokenizer is None
    assert b.config == cfg and not hasattr(b.model, "run_config") and not hasattr(b.model, "tokenizer")
    assert not ebtkit.is_energy_model(b.model) and b.eval_steps == cfg.thinking.default_eval_steps
