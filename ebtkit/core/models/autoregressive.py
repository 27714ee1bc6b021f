"""The autoregressive EBT and causal-transformer machinery shared by every stream modality (text, vectors, video).

An autoregressive EBT reads an observed stream ``x[0..S-1]`` and scores one candidate per position: candidate
``ŷ[r]`` is the guess for ``x[r+1]``. Notation: B batch, S observed positions, R prediction rows, D width,
P = number of prefix tokens in the context stream (1 with the paper's step token, else 0).

* Sequence ``[observed ; predictions]``. Leak-free attention: observed i sees observed 0..i; prediction r
  sees observed 0..r **and itself only**. RoPE: observed i at position i, prediction r at r+1 (shifted by P).
* Energy: final RMSNorm → ``Linear(D, 1, bias=False)`` on the prediction stream → B×S.
* Step conditioning (``step_cond``): ``"stream"`` adds a step embedding to the prediction stream only;
  ``"token"`` is the paper's prepended step token seen by every position; ``"none"``.

Two exact implementations of the same energy:

* ``energy_reference``: one masked attention over the full ``P + 2S`` sequence (the paper's layout).
* ``encode_context`` + ``energy_cached`` (the default): the observed stream never attends to a prediction,
  so its per-layer keys/values are computed once per batch (per landscape when the step token conditions
  it) and every thinking step runs only the S prediction positions against them: prediction r attends to
  cached keys ``0..r+P`` plus itself — at most an S×(S+P) score matrix (computed in row blocks that skip the
  masked upper-right blocks) plus a diagonal, no (2S)² matrix. The same cache, grown one observation at a
  time, serves generation and autoregressive rollouts.

A modality subclasses :class:`AutoregressiveEBT` and supplies only what differs: how an observation and a
candidate are embedded (``embed_observed``, ``embed_candidates``), the input checks, the initial candidate and
the update rule (``self.update``). It builds its own modules in ``__init__`` (so each model's parameter
initialisation order is its own) and must define ``step_emb``, ``backbone``, ``head``, ``step_size``, ``rope``
and ``update``. :class:`CausalTransformer` is the same for the Transformer++ baselines: the causal block stack
with a key/value cache, between a modality's input embedding and output head.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..nn import attention, causal_mask
from ..nn.prediction_attention import (DEFAULT_BLOCK, CausalPlan, causal_prediction_attention,
                                      prediction_attention, visible_to_bias)
from ..recipe import landscape_schedule, think_with_energy
from ..thinking import BoundEnergy


@dataclass
class ContextCache:
    """Per-layer keys/values of the observed stream (each ``(B, H, T, hd)``), ``T = P + observed positions``.

    ``landscape`` is set when the step token (``P = 1``) makes the cache specific to one landscape.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    prefix: int
    landscape: int | None = None

    @property
    def length(self) -> int:
        return self.keys[0].shape[2]


def write_rows(past: torch.Tensor, new: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Grow a cache ``past`` (B,H,T,hd) by one slot and write ``new`` (B,H,1,hd) at slot ``index[b] ≤ T`` per row.

    Ragged batches are right-padded and every row writes at its own position: slots after a row's last token
    hold stale values that the row's masks never read, and are overwritten as the row grows.
    """
    B, H, T, hd = past.shape
    grown = torch.cat([past, past.new_zeros(B, H, 1, hd)], 2)                  # B,H,T+1,hd
    return grown.scatter(2, index.view(B, 1, 1, 1).expand(B, H, 1, hd), new)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class AutoregressiveEBT(nn.Module):
    """Energy-Based Transformer over a stream: ``forward`` = ``energy``. Subclasses supply the embeddings."""

    attn_block: int | None = DEFAULT_BLOCK   # rows per block of the cached-path attention (None = dense)
    checkpoint_blocks: bool = False          # recompute prediction-stream blocks in backward (train.checkpoint_blocks)
    # attention kernel of the observed stream: it is differentiated only once (thinking differentiates E with
    # respect to the candidates, which the observed stream never sees), so fused SDPA kernels are exact there and
    # keep no (B, H, S, S) probabilities; "auto" = SDPA on CUDA, the explicit kernel elsewhere (bit-identical CPU)
    context_attention: str = "auto"

    # ------------------------------------------------------------------ what a modality supplies
    def embed_observed(self, x: torch.Tensor) -> torch.Tensor:
        """Observations (B, T, ...) → (B, T, D)."""
        raise NotImplementedError

    def embed_candidates(self, candidates: torch.Tensor, landscape: int, probs: bool = False) -> torch.Tensor:
        """Candidates (B, R, ...) → (B, R, D), including the step embedding in ``"stream"`` mode. ``probs``: the
        candidates are already the update rule's point (text: distributions, not logits)."""
        raise NotImplementedError

    def check_observed(self, x: torch.Tensor) -> None:
        raise NotImplementedError

    def check_candidates(self, candidates: torch.Tensor, x: torch.Tensor | None = None) -> None:
        """Raise if ``candidates`` do not fit (the observations ``x``, when given)."""
        raise NotImplementedError

    def initial_candidates(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The starting candidates of every position of observations ``x`` (what :meth:`think` starts from)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    @property
    def prefix(self) -> int:
        return 1 if self.cfg.step_cond == "token" else 0

    def non_embedding_params(self) -> int:
        """Parameters of the shared block stack (blocks + final norm), the paper's "non-embedding" count."""
        return count_params(self.backbone)

    def _landscape(self, landscape: int) -> int:
        if not 0 <= landscape < self.cfg.n_landscapes:
            raise ValueError(f"landscape {landscape} out of range [0, {self.cfg.n_landscapes})")
        return landscape

    def _context_backend(self, device: torch.device) -> str:
        if self.context_attention == "auto":
            return "sdpa" if device.type == "cuda" else "math"
        return self.context_attention

    def step_embedding(self, z: torch.Tensor, landscape: int) -> torch.Tensor:
        """Add the step embedding of ``landscape`` to a prediction stream ``z`` in ``"stream"`` mode."""
        if self.cfg.step_cond == "stream":
            z = z + self.step_emb.weight[self._landscape(landscape)]
        return z

    def _context_embed(self, x: torch.Tensor, landscape: int) -> torch.Tensor:
        h = self.embed_observed(x)                                              # B,S,D
        if self.cfg.step_cond == "token":
            st = self.step_emb.weight[self._landscape(landscape)]               # D
            h = torch.cat([st.expand(h.shape[0], 1, -1), h], dim=1)             # B,1+S,D
        return h

    # ------------------------------------------------------------------ reference path
    def energy_reference(self, x: torch.Tensor, candidates: torch.Tensor, landscape: int = 0,
                         probs: bool = False) -> torch.Tensor:
        """Energies (B×S) from one masked attention over the full ``[prefix ; observed ; predictions]`` sequence."""
        self.check_observed(x)
        self.check_candidates(candidates, x)
        B, S = x.shape[:2]
        P, dev = self.prefix, x.device
        ctx = self._context_embed(x, landscape)                                 # B,P+S,D
        h = torch.cat([ctx, self.embed_candidates(candidates, landscape, probs)], 1)   # B,P+2S,D
        T = P + S
        pos = torch.cat([torch.arange(T, device=dev), torch.arange(S, device=dev) + P + 1])
        mask = torch.zeros(T + S, T + S, dtype=torch.bool, device=dev)
        mask[:T, :T] = causal_mask(T, dev)                                      # observed: causal
        r = torch.arange(S, device=dev)
        mask[T:, :T] = torch.arange(T, device=dev)[None, :] <= (r[:, None] + P)  # prediction r: keys 0..r+P
        mask[T + r, T + r] = True                                               # ... and itself only
        cos, sin = self.rope(pos, h.dtype, T + 1)                              # positions 0..P+S
        for blk in self.backbone.blocks:
            h = blk(h, cos, sin, lambda q, k, v: attention(q, k, v, mask))
        return self.head(self.backbone.norm(h[:, T:])).squeeze(-1)              # B,S

    # ------------------------------------------------------------------ fast (cached-context) path
    def encode_context(self, x: torch.Tensor, landscape: int = 0, cache: ContextCache | None = None,
                       positions: torch.Tensor | None = None) -> ContextCache:
        """Keys/values of the observed stream at every layer; computed once, reused by every thinking step.

        With ``cache`` given, ``x`` (B×n…) is appended to it (generation, rollouts): the new observations attend
        to the cached keys and causally to each other, exactly as in a full recomputation. With ``positions``
        (B,) as well, ``x`` holds one observation per row and row b's is observation ``positions[b]`` of that
        row (ragged, right-padded batches): the cache grows by one slot and each row writes at its own slot.
        """
        self.check_observed(x)
        if positions is not None and (cache is None or x.shape[1] != 1
                                      or tuple(positions.shape) != (x.shape[0],)):
            raise ValueError("positions (B,) appends one observation per row to a cache: x must hold one per row")
        if cache is None:
            h = self._context_embed(x, landscape)
            start, prefix = 0, self.prefix
            tag = landscape if prefix else None
        else:
            h, start, prefix, tag = self.embed_observed(x), cache.length, cache.prefix, cache.landscape
        B, T = h.shape[:2]
        mask = None
        if positions is None:
            pos = torch.arange(start, start + T, device=h.device)
            cos, sin = self.rope(pos, h.dtype, start + T)
            if cache is not None:
                mask = torch.arange(start + T, device=h.device)[None, :] <= pos[:, None]   # T × (start+T)
        else:
            pos = positions + prefix                                            # (B,) slot = RoPE position
            cos, sin = (t.view(B, 1, 1, -1) for t in self.rope(pos, h.dtype, start + 1))   # slots ≤ start
            mask = (torch.arange(start + 1, device=h.device)[None, :] <= pos[:, None])[:, None, None]  # B,1,1,T+1
        keys, values = [], []
        last = len(self.backbone.blocks) - 1
        for i, blk in enumerate(self.backbone.blocks):
            q, k, v = blk.attn.qkv(blk.attn_norm(h), cos, sin)
            if positions is not None:
                k, v = write_rows(cache.keys[i], k, pos), write_rows(cache.values[i], v, pos)
            elif cache is not None:
                k = torch.cat([cache.keys[i], k], 2)
                v = torch.cat([cache.values[i], v], 2)
            keys.append(k)
            values.append(v)
            if i == last:
                break   # the observed stream's last-layer output feeds nothing: skip it
            backend = self._context_backend(h.device)
            if cache is None:
                o = attention(q, k, v, None, backend=backend, is_causal=True)
            else:
                o = attention(q, k, v, mask, backend=backend)
            h = h + blk.attn.out(o)
            h = h + blk.mlp(blk.mlp_norm(h))
        return ContextCache(keys, values, prefix, tag)

    def energy_cached(self, cache: ContextCache, candidates: torch.Tensor, landscape: int = 0,
                      rows: torch.Tensor | None = None, probs: bool = False) -> torch.Tensor:
        """Energies (B×R) of candidates (B×R×…) against a context cache.

        ``rows`` (R,) or (B, R): the observed index r each prediction follows (it predicts observation r+1);
        default ``0..R-1``. Prediction r attends to cached keys ``0..r+P`` and to itself
        (:mod:`ebtkit.core.nn.prediction_attention`; the default rows use the blocked kernel, ``attn_block`` rows
        per block, ``None`` = dense).
        """
        self.check_candidates(candidates)
        B, R = candidates.shape[:2]
        dev = candidates.device
        contiguous = rows is None
        if contiguous:
            rows = torch.arange(R, device=dev)
        if cache.landscape is not None and cache.landscape != landscape:
            raise ValueError(f"this context cache holds the step token of landscape {cache.landscape}, "
                             f"not {landscape}")
        P, Tc = cache.prefix, cache.length
        pos = rows + P + 1                                                      # (R,) or (B,R)
        cos, sin = self.rope(pos.reshape(-1), candidates.dtype, Tc + 1)        # rows + P < Tc
        if pos.dim() == 2:
            cos, sin = cos.view(B, 1, R, -1), sin.view(B, 1, R, -1)
        scale = 1.0 / math.sqrt(self.cfg.d_model // self.cfg.n_heads)
        if contiguous:   # training layout: row r sees keys 0..r+P → blocked kernel, masked blocks skipped
            plan = CausalPlan(R, Tc, P, candidates.dtype, dev, self.attn_block)
            attend = lambda q, k, v, i: causal_prediction_attention(  # noqa: E731
                q, cache.keys[i], cache.values[i], k, v, plan, scale)
        else:            # arbitrary rows (generation, ragged batches): dense kernel, (R,Tc) or (B,1,R,Tc) bias
            visible = torch.arange(Tc, device=dev) <= (rows + P)[..., None]
            bias = visible_to_bias(visible if visible.dim() == 2 else visible[:, None], candidates.dtype)
            attend = lambda q, k, v, i: prediction_attention(  # noqa: E731
                q, cache.keys[i], cache.values[i], k, v, bias, scale)
        h = self.embed_candidates(candidates, landscape, probs)                 # B,R,D

        def block(h: torch.Tensor, i: int) -> torch.Tensor:
            blk = self.backbone.blocks[i]
            q, k, v = blk.attn.qkv(blk.attn_norm(h), cos, sin)                  # B,H,R,hd
            h = h + blk.attn.out(attend(q, k, v, i))
            return h + blk.mlp(blk.mlp_norm(h))

        recompute = self.checkpoint_blocks and torch.is_grad_enabled()
        for i in range(len(self.backbone.blocks)):
            # activation checkpointing (non-reentrant: it supports the create_graph double backward of
            # thinking): only each block's input is kept; its activations are recomputed in backward
            h = checkpoint(block, h, i, use_reentrant=False) if recompute else block(h, i)
        return self.head(self.backbone.norm(h)).squeeze(-1)                     # B,R

    # ------------------------------------------------------------------ public API
    def energy(self, x: torch.Tensor, candidates: torch.Tensor, landscape: int = 0,
               reference: bool = False) -> torch.Tensor:
        """Energies ``B×S``: prediction r scores candidate ``ŷ[r]`` for observation ``x[r+1]`` given ``x[0..r]``."""
        self.check_observed(x)
        self.check_candidates(candidates, x)
        if reference:
            return self.energy_reference(x, candidates, landscape)
        return self.energy_cached(self.encode_context(x, landscape), candidates, landscape)

    forward = energy

    def energy_fn(self, x: torch.Tensor, reference: bool = False, cache: ContextCache | None = None,
                  rows: torch.Tensor | None = None):
        """Bind a context: returns ``f(u, landscape) -> energies`` for :func:`ebtkit.think`, carrying
        ``self.update`` (a :class:`~ebtkit.core.thinking.BoundEnergy`); ``u`` is the update rule's point.

        The context stream is encoded lazily once per landscape (once in total unless the step token
        conditions the context) and reused by every thinking step. ``cache``: an already-encoded context, or
        a dict ``{landscape: ContextCache}`` when the step token makes the cache landscape-specific.
        """
        if reference:
            return BoundEnergy(lambda y, l: self.energy_reference(x, y, l, probs=True), self.update)
        caches: dict[int, ContextCache] = {}
        shared = self.cfg.step_cond != "token"

        def fn(y: torch.Tensor, landscape: int) -> torch.Tensor:
            if cache is not None:
                c = cache[landscape if not shared else 0] if isinstance(cache, dict) else cache
                return self.energy_cached(c, y, landscape, rows, probs=True)
            key = 0 if shared else landscape
            if key not in caches:
                caches[key] = self.encode_context(x, landscape)
            return self.energy_cached(caches[key], y, landscape, rows, probs=True)

        return BoundEnergy(fn, self.update)

    def think(self, x: torch.Tensor, steps: int = 2, *, alpha: float | None = None, samples: int = 1,
              select: str = "min", accept_lower: bool = False, tol: float | None = None,
              langevin_sigma: float = 0.0, generator: torch.Generator | None = None):
        """Think about the next observation at every position of ``x``.

        Returns ``(final_candidates, energies)`` where ``energies`` is a (steps+1)×B×S tensor of the
        per-position energy before each step and after the last. ``samples > 1`` is best-of-N per position.
        """
        self.check_observed(x)
        a = self.step_size().detach()
        if alpha is not None:
            a = torch.full_like(a, float(alpha))
        init = lambda s: self.initial_candidates(x, generator)  # noqa: E731
        best, traj, *_ = think_with_energy(
            self.energy_fn(x), init, steps=steps, alpha=a, landscapes=landscape_schedule(self.cfg.n_landscapes, steps),
            samples=samples, select=select, accept_lower=accept_lower, tol=tol, langevin_sigma=langevin_sigma,
            generator=generator, update=self.update)
        return best, traj


class CausalTransformer(nn.Module):
    """The Transformer++ trunk: causal Llama blocks over embedded inputs, with an optional key/value cache.

    Subclasses embed their inputs, call :meth:`trunk` and apply their output head; they must define
    ``backbone`` and ``rope``."""

    def non_embedding_params(self) -> int:
        return count_params(self.backbone)

    def trunk(self, h: torch.Tensor, cache: list | None = None, start: int | torch.Tensor = 0) -> torch.Tensor:
        """Embedded inputs h (B×T×D) → normed hidden states (B×T×D). With ``cache`` (a list, filled in place)
        keys/values are kept for incremental decoding; ``start`` is the position of ``h[:, 0]``, or a (B,)
        tensor of per-row positions for one new input per row of a ragged, right-padded batch (``T = 1``; the
        cache grows by one slot and each row writes at its own slot)."""
        B, T = h.shape[:2]
        per_row = isinstance(start, torch.Tensor)
        if per_row and (cache is None or not cache or T != 1 or tuple(start.shape) != (B,)):
            raise ValueError("per-row positions (B,) append one input per row to a filled cache")
        pos = start if per_row else torch.arange(start, start + T, device=h.device)
        cos, sin = self.rope(pos, h.dtype, (cache[0][0].shape[2] + 1) if per_row else start + T)
        if per_row:
            cos, sin = cos.view(B, 1, 1, -1), sin.view(B, 1, 1, -1)
        for i, blk in enumerate(self.backbone.blocks):
            if cache is None:
                h = blk(h, cos, sin, lambda q, k, v: attention(q, k, v, None, backend="sdpa", is_causal=True))
                continue

            def attend(q, k, v, i=i):
                if per_row:
                    k, v = write_rows(cache[i][0], k, pos), write_rows(cache[i][1], v, pos)
                    cache[i] = (k, v)
                    mask = (torch.arange(k.shape[2], device=q.device)[None, :] <= pos[:, None])[:, None, None]
                    return attention(q, k, v, mask, backend="sdpa")        # mask B,1,1,T+1
                if len(cache) > i:
                    k = torch.cat([cache[i][0], k], 2)
                    v = torch.cat([cache[i][1], v], 2)
                    cache[i] = (k, v)
                else:
                    cache.append((k, v))
                mask = torch.arange(k.shape[2], device=q.device)[None, :] <= pos[:, None]
                return attention(q, k, v, mask, backend="sdpa")
            h = blk(h, cos, sin, attend)
        return self.backbone.norm(h)
