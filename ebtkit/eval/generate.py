"""Autoregressive generation for the text EBT and Transformer++, cached (default) or by full recomputation.

Each new token is predicted by thinking (any :mod:`ebtkit.eval.inference` policy) over **one** new prediction
position — the one after the last observed token — then chosen from its final candidate logits: greedy
(``temperature=0``), or temperature sampling with nucleus (top-p) filtering, drawn with an explicit generator.

Two exact implementations (``cached=True`` is the default):

* **cached**: the observed stream's per-layer keys/values (:class:`~ebtkit.core.models.ContextCache`) are computed
  once for the prompt and grow by one token per generated token (one observed position per token); each
  thinking step runs one prediction position against the cache (:meth:`TextEBT.energy_cached`). The
  Transformer++ keeps the usual KV cache.
* **full recomputation** (``cached=False``, the reference and the official code's cost): every thinking step of
  every token recomputes the whole ``[observed ; predictions]`` window (:meth:`TextEBT.energy_reference`); the
  Transformer++ re-runs the window for every token.

Both draw the same random numbers in the same order (the initial candidate of the new position, Langevin
noise, then the sampled token), so they give the same tokens — under any policy and sampling — up to float
rounding. The model sees the last ``context`` tokens, like the reference: while a row fits in the window the
cache is extended; once any row is longer, every position of its window shifts, so the cache is rebuilt from
the window for each new token (one observed-stream pass per token, still no recomputation per thinking step).

Ragged batches: ``prompt`` may be a list of sequences of different lengths (the output is then a list). Rows
are right-padded; each row thinks after its own last token (``rows`` (B,1) in ``energy_cached``) and writes its
new token at its own cache slot, so a batched run equals running each row alone (same initial draws aside).
"""
from __future__ import annotations

from dataclasses import fields
from typing import Callable, Sequence

import torch

from ..core.thinking import is_energy_model
from .inference import DEFAULT_STEPS, Policy, resolve_alpha


def sample_next(logits: torch.Tensor, temperature: float = 0.0, top_p: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """logits (B×V) → token ids (B,). Greedy at temperature 0; else nucleus sampling."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, -1)
    if top_p < 1:
        sp, si = probs.sort(-1, descending=True)
        keep = sp.cumsum(-1) - sp < top_p                       # always keeps the most likely token
        sp = sp * keep
        probs = torch.zeros_like(probs).scatter(-1, si, sp)
    return torch.multinomial(probs / probs.sum(-1, keepdim=True), 1, generator=generator).squeeze(-1)


def _rows_of(prompt) -> tuple[list[torch.Tensor], bool]:
    """Prompt → list of 1-D long tensors, and whether the caller passed a (B, n) tensor."""
    if isinstance(prompt, torch.Tensor):
        if prompt.dim() != 2 or prompt.shape[0] < 1 or prompt.shape[1] < 1:
            raise ValueError("prompt must be a non-empty (B, n) tensor of token ids")
        return list(prompt), True
    rows = [torch.as_tensor(r, dtype=torch.long) for r in prompt]
    if not rows or any(r.dim() != 1 or r.numel() < 1 for r in rows):
        raise ValueError("prompt must be a non-empty list of non-empty token-id sequences")
    return rows, False


class _Batch:
    """Right-padded token buffer with host-side row lengths (no device syncs).

    ``keep=True`` holds every token (B × (n_max + new)), to return them. ``keep=False`` (streaming) holds at most
    ``n_max + context + 1 + CHUNK`` columns whatever the number of new tokens: when full, each row keeps only its
    last ``context + 1`` tokens (all the model can still see, and still more than a window, so a slid row stays
    slid), so memory is bounded."""

    CHUNK = 1024

    def __init__(self, rows: list[torch.Tensor], max_new: int, device, context: int, keep: bool = True):
        self.lengths = [int(r.numel()) for r in rows]
        self.context, self.keep = context, keep
        room = max_new if keep else min(max_new, context + 1 + self.CHUNK)
        self.buf = torch.zeros(len(rows), max(self.lengths) + room, dtype=torch.long, device=device)
        for b, r in enumerate(rows):
            self.buf[b, : r.numel()] = r.to(device)
        self.ragged = len(set(self.lengths)) > 1

    def lengths_t(self) -> torch.Tensor:
        return torch.tensor(self.lengths, device=self.buf.device)

    def _compact(self) -> None:
        held = [min(n, self.context + 1) for n in self.lengths]
        buf = torch.zeros_like(self.buf)
        for b, (n, h) in enumerate(zip(self.lengths, held)):
            buf[b, :h] = self.buf[b, n - h: n]
        self.buf, self.lengths = buf, held
        self.ragged = len(set(held)) > 1

    def append(self, nxt: torch.Tensor) -> None:
        if max(self.lengths) >= self.buf.shape[1]:
            if self.keep:
                raise RuntimeError("generation buffer overflow")   # cannot happen: sized for every token
            self._compact()
        self.buf.scatter_(1, self.lengths_t()[:, None], nxt[:, None])
        self.lengths = [n + 1 for n in self.lengths]

    def windows(self, ctx: int) -> tuple[torch.Tensor, list[int]]:
        """The last ``ctx`` tokens of every row, right-padded (B × W), and their lengths."""
        lens = [min(n, ctx) for n in self.lengths]
        if not self.ragged:
            n = self.lengths[0]
            return self.buf[:, n - lens[0]: n], lens
        out = torch.zeros(len(lens), max(lens), dtype=torch.long, device=self.buf.device)
        for b, (n, w) in enumerate(zip(self.lengths, lens)):
            out[b, :w] = self.buf[b, n - w: n]
        return out, lens

    def result(self, as_tensor: bool):
        if as_tensor and not self.ragged:
            return self.buf[:, : self.lengths[0]]
        return [self.buf[b, :n] for b, n in enumerate(self.lengths)]


_POLICY_DEFAULTS = {"steps": None, "alpha": None, "alpha_mult": None, "samples": 1, "select": "min",
                    "accept_lower": False, "tol": None, "langevin_sigma": 0.0, "init_scale": 1.0}


def _ebt_thinker(model, generator, policy: dict):
    """``think(energy_fn, B) -> logits (B×V)`` of the one new position, with the inference policy."""
    policy = dict(policy)
    init_scale = policy.pop("init_scale", 1.0)
    if policy.get("steps") is None:
        policy["steps"] = DEFAULT_STEPS
    known = {f.name for f in fields(Policy)}
    if set(policy) - known:
        raise ValueError(f"unknown generation options: {sorted(set(policy) - known)}")
    pol = Policy(**policy)
    spec = pol.spec(DEFAULT_STEPS, model.cfg.n_landscapes)
    alpha = resolve_alpha(model, pol.alpha, pol.alpha_mult)

    def think(energy_fn, B: int) -> torch.Tensor:
        init = lambda s: model.init_candidates((B, 1), generator) * init_scale  # noqa: E731
        if pol.samples == 1:   # no selection: skip the read-out of E(ŷ_N) (one forward per token)
            best = spec.run(energy_fn, init(0), alpha, generator, update=model.update).final.detach()
        else:
            best = pol.run(model, energy_fn, init, DEFAULT_STEPS, model.cfg.n_landscapes, generator,
                           update=model.update)[0]
        return best[:, 0]                                                       # B,V
    return think, sorted(set(spec.landscapes))


def _landscape_key(model, landscape: int) -> int:
    return landscape if model.cfg.step_cond == "token" else 0


def _ebt_cached(model, batch: _Batch, max_new: int, think, landscapes, pick) -> None:
    ctx = model.cfg.context
    keys = sorted({_landscape_key(model, l) for l in landscapes})
    caches: dict = {}

    def rebuild():
        window, lens = batch.windows(ctx)
        with torch.no_grad():
            for k in keys:
                caches[k] = model.encode_context(window, k)
        return torch.tensor(lens, device=window.device) - 1                    # (B,) last observed index

    last = rebuild()
    for t in range(max_new):
        rows = last[:, None]                                                    # B,1
        fn = lambda y, l: model.energy_cached(caches[_landscape_key(model, l)], y, l, rows, probs=True)  # noqa: E731
        nxt = pick(think(fn, len(batch.lengths)))
        batch.append(nxt)
        if t == max_new - 1:
            break
        if max(batch.lengths) > ctx:
            last = rebuild()                                                    # window slid: positions shift
            continue
        with torch.no_grad():
            pos = last + 1                                                      # (B,) observed index of nxt
            for k in keys:
                caches[k] = model.encode_context(nxt[:, None], k, cache=caches[k],
                                                 positions=pos if batch.ragged else None)
        last = pos


def _ebt_full(model, batch: _Batch, max_new: int, think, pick) -> None:
    ctx, V = model.cfg.context, model.cfg.vocab_size
    for _ in range(max_new):
        window, lens = batch.windows(ctx)
        B = window.shape[0]
        if not batch.ragged:
            def fn(y, l, x=window):
                pad = y.new_zeros(B, x.shape[1] - 1, V)           # other positions: any value (no effect on E_last)
                return model.energy_reference(x, torch.cat([pad, y], 1), l, probs=True)[:, -1:]
        else:
            def fn(y, l, x=window, lens=lens):
                out = []
                for b, n in enumerate(lens):
                    full = torch.cat([y.new_zeros(1, n - 1, V), y[b: b + 1]], 1)
                    out.append(model.energy_reference(x[b: b + 1, :n], full, l, probs=True)[:, -1:])
                return torch.cat(out, 0)                                        # B,1
        batch.append(pick(think(fn, B)))


@torch.no_grad()
def _tpp(model, batch: _Batch, max_new: int, cached: bool, pick) -> None:
    ctx = model.cfg.context

    def full_logits():
        window, lens = batch.windows(ctx)
        if not batch.ragged:
            return model(window)[:, -1], None
        return torch.cat([model(window[b: b + 1, :n])[:, -1] for b, n in enumerate(lens)]), None

    def prefill():
        window, lens = batch.windows(ctx)
        cache: list = []
        logits = model(window, cache=cache)                                     # B,W,V
        last = torch.tensor(lens, device=window.device) - 1
        return logits[torch.arange(len(lens), device=window.device), last], (cache, last)

    logits, state = prefill() if cached else full_logits()
    for t in range(max_new):
        nxt = pick(logits)
        batch.append(nxt)
        if t == max_new - 1:
            break
        if not cached:
            logits, _ = full_logits()
        elif max(batch.lengths) > ctx:
            logits, state = prefill()                                           # window slid: rebuild
        else:
            cache, last = state
            pos = last + 1
            start = pos if batch.ragged else batch.lengths[0] - 1
            logits = model(nxt[:, None], cache=cache, start=start)[:, -1]
            state = (cache, pos)


def generate(model, prompt: torch.Tensor | Sequence[Sequence[int]], max_new_tokens: int, *,
             temperature: float = 0.0, top_p: float = 1.0, generator: torch.Generator | None = None,
             cached: bool = True, on_token: Callable[[torch.Tensor], None] | None = None, keep: bool = True,
             **policy):
    """Generate ``max_new_tokens`` after ``prompt``.

    Args:
        prompt: (B, n) long tensor, or a list of B token sequences of any lengths (ragged).
        cached: KV-cached generation (default); ``False`` = full recomputation (the reference).
        on_token: called with each new token of every row (B,) as soon as it is chosen (streaming).
        keep: keep every token to return them; ``False`` bounds memory whatever ``max_new_tokens`` (use with
            ``on_token``; the result then holds only the last ``context + 1`` tokens of each row).
        policy: EBT inference policy, as for :func:`ebtkit.eval.inference.think_text` (``steps``, ``alpha``,
            ``alpha_mult``, ``samples``, ``select``, ``accept_lower``, ``tol``, ``langevin_sigma``).
    Returns:
        B × (n + max_new_tokens) for a tensor prompt of equal rows; else a list of 1-D tensors.
    """
    rows, as_tensor = _rows_of(prompt)
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    sample_next(torch.zeros(1, 2), temperature, top_p)                          # validate before any work
    dev = next(model.parameters()).device
    batch = _Batch(rows, max_new_tokens, dev, model.cfg.context, keep=keep)

    def pick(logits: torch.Tensor) -> torch.Tensor:
        nxt = sample_next(logits, temperature, top_p, generator)
        if on_token is not None:
            on_token(nxt)
        return nxt

    if max_new_tokens == 0:
        return batch.result(as_tensor)
    was_training = model.training
    model.eval()
    try:
        if is_energy_model(model):
            think, landscapes = _ebt_thinker(model, generator, policy)
            if cached:
                _ebt_cached(model, batch, max_new_tokens, think, landscapes, pick)
            else:
                _ebt_full(model, batch, max_new_tokens, think, pick)
        else:
            if any(v != _POLICY_DEFAULTS.get(k, object()) for k, v in policy.items()):
                raise ValueError("thinking options (steps, samples, ...) apply to EBT models only")
            _tpp(model, batch, max_new_tokens, cached, pick)
    finally:
        model.train(was_training)
    return batch.result(as_tensor)
