"""Sequences of vectors ``x_t ∈ R^F`` for next-vector prediction, offline only. Imports no models.

Sources (``SequenceDataConfig.source``):

* ``"moving-fmnist"`` (default) — Moving Fashion-MNIST, the Moving-MNIST protocol of Srivastava, Mansimov &
  Salakhutdinov (2015, "Unsupervised Learning of Video Representations using LSTMs") with Fashion-MNIST objects
  (Xiao, Rasul & Vollgraf, 2017; MIT licence): ``objects`` images resized to ``object_size`` px move in straight
  lines at ``speed · (canvas − object_size)`` px per frame and bounce off the walls of a ``canvas × canvas``
  frame; objects combine by pixelwise max. Training sequences are generated on the fly from the TRAIN images
  (fresh ones every batch); the fixed validation and test sets use the held-out TEST images. Images come from
  :mod:`ebtkit.data.images` (Debian ``dataset-fashion-mnist`` when installed, else the bundled 512/128 mini set).
  Frames are flattened row-major (F = canvas², ``x_t.view(H, W)``), pixels in [0, 1], never normalised.
* ``"seattle-weather"`` — daily weather in Seattle, 2012-01-01 … 2015-12-31 (1461 days): precipitation (mm),
  temp_max (°C), temp_min (°C), wind (m/s). Source: NOAA Climate Data Online daily summaries (public domain, a
  work of the US government), as redistributed by the Vega datasets project in the PyPI package
  ``vega_datasets`` (MIT licence; file ``vega_datasets/_data/seattle-weather.csv``; its text ``weather`` label is
  dropped). One series, split chronologically (train | val | test).
* ``"file"`` (set by ``path``) — a user's ``.npy`` / ``.npz`` array of shape (N, T, F): N series of T steps of F
  features, loaded without ever unpickling. N ≥ 3 series are split by series (train, then val, then test);
  fewer are split chronologically, every series alike.

Arrays (the last two) are z-scored per feature with the TRAIN split's mean/std; training batches are random
windows of the training split; evaluation windows tile the val / test splits without overlap.
"""
from __future__ import annotations

import csv
import datetime
import hashlib
import importlib.util
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.config import Config, ConfigError, check_fingerprint, check_value
from .fingerprint import check as check_recorded
from .images import ImageDataConfig, load_image_data
from .text import DataError

SOURCES = ("moving-fmnist", "seattle-weather", "file")
IMAGE_SETS = ("auto", "mini", "fashion-mnist")
SEATTLE_FEATURES = ("precipitation", "temp_max", "temp_min", "wind")
SEATTLE_UNITS = ("mm", "°C", "°C", "m/s")
SEATTLE_SOURCE = ("Seattle daily weather {first}..{last} ({days} days; precipitation, temp_max, temp_min, wind): "
                  "NOAA daily summaries (public domain) via the Vega datasets (vega_datasets, MIT licence)")
PIXEL_UNIT = "intensity [0,1]"
CONTEXT_KEY = "model.context"          # the config key that sets the window (window = context + 1)


class SequenceDataError(ConfigError, DataError):
    """Unusable sequence data or config (one-line message for the CLI)."""


# ----------------------------------------------------------------------------------------------- config
@dataclass
class SequenceDataConfig(Config):
    source: str = "moving-fmnist"   # "moving-fmnist" | "seattle-weather" | "file"
    path: str | None = None          # .npy / .npz holding (N, T, F); setting it means source "file"
    horizon: int = 10                # evaluation: steps predicted autoregressively after window-horizon observed steps
    # Moving Fashion-MNIST (Srivastava et al., 2015 protocol)
    canvas: int = 32                 # frame side in pixels
    objects: int = 1                 # objects per sequence
    object_size: int = 14            # object side in pixels (28×28 images resized with area averaging; 28 = as is)
    speed: float = 0.1               # pixels per frame as a fraction of the free range (canvas - object_size)
    images: str = "auto"             # "auto" (Fashion-MNIST when installed, else "mini") | "mini" | "fashion-mnist"
    eval_sequences: int = 256        # size of the fixed validation and test sets (video)
    # arrays and time series
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    normalize: bool = True           # z-score features with the training split's mean/std (ignored for video)
    max_eval_windows: int = 512      # cap on evaluation windows per split (arrays)
    eval_stride: int | None = None   # step between evaluation windows (arrays); None = the window (no overlap),
                                     # 1 = every window (the sliding-window protocol of forecasting benchmarks)
    seed: int = 0                    # seed of the fixed evaluation sets (video)
    path_size: int | None = None     # recorded by the run: the array file's size in bytes and SHA-256
    path_sha256: str | None = None   # (ebtkit.data.fingerprint; checked on eval and resume)

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in self.__dataclass_fields__.values():
            try:
                setattr(self, f.name, check_value(f.name, getattr(self, f.name), hints[f.name]))
            except ConfigError as e:
                raise SequenceDataError(str(e)) from None
        if self.source not in SOURCES:
            raise SequenceDataError(f"unknown sequence source {self.source!r}; choose from {', '.join(SOURCES)}")
        if self.images not in IMAGE_SETS:
            raise SequenceDataError(f"unknown image set {self.images!r}; choose from {', '.join(IMAGE_SETS)}")
        if self.path is not None:
            if not self.path.strip():
                raise SequenceDataError("path must name a .npy / .npz file, got an empty string")
            self.source = "file"
        elif self.source == "file":
            raise SequenceDataError("source 'file' needs path (a .npy / .npz file holding (N, T, F))")
        if self.eval_stride is not None and self.eval_stride < 1:
            raise SequenceDataError(f"eval_stride must be >= 1, got {self.eval_stride}")
        for n in ("horizon", "canvas", "objects", "object_size", "eval_sequences", "max_eval_windows"):
            if getattr(self, n) < 1:
                raise SequenceDataError(f"{n} must be >= 1, got {getattr(self, n)}")
        if self.seed < 0:
            raise SequenceDataError(f"seed must be >= 0, got {self.seed}")
        try:
            check_fingerprint(self.path_size, self.path_sha256)
        except ValueError as e:
            raise SequenceDataError(str(e)) from None
        if self.object_size > self.canvas:
            raise SequenceDataError(f"object_size ({self.object_size}) must be <= canvas ({self.canvas})")
        if not self.speed > 0:
            raise SequenceDataError(f"speed must be > 0, got {self.speed}")
        for n in ("val_fraction", "test_fraction"):
            if not 0 < getattr(self, n) < 1:
                raise SequenceDataError(f"{n} must be in (0, 1), got {getattr(self, n)}")
        if self.val_fraction + self.test_fraction >= 1:
            raise SequenceDataError(f"val_fraction + test_fraction must be < 1 (something must be left to train on), "
                                    f"got {self.val_fraction} + {self.test_fraction}")


# -------------------------------------------------------------------------------------------- data object
@dataclass
class SequenceData:
    """Train sampler and fixed evaluation windows, all in model units (normalised arrays; pixels in [0, 1])."""

    source: str                                 # human-readable description (data, licence, image set)
    features: int                               # F
    feature_names: list[str]
    units: list[str]                            # per feature, in data units
    frame_shape: tuple[int, int] | None         # (H, W) for video, None otherwise
    window: int                                 # training window (model context + 1)
    horizon: int                                # evaluation: the last ``horizon`` steps are predicted
    val: torch.Tensor                           # (Nv, window, F) float32
    test: torch.Tensor                          # (Nt, window, F) float32
    mean: torch.Tensor                          # (F,) normalisation (0 for video / normalize=False)
    std: torch.Tensor                           # (F,) normalisation (1 for video / normalize=False)
    train: torch.Tensor | None = None           # arrays: (N_train, T_train, F) normalised training split
    train_images: torch.Tensor | None = None    # video: (M, s, s) float [0, 1] resized TRAIN images
    test_images: torch.Tensor | None = None     # video: (M', s, s) float [0, 1] resized TEST images
    video: dict = field(default_factory=dict)   # video: canvas, objects, speed

    def train_batch(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """(B, window, F) float32 training windows; every random number comes from ``generator``."""
        if batch_size < 1:
            raise SequenceDataError(f"batch_size must be >= 1, got {batch_size}")
        if self.train_images is not None:
            return moving_objects(self.train_images, batch_size, self.window, generator=generator, **self.video)
        return random_windows(self.train, batch_size, self.window, generator)

    def to_units(self, x: torch.Tensor) -> torch.Tensor:
        """Model units → data units: ``x · std + mean`` over the last (feature) axis."""
        return x * self.std.to(x.device, x.dtype) + self.mean.to(x.device, x.dtype)

    def as_frames(self, x: torch.Tensor) -> torch.Tensor:
        """(…, F) → (…, H, W) for video."""
        if self.frame_shape is None:
            raise SequenceDataError(f"{self.source} is not video: it has no frames")
        return x.reshape(*x.shape[:-1], *self.frame_shape)

    def stats(self) -> dict:
        """JSON-able record of the normalisation and what the features are."""
        return {"source": self.source, "feature_names": list(self.feature_names), "units": list(self.units),
                "mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std],
                "frame_shape": list(self.frame_shape) if self.frame_shape else None,
                "window": self.window, "horizon": self.horizon}


# ----------------------------------------------------------------------------------- (a) moving objects
def _fold(u: torch.Tensor, extent: float) -> torch.Tensor:
    """Straight-line coordinate ``u`` reflected into [0, extent] (walls at 0 and extent): a triangle wave,
    i.e. exactly what reflecting the position and flipping the velocity at every wall hit gives."""
    if extent == 0:
        return torch.zeros_like(u)
    return extent - (torch.remainder(u, 2 * extent) - extent).abs()


def moving_objects(images: torch.Tensor, n: int, frames: int, canvas: int, objects: int, speed: float,
                   generator: torch.Generator | None) -> torch.Tensor:
    """``n`` bouncing-object videos: (n, frames, canvas·canvas) float32 in [0, 1], frames flattened row-major.

    Per sequence: ``objects`` images drawn uniformly (with replacement) from ``images`` (M, s, s), each starting
    at a uniform position in [0, canvas − s]² with a direction θ ~ U[0, 2π), moving ``speed · (canvas − s)`` px
    per frame and bouncing off the walls; pasted at the rounded position; objects combined by pixelwise max.
    All randomness comes from ``generator`` (image indices, then start positions, then directions).
    """
    if images.dim() != 3 or images.shape[1] != images.shape[2]:
        raise SequenceDataError(f"moving_objects needs square images (M, s, s), got shape {tuple(images.shape)}")
    m, s = images.shape[0], images.shape[1]
    if m < 1 or s > canvas:
        raise SequenceDataError(f"moving_objects needs >= 1 image no larger than the canvas ({canvas}), "
                                f"got {m} of {s} px")
    extent = canvas - s
    idx = torch.randint(0, m, (n, objects), generator=generator)
    start = torch.rand(n, objects, 2, generator=generator, dtype=torch.float64) * extent
    theta = torch.rand(n, objects, generator=generator, dtype=torch.float64) * (2 * math.pi)
    step = speed * extent
    velocity = torch.stack([torch.sin(theta), torch.cos(theta)], -1) * step          # (n, o, 2): (dy, dx)
    t = torch.arange(frames, dtype=torch.float64)
    pos = _fold(start[:, :, None, :] + t[None, None, :, None] * velocity[:, :, None, :], extent)  # (n, o, T, 2)
    pos = pos.round().long().clamp_(0, extent)
    ar = torch.arange(s)
    rows = (pos[..., 0, None] + ar)[..., :, None]                                   # (n, o, T, s, 1)
    cols = (pos[..., 1, None] + ar)[..., None, :]                                   # (n, o, T, 1, s)
    layers = torch.zeros(n, objects, frames, canvas, canvas, dtype=torch.float32)
    patches = images.to(torch.float32)[idx][:, :, None].expand(n, objects, frames, s, s)
    layers[torch.arange(n)[:, None, None, None, None], torch.arange(objects)[None, :, None, None, None],
           t.long()[None, None, :, None, None], rows, cols] = patches
    return layers.amax(1).reshape(n, frames, canvas * canvas)


def resize_images(images: torch.Tensor, size: int, chunk: int = 8192) -> torch.Tensor:
    """uint8 (M, [1,] H, W) → float32 (M, size, size) in [0, 1], area averaging (unchanged at the same size)."""
    if images.dim() == 4:
        images = images[:, 0]
    out = []
    for i in range(0, len(images), chunk):
        x = images[i:i + chunk].to(torch.float32).div_(255.0)
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x[:, None], size=(size, size), mode="area")[:, 0]
        out.append(x.clamp_(0.0, 1.0))
    return torch.cat(out) if out else torch.zeros(0, size, size)


def _split_seed(seed: int, split: str) -> int:
    """A stable 63-bit seed per (cfg.seed, split): val and test never share a stream."""
    return int.from_bytes(hashlib.sha256(f"ebtkit.sequences:{seed}:{split}".encode()).digest()[:8], "big") >> 1


def video_sequence_data(cfg: SequenceDataConfig, window: int, train_images: torch.Tensor,
                        test_images: torch.Tensor, images_name: str = "custom images") -> SequenceData:
    """Moving-object video data from already resized float images (M, s, s) in [0, 1]: training batches from
    ``train_images``, the fixed val/test sets (``eval_sequences`` each, seeds derived from ``cfg.seed``) from
    ``test_images`` only."""
    _check_window(cfg, window)
    c = cfg.canvas
    video = dict(canvas=c, objects=cfg.objects, speed=cfg.speed)
    evals = {}
    for split in ("val", "test"):
        g = torch.Generator().manual_seed(_split_seed(cfg.seed, split))
        evals[split] = moving_objects(test_images, cfg.eval_sequences, window, generator=g, **video)
    size = train_images.shape[-1]
    plural = "s" if cfg.objects != 1 else ""
    source = (f"moving Fashion-MNIST {c}×{c}, {cfg.objects} object{plural} of {size} px, speed {cfg.speed:g}, "
              f"{images_name} ({len(train_images)} train / {len(test_images)} test)")
    return SequenceData(source=source, features=c * c, feature_names=[f"pixel[{r},{q}]" for r in range(c)
                                                                        for q in range(c)],
                        units=[PIXEL_UNIT] * (c * c), frame_shape=(c, c), window=window, horizon=cfg.horizon,
                        val=evals["val"], test=evals["test"], mean=torch.zeros(c * c), std=torch.ones(c * c),
                        train_images=train_images, test_images=test_images, video=video)


def _load_video(cfg: SequenceDataConfig, window: int) -> SequenceData:
    try:
        imgs = load_image_data(ImageDataConfig(dataset=cfg.images), image_size=28, channels=1)
    except DataError as e:
        raise SequenceDataError(str(e)) from None
    name = {"mini": "bundled mini images", "fashion-mnist": "Fashion-MNIST images"}.get(imgs.source, imgs.source)
    return video_sequence_data(cfg, window, resize_images(imgs.train, cfg.object_size),
                               resize_images(imgs.test, cfg.object_size), name)


# ------------------------------------------------------------------------------ (b) Seattle weather
def seattle_weather_csv() -> Path:
    """Path of ``seattle-weather.csv`` inside the installed ``vega_datasets`` (found without importing it)."""
    spec = importlib.util.find_spec("vega_datasets")
    locs = list(spec.submodule_search_locations or []) if spec else []
    files = [Path(d) / "_data" / "seattle-weather.csv" for d in locs]
    files = [f for f in files if f.is_file()]
    if not files:
        raise SequenceDataError("the source 'seattle-weather' needs the PyPI package vega_datasets "
                                "(pip install vega_datasets)")
    return files[0]


def load_seattle_weather() -> tuple[np.ndarray, list[datetime.date]]:
    """(1, days, 4) float32 [precipitation mm, temp_max °C, temp_min °C, wind m/s] and the dates (checked to be
    consecutive days)."""
    path = seattle_weather_csv()
    rows, dates = [], []
    with open(path, newline="", encoding="utf-8") as fh:
        for i, rec in enumerate(csv.DictReader(fh)):
            try:
                dates.append(datetime.datetime.strptime(rec["date"].strip(), "%Y/%m/%d").date())
                rows.append([float(rec[k]) for k in SEATTLE_FEATURES])
            except (KeyError, TypeError, ValueError) as e:
                raise SequenceDataError(f"{path}: unreadable row {i + 2}: {e}") from None
    if not rows:
        raise SequenceDataError(f"{path} holds no rows")
    for a, b in zip(dates, dates[1:]):
        if b - a != datetime.timedelta(days=1):
            raise SequenceDataError(f"{path}: dates are not consecutive days ({b} follows {a})")
    return np.asarray(rows, dtype=np.float32)[None], dates


# --------------------------------------------------------------------------------- (c) users' arrays
def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def load_array_file(path: str | Path) -> np.ndarray:
    """A (N, T, F) float32 array from ``.npy`` / ``.npz`` (never unpickled), checked for shape, dtype and
    finiteness."""
    p = Path(path).expanduser()
    if p.suffix.lower() not in (".npy", ".npz"):
        raise SequenceDataError(f"{p}: unsupported file type {p.suffix or '(no suffix)'!r}; "
                                "expected a .npy or .npz file holding (N, T, F)")
    if not p.is_file():
        raise SequenceDataError(f"no such sequence file: {p}")
    pickled = (f"{p} holds pickled Python objects (an object array), which are never loaded; "
               "save a numeric array instead (np.save(path, x.astype(np.float32)))")
    with open(p, "rb") as fh:
        head = fh.read(6)
    if not (head.startswith(b"\x93NUMPY") or head.startswith(b"PK")):
        if head.startswith(b"\x80"):       # a pickle protocol header: never unpickled
            raise SequenceDataError(pickled)
        raise SequenceDataError(f"cannot read {p}: not a NumPy .npy / .npz file (bad magic bytes)")
    try:
        loaded = np.load(p, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                keys = list(loaded.files)
                if "data" in keys:
                    key = "data"
                elif len(keys) == 1:
                    key = keys[0]
                elif not keys:
                    raise SequenceDataError(f"{p} holds no arrays")
                else:
                    raise SequenceDataError(f"{p} holds several arrays ({', '.join(keys)}); name the one to use "
                                            "'data' or save only one")
                arr = loaded[key]
            where = f"{p}[{key!r}]"
        else:
            arr, where = loaded, str(p)
    except SequenceDataError:
        raise
    except ValueError as e:
        if "pickle" in str(e).lower() or "object arrays" in str(e).lower():
            raise SequenceDataError(pickled) from None
        raise SequenceDataError(f"cannot read {p}: {_one_line(e)}") from None
    except Exception as e:  # noqa: BLE001 — corrupt zip / truncated file / bad header: one line for the CLI
        raise SequenceDataError(f"cannot read {p}: {type(e).__name__}: {_one_line(e)}") from None
    if arr.dtype.kind == "O":
        raise SequenceDataError(pickled)
    if arr.dtype.kind not in "iuf":
        raise SequenceDataError(f"{where} has dtype {arr.dtype}, not a real number type "
                                "(int or float; bool, complex, string and object arrays are refused)")
    if arr.ndim != 3:
        hint = "; for one series of shape (T, F) add a leading axis: x[None]" if arr.ndim == 2 else ""
        raise SequenceDataError(f"{where}: expected (N, T, F), got shape {arr.shape}{hint}")
    if min(arr.shape) < 1:
        raise SequenceDataError(f"{where}: expected (N, T, F) with every size >= 1, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise SequenceDataError(f"{where} holds {int(bad.sum())} NaN/inf value(s); the first at index {first}")
    with np.errstate(over="ignore"):
        out = arr.astype(np.float32)
    bad = ~np.isfinite(out)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise SequenceDataError(f"{where} holds {int(bad.sum())} value(s) beyond float32's range; "
                                f"the first at index {first}")
    return np.ascontiguousarray(out)


def _count(total: int, fraction: float) -> int:
    return int(math.floor(total * fraction + 0.5))


def split_series(data: np.ndarray, val_fraction: float, test_fraction: float, window: int,
                 name: str = "data") -> dict[str, np.ndarray]:
    """train / val / test arrays of ``data`` (N, T, F): by series (in order) when N ≥ 3, else every series
    chronologically. Every split must hold at least one full ``window``."""
    n, t, _ = data.shape
    if t < window:
        raise SequenceDataError(f"{name}: series have T={t} steps, shorter than the window ({window} = "
                                f"{CONTEXT_KEY} + 1); lower {CONTEXT_KEY} to at most {t - 1}")
    if n >= 3:
        n_val, n_test = max(1, _count(n, val_fraction)), max(1, _count(n, test_fraction))
        n_train = n - n_val - n_test
        if n_train < 1:
            raise SequenceDataError(f"{name}: {n} series split by series leave no series to train on "
                                    f"(val {n_val}, test {n_test}); lower val_fraction / test_fraction")
        return {"train": data[:n_train], "val": data[n_train:n_train + n_val], "test": data[n_train + n_val:]}
    t_val, t_test = _count(t, val_fraction), _count(t, test_fraction)
    t_train = t - t_val - t_test
    sizes = {"train": t_train, "val": t_val, "test": t_test}
    for split, size in sizes.items():
        if size < window:
            raise SequenceDataError(
                f"{name}: the {split} split ({size} of T={t} steps, split chronologically since N={n} < 3) holds "
                f"no full window of {window} steps; lower {CONTEXT_KEY} or raise "
                f"{'val_fraction / test_fraction' if split == 'train' else split + '_fraction'}")
    return {"train": data[:, :t_train], "val": data[:, t_train:t_train + t_val], "test": data[:, t_train + t_val:]}


def eval_windows(split: torch.Tensor, window: int, max_windows: int, stride: int | None = None) -> torch.Tensor:
    """Windows of every series in ``split`` (N, T, F) every ``stride`` steps (default ``window``: no overlap), in
    order; at most ``max_windows``, evenly spaced over the full list when capped."""
    n, t, f = split.shape
    stride = stride or window
    wins = split.unfold(1, window, stride).permute(0, 1, 3, 2).reshape(-1, window, f)
    if len(wins) > max_windows:
        wins = wins[[i * len(wins) // max_windows for i in range(max_windows)]]
    return wins.contiguous()


def random_windows(series: torch.Tensor, batch_size: int, window: int, generator: torch.Generator) -> torch.Tensor:
    """``batch_size`` windows at uniform random (series, start) of ``series`` (N, T, F)."""
    n, t, _ = series.shape
    which = torch.randint(0, n, (batch_size,), generator=generator)
    start = torch.randint(0, t - window + 1, (batch_size,), generator=generator)
    return series[which[:, None], start[:, None] + torch.arange(window)]


def array_sequence_data(cfg: SequenceDataConfig, window: int, data: np.ndarray, source: str,
                        feature_names: list[str] | None = None, units: list[str] | None = None,
                        name: str = "data") -> SequenceData:
    """Sequence data from a checked (N, T, F) float array: split, normalised with the train split's statistics."""
    _check_window(cfg, window)
    f = data.shape[-1]
    splits = split_series(data, cfg.val_fraction, cfg.test_fraction, window, name=name)
    if cfg.normalize:
        train64 = splits["train"].reshape(-1, f).astype(np.float64)
        mean = train64.mean(0)
        std = np.maximum(train64.std(0), 1e-8)
    else:
        mean, std = np.zeros(f), np.ones(f)
    mean_t, std_t = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)

    def norm(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((x.astype(np.float64) - mean) / std).astype(np.float32))

    return SequenceData(source=source, features=f, feature_names=list(feature_names or [f"x{i}" for i in range(f)]),
                        units=list(units or [""] * f), frame_shape=None, window=window, horizon=cfg.horizon,
                        val=eval_windows(norm(splits["val"]), window, cfg.max_eval_windows, cfg.eval_stride),
                        test=eval_windows(norm(splits["test"]), window, cfg.max_eval_windows, cfg.eval_stride),
                        mean=mean_t, std=std_t, train=norm(splits["train"]))


# ------------------------------------------------------------------------------------------ entry point
def _check_window(cfg: SequenceDataConfig, window: int) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise SequenceDataError(f"window must be an int >= 2 ({CONTEXT_KEY} + 1), got {window!r}")
    if cfg.horizon >= window:
        raise SequenceDataError(f"horizon ({cfg.horizon}) must be < the window ({window} = {CONTEXT_KEY} + 1): "
                                f"lower horizon or raise {CONTEXT_KEY}")


def load_sequence_data(cfg: SequenceDataConfig, window: int) -> SequenceData:
    """The data ``cfg`` names, cut into ``window``-step windows (``window`` = model context + 1).

    Raises:
        SequenceDataError: a bad window/horizon, missing or unusable data (one line).
    """
    _check_window(cfg, window)
    if cfg.source == "moving-fmnist":
        return _load_video(cfg, window)
    if cfg.source == "seattle-weather":
        data, dates = load_seattle_weather()
        source = SEATTLE_SOURCE.format(first=dates[0], last=dates[-1], days=len(dates))
        return array_sequence_data(cfg, window, data, source, list(SEATTLE_FEATURES), list(SEATTLE_UNITS),
                                   name="seattle-weather")
    check_recorded(cfg, what="sequence file")        # a run's file: refused if moved or changed since it was recorded
    path = Path(cfg.path).expanduser()
    data = load_array_file(path)
    n, t, f = data.shape
    return array_sequence_data(cfg, window, data, f"{path}: {n} series × {t} steps × {f} features", name=str(path))
