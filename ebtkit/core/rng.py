"""Random sources of a training step, on the device that uses them.

Every training step draws all its randomness from one generator, re-seeded from ``(seed, step, rank)``
(:func:`step_generator`): that is what makes resume exact and gives each rank its own batches. The generator
lives on the model's device, so initial candidates, Langevin noise, α jitter, diffusion noise and replay draws
are made where they are used (a B×S×V candidate drawn on the host and copied every step would dominate a GPU
step).

Some draws decide *host-side* things: which corpus windows form the batch (the corpus lives in host memory or a
memory map), how many thinking steps a System 2 batch takes (a Python ``int`` that shapes the graph). Reading
those from a CUDA generator would be a device→host synchronisation per step. :func:`host_generator` gives the
host stream of a step generator:

* on the CPU it is **the generator itself**, so CPU runs draw exactly the numbers they always drew (bit-identical
  to earlier releases);
* on an accelerator it is a CPU generator seeded from the device generator's seed (``initial_seed()`` is held on
  the host: no synchronisation), created once per step generator and reused, so successive host draws of one step
  continue one stream.

Determinism: on the CPU a run is bit-exact (and equal across thread counts only up to float summation order).
On CUDA the same seed gives the same random numbers (Philox), but kernels such as ``index_add``/scatter and
cuBLAS reductions may be non-deterministic; see docs/speed.md.
"""
from __future__ import annotations

import weakref

import torch

_HOST: "weakref.WeakKeyDictionary[torch.Generator, torch.Generator]" = weakref.WeakKeyDictionary()


def step_generator(seed: int, step: int, rank: int = 0, device: torch.device | str | None = None) -> torch.Generator:
    """The single source of randomness for one training step, on ``device`` (default CPU)."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "meta":           # meta tensors draw nothing: a CPU generator keeps the call sites uniform
        dev = torch.device("cpu")
    return torch.Generator(device=dev).manual_seed((seed * 1_000_003 + step) * 64 + rank)


def host_generator(generator: torch.Generator | None) -> torch.Generator | None:
    """The host (CPU) stream of ``generator``: itself on the CPU, else a CPU generator derived from its seed."""
    if generator is None or generator.device.type == "cpu":
        return generator
    host = _HOST.get(generator)
    if host is None:
        host = torch.Generator().manual_seed(generator.initial_seed() ^ 0x5DEECE66D)
        _HOST[generator] = host
    return host


def device_of(generator: torch.Generator | None, fallback: torch.device | str) -> torch.device:
    """Where a draw with ``generator`` must be made (the generator's device), else ``fallback``."""
    return generator.device if generator is not None else torch.device(fallback)
