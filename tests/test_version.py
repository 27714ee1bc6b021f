"""``ebt --version`` prints ``ebt <version>``: the installed distribution's, which is pyproject's and
``ebtkit.__version__`` (one version, however it is read)."""
import re
from importlib.metadata import version
from pathlib import Path

import pytest

import ebtkit
from ebtkit.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_version_flag_prints_the_one_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    pyproject = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), flags=re.M).group(1)
    assert out == f"ebt {pyproject}\n"
    assert pyproject == version("ebtkit") == ebtkit.__version__


def test_version_falls_back_to_the_source_tree(monkeypatch):
    import importlib.metadata as md

    from ebtkit import cli

    def missing(name):
        raise md.PackageNotFoundError(name)
    monkeypatch.setattr(md, "version", missing)
    assert cli.version() == ebtkit.__version__
