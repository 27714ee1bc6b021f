"""The ``ebt`` CLI: help, every bad-input case gives a one-line error + exit 2 and writes nothing."""
import subprocess
import sys

import pytest

from ebtkit.cli import COMMANDS, build_parser, main
from ebtkit.core.config import PRESETS, RECIPES, preset
from ebtkit.core.models import MODELS, build_model


def run_cli(args, capsys):
    rc = main(args)
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
    (["--batch-size", "0"], "batch_size"),
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
