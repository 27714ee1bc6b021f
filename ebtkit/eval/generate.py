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

Per-row randomness: ``generator`` may be a list of one generator per row. Row ``b`` then draws its initial
candidates (every best-of-N sample) and its sampled token from ``generator[b]`` alone, so a batch equals
generating each row alone with that row's generator, token for token, under any sampling and policy — except
Langevin noise (``langevin_sigma > 0``), which the thinking loop draws for the whole batch from ``generator[0]``.

Termination: ``on_token`` may return one flag per row (of the original batch); a row flagged ``True`` ends
after the token just reported and leaves the batch (its cache rows are dropped, so the others run at the cost
of a smaller batch). ``max_time`` ends every row once that many seconds have passed since the call began
(checked after each token: the token being computed is finished, so at least one is produced).
"""
from __future__ import annotations

import time
from dataclasses import fields, replace
from typing import Callable, Sequence

import torch

from ..core.thinking import is_energy_model
from .inference import DEFAULT_STEPS, Policy, resolve_alpha


def sample_next(logits: torch.Tensor, temperature: float = 0.0, top_p: float = 1.0,
                generator: torch.Generator | Sequence[torch.Generator] | None = None, top_k: int = 0) -> torch.Tensor:
    """logits (B×V) → token ids (B,). Greedy at temperature 0; else sampling from ``softmax(logits / T)``
    restricted to the ``top_k`` most likely tokens (0 = all), then to the nucleus (the smallest set of most likely
    tokens whose probability reaches ``top_p``; the most likely token is always kept). ``generator``: one, or a
    list of one per row (row ``b`` draws from ``generator[b]`` only)."""
    check_sampling(temperature, top_p, top_k)
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, -1)
    if 0 < top_k < probs.shape[-1]:
        top = probs.topk(top_k, -1)
        probs = torch.zeros_like(probs).scatter(-1, top.indices, top.values)
        probs = probs / probs.sum(-1, keepdim=True)
    if top_p < 1:
        sp, si = probs.sort(-1, descending=True)
        keep = sp.cumsum(-1) - sp < top_p                       # always keeps the most likely token
        sp = sp * keep
        probs = torch.zeros_like(probs).scatter(-1, si, sp)
    probs = probs / probs.sum(-1, keepdim=True)
    if generator is None or isinstance(generator, torch.Generator):
        return _draw(probs, generator).squeeze(-1)
    if len(generator) != probs.shape[0]:
        raise ValueError(f"{len(generator)} generators for {probs.shape[0]} rows")
    return torch.cat([_draw(probs[b: b + 1], g) for b, g in enumerate(generator)]).view(-1)


def _draw(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row; drawn where the generator lives (a CPU generator gives the same tokens on any device)."""
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.to(generator.device), 1, generator=generator).to(probs.device)
    return torch.multinomial(probs, 1, generator=generator)


def check_sampling(temperature: float, top_p: float = 1.0, top_k: int = 0) -> None:
    """Refuse sampling settings that mean nothing: a negative or non-finite temperature, ``top_p`` outside
    (0, 1], a negative or non-integer ``top_k``."""
    if not (isinstance(temperature, (int, float)) and 0 <= temperature < float("inf")):
        raise ValueError(f"temperature must be finite and >= 0, got {temperature}")
    if not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 = off), got {top_k!r}")


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
        self.alive = list(range(len(rows)))          # original index of each row still generating
        self.ended: dict[int, torch.Tensor] = {}     # original index → tokens of a row that has ended

    def drop(self, keep: list[int]) -> None:
        """Keep only the rows at positions ``keep`` (ascending); the others have ended and are set aside. A
        ragged batch stays ragged (its caches keep per-row positions)."""
        for i in sorted(set(range(len(self.alive))) - set(keep)):
            self.ended[self.alive[i]] = self.buf[i, : self.lengths[i]].clone()
        idx = torch.tensor(keep, device=self.buf.device)
        self.buf = self.buf[idx]
        self.lengths = [self.lengths[i] for i in keep]
        self.alive = [self.alive[i] for i in keep]

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
        if not self.ended:
            if as_tensor and not self.ragged:
                return self.buf[:, : self.lengths[0]]
            return [self.buf[b, :n] for b, n in enumerate(self.lengths)]
        rows = dict(self.ended)
        rows.update({orig: self.buf[b, :n] for b, (orig, n) in enumerate(zip(self.alive, self.lengths))})
        out = [rows[b] for b in range(len(rows))]
        if as_tensor and len({len(r) for r in out}) == 1:
            return torch.stack(out)
        return out


_POLICY_DEFAULTS = {"steps": None, "alpha": None, "alpha_mult": None, "samples": 1, "select": "min",
                    "accept_lower": False, "tol": None, "langevin_sigma": 0.0, "init_scale": 1.0}


class _Rng:
    """Where the random numbers of generation come from: one generator for the whole batch (``joint``), or one
    per row (``rows``, following the rows still generating; ``joint`` is then the first row's, for the draws the
    thinking loop makes for the whole batch: Langevin noise)."""

    def __init__(self, generator):
        if generator is None or isinstance(generator, torch.Generator):
            self.joint, self.rows = generator, None
        else:
            self.rows = list(generator)
            if not self.rows or not all(isinstance(g, torch.Generator) for g in self.rows):
                raise ValueError("generator must be a torch.Generator or a list of one per prompt row")
            self.joint = self.rows[0]

    def keep(self, keep: list[int]) -> None:
        if self.rows is not None:
            self.rows = [self.rows[i] for i in keep]

    def sampler(self):
        return self.joint if self.rows is None else self.rows


def _ebt_thinker(model, rng: _Rng, policy: dict):
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
        def init(s):
            if rng.rows is None:
                return model.init_candidates((B, 1), rng.joint) * init_scale
            return torch.cat([model.init_candidates((1, 1), g) for g in rng.rows]) * init_scale
        if pol.samples == 1:   # no selection: skip the read-out of E(ŷ_N) (one forward per token)
            best = spec.run(energy_fn, init(0), alpha, rng.joint, update=model.update).final.detach()
        else:
            best = pol.run(model, energy_fn, init, DEFAULT_STEPS, model.cfg.n_landscapes, rng.joint,
                           update=model.update)[0]
        return best[:, 0]                                                       # B,V
    return think, sorted(set(spec.landscapes))


class _Control:
    """Chooses each token, appends it, reports it, and decides which rows go on: ``advance(logits)`` returns
    ``None`` when generation is over, else ``(nxt, keep)`` — the new tokens of the rows that go on, and ``None``
    if every row goes on or the (ascending) positions of those that do, so the caller can drop the others'
    cache rows."""

    def __init__(self, batch: _Batch, max_new: int, rng: _Rng, sample, on_token, max_time: float | None):
        self.batch, self.max_new, self.rng, self.sample, self.on_token = batch, max_new, rng, sample, on_token
        self.B = len(batch.lengths)
        self.deadline = None if max_time is None else time.monotonic() + max_time
        self.t = 0

    def advance(self, logits: torch.Tensor):
        if not bool(torch.isfinite(logits).all()):
            raise ValueError(f"the model produced non-finite logits (NaN/inf) for new token {self.t + 1}: thinking "
                             "diverged (is the step size α or the noise σ too large for this model?)")
        nxt = self.sample(logits, self.rng.sampler())
        self.batch.append(nxt)
        self.t += 1
        flags = None
        if self.on_token is not None:
            if len(self.batch.alive) == self.B:
                flags = self.on_token(nxt)
            else:                                            # report over the original rows; ended rows get -1
                full = torch.full((self.B,), -1, dtype=nxt.dtype, device=nxt.device)
                full[torch.tensor(self.batch.alive, device=nxt.device)] = nxt
                flags = self.on_token(full)
        if self.t >= self.max_new or (self.deadline is not None and time.monotonic() >= self.deadline):
            return None
        if flags is None:
            return nxt, None
        flags = [bool(f) for f in flags]
        if len(flags) != self.B:
            raise ValueError(f"on_token returned {len(flags)} flags for {self.B} rows")
        keep = [i for i, orig in enumerate(self.batch.alive) if not flags[orig]]
        if not keep:
            return None
        if len(keep) == len(self.batch.alive):
            return nxt, None
        self.batch.drop(keep)
        self.rng.keep(keep)
        idx = torch.tensor(keep, device=nxt.device)
        return nxt[idx], idx


def _landscape_key(model, landscape: int) -> int:
    return landscape if model.cfg.step_cond == "token" else 0


def _select_cache(c, idx: torch.Tensor):
    return replace(c, keys=[k[idx] for k in c.keys], values=[v[idx] for v in c.values])


def _ebt_cached(model, batch: _Batch, think, landscapes, ctl: _Control) -> None:
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
    while True:
        rows = last[:, None]                                                    # B,1
        fn = lambda y, l: model.energy_cached(caches[_landscape_key(model, l)], y, l, rows, probs=True)  # noqa: E731
        step = ctl.advance(think(fn, len(batch.lengths)))
        if step is None:
            break
        nxt, keep = step
        if max(batch.lengths) > ctx:
            last = rebuild()                                                    # window slid: positions shift
            continue
        if keep is not None:                                                    # rows ended: drop their cache rows
            caches = {k: _select_cache(c, keep) for k, c in caches.items()}
            last = last[keep]
        with torch.no_grad():
            pos = last + 1                                                      # (B,) observed index of nxt
            for k in keys:
                caches[k] = model.encode_context(nxt[:, None], k, cache=caches[k],
                                                 positions=pos if batch.ragged else None)
        last = pos


def _ebt_full(model, batch: _Batch, think, ctl: _Control) -> None:
    ctx, V = model.cfg.context, model.cfg.vocab_size
    while True:
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
        if ctl.advance(think(fn, B)) is None:
            break


@torch.no_grad()
def _tpp(model, batch: _Batch, cached: bool, ctl: _Control) -> None:
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
    while True:
        step = ctl.advance(logits)
        if step is None:
            break
        nxt, keep = step
        if not cached:
            logits, _ = full_logits()
        elif max(batch.lengths) > ctx:
            logits, state = prefill()                                           # window slid: rebuild
        else:
            cache, last = state
            if keep is not None:                                                # rows ended: drop their cache rows
                cache, last = [(k[keep], v[keep]) for k, v in cache], last[keep]
            pos = last + 1
            start = pos if batch.ragged else batch.lengths[0] - 1
            logits = model(nxt[:, None], cache=cache, start=start)[:, -1]
            state = (cache, pos)


def generate(model, prompt: torch.Tensor | Sequence[Sequence[int]], max_new_tokens: int, *,
             temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0,
             generator: torch.Generator | Sequence[torch.Generator] | None = None, cached: bool = True,
             on_token: Callable[[torch.Tensor], Sequence[bool] | None] | None = None, keep: bool = True,
             max_time: float | None = None, **policy):
    """Generate up to ``max_new_tokens`` after ``prompt``.

    Args:
        prompt: (B, n) long tensor, or a list of B token sequences of any lengths (ragged).
        temperature, top_p, top_k: greedy at temperature 0, else sampling (:func:`sample_next`).
        generator: one ``torch.Generator`` for the batch, or a list of one per row (a row then equals itself
            generated alone with its generator; see the module docstring).
        cached: KV-cached generation (default); ``False`` = full recomputation (the reference).
        on_token: called with each new token of every row (B,) as soon as it is chosen (streaming; rows that
            have ended get -1). It may return one flag per row: a row flagged ``True`` ends after this token.
        keep: keep every token to return them; ``False`` bounds memory whatever ``max_new_tokens`` (use with
            ``on_token``; the result then holds only the last ``context + 1`` tokens of each row).
        max_time: seconds; every row ends once this much wall-clock time has passed (checked after each token).
        policy: EBT inference policy, as for :func:`ebtkit.eval.inference.think_text` (``steps``, ``alpha``,
            ``alpha_mult``, ``samples``, ``select``, ``accept_lower``, ``tol``, ``langevin_sigma``).
    Returns:
        B × (n + new tokens) for a tensor prompt of equal rows that all ran the same number of tokens; else a
        list of 1-D tensors.
    """
    rows, as_tensor = _rows_of(prompt)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if max_time is not None and not (isinstance(max_time, (int, float)) and 0 < max_time < float("inf")):
        raise ValueError(f"max_time must be a finite number of seconds > 0, got {max_time}")
    check_sampling(temperature, top_p, top_k)                                   # validate before any work
    rng = _Rng(generator)
    if rng.rows is not None and len(rng.rows) != len(rows):
        raise ValueError(f"{len(rng.rows)} generators for {len(rows)} prompt rows")
    dev = next(model.parameters()).device
    batch = _Batch(rows, max_new_tokens, dev, model.cfg.context, keep=keep)
    if max_new_tokens == 0:
        return batch.result(as_tensor)
    sample = lambda logits, g: sample_next(logits, temperature, top_p, g, top_k)  # noqa: E731
    ctl = _Control(batch, max_new_tokens, rng, sample, on_token, max_time)
    was_training = model.training
    model.eval()
    try:
        if is_energy_model(model):
            think, landscapes = _ebt_thinker(model, rng, policy)
            if cached:
                _ebt_cached(model, batch, think, landscapes, ctl)
            else:
                _ebt_full(model, batch, think, ctl)
        else:
            if any(v != _POLICY_DEFAULTS.get(k, object()) for k, v in policy.items()):
                raise ValueError("thinking options (steps, samples, ...) apply to EBT models only")
            _tpp(model, batch, cached, ctl)
    finally:
        model.train(was_training)
    return batch.result(as_tensor)
