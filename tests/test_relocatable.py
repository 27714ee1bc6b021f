"""Relocatable runs (issue 17, item 4): a user's data path is stored absolute with its size and SHA-256, so
``ebt eval``, ``ebt train --resume`` and ``ebt eval --compare`` work from any directory, and moved or changed data
is refused in one line. Runs saved before fingerprints (a relative path, no hash) still load."""
import hashlib
import json
import os

import numpy as np
import pytest

from ebtkit.cli import main
from ebtkit.core import checkpoint as ckpt
from ebtkit.data.fingerprint import Fingerprint, fingerprint, record, same_data
from ebtkit.data.images import ImageDataConfig, image_data_files
from ebtkit.core.config import DataConfig

TINY_TEXT = ["--preset", "tiny", "--steps", "2", "--no-progress", "--no-eval", "--set", "model.context=16",
             "--set", "model.d_model=16", "--set", "model.n_layers=1", "--set", "train.eval_batches=1",
             "--set", "train.batch_size=4", "--set", "data.ood="]


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _data(run) -> dict:
    return ckpt.read_config(run)["config"]["data"]


def _cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


# ------------------------------------------------------------------------------------------ fingerprints
def test_file_fingerprint_is_the_streamed_sha256(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(bytes(range(256)) * 1000)
    want = Fingerprint(256_000, _sha(f))
    assert fingerprint(f) == want
    assert fingerprint(f, block=7) == want                     # many small reads: the same digest
    assert want.describe() == f"256,000 bytes sha256 {want.sha256[:12]}"


def test_folder_fingerprint_covers_the_files_its_loader_reads(tmp_path):
    from PIL import Image
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(d / ("sub" if i == 2 else ".") / f"{i}.png")
    files = image_data_files(d)
    assert [f.name for f in files] == ["0.png", "1.png", "2.png"]
    base = fingerprint(d, files)
    lines = "".join(f"{f.relative_to(d).as_posix()}\t{f.stat().st_size}\t{_sha(f)}\n" for f in files)
    assert base == Fingerprint(sum(f.stat().st_size for f in files), hashlib.sha256(lines.encode()).hexdigest())
    (d / "notes.txt").write_text("not an image")              # a file the loader does not read
    assert fingerprint(d, image_data_files(d)) == base
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(d / "1.png")    # an edited image
    edited = fingerprint(d, image_data_files(d))
    assert edited != base
    os.rename(d / "1.png", d / "9.png")                       # a renamed one
    assert fingerprint(d, image_data_files(d)) not in (base, edited)
    assert record(ImageDataConfig(path=str(d)), image_data_files)["path_sha256"] == \
        fingerprint(d, image_data_files(d)).sha256
    assert record(ImageDataConfig(path=str(d))) == {}          # a folder without its loader's file list: not pinned


def test_same_data_compares_recorded_files_by_content(tmp_path):
    a = DataConfig(path="/x/a.txt", path_size=3, path_sha256="0" * 64)
    assert same_data(a, DataConfig(path="/y/copy.txt", path_size=3, path_sha256="0" * 64))
    assert not same_data(a, DataConfig(path="/x/a.txt", path_size=3, path_sha256="1" * 64))
    os.chdir(tmp_path)
    assert same_data(DataConfig(path="a.txt"), DataConfig(path=str(tmp_path / "a.txt"), path_size=3,
                                                          path_sha256="0" * 64))   # an older run's relative path


# ------------------------------------------------------------------------------------------ text runs
@pytest.fixture()
def text_run(tmp_path, monkeypatch, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "work").mkdir()
    (tmp_path / "else").mkdir()
    good = tmp_path / "data" / "good.txt"
    good.write_text("".join(f"verse {i}: and the lord spake unto moses, saying.\n" for i in range(200)))
    monkeypatch.chdir(tmp_path / "work")
    rc, _, err = _cli(capsys, "train", "--data", "../data/good.txt", "--out", "run", *TINY_TEXT)
    assert rc == 0, err
    return tmp_path, good


def test_a_text_run_stores_its_data_absolute_and_works_from_anywhere(text_run, monkeypatch, capsys):
    root, good = text_run
    run = root / "work" / "run"
    d = _data(run)
    assert d["path"] == str(good) and d["path_size"] == good.stat().st_size and d["path_sha256"] == _sha(good)
    monkeypatch.chdir(root / "else")
    rc, out, err = _cli(capsys, "eval", "../work/run", "--max-windows", "2")
    assert rc == 0, err
    assert "val" in out and json.loads((run / "eval.json").read_text())["data"] == str(good)
    rc, _, err = _cli(capsys, "train", "--resume", "../work/run", "--steps", "3", "--no-progress", "--no-eval")
    assert rc == 0, err
    assert ckpt.read_state(run)["step"] == 3 and _data(run) == d
    monkeypatch.chdir(root / "work")                 # repeating --data as first typed is the same file: no change
    rc, _, err = _cli(capsys, "train", "--resume", "run", "--steps", "4", "--data", "../data/good.txt",
                      "--no-progress", "--no-eval")
    assert rc == 0, err
    rc, _, err = _cli(capsys, "train", "--resume", "run", "--steps", "5", "--data", "../else/other.txt",
                      "--no-progress", "--no-eval")
    assert rc == 2 and "--data ../else/other.txt" in err and err.count("\n") == 1   # re-points only the same data


def test_changed_or_moved_data_is_refused_in_one_line(text_run, monkeypatch, capsys):
    root, good = text_run
    run = root / "work" / "run"
    monkeypatch.chdir(root / "else")
    size, sha = good.stat().st_size, _sha(good)
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    with open(good, "a") as f:
        f.write("and one more line\n")
    for args in (["eval", "../work/run"], ["train", "--resume", "../work/run", "--steps", "4", "--no-progress"]):
        rc, out, err = _cli(capsys, *args)
        assert rc == 2 and err.count("\n") == 1, err
        assert err == (f"ebt: error: data file at {good} changed since the run recorded it: was {size:,} bytes "
                       f"sha256 {sha[:12]}, now {good.stat().st_size:,} bytes sha256 {_sha(good)[:12]}\n")
    good.rename(root / "data" / "moved.txt")
    rc, _, err = _cli(capsys, "eval", "../work/run")
    assert rc == 2 and err.count("\n") == 1
    assert f"data file not found at the stored path {good}; it was moved or deleted" in err
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before       # nothing written


def test_fingerprint_keys_are_derived(text_run, capsys):
    rc, _, err = _cli(capsys, "train", "--data", "../data/good.txt", "--out", "run2",
                      "--set", f"data.path_sha256={'0' * 64}", *TINY_TEXT)
    assert rc == 2 and "data.path_sha256 cannot be set" in err
    assert not os.path.exists("run2")


def test_a_fresh_run_from_a_saved_config_records_the_data_it_finds(text_run, capsys):
    root, good = text_run
    good.write_text(good.read_text() + "a new verse for a new run.\n")
    rc, _, err = _cli(capsys, "train", "--config", "run/checkpoint/config.json", "--out", "run2", "--no-progress",
                      "--no-eval")
    assert rc == 0, err
    assert _data("run2")["path_sha256"] == _sha(good) != _data("run")["path_sha256"]


def test_runs_saved_before_fingerprints_still_load(text_run, monkeypatch, capsys):
    """The rule: a config without data.path_sha256 uses its path as saved (a relative one against the current
    directory, as before) and checks nothing; resuming it records the absolute path and fingerprint."""
    root, good = text_run
    cfg_file = root / "work" / "run" / "checkpoint" / "config.json"
    meta = json.loads(cfg_file.read_text())
    meta["config"]["data"] = {k: v for k, v in meta["config"]["data"].items() if k not in ("path_size", "path_sha256")}
    meta["config"]["data"]["path"] = "../data/good.txt"
    cfg_file.write_text(json.dumps(meta))
    rc, _, err = _cli(capsys, "eval", "run", "--max-windows", "2")          # from the directory it was trained in
    assert rc == 0, err
    (root / "else" / "deeper").mkdir()
    monkeypatch.chdir(root / "else" / "deeper")           # where ../data/good.txt is another path
    rc, _, err = _cli(capsys, "eval", "../../work/run")
    assert rc == 2 and "data file not found: ../data/good.txt" in err
    monkeypatch.chdir(root / "work")
    rc, _, err = _cli(capsys, "train", "--resume", "run", "--steps", "3", "--data", "../data/good.txt",
                      "--no-progress", "--no-eval")
    assert rc == 0, err
    assert _data("run")["path"] == str(good) and _data("run")["path_sha256"] == _sha(good)


# ------------------------------------------------------------------------------------------ other tasks
@pytest.mark.slow
def test_sequence_and_image_runs_are_relocatable(tmp_path, monkeypatch, capsys):
    from PIL import Image
    (tmp_path / "data" / "imgs").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    (tmp_path / "else").mkdir()
    arr = np.cumsum(np.random.default_rng(0).normal(size=(6, 40, 3)), axis=1).astype(np.float32)
    np.save(tmp_path / "data" / "walk.npy", arr)
    rng = np.random.default_rng(1)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(tmp_path / "data" / "imgs" / f"{i:02d}.png")
    monkeypatch.chdir(tmp_path / "work")
    seq = ["train", "--task", "sequence", "--preset", "tiny", "--steps", "2", "--no-progress", "--data", "../data/walk.npy"]
    assert _cli(capsys, *seq, "--out", "ebt")[0] == 0
    assert _cli(capsys, *seq, "--model", "transformer++", "--out", "tpp")[0] == 0
    img = ["train", "--task", "denoise", "--preset", "tiny", "--steps", "2", "--no-progress", "--data", "../data/imgs",
           "--set", "train.batch_size=4"]
    assert _cli(capsys, *img, "--out", "img")[0] == 0
    d = _data("img")
    assert d["path"] == str(tmp_path / "data" / "imgs")
    assert d["path_sha256"] == fingerprint(tmp_path / "data" / "imgs", image_data_files(tmp_path / "data" / "imgs")).sha256
    assert _data("ebt")["path_sha256"] == _sha(tmp_path / "data" / "walk.npy")
    monkeypatch.chdir(tmp_path / "else")
    rc, out, err = _cli(capsys, "eval", "../work/ebt", "--compare", "../work/tpp", "--windows", "2", "--think-steps", "1",
                        "--bon", "2", "--json")
    assert rc == 0, err
    res = json.loads(out)
    assert set(res["models"]) == {"EBT", "Transformer++"} and res["windows"] == 2 and res["test_windows"] >= 2
    rc, out, err = _cli(capsys, "eval", "../work/img", "--images", "2", "--sigmas", "0.1", "--ebt-nfe", "1",
                        "--dit-nfe", "1")
    assert rc == 0, err
    assert out.startswith(f"denoising: EBT on 1 of 1 test images of {tmp_path / 'data' / 'imgs'}")   # 12 images, 10 % test
    assert _cli(capsys, "train", "--resume", "../work/img", "--steps", "3", "--no-progress")[0] == 0
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "data" / "imgs" / "05.png")
    rc, _, err = _cli(capsys, "eval", "../work/img", "--images", "2")
    assert rc == 2 and f"image data at {tmp_path / 'data' / 'imgs'} changed since the run recorded it" in err
    (tmp_path / "data" / "walk.npy").unlink()
    rc, _, err = _cli(capsys, "eval", "../work/ebt", "--compare", "../work/tpp")
    assert rc == 2 and f"sequence file not found at the stored path {tmp_path / 'data' / 'walk.npy'}" in err
