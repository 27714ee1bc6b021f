"""The ``ebt`` CLI: help, every bad-input case gives a one-line error + exit 2 and writes nothing."""
import subprocess
import sys

import pytest

from ebtkit.cli import COMMANDS, build_parser, main
from ebtkit.core import checkpoint as ckpt
from ebtkit.core.config import PRESETS, RECIPES, preset
from ebtkit.core.models import MODELS, build_model


def run_cli(args, capsys):
    try:
        rc = main(args)
    except SystemExit as e:            # argparse refuses bad flag values (one line, exit 2) before running
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_every_command_has_help(capsys):
    for cmd in COMMANDS:
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        assert cmd in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(c in out for c in ("train", "eval", "generate"))


def test_train_help_mentions_documented_flags(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in ("--model", "--preset", "--data", "--steps", "--out", "--resume", "--system"):
        assert flag in out


@pytest.mark.slow
def test_console_script_entry_point():
    r = subprocess.run([sys.executable, "-m", "ebtkit.cli", "presets"], capture_output=True, text=True)
    assert r.returncode == 0 and "tiny" in r.stdout


def _bad_file(tmp_path, kind):
    f = tmp_path / f"{kind}.txt"
    if kind == "empty":
        f.write_text("")
    elif kind == "binary":
        f.write_bytes(b"\x7fELF\x00\x01\x02" * 100)
    elif kind == "latin1":
        f.write_bytes("caf\xe9 na\xefve r\xe9sum\xe9 ".encode("latin-1") * 200)
    elif kind == "short":
        f.write_text("Too short.\n")
    elif kind == "missing":
        return tmp_path / "nope.txt"
    return f


@pytest.mark.parametrize("kind,msg", [("empty", "empty"), ("binary", "binary"), ("latin1", "UTF-8"),
                                      ("short", "context"), ("missing", "not found")])
def test_bad_data_files(tmp_path, capsys, kind, msg):
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", "--preset", "tiny", "--data", str(_bad_file(tmp_path, kind)), "--out", str(out)], capsys)
    assert rc == 2
    assert err.startswith("ebt: error:") and msg in err and err.count("\n") == 1
    assert "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("args,msg", [
    (["--preset", "nope"], "unknown preset"),
    (["--model", "gpt5"], "unknown model"),
    (["--system", "s3"], "unknown system"),
    (["--steps", "0"], "steps"),
    (["--steps", "-5"], "steps"),
    (["--lr", "-1"], "lr"),
    (["--batch-size", "0"], "argument --batch-size: must be an integer >= 1, got '0'"),
    (["--alpha", "1e30"], "argument --alpha: must be a finite number in (0, 1e+06], got '1e30'"),
    (["--alpha", "0"], "alpha"),
    (["--context", "0"], "context"),
    (["--set", "model.nope=3"], "unknown config key"),
    (["--set", "noequals"], "KEY=VALUE"),
])
def test_bad_options(tmp_path, capsys, args, msg):
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", "--preset", "tiny", "--out", str(out), *args], capsys)
    assert rc == 2, err
    assert err.startswith("ebt: error:") and msg in err and err.count("\n") == 1
    assert not out.exists()


def test_argparse_type_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--steps", "ten"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("ebt: error:") and err.count("\n") == 1


@pytest.mark.parametrize("cmd", [["eval"], ["generate", "--prompt", "hi"]])
def test_missing_and_corrupt_checkpoints(tmp_path, capsys, cmd):
    rc, _, err = run_cli([cmd[0], str(tmp_path / "nope"), *cmd[1:]], capsys)
    assert rc == 2 and "no such run" in err and err.count("\n") == 1
    bad = tmp_path / "bad" / "checkpoint"
    bad.mkdir(parents=True)
    (bad / "config.json").write_text("{broken")
    (bad / "model.safetensors").write_bytes(b"junk")
    rc, _, err = run_cli([cmd[0], str(tmp_path / "bad"), *cmd[1:]], capsys)
    assert rc == 2 and "corrupt" in err and err.count("\n") == 1


def test_debug_shows_traceback(tmp_path):
    with pytest.raises(Exception):
        main(["--debug", "eval", str(tmp_path / "nope")])


@pytest.mark.slow
def test_train_eval_generate_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    rc, out, err = run_cli(["train", "--preset", "tiny", "--steps", "4", "--out", str(run), "--no-progress"], capsys)
    assert rc == 0, err
    assert "checkpoint:" in out and "val ppl" in out
    assert (run / "checkpoint" / "model.safetensors").exists() and (run / "metrics.jsonl").exists()
    assert (run / "eval.json").exists()
    rc, out, err = run_cli(["eval", str(run), "--steps-list", "1,2", "--max-windows", "4"], capsys)
    assert rc == 0, err
    assert "val ppl" in out
    rc, out, err = run_cli(["generate", str(run), "--prompt", "In the", "--max-new-tokens", "5"], capsys)
    assert rc == 0 and out.startswith("In the")
    for bad in (["--max-new-tokens", "-1"], ["--temperature", "-1"], ["--top-p", "0"], ["--prompt", ""]):
        args = ["generate", str(run), "--prompt", "x", *bad] if bad[0] != "--prompt" else ["generate", str(run), *bad]
        rc, _, err = run_cli(args, capsys)
        assert rc == 2 and err.count("\n") == 1, (bad, err)
    rc, out, err = run_cli(["train", "--resume", str(run), "--steps", "6", "--no-progress", "--no-eval"], capsys)
    assert rc == 0, err


def test_registries_agree_with_cli_and_fail_loudly():
    assert set(MODELS) == {"ebt", "transformer++"}
    with pytest.raises(ValueError, match="choose from"):
        preset("nope")
    build_parser()   # every registered command module imports and builds its parser


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("system", list(RECIPES))
def test_every_preset_builds(name, system):
    """Every preset resolves and builds (paper sizes on the meta device: no memory)."""
    import torch
    for model in MODELS:
        cfg = preset(name, system=system, **{"model.model": model})
        with torch.device("meta"):
            m = build_model(cfg.model)
        assert m.non_embedding_params() > 0


def test_paper_size_table_non_embedding_params():
    """Non-embedding parameters ≈ 7·L·D² (Table D.1: xxs 6.18M, xs 12.4M, small 48.8M, medium 176M)."""
    import torch
    expect = {"xxs": 6.18e6, "xs": 12.4e6, "small": 48.8e6, "medium": 176e6, "large": 396e6, "xl": 708e6}
    for name, n in expect.items():
        with torch.device("meta"):
            m = build_model(preset(name).model)
        assert abs(m.non_embedding_params() - n) / n < 0.035, (name, m.non_embedding_params())


# ------------------------------------------------------------------------------ runs you can trust (issue 9)
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--preset", "tiny", "--steps", "2", "--set", "train.eval_batches=1", "--out", str(run),
                 "--no-progress", "--no-eval"]) == 0
    return run


def test_resume_refuses_changed_flags_and_keeps_the_rest(tiny_run, capsys):
    capsys.readouterr()
    for bad, key in ((["--lr", "0.5"], "train.lr"), (["--model", "transformer++"], "model.model"),
                     (["--preset", "cpu"], "preset"), (["--set", "model.d_model=64"], "model.d_model"),
                     (["--system", "s2"], "thinking.system")):
        assert main(["train", "--resume", str(tiny_run), "--steps", "3", *bad]) == 2, bad
        err = capsys.readouterr().err
        assert err.startswith("ebt: error: --resume continues") and key in err and err.count("\n") == 1, err
    assert ckpt.read_state(tiny_run)["step"] == 2
    assert main(["train", "--resume", str(tiny_run), "--steps", "3", "--preset", "tiny", "--model", "ebt",
                 "--no-progress", "--no-eval"]) == 0


def test_diverging_run_fails_in_one_line_and_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "tiny", "--steps", "4", "--set", "model.alpha=1e9", "--out", str(out),
                 "--no-progress"]) == 2          # (--alpha has a bound at parse time; the config takes any α > 0)
    err = capsys.readouterr().err
    assert err.startswith("ebt: error:") and err.count("\n") == 1 and "alpha" in err and "range" not in err
    assert not out.exists()


def test_eval_and_generate_refuse_non_finite_weights(tmp_path, capsys):
    import torch
    from safetensors.torch import load_file, save_file
    import ebtkit
    run = tmp_path / "run"
    ebtkit.save(ebtkit.build("ebt", preset="tiny", vocab_size=256), run)
    f = run / "checkpoint" / "model.safetensors"
    sd = load_file(str(f))
    sd["head.weight"] = torch.full_like(sd["head.weight"], float("nan"))
    save_file(sd, str(f))
    for cmd in (["eval", str(run)], ["generate", str(run), "--prompt", "In"], ["think", str(run), "--text", "In"]):
        assert main(cmd) == 2, cmd
        err = capsys.readouterr().err
        assert "non-finite weights" in err and str(f) in err and err.count("\n") == 1, err


def test_text_commands_on_a_denoising_run_say_so(tmp_path, capsys):
    run = tmp_path / "img"
    assert main(["train", "--task", "denoise", "--preset", "tiny", "--dataset", "mini", "--steps", "1",
                 "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["generate", str(run), "--prompt", "hi"]) == 2
    assert "needs a text run" in capsys.readouterr().err
    assert main(["think", str(run), "--text", "hi"]) == 2
    assert "needs a text EBT run" in capsys.readouterr().err


def test_generate_streams_prints_its_seed_and_repeats_with_it(tiny_run, capsys):
    args = ["generate", str(tiny_run), "--prompt", "In the", "--max-new-tokens", "12", "--temperature", "1.0"]
    assert main(args) == 0
    out = capsys.readouterr()
    seed = int(out.err.split("seed: ")[1].split()[0])
    assert out.out.startswith("In the")
    assert main(args + ["--seed", str(seed)]) == 0
    again = capsys.readouterr()
    assert again.out == out.out and f"seed: {seed}" in again.err
    out.out.encode("utf-8")                                  # always valid UTF-8 (U+FFFD for invalid bytes)


def test_internal_errors_are_labelled_as_such(capsys, monkeypatch):
    import ebtkit.commands.presets as presets
    monkeypatch.setattr(presets, "run", lambda args: {}["boom"])      # main() builds its parser after this
    assert main(["presets"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ebt: error: internal error (KeyError") and err.count("\n") == 1
