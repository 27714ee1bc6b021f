"""Image datasets for denoising, offline only. Imports no models.

Sources (``ImageDataConfig.dataset``):

* ``"fashion-mnist"`` — Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017; MIT licence), 60 000 train / 10 000 test
  28×28 grey images, from the Debian package ``dataset-fashion-mnist`` (IDX files under
  ``/usr/share/datasets/fashion-mnist/``).
* ``"mini"`` — 512 train / 128 test Fashion-MNIST images shipped in the package
  (``fashion_mnist_mini.npz``, 281 KB, licence in ``fashion_mnist_mini.LICENSE``): always available, for tests
  and smoke runs.
* ``"auto"`` (default) — ``fashion-mnist`` when installed, else ``mini``; the resolved name is what a run
  records, so a checkpoint always names the data it was trained on.
* ``path`` — an IDX image file (``*-idx3-ubyte[.gz]``), a folder holding ``train-images-idx3-ubyte[.gz]``
  (and optionally ``t10k-images-idx3-ubyte[.gz]``), or a folder of image files (PNG/JPEG/BMP/GIF/TIFF/WebP;
  converted to grey or RGB, centre-cropped to a square and resized). Without a separate test file, the last
  ``test_fraction`` of the images (in sorted-name order) is the test split.

Images are kept as uint8 ``(N, C, H, W)`` tensors and normalised to [−1, 1] per batch.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.config import Config, check_fingerprint
from .fingerprint import check as check_recorded
from .text import DataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
MINI_PATH = Path(__file__).with_name("fashion_mnist_mini.npz")
DATASETS = ("auto", "fashion-mnist", "mini")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_IDX_DTYPES = {0x08: np.uint8}


@dataclass
class ImageDataConfig(Config):
    dataset: str = "auto"           # "auto" | "fashion-mnist" | "mini" (ignored when ``path`` is given)
    path: str | None = None         # IDX file, IDX folder or folder of images (absolute once a run has started)
    test_fraction: float = 0.1      # test split of a single source without its own test file
    path_size: int | None = None    # recorded by the run: bytes of the file (a folder: of the files read) ...
    path_sha256: str | None = None  # ... and their SHA-256 (ebtkit.data.fingerprint; checked on eval and resume)

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown image dataset {self.dataset!r}; choose from {', '.join(DATASETS)}")
        if not 0 < self.test_fraction < 0.5:
            raise ValueError(f"test_fraction must be in (0, 0.5), got {self.test_fraction}")
        check_fingerprint(self.path_size, self.path_sha256)


@dataclass
class ImageData:
    train: torch.Tensor            # (N, C, H, W) uint8
    test: torch.Tensor             # (M, C, H, W) uint8
    source: str                    # resolved dataset name or path

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[1:])


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float32 [−1, 1]."""
    return x.float().div(127.5).sub(1.0)


def to_uint8_range(x: torch.Tensor) -> torch.Tensor:
    """[−1, 1] → [0, 255] floats, clamped (the scale on which PSNR/MSE are reported)."""
    return ((x.float() + 1.0) * 127.5).clamp(0.0, 255.0)


# -------------------------------------------------------------------------------------------- IDX files
def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format; gzip allowed) of unsigned bytes with ≥ 2 dimensions."""
    path = Path(path)
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    dtype, ndim = raw[2], raw[3]
    if dtype not in _IDX_DTYPES:
        raise DataError(f"{path}: IDX element type 0x{dtype:02x} is not supported (unsigned bytes only)")
    if ndim < 2 or len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path} holds {ndim}-dimensional data, not images (is it a label file?)")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(dims)):
        raise DataError(f"{path}: expected {int(np.prod(dims))} bytes of data for shape {dims}, found {len(body)}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims).copy()


def _idx_images(path: Path) -> torch.Tensor:
    arr = read_idx(path)
    if arr.ndim == 3:                      # N,H,W → N,1,H,W
        arr = arr[:, None]
    elif arr.ndim == 4 and arr.shape[-1] in (1, 3):   # N,H,W,C → N,C,H,W
        arr = arr.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"{path}: IDX shape {arr.shape} is not a stack of images")
    return torch.from_numpy(np.ascontiguousarray(arr))


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


# ------------------------------------------------------------------------------------- image folders
def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def image_data_files(path: str | os.PathLike) -> list[Path]:
    """The files :func:`load_image_data` reads for ``path``: the file itself, an IDX folder's train (and t10k)
    images, or an image folder's images (what a run's fingerprint covers)."""
    p = Path(path).expanduser()
    if p.is_file():
        return [p]
    train = _find(p, "train-images-idx3-ubyte")
    if train:
        return [f for f in (train, _find(p, "t10k-images-idx3-ubyte")) if f is not None]
    return _image_files(p)


def _load_folder(folder: Path, size: int, channels: int) -> torch.Tensor:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover — Pillow comes with matplotlib
        raise DataError("reading a folder of images needs Pillow (pip install pillow)") from None
    files = _image_files(folder)
    if not files:
        raise DataError(f"{folder} holds no IDX files and no images ({', '.join(IMAGE_SUFFIXES)})")
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(files), size, size, channels), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im = im.convert(mode)
                w, h = im.size
                s = min(w, h)
                im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
                if s != size:
                    im = im.resize((size, size), Image.BICUBIC)
                out[i] = np.asarray(im, dtype=np.uint8).reshape(size, size, channels)
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read image {f}: {e}") from None
    return torch.from_numpy(out.transpose(0, 3, 1, 2).copy())


def _split(images: torch.Tensor, test_fraction: float, source: str) -> tuple[torch.Tensor, torch.Tensor]:
    n_test = max(1, int(round(len(images) * test_fraction)))
    if len(images) - n_test < 1:
        raise DataError(f"{source} has {len(images)} image(s); need at least 2 for a train/test split")
    return images[:-n_test], images[-n_test:]


# ------------------------------------------------------------------------------------------ entry point
def resolve_dataset(cfg: ImageDataConfig) -> str:
    """The concrete built-in dataset ``cfg`` refers to (``auto`` → ``fashion-mnist`` if installed, else ``mini``)."""
    if cfg.dataset != "auto":
        return cfg.dataset
    return "fashion-mnist" if _find(FASHION_MNIST_DIR, "train-images-idx3-ubyte") else "mini"


def load_image_data(cfg: ImageDataConfig, image_size: int = 28, channels: int = 1) -> ImageData:
    """Load train/test images of shape (channels, image_size, image_size) as uint8 tensors.

    Raises:
        DataError: missing or unreadable data, or images of another shape than the model expects.
    """
    if cfg.path is not None:
        check_recorded(cfg, files=image_data_files, what="image data")   # a run's data: moved or changed is refused
        p = Path(cfg.path).expanduser()
        if not p.exists():
            raise DataError(f"no such image data: {p}")
        if p.is_file():
            train, test = _split(_idx_images(p), cfg.test_fraction, str(p))
        elif _find(p, "train-images-idx3-ubyte"):
            train = _idx_images(_find(p, "train-images-idx3-ubyte"))
            t10k = _find(p, "t10k-images-idx3-ubyte")
            train, test = (train, _idx_images(t10k)) if t10k else _split(train, cfg.test_fraction, str(p))
        else:
            train, test = _split(_load_folder(p, image_size, channels), cfg.test_fraction, str(p))
        source = str(p)
    else:
        name = resolve_dataset(cfg)
        if name == "fashion-mnist":
            tr = _find(FASHION_MNIST_DIR, "train-images-idx3-ubyte")
            te = _find(FASHION_MNIST_DIR, "t10k-images-idx3-ubyte")
            if tr is None or te is None:
                raise DataError(f"Fashion-MNIST is not installed in {FASHION_MNIST_DIR} "
                                "(apt-get install dataset-fashion-mnist), or use dataset 'mini'")
            train, test = _idx_images(tr), _idx_images(te)
        else:
            with np.load(MINI_PATH) as z:
                train, test = torch.from_numpy(z["train"][:, None].copy()), torch.from_numpy(z["test"][:, None].copy())
        source = name
    want = (channels, image_size, image_size)
    for split, x in (("train", train), ("test", test)):
        if tuple(x.shape[1:]) != want:
            raise DataError(f"{source}: {split} images have shape {tuple(x.shape[1:])}, the model expects {want} "
                            "(set model.image_size / model.channels to match)")
    return ImageData(train=train, test=test, source=source)


def get_image_batch(images: torch.Tensor, batch_size: int, generator: torch.Generator | None) -> torch.Tensor:
    """A random batch (with replacement) of uint8 images → float32 (B, C, H, W) in [−1, 1]."""
    idx = torch.randint(0, len(images), (batch_size,), generator=generator)
    return to_float(images[idx])
