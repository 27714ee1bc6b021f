"""The one config system (core/config.py, commands/train.py): typed from_dict / replace / override, --set
parsing against the field's type, derived keys refused, presets for every task, --config files."""
import json

import pytest

from ebtkit.cli import main
from ebtkit.core import checkpoint as ckpt
from ebtkit.core.config import ConfigError, ModelConfig, RunConfig, preset
from ebtkit.tasks import TASKS
from ebtkit.tasks import preset as task_preset


def test_from_dict_checks_types_and_names_the_key():
    with pytest.raises(ConfigError, match=r"train\.steps: expected int, got 3\.5"):
        RunConfig.from_dict({"train": {"steps": 3.5}})
    with pytest.raises(ConfigError, match=r"model\.n_layers: expected int, got 'two'"):
        RunConfig.from_dict({"model": {"n_layers": "two"}})
    with pytest.raises(ConfigError, match=r"model\.alpha_learnable: expected bool"):
        RunConfig.from_dict({"model": {"alpha_learnable": 1}})
    with pytest.raises(ConfigError, match="unknown config key 'model.nope'"):
        RunConfig.from_dict({"model": {"nope": 1}})
    with pytest.raises(ConfigError, match=r"^train: lr must be > 0"):
        RunConfig.from_dict({"train": {"lr": -1.0}})
    assert RunConfig.from_dict({"train": {"lr": 1}}).train.lr == 1.0       # int widens to float
    assert RunConfig.from_dict({"model": {"d_model": 64}}).model.update == "logits"   # legacy rule kept


def test_override_parses_strings_by_field_type():
    cfg = preset("tiny").override({"model.n_layers": "3", "train.lr": "1e-3", "model.alpha_learnable": "false",
                                   "thinking.max_steps": "4", "model.alpha": "none", "data.path": "x.txt"})
    assert (cfg.model.n_layers, cfg.train.lr, cfg.model.alpha_learnable, cfg.thinking.max_steps) == (3, 1e-3, False, 4)
    assert cfg.model.alpha is None and cfg.data.path == "x.txt"
    for key, text, msg in (("model.n_layers", "two", "model.n_layers: expected int"),
                           ("train.steps", "1e3", "train.steps: expected int, got '1e3'"),
                           ("train.lr", "fast", "train.lr: expected float"),
                           ("train.lr", "nan", "train.lr: must be a finite number"),
                           ("model.alpha_learnable", "maybe", "model.alpha_learnable: expected bool"),
                           ("model.nope", "1", "unknown config key 'model.nope'")):
        with pytest.raises(ConfigError, match=msg):
            preset("tiny").override({key: text})
    sig = task_preset("denoise", "tiny").override({"noise.eval_sigmas": "0.1,0.3"})
    assert sig.noise.eval_sigmas == [0.1, 0.3]


def test_keys_the_run_derives_are_refused():
    with pytest.raises(ConfigError, match="model.vocab_size cannot be set: it is set by the tokenizer"):
        preset("tiny", **{"model.vocab_size": 10})
    # the library may still set it (a model built for a vocabulary)
    assert preset("tiny").replace(**{"model.vocab_size": 10}).model.vocab_size == 10
    assert ModelConfig().replace(vocab_size=10).vocab_size == 10


def test_every_task_has_presets_and_recipes_through_one_function():
    for name, task in TASKS.items():
        for p in task.presets:
            for system in task.recipes:
                cfg = task_preset(name, p, system)
                assert isinstance(cfg, task.config_class) and cfg.preset == p and cfg.thinking.system == system
                assert type(cfg).from_dict(cfg.to_dict()) == cfg                  # JSON round trip
    with pytest.raises(ConfigError, match="unknown task"):
        task_preset("video", "tiny")
    with pytest.raises(ConfigError, match="unknown preset"):
        task_preset("denoise", "xl")


@pytest.mark.parametrize("args,msg", [
    (["--set", "model.n_layers=two"], "model.n_layers: expected int, got 'two'"),
    (["--set", "train.steps=1e3"], "train.steps: expected int, got '1e3'"),
    (["--set", "model.vocab_size=10"], "model.vocab_size cannot be set"),
    (["--set", "thinking.system=s3"], "unknown system"),
    (["--context", "16", "--task", "denoise"], "--context does not apply to --task denoise"),
])
def test_cli_config_errors_are_one_line_and_write_nothing(tmp_path, capsys, args, msg):
    out = tmp_path / "run"
    assert main(["train", "--preset", "tiny", "--out", str(out), "--no-progress", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ebt: error:") and msg in err and err.count("\n") == 1, err
    assert not out.exists()


def test_config_file_holds_a_whole_run_and_the_resolved_config_is_saved(tmp_path, capsys):
    toml = tmp_path / "run.toml"
    toml.write_text('preset = "tiny"\n\n[model]\nd_model = 16\nn_layers = 1\ncontext = 16\n\n'
                    '[train]\nsteps = 2\neval_every = 2\nsave_every = 2\neval_batches = 1\n\n[data]\nood = ""\n')
    run = tmp_path / "a"
    assert main(["train", "--config", str(toml), "--set", "train.seed=5", "--out", str(run), "--no-progress",
                 "--no-eval"]) == 0
    saved = ckpt.read_config(run)
    cfg = RunConfig.from_dict(saved["config"])
    assert (cfg.preset, cfg.model.d_model, cfg.model.n_layers, cfg.train.steps, cfg.train.seed) == ("tiny", 16, 1, 2, 5)
    # the saved file reproduces the run exactly (JSON), derived keys included
    again = tmp_path / "b"
    assert main(["train", "--config", str(run / "checkpoint" / "config.json"), "--out", str(again),
                 "--no-progress", "--no-eval"]) == 0
    assert ckpt.read_config(again)["config"] == saved["config"]
    js = tmp_path / "run.json"
    js.write_text(json.dumps({"task": "text", "preset": "tiny", "model": {"vocab_size": 10}}))
    capsys.readouterr()
    assert main(["train", "--config", str(js), "--out", str(tmp_path / "c")]) == 2
    assert "model.vocab_size cannot be set" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "TOML" in err and err.count("\n") == 1
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()
