"""Checkpoints: exact round-trip, atomic writes, corrupt files, the save_pretrained/load pair."""
import os
import shutil

import pytest
import torch

import ebtkit
from ebtkit import checkpoint as ckpt
from ebtkit.inference import think_text
from ebtkit.train import train
from ebtkit.config import preset


def test_save_pretrained_load_round_trip(tmp_path):
    m = ebtkit.build("ebt", preset="tiny", vocab_size=256, step_cond="token", n_landscapes=2)
    torch.nn.init.normal_(m.head.weight, std=0.5)            # non-trivial energies (the head starts at zero)
    m.save_pretrained(tmp_path / "m")
    m2 = ebtkit.load(tmp_path / "m")
    assert type(m2) is type(m) and m2.cfg == m.cfg
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
    m.save_pretrained(tmp_path / "t")
    m2 = ebtkit.load(tmp_path / "t")
    x = torch.randint(0, 256, (2, 10))
    torch.testing.assert_close(m2(x), m(x), rtol=0, atol=0)


def test_bpe_tokenizer_travels_with_the_run(tmp_path):
    txt = tmp_path / "t.txt"
    txt.write_text(("the quick brown fox jumps over the lazy dog. " * 40 + "\n") * 30)
    cfg = preset("tiny", **{"data.path": str(txt), "data.tokenizer": "bpe", "data.bpe_vocab": 300,
                            "data.ood": "", "train.steps": 2, "train.eval_every": 2, "train.save_every": 2})
    train(cfg, tmp_path / "run", progress=False, log=lambda *a: None)
    m = ebtkit.load(tmp_path / "run")
    assert m.tokenizer.kind == "bpe" and m.cfg.vocab_size == m.tokenizer.vocab_size <= 300
    assert m.tokenizer.decode(m.tokenizer.encode("the lazy fox")) == "the lazy fox"


def test_interrupted_write_keeps_previous_checkpoint(tmp_path):
    m = ebtkit.build("ebt", preset="tiny", vocab_size=256)
    run = tmp_path / "run"
    m.save_pretrained(run)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    # a kill mid-write leaves a partial checkpoint.tmp: loading ignores it
    (run / ckpt.TMP).mkdir()
    (run / ckpt.TMP / "model.safetensors").write_bytes(b"\x00partial")
    assert ckpt.find_checkpoint(run) == run / ckpt.CKPT
    # a kill between the two renames leaves only checkpoint.old: loading falls back to it
    os.replace(run / ckpt.CKPT, run / ckpt.OLD)
    shutil.rmtree(run / ckpt.TMP)
    m2 = ebtkit.load(run)
    for k, v in m2.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    # the next save cleans up and succeeds
    m.save_pretrained(run)
    assert sorted(p.name for p in run.iterdir()) == [ckpt.CKPT]


@pytest.mark.parametrize("damage", ["weights", "config", "missing", "wrong_shape"])
def test_corrupt_checkpoint_raises_clear_error(tmp_path, damage):
    m = ebtkit.build("ebt", preset="tiny", vocab_size=256)
    run = tmp_path / "run"
    m.save_pretrained(run)
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
    train(cfg, tmp_path / "run", progress=False, log=lambda *a: None)
    state = ckpt.load_optimizer_state(tmp_path / "run")      # weights_only=True inside
    assert "state" in state and "param_groups" in state
    (tmp_path / "run" / "checkpoint" / "optimizer.pt").write_bytes(b"garbage")
    with pytest.raises(ckpt.CheckpointError):
        ckpt.load_optimizer_state(tmp_path / "run")
