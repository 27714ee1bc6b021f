"""A run moved together with its data is pointed at the data's new place with ``--data`` (issue 22 item 10):
``ebt eval RUN --data PATH`` and ``ebt train --resume RUN --data PATH`` accept the data only when it has the size
and SHA-256 the run recorded; another file is a one-line error naming both."""
from __future__ import annotations

import json
import random
import shutil

import pytest

from ebtkit.cli import main
from ebtkit.core import checkpoint as ckpt


def _text(seed: int) -> str:
    rng = random.Random(seed)
    words = ["in", "the", "beginning", "was", "word", "and", "light", "darkness", "water", "earth"]
    return "\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(400)) + "\n"


def _data_path(run) -> str:
    return ckpt.read_config(run)["config"]["data"]["path"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("moved")
    data = root / "a" / "corpus.txt"
    data.parent.mkdir()
    data.write_text(_text(0))
    assert main(["train", "--preset", "tiny", "--steps", "2", "--data", str(data), "--out", str(root / "run"),
                 "--no-progress", "--no-eval"]) == 0
    return root


def test_eval_of_a_moved_run_names_data_and_takes_the_new_place(trained, capsys, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained / "run", run)
    old = trained / "a" / "corpus.txt"
    new = tmp_path / "b" / "corpus.txt"
    new.parent.mkdir()
    shutil.copy(old, new)
    # the run points at a place where the data no longer is
    cfg = ckpt.read_config(run)
    cfg["config"]["data"]["path"] = str(tmp_path / "gone" / "corpus.txt")
    (run / "checkpoint" / "config.json").write_text(json.dumps(cfg))
    capsys.readouterr()
    assert main(["eval", str(run), "--max-windows", "2", "--steps-list", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ebt: error:") and "--data" in err, err
    assert "not found at the stored path" in err

    # another file, same name: refused in one line naming both places and both hashes; nothing written
    other = tmp_path / "c" / "corpus.txt"
    other.parent.mkdir()
    other.write_text(_text(1))
    before = (run / "checkpoint" / "config.json").read_bytes()
    assert main(["eval", str(run), "--data", str(other), "--max-windows", "2", "--steps-list", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"ebt: error: --data {other} is not the data"), err
    assert str(other) in err and str(tmp_path / "gone" / "corpus.txt") in err
    assert cfg["config"]["data"]["path_sha256"][:12] in err
    assert (run / "checkpoint" / "config.json").read_bytes() == before
    assert not (run / "eval.json").exists()

    # the same bytes at the new place: evaluated, and the run now points there (a later eval needs no --data)
    assert main(["eval", str(run), "--data", str(new), "--max-windows", "2", "--steps-list", "1"]) == 0
    out = capsys.readouterr()
    assert f"now reads its data from {new}" in out.err
    assert _data_path(run) == str(new)
    assert (run / "eval.json").exists()
    assert main(["eval", str(run), "--max-windows", "2", "--steps-list", "1"]) == 0


def test_resume_of_a_moved_run_takes_data(trained, capsys, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained / "run", run)
    new = tmp_path / "moved.txt"
    shutil.copy(trained / "a" / "corpus.txt", new)
    cfg = ckpt.read_config(run)
    cfg["config"]["data"]["path"] = str(tmp_path / "gone.txt")
    (run / "checkpoint" / "config.json").write_text(json.dumps(cfg))
    capsys.readouterr()
    args = ["train", "--resume", str(run), "--steps", "3", "--no-progress", "--no-eval"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--data" in err, err
    other = tmp_path / "other.txt"
    other.write_text(_text(2))
    assert main([*args, "--data", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--data {other} is not the data" in err, err
    assert ckpt.read_state(run)["step"] == 2
    assert main([*args, "--data", str(new)]) == 0
    assert ckpt.read_state(run)["step"] == 3
    assert _data_path(run) == str(new)      # the new checkpoint records the new place, with the same fingerprint
    assert ckpt.read_config(run)["config"]["data"]["path_sha256"] == cfg["config"]["data"]["path_sha256"]


def test_data_on_a_built_in_corpus_run_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--preset", "tiny", "--steps", "1", "--out", str(run), "--no-progress", "--no-eval"]) == 0
    f = tmp_path / "x.txt"
    f.write_text("hello\n")
    capsys.readouterr()
    assert main(["eval", str(run), "--data", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "built-in data" in err, err
