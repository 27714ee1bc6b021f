"""The sequence data layer: Moving Fashion-MNIST, Seattle weather and users' (N, T, F) arrays."""
import csv
import json
import random

import numpy as np
import pytest
import torch

from ebtkit.core.config import ConfigError
from ebtkit.data import sequences as seq
from ebtkit.data.images import ImageData
from ebtkit.data.sequences import (SequenceDataConfig, SequenceDataError, load_sequence_data, moving_objects,
                                   resize_images)
from tests.helpers import tol

W = 12          # a small training window for the tests


def _square(size: int, value: float = 1.0) -> torch.Tensor:
    return torch.full((1, size, size), value)


def _positions(frames: torch.Tensor, canvas: int) -> torch.Tensor:
    """Top-left corner (row, col) of the non-zero pixels of each frame (T, canvas²) → (T, 2)."""
    out = []
    for f in frames.view(-1, canvas, canvas):
        nz = f.nonzero()
        out.append(nz.min(0).values)
    return torch.stack(out)


# ------------------------------------------------------------------------------------- moving objects
def test_moving_objects_is_deterministic_per_seed():
    imgs = torch.rand(5, 6, 6)
    a = moving_objects(imgs, 4, 10, 20, 2, 0.2, torch.Generator().manual_seed(1))
    b = moving_objects(imgs, 4, 10, 20, 2, 0.2, torch.Generator().manual_seed(1))
    c = moving_objects(imgs, 4, 10, 20, 2, 0.2, torch.Generator().manual_seed(2))
    assert a.shape == (4, 10, 400) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_frames_in_unit_range_and_objects_never_clipped():
    img = torch.rand(1, 5, 5, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.1   # every pixel > 0
    canvas = 16
    x = moving_objects(img, 8, 60, canvas, 1, 0.6, torch.Generator().manual_seed(3))
    assert x.min() >= 0 and x.max() <= 1
    # every frame holds the whole object: nothing was cut off at a wall (a frame's sum over its canvas² pixels
    # equals the object's, within float32 rounding of that sum; a clipped pixel is at least 0.1 short)
    torch.testing.assert_close(x.sum(-1), torch.full((8, 60), float(img.sum())),
                               **tol(torch.float32, canvas ** 2, scale=float(img.sum())))
    frames = x.view(8, 60, canvas, canvas)
    touches = (frames[..., 0, :].amax(-1) > 0) | (frames[..., -1, :].amax(-1) > 0) | \
              (frames[..., :, 0].amax(-1) > 0) | (frames[..., :, -1].amax(-1) > 0)
    assert touches.any(), "the test must reach the walls to mean anything"
    # several objects combine by max: still in [0, 1]
    y = moving_objects(torch.rand(4, 5, 5), 8, 20, canvas, 3, 0.3, torch.Generator().manual_seed(4))
    assert y.min() >= 0 and y.max() <= 1


def test_objects_bounce_off_the_walls():
    canvas, s, speed, frames = 16, 4, 0.25, 80
    step = speed * (canvas - s)                                    # 3 px per frame
    x = moving_objects(_square(s), 6, frames, canvas, 1, speed, torch.Generator().manual_seed(5))
    for seq_frames in x:
        pos = _positions(seq_frames, canvas).float()
        assert pos.min() >= 0 and pos.max() <= canvas - s
        d = pos.diff(dim=0)                                        # (T-1, 2)
        # moves about `step` px per frame (less only at a bounce, plus rounding)
        assert d.norm(dim=-1).max() <= step + 1.5
        assert d.norm(dim=-1).median() >= step - 1.5
        # the direction reverses along some axis: a bounce
        flips = [((d[:-1, a] * d[1:, a]) < 0).any() or ((d[:, a] > 0).any() and (d[:, a] < 0).any())
                 for a in range(2)]
        assert any(flips)


def test_full_size_object_stays_put():
    x = moving_objects(_square(8, 0.5), 2, 5, 8, 1, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(x, torch.full((2, 5, 64), 0.5))


def test_resize_is_area_averaging():
    img = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    small = resize_images(img, 14)
    want = img[:, 0].float().div(255).view(3, 14, 2, 14, 2).mean((2, 4))
    torch.testing.assert_close(small, want)
    torch.testing.assert_close(resize_images(img, 28), img[:, 0].float() / 255)


# --------------------------------------------------------------------------------------------- video
@pytest.fixture(scope="module")
def video():
    return load_sequence_data(SequenceDataConfig(images="mini", eval_sequences=16), W)


def test_video_data_shapes_and_description(video):
    assert video.features == 32 * 32 and video.frame_shape == (32, 32)
    assert video.val.shape == video.test.shape == (16, W, 1024)
    assert video.val.dtype == torch.float32
    assert "mini" in video.source and "512 train / 128 test" in video.source and "14 px" in video.source
    assert video.units[0] == "intensity [0,1]" and len(video.feature_names) == 1024
    assert torch.equal(video.to_units(video.val), video.val)           # identity normalisation
    assert video.as_frames(video.val).shape == (16, W, 32, 32)
    json.dumps(video.stats())


def _draw_only_from_generator(data, batch=6):
    torch.manual_seed(123)
    np.random.seed(0)
    random.seed(0)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    a = data.train_batch(batch, torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]
    torch.manual_seed(999)                                             # global state must not matter
    b = data.train_batch(batch, torch.Generator().manual_seed(7))
    c = data.train_batch(batch, torch.Generator().manual_seed(8))
    assert a.shape == (batch, data.window, data.features) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    # resuming from a generator state continues bit-exactly
    g = torch.Generator().manual_seed(9)
    data.train_batch(batch, g)
    state = g.get_state()
    nxt = data.train_batch(batch, g)
    assert torch.equal(nxt, data.train_batch(batch, torch.Generator().set_state(state)))


def test_video_train_batch_deterministic_and_uses_only_its_generator(video):
    _draw_only_from_generator(video)


def test_video_eval_sets_fixed_and_distinct(video):
    again = load_sequence_data(SequenceDataConfig(images="mini", eval_sequences=16), W)
    assert torch.equal(video.val, again.val) and torch.equal(video.test, again.test)
    assert not torch.equal(video.val, video.test)
    other = load_sequence_data(SequenceDataConfig(images="mini", eval_sequences=16, seed=1), W)
    assert not torch.equal(video.val, other.val)


def test_video_eval_uses_only_test_images(monkeypatch):
    # train images are white (255), test images grey (100): any frame's max pixel says where it came from
    fake = ImageData(train=torch.full((7, 1, 28, 28), 255, dtype=torch.uint8),
                     test=torch.full((5, 1, 28, 28), 100, dtype=torch.uint8), source="mini")
    monkeypatch.setattr(seq, "load_image_data", lambda *a, **k: fake)
    d = load_sequence_data(SequenceDataConfig(eval_sequences=32, objects=2), W)
    grey = 100 / 255
    for split in (d.val, d.test):
        assert torch.allclose(split.amax(-1), torch.full(split.shape[:2], grey))
    train = d.train_batch(8, torch.Generator().manual_seed(0))
    assert torch.equal(train.amax(-1), torch.ones(8, W))
    assert "7 train / 5 test" in d.source


# ---------------------------------------------------------------------------------- Seattle weather
def _seattle_raw():
    with open(seq.seattle_weather_csv(), newline="") as fh:
        return np.array([[float(r[k]) for k in seq.SEATTLE_FEATURES] for r in csv.DictReader(fh)])


def test_seattle_weather_shapes_stats_and_units():
    w = 30
    d = load_sequence_data(SequenceDataConfig(source="seattle-weather"), w)
    raw = _seattle_raw()
    assert raw.shape == (1461, 4)
    n_train, n_val, n_test = 1023, 146, 292                         # chronological 70 / 10 / 20 %
    assert d.train.shape == (1, n_train, 4)
    assert d.val.shape == (n_val // w, w, 4) and d.test.shape == (n_test // w, w, 4)
    assert d.feature_names == ["precipitation", "temp_max", "temp_min", "wind"]
    assert d.units == ["mm", "°C", "°C", "m/s"] and d.frame_shape is None
    assert "NOAA" in d.source and "public domain" in d.source and "MIT" in d.source
    # statistics of the training split only: float32 sums over its n_train days (tests.helpers.tol), and outside
    # that tolerance of the whole series' statistics
    stat_tol = tol(np.float32, n_train, depth=2, scale=float(np.abs(raw).max()))     # depth 2: the std's squares
    np.testing.assert_allclose(d.mean.numpy(), raw[:n_train].mean(0), **stat_tol)
    np.testing.assert_allclose(d.std.numpy(), raw[:n_train].std(0), **stat_tol)
    assert not np.allclose(d.mean.numpy(), raw.mean(0), **stat_tol)
    # normalised data (mean 0 up to the rounding of its n_train-term sum), and to_units gives the raw values back
    # up to the rounding of x − mean, ÷ std, × std, + mean (4 float32 operations on values up to max|raw|)
    assert abs(float(d.train.mean())) < tol(torch.float32, n_train, scale=float(d.train.abs().max()))["atol"]
    back = tol(np.float32, 1, depth=4, scale=float(np.abs(raw).max()))
    np.testing.assert_allclose(d.to_units(d.val[0]).numpy(), raw[n_train:n_train + w], **back)
    np.testing.assert_allclose(d.to_units(d.test[1]).numpy(), raw[n_train + n_val + w:n_train + n_val + 2 * w],
                               **back)
    st = d.stats()
    json.dumps(st)
    assert st["mean"] == pytest.approx(d.mean.tolist()) and st["units"] == d.units
    _draw_only_from_generator(d)


def test_seattle_weather_needs_the_package(monkeypatch):
    monkeypatch.setattr(seq.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SequenceDataError, match="pip install vega_datasets"):
        load_sequence_data(SequenceDataConfig(source="seattle-weather"), W)


def test_seattle_weather_dates_must_be_consecutive(monkeypatch, tmp_path):
    f = tmp_path / "seattle-weather.csv"
    f.write_text("date,precipitation,temp_max,temp_min,wind,weather\n"
                 "2012/01/01,0.0,12.8,5.0,4.7,drizzle\n2012/01/02,1.0,10.6,2.8,4.5,rain\n"
                 "2012/01/04,0.8,11.7,7.2,2.3,rain\n")
    monkeypatch.setattr(seq, "seattle_weather_csv", lambda: f)
    with pytest.raises(SequenceDataError, match="not consecutive days"):
        seq.load_seattle_weather()


# ------------------------------------------------------------------------------------- users' arrays
def _encoded(n, t, f=2):
    """x[i, t, 0] = 1000·i + t: every value says which series and step it came from."""
    x = np.zeros((n, t, f), dtype=np.float32)
    x[..., 0] = 1000 * np.arange(n)[:, None] + np.arange(t)[None, :]
    x[..., 1] = np.random.default_rng(0).normal(size=(n, t))
    return x


def _file_data(tmp_path, x, window=5, name="x.npy", **cfg):
    p = tmp_path / name
    if name.endswith(".npz"):
        np.savez(p, data=x)
    else:
        np.save(p, x)
    return load_sequence_data(SequenceDataConfig(path=str(p), horizon=2, **cfg), window)


def test_many_series_split_by_series(tmp_path):
    d = _file_data(tmp_path, _encoded(10, 20), normalize=False)
    assert "10 series × 20 steps × 2 features" in d.source
    assert d.train.shape == (7, 20, 2)                               # 7 train, 1 val, 2 test series
    assert set((d.val[..., 0] // 1000).unique().tolist()) == {7}
    assert set((d.test[..., 0] // 1000).unique().tolist()) == {8, 9}
    assert d.val.shape == (4, 5, 2) and d.test.shape == (8, 5, 2)    # stride 5, non-overlapping
    b = d.train_batch(64, torch.Generator().manual_seed(0))
    assert (b[..., 0] // 1000).max() < 7                              # training windows: train series only
    assert torch.equal(b[:, 1:, 0] - b[:, :-1, 0], torch.ones(64, 4))  # contiguous steps of one series
    _draw_only_from_generator(d)


def test_few_series_split_chronologically(tmp_path):
    d = _file_data(tmp_path, _encoded(2, 100), name="x.npz", normalize=False)
    assert d.train.shape == (2, 70, 2)
    steps = lambda x: x[..., 0] % 1000                               # noqa: E731
    assert steps(d.val).min() >= 70 and steps(d.val).max() < 80
    assert steps(d.test).min() >= 80
    assert d.val.shape == (4, 5, 2) and d.test.shape == (8, 5, 2)
    assert set((d.val[..., 0] // 1000).unique().tolist()) == {0, 1}  # every series is split alike
    b = d.train_batch(64, torch.Generator().manual_seed(0))
    assert steps(b).max() < 70


def test_eval_windows_capped_evenly(tmp_path):
    d = _file_data(tmp_path, _encoded(1, 1000), normalize=False, max_eval_windows=4)
    assert d.test.shape == (4, 5, 2)                                 # 200 test steps = 40 windows → 4
    assert d.test[:, 0, 0].tolist() == [800, 850, 900, 950]


def test_normalisation_train_only_and_constant_feature(tmp_path):
    x = _encoded(4, 30)
    x[..., 1] = 3.0                                                  # a constant feature
    d = _file_data(tmp_path, x)
    train = x[:2].reshape(-1, 2)                                     # 4 series → 2 train / 1 val / 1 test
    # float32 statistics over the train rows, the std floor 1e-8 rounded to float32 once, and the round trip's 4
    # float32 operations (tests.helpers.tol)
    np.testing.assert_allclose(d.mean.numpy(), train.mean(0), **tol(np.float32, len(train), scale=np.abs(train).max()))
    assert d.std[1] == pytest.approx(1e-8, rel=tol(torch.float32, 1)["rtol"])
    assert torch.isfinite(d.val).all() and torch.isfinite(d.train).all()
    np.testing.assert_allclose(d.to_units(d.val).numpy(), x[2, :30].reshape(6, 5, 2),
                               **tol(np.float32, 1, depth=4, scale=float(np.abs(x).max())))


def test_int_arrays_become_float32(tmp_path):
    d = _file_data(tmp_path, np.arange(3 * 20 * 2, dtype=np.int64).reshape(3, 20, 2))
    assert d.train.dtype == d.val.dtype == torch.float32


def test_npz_key_choice(tmp_path):
    x = _encoded(3, 20)
    np.savez(tmp_path / "one.npz", series=x)
    assert load_sequence_data(SequenceDataConfig(path=str(tmp_path / "one.npz"), horizon=2), 5).features == 2
    np.savez(tmp_path / "two.npz", data=x, other=np.zeros(3))
    assert load_sequence_data(SequenceDataConfig(path=str(tmp_path / "two.npz"), horizon=2), 5).features == 2


def _bad(tmp_path, obj, match, name="bad.npy", window=5, **cfg):
    p = tmp_path / name
    if callable(obj):
        obj(p)
    elif name.endswith(".npz"):
        np.savez(p, **obj)
    else:
        np.save(p, obj, allow_pickle=True)
    with pytest.raises(SequenceDataError, match=match) as e:
        load_sequence_data(SequenceDataConfig(path=str(p), horizon=2, **cfg), window)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_bad_files(tmp_path):
    x = _encoded(3, 20)
    with pytest.raises(SequenceDataError, match="no such sequence file"):
        load_sequence_data(SequenceDataConfig(path=str(tmp_path / "missing.npy"), horizon=2), 5)
    _bad(tmp_path, lambda p: p.write_text("1,2,3"), r"unsupported file type '\.csv'.*\.npy or \.npz", "a.csv")
    # pickles are never loaded: object arrays in .npy and .npz, and a plain pickle named .npy
    _bad(tmp_path, np.array([{"a": 1}, None], dtype=object), "pickled")
    _bad(tmp_path, {"data": np.array([[1], "x"], dtype=object)}, "pickled", "obj.npz")
    _bad(tmp_path, lambda p: p.write_bytes(__import__("pickle").dumps(x)), "pickled", "pk.npy")
    _bad(tmp_path, lambda p: p.write_bytes(b"not a numpy file at all"), "cannot read", "junk.npy")
    _bad(tmp_path, lambda p: p.write_bytes(b"PK\x03\x04 truncated"), "cannot read", "junk.npz")


def test_bad_npz_keys(tmp_path):
    msg = _bad(tmp_path, {"a": np.zeros((3, 20, 2)), "b": np.zeros((3, 20, 2))}, "several arrays", "k.npz")
    assert "a, b" in msg
    _bad(tmp_path, {}, "no arrays", "empty.npz")


def test_bad_shapes(tmp_path):
    _bad(tmp_path, np.zeros(10), r"expected \(N, T, F\), got shape \(10,\)")
    msg = _bad(tmp_path, np.zeros((20, 2)), r"expected \(N, T, F\), got shape \(20, 2\)")
    assert r"x[None]" in msg
    _bad(tmp_path, np.zeros((2, 3, 20, 2)), r"got shape \(2, 3, 20, 2\)")
    _bad(tmp_path, np.zeros((3, 20, 0)), "every size >= 1")


@pytest.mark.parametrize("arr", [np.zeros((3, 20, 2), dtype=bool), np.zeros((3, 20, 2), dtype=np.complex64),
                                 np.full((3, 20, 2), "a")], ids=["bool", "complex", "str"])
def test_bad_dtypes(tmp_path, arr):
    _bad(tmp_path, arr, f"dtype {arr.dtype}.*not a real number type")


def test_non_finite_values(tmp_path):
    x = _encoded(3, 20)
    x[1, 4, 1] = np.nan
    x[2, 0, 0] = np.inf
    _bad(tmp_path, x, r"2 NaN/inf value\(s\); the first at index \(1, 4, 1\)")
    big = _encoded(3, 20).astype(np.float64)
    big[0, 3, 0] = 1e300
    _bad(tmp_path, big, r"1 value\(s\) beyond float32.*\(0, 3, 0\)")


def test_series_too_short_or_split_without_a_window(tmp_path):
    msg = _bad(tmp_path, _encoded(3, 8), "T=8 steps, shorter than the window", window=10)
    assert "10" in msg and "model.context" in msg
    # N < 3: 30 steps → 21 / 3 / 6; a window of 5 fits train and test but not val
    msg = _bad(tmp_path, _encoded(1, 30), "the val split", window=5)
    assert "3 of T=30" in msg and "window of 5" in msg
    # N >= 3 with fractions that leave no training series
    _bad(tmp_path, _encoded(3, 20), "no series to train on", val_fraction=0.4, test_fraction=0.5)


# -------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize("bad, match", [
    (dict(source="mnist"), "unknown sequence source"), (dict(images="cifar"), "unknown image set"),
    (dict(source="file"), "needs path"), (dict(path=""), "path"), (dict(horizon=0), "horizon"),
    (dict(canvas=0), "canvas"), (dict(objects=0), "objects"), (dict(object_size=0), "object_size"),
    (dict(object_size=40), r"object_size \(40\) must be <= canvas \(32\)"), (dict(speed=0.0), "speed"),
    (dict(speed=-1.0), "speed"), (dict(eval_sequences=0), "eval_sequences"), (dict(val_fraction=0.0), "val_fraction"),
    (dict(test_fraction=1.0), "test_fraction"), (dict(val_fraction=0.5, test_fraction=0.5), "val_fraction \\+ test"),
    (dict(max_eval_windows=0), "max_eval_windows"), (dict(seed=-1), "seed"), (dict(canvas=3.5), "canvas"),
    (dict(normalize=1), "normalize"), (dict(speed=float("nan")), "speed"),
])
def test_config_validation(bad, match):
    with pytest.raises(SequenceDataError, match=match) as e:
        SequenceDataConfig(**bad)
    assert isinstance(e.value, ConfigError) and "\n" not in str(e.value)


def test_config_path_means_file_and_round_trips():
    cfg = SequenceDataConfig.from_dict({"path": "x.npy", "speed": 1})
    assert cfg.source == "file" and cfg.speed == 1.0 and isinstance(cfg.speed, float)
    assert SequenceDataConfig.from_dict(cfg.to_dict()) == cfg


def test_horizon_must_be_shorter_than_window():
    with pytest.raises(SequenceDataError, match=r"horizon \(10\) must be < the window \(10"):
        load_sequence_data(SequenceDataConfig(), 10)


def test_eval_windows_stride():
    from ebtkit.data.sequences import eval_windows
    x = torch.arange(2 * 10, dtype=torch.float32).view(2, 10, 1)
    assert eval_windows(x, 4, 100)[:, :, 0].tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [10, 11, 12, 13], [14, 15, 16, 17]]
    every = eval_windows(x, 4, 100, stride=1)
    assert every.shape == (14, 4, 1) and every[1, :, 0].tolist() == [1, 2, 3, 4] and every[7, 0, 0] == 10
    assert eval_windows(x, 4, 3, stride=1).shape == (3, 4, 1)
