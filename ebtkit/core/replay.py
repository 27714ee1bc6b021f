"""Replay buffer for System 2 training (Gladstone et al., 2025, §3.1 and App. C; the idea follows
Du & Mordatch, "Implicit Generation and Generalization with Energy-Based Models", 2019).

A sequence-level FIFO of ``(tokens, final candidates)``. After every training step the *fresh* rows of the
batch are pushed with the candidates their thinking reached (detached); the next steps append
``round(replay_fraction × B)`` records drawn uniformly without replacement (fewer while the buffer fills),
and those replayed rows **start thinking from their stored candidates** instead of fresh noise. This
simulates longer optimisation trajectories, so the energy landscape is trained near its minima too.

Layout of a replayed batch: fresh rows first, replayed rows after (``B + n`` rows in all).

* Rank-local: every process keeps its own buffer; nothing is communicated.
* Fixed shapes: every record has the same ``S + 1`` tokens and ``S × V`` candidates (training windows are
  fixed-length, so this always holds in ``ebt train``).
* No host syncs: storage is preallocated on the candidates' device on the first push; the write pointer and
  the count are Python integers; sampling draws indices with the caller's ``torch.Generator``.
* Resume: :meth:`to_bytes` / :meth:`from_bytes` serialise the whole state (safetensors), and ``ebt train``
  stores it in the checkpoint, so a resumed single-process run continues bit-for-bit. (Under ``torchrun`` only
  rank 0 writes checkpoints: the other ranks restart with an empty buffer.)
"""
from __future__ import annotations

import torch
from safetensors.torch import load, save

REPLAY_FILE = "replay.safetensors"


def replay_count(fraction: float, batch: int) -> int:
    """Records to replay next to a fresh batch of ``batch`` rows (before capping at the buffer's size)."""
    if fraction <= 0:
        return 0
    return max(1, int(round(fraction * batch)))


def extend_with_replay(replay: "ReplayBuffer", fraction: float, inputs: torch.Tensor, y0: torch.Tensor,
                       generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Append ``round(fraction × B)`` stored records (fewer while the buffer fills) to a fresh batch: ``inputs``
    (B×…, the whole windows) and their initial candidates ``y0`` (B×…). Returns ``(inputs, y0, n_replayed)``;
    replayed rows come after the fresh ones and start from their stored candidates."""
    n = min(replay_count(fraction, inputs.shape[0]), len(replay))
    if n:
        r_in, r_cands = replay.sample(n, generator)
        inputs = torch.cat([inputs, r_in.to(inputs.device)], 0)
        y0 = torch.cat([y0, r_cands.to(device=y0.device, dtype=y0.dtype)], 0)
    return inputs, y0, n


class ReplayBuffer:
    """FIFO of ``capacity`` sequences: tokens ``(S+1,)`` long and final candidates ``(S, *F)``."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"replay buffer capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.tokens: torch.Tensor | None = None        # capacity × (S+1)
        self.candidates: torch.Tensor | None = None    # capacity × S × F
        self._next = 0                                 # slot the next record is written to
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def _allocate(self, tokens: torch.Tensor, candidates: torch.Tensor) -> None:
        self.tokens = torch.zeros((self.capacity,) + tokens.shape[1:], dtype=tokens.dtype, device=tokens.device)
        self.candidates = torch.zeros((self.capacity,) + candidates.shape[1:], dtype=candidates.dtype,
                                      device=candidates.device)

    def push(self, tokens: torch.Tensor, candidates: torch.Tensor) -> None:
        """Append ``n`` records (oldest evicted first). ``tokens`` n×(S+1), ``candidates`` n×S×F."""
        if tokens.shape[0] != candidates.shape[0]:
            raise ValueError(f"{tokens.shape[0]} token rows but {candidates.shape[0]} candidate rows")
        if self.tokens is None:
            self._allocate(tokens, candidates)
        elif self.tokens.device != tokens.device:      # restored from a checkpoint on the host: follow the batch
            self.tokens, self.candidates = self.tokens.to(tokens.device), self.candidates.to(candidates.device)
        elif tokens.shape[1:] != self.tokens.shape[1:] or candidates.shape[1:] != self.candidates.shape[1:]:
            raise ValueError(f"replay records must all have the same shape: buffer holds tokens "
                             f"{tuple(self.tokens.shape[1:])} / candidates {tuple(self.candidates.shape[1:])}, got "
                             f"{tuple(tokens.shape[1:])} / {tuple(candidates.shape[1:])}")
        n = tokens.shape[0]
        if n > self.capacity:                          # only the newest `capacity` rows can survive
            tokens, candidates, n = tokens[-self.capacity:], candidates[-self.capacity:], self.capacity
        # slots (next + i) mod capacity, made on the buffer's device (no host→device copy)
        idx = (torch.arange(n, device=self.tokens.device) + self._next) % self.capacity
        self.tokens.index_copy_(0, idx, tokens.detach().to(self.tokens.dtype))
        self.candidates.index_copy_(0, idx, candidates.detach().to(self.candidates.dtype))
        self._next = (self._next + n) % self.capacity
        self._count = min(self.capacity, self._count + n)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` distinct records drawn uniformly (``n <= len(self)``): ``(tokens n×(S+1), candidates n×S×F)``."""
        if not 0 <= n <= self._count:
            raise ValueError(f"cannot sample {n} records from a replay buffer holding {self._count}")
        dev = generator.device if generator is not None else torch.device("cpu")
        # records occupy slots 0..count-1 (until the buffer wraps, then all slots): any slot is a record
        slots = torch.randperm(self._count, generator=generator, device=dev)[:n].to(self.tokens.device)
        return self.tokens[slots], self.candidates[slots].clone()

    def _oldest(self) -> int:
        return self._next if self._count == self.capacity else 0

    def records(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All records, oldest first (for inspection and tests)."""
        if self._count == 0:
            raise ValueError("the replay buffer is empty")
        order = [(self._oldest() + i) % self.capacity for i in range(self._count)]
        idx = torch.tensor(order, device=self.tokens.device)
        return self.tokens[idx], self.candidates[idx]

    # ------------------------------------------------------------------ persistence (checkpoints)
    def to_bytes(self) -> bytes:
        """The whole state (records, write pointer, count) as safetensors bytes."""
        tensors = {"state": torch.tensor([self.capacity, self._next, self._count])}
        if self.tokens is not None:
            tensors["tokens"] = self.tokens.detach().cpu().contiguous()
            tensors["candidates"] = self.candidates.detach().cpu().contiguous()
        return save(tensors)

    @classmethod
    def from_bytes(cls, data: bytes, device: torch.device | str = "cpu") -> "ReplayBuffer":
        tensors = load(data)
        capacity, nxt, count = (int(v) for v in tensors["state"].tolist())
        buf = cls(capacity)
        buf._next, buf._count = nxt, count
        if "tokens" in tensors:
            buf.tokens = tensors["tokens"].to(device)
            buf.candidates = tensors["candidates"].to(device)
        return buf
