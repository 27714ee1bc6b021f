"""``ebt sweep`` refuses before it writes or allocates: unsafe names, oversized models (dry runs included), ``jobs``
that cannot share the machine, and spec errors that name their file and key (issue 22, item 9)."""
from __future__ import annotations

import time

import pytest
import torch

from ebtkit.cli import main
from ebtkit.study import api
from ebtkit.study import sweep as sweep_mod
from ebtkit.study.spec import load_spec, normalise_spec, safe_name
from ebtkit.study.sweep import plan


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("ebt: error:") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("name", ["x/../../../escape-test", "..", ".hidden", "a b", "a\\b", "", "x" * 101, 7])
def test_unsafe_sweep_names_are_refused_naming_the_file(tmp_path, monkeypatch, capsys, name):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "s.toml"
    value = '"' + name.replace("\\", "\\\\") + '"' if isinstance(name, str) else str(name)
    spec.write_text(f'name = {value}\npreset = "tiny"\n[axes.data]\nsteps = [3, 4]\n')
    assert main(["sweep", str(spec), "--dry-run"]) == 2
    err = _one_error_line(capsys)
    assert "s.toml" in err and "name" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml"]          # nothing written, here or above
    assert not (tmp_path.parent / "escape-test").exists()


def test_derived_names_are_made_safe(tmp_path):
    assert safe_name("my sweep (v2)") == "my-sweep-v2"
    assert safe_name("../..") == "sweep" and safe_name("") == "sweep"
    p = tmp_path / "my sweep.toml"                        # the name comes from the file: made safe, not refused
    p.write_text('preset = "tiny"\n[axes.data]\nsteps = [3, 4]\n')
    assert load_spec(p)["name"] == "my-sweep"
    assert normalise_spec({"name": "ok-1.2_x", "axes": {"data": {"steps": [1, 2]}}})["name"] == "ok-1.2_x"


def test_run_names_stay_inside_runs(tmp_path):
    spec = normalise_spec({"preset": "tiny", "models": ["transformer++"],
                           "axes": {"p": {"x": "tokens", "points": [{"data.path": "../../x y/a.txt"},
                                                                    {"data.path": "/etc/b.txt"}]}}})
    names = [r.name for r in plan(spec)]
    assert names == ["tpp-path.._.._x_y_a.txt-s0", "tpp-path_etc_b.txt-s0"]
    for n in names:
        assert (tmp_path / "runs" / n).resolve().parent == (tmp_path / "runs").resolve()


@pytest.mark.parametrize("toml, key", [
    ('set = ["train.lr=nan"]', "set: train.lr"),
    ('set = ["train.lr"]', "set: expects KEY=VALUE"),
    ('set = [1]', "set must be a table"),
    ('seeds = ["a"]', "seeds must be an integer"),
    ('seeds = [1.5]', "seeds must be an integer"),
    ('jobs = 0', "jobs must be >= 1"),
    ('jobs = "2"', "jobs must be an integer"),
    ('models = ["gpt"]', "models: unknown model 'gpt'"),
    ('preset = "huge"', "preset:"),
    ('flops = "yes"', "flops must be true or false"),
    ('eval = { max_windows = 0 }', "eval.max_windows must be >= 1"),
    ('eval = { thinking = "yes" }', "eval.thinking must be true or false"),
    ('set = { "model.nope" = 1 }', "set: "),
])
def test_spec_errors_name_the_file_and_the_key(tmp_path, capsys, toml, key):
    p = tmp_path / "spec.toml"
    p.write_text(f'{toml}\n[axes.data]\nsteps = [3, 4]\n')
    out = tmp_path / "sw"
    assert main(["sweep", str(p), "--out", str(out), "--dry-run"]) == 2
    err = _one_error_line(capsys)
    assert f"sweep spec {p}" in err and key in err, err
    assert not out.exists()


def test_an_axis_point_error_names_the_file_and_the_point(tmp_path, capsys):
    p = tmp_path / "spec.toml"
    p.write_text('preset = "tiny"\n[axes.params]\nd_model = [16, -3]\n')
    assert main(["sweep", str(p), "--dry-run"]) == 2
    err = _one_error_line(capsys)
    assert f"sweep spec {p}" in err and "axis 'params' point {'model.d_model': -3}" in err


def test_set_may_be_a_list_of_key_value_strings(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('preset = "tiny"\nset = ["train.lr=0.002", "train.warmup=3"]\n[axes.data]\nsteps = [3, 4]\n')
    assert load_spec(p)["set"] == {"train.lr": 0.002, "train.warmup": 3}


def test_a_dry_run_of_an_oversized_model_is_refused_before_anything_is_allocated(tmp_path, monkeypatch, capsys):
    built = []
    real_init = torch.nn.Module.__init__

    def spy(self, *a, **k):                               # any model built during planning would pass here
        built.append(type(self).__name__)
        real_init(self, *a, **k)

    monkeypatch.setattr(torch.nn.Module, "__init__", spy)
    out = tmp_path / "sw"
    t = time.time()
    assert main(["sweep", "--preset", "tiny", "--steps", "3,4", "--set", "model.d_model=1000000", "--out", str(out),
                 "--dry-run"]) == 2
    assert time.time() - t < 5
    err = _one_error_line(capsys)
    assert "sweep run ebt-steps3-s0" in err and "model.d_model=1000000" in err and "needs about" in err
    assert built == [] and not out.exists()


def test_planning_counts_parameters_without_building_models(monkeypatch):
    spec = normalise_spec({"preset": "tiny", "axes": {"params": {"d_model": [16, 32]}}})
    runs = plan(spec)
    counted = {r.name: api.non_embedding_params(r.config) for r in runs}
    import ebtkit
    for r in runs:                                        # equal to the built model's own count
        cfg = ebtkit.RunConfig.from_dict(r.config)
        assert counted[r.name] == ebtkit.build_model(cfg.model).non_embedding_params()
    monkeypatch.setattr(torch.nn.Module, "__init__", lambda *a, **k: pytest.fail("a model was built"))
    assert sweep_mod.x_values(runs[0], {})["params"] == counted[runs[0].name]


def test_jobs_whose_largest_runs_cannot_share_the_device_are_refused(tmp_path, monkeypatch, capsys):
    spec = normalise_spec({"preset": "tiny", "models": ["transformer++"], "axes": {"params": {"d_model": [16, 32]}}})
    need = sweep_mod.check_sizes(plan(spec), spec, 1)
    one = max(need.values())
    monkeypatch.setattr(api, "free_memory", lambda device="auto": (int(one * 1.5), "available RAM (test)"))
    assert sweep_mod.check_sizes(plan(spec), spec, 1) == need           # one at a time fits
    out = tmp_path / "sw"
    assert main(["sweep", "--preset", "tiny", "--models", "transformer++", "--width", "16,32", "--jobs", "2",
                 "--out", str(out), "--dry-run"]) == 2
    err = _one_error_line(capsys)
    assert "--jobs 2" in err and "side by side" in err and "lower --jobs" in err
    assert not out.exists()
