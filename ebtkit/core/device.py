"""Devices and numeric precision: what ``--device`` and ``--precision`` mean, in one place.

* :func:`resolve_device` — ``auto | cpu | cuda | cuda:N | mps``. ``auto`` is CUDA when available, else the CPU.
  Under ``torchrun`` (``LOCAL_RANK`` set) ``auto`` and ``cuda`` bind ``cuda:LOCAL_RANK``. Asking for a device that
  is not there is a :class:`DeviceError` (one line, exit status 2 from the CLI) before anything is written.
* :func:`resolve_precision` — ``auto | fp32 | bf16 | fp16``. ``auto`` is bf16 on CUDA devices that support it and
  fp32 elsewhere (bf16 on a CPU without native bf16 is ~20× slower than fp32).
* :func:`autocast` — the context the model runs in: ``torch.autocast`` for bf16/fp16, nothing for fp32.
  Parameters, optimizer state and checkpoints stay fp32 in every precision; only activations are cast.
  The thinking candidate and its update stay fp32 too (see :func:`ebtkit.core.thinking.think`).
"""
from __future__ import annotations

import contextlib
import os

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEVICE_HELP = "auto (CUDA when available, else CPU) | cpu | cuda | cuda:N | mps"


class DeviceError(ValueError):
    """A device or precision that this machine cannot provide (one-line message for the CLI)."""


def _no_cuda() -> str:
    build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
    return f"no CUDA device is available (PyTorch {torch.__version__}, {build}); use --device cpu or auto"


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The torch device for ``spec`` (see the module docstring); raises :class:`DeviceError`."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    local = os.environ.get("LOCAL_RANK")
    if spec == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        spec = "cuda"
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "meta":                       # for shape/placement proofs in tests
        return torch.device("meta")
    if spec == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise DeviceError("--device mps: the MPS backend is not available on this machine")
        return torch.device("mps")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {spec}: {_no_cuda()}")
        if spec == "cuda":
            index = int(local) if local is not None else torch.cuda.current_device()
        else:
            try:
                index = int(spec.split(":", 1)[1])
            except ValueError:
                raise DeviceError(f"--device {spec}: expected cuda:N with an integer N") from None
        n = torch.cuda.device_count()
        if not 0 <= index < n:
            raise DeviceError(f"--device {spec}: this machine has {n} CUDA device(s) (cuda:0..cuda:{n - 1})")
        return torch.device("cuda", index)
    raise DeviceError(f"unknown device {spec!r}; choose from {DEVICE_HELP}")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → bf16 on CUDA with bf16 support, else fp32; other names are checked against the device."""
    if precision not in PRECISIONS:
        raise DeviceError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"--precision bf16: {device} does not support bfloat16; use fp16 or fp32")
    return precision


def autocast(device: torch.device, precision: str):
    """The autocast context of ``precision`` on ``device`` (fp32: a no-op context)."""
    if precision == "fp32" or device.type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host batch → ``device``; on CUDA through pinned memory with ``non_blocking`` (no stream synchronisation)."""
    if batch.device == device:
        return batch
    if device.type == "cuda" and batch.device.type == "cpu":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter (CPU for a model without parameters)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
