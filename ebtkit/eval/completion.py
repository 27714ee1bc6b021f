"""Text completions on top of :func:`ebtkit.eval.generate.generate`: stop strings, safe streaming, batches.

A completion is the text generated after a prompt, decoded incrementally (:class:`~ebtkit.data.tokenizers.
StreamDecoder`: an incomplete UTF-8 sequence waits for its last byte, invalid bytes become U+FFFD).

**Stop strings.** Generation of a row ends at the first token after which the completion's text contains any
stop string; the completion is cut just before that occurrence — the stop string itself, and anything decoded
after it in the same token, is not part of the completion. Only the completion is searched (a stop string in
the prompt, or one straddling the prompt's end, does not count). A stop string may span several tokens.

**Streaming.** :class:`StopStream` gives out text as soon as it is certain to be part of the completion: it
holds back the longest end of the text that is the beginning of some stop string (so at most
``max(len(s) for s in stops) - 1`` characters), and gives it out once the next token rules the stop out or the
stream ends.

**Batches.** :func:`complete` generates every prompt in one batch; each row has its own generator seeded with
the same seed, so a row's completion equals that prompt's completion alone with the seed (every sampling
setting and policy; not Langevin noise, drawn for the whole batch), and ends on its own (its stop string, or
``max_new_tokens``), leaving the batch. ``max_time`` ends every row at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ..data.tokenizers import StreamDecoder
from .generate import generate


def check_stops(stops: Sequence[str]) -> list[str]:
    """Stop strings as a list; an empty one (it would match before any text) is an error."""
    stops = list(stops or ())
    for s in stops:
        if not isinstance(s, str) or not s:
            raise ValueError(f"stop strings must be non-empty text, got {s!r}")
    return stops


class StopStream:
    """Incremental decoding of one completion with stop strings; see the module docstring.

    ``feed(token_id)`` returns the text now safe to show (possibly ``""``); once a stop string occurs,
    ``stopped`` is that string and ``text`` the final completion. ``finish()`` returns the rest at the end.
    """

    def __init__(self, tokenizer, stops: Sequence[str] = ()):
        self.decoder = StreamDecoder(tokenizer)
        self.stops = check_stops(stops)
        self.longest = max((len(s) for s in self.stops), default=0)
        self.raw = ""              # everything decoded so far
        self.shown = 0             # characters of raw given out
        self.stopped: str | None = None
        self.cut: int | None = None

    @property
    def text(self) -> str:
        """The completion so far (final once stopped or finished)."""
        return self.raw if self.cut is None else self.raw[: self.cut]

    def _scan(self, new: str) -> str:
        if self.stopped is not None:
            return ""
        start = max(0, len(self.raw) - self.longest + 1)      # an occurrence must end in the new text
        self.raw += new
        found = [(i, -len(s), s) for s in self.stops if (i := self.raw.find(s, start)) >= 0]
        if found:
            i, _, s = min(found)
            self.stopped, self.cut = s, i
            out, self.shown = self.raw[self.shown: i], i
            return out
        end = len(self.raw) - self._pending()
        out, self.shown = self.raw[self.shown: end], max(self.shown, end)
        return out

    def _pending(self) -> int:
        """Length of the longest end of the unshown text that begins some stop string."""
        tail = self.raw[self.shown:]
        for n in range(min(len(tail), self.longest - 1), 0, -1):
            end = tail[-n:]
            if any(s.startswith(end) for s in self.stops):
                return n
        return 0

    def feed(self, token_id: int) -> str:
        return self._scan(self.decoder.feed(int(token_id)))

    def finish(self) -> str:
        """The held-back rest (and an incomplete UTF-8 sequence as U+FFFD) at the end of the stream."""
        if self.stopped is not None:
            return ""
        out = self._scan(self.decoder.flush())
        if self.stopped is not None:
            return out
        rest, self.shown = self.raw[self.shown:], len(self.raw)
        self.cut = len(self.raw)
        return out + rest


@dataclass
class Completion:
    """One prompt's completion. ``finish``: ``"stop"`` (a stop string, given in ``stop``), ``"length"``
    (``max_new_tokens`` reached) or ``"time"`` (``max_time`` reached). ``tokens``: the ids generated, including
    those of the stop string."""

    prompt: str
    text: str
    finish: str
    stop: str | None = None
    tokens: list[int] = field(default_factory=list)


def complete(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, *, stop: Sequence[str] = (),
             seed: int | Sequence[int] = 0, max_time: float | None = None,
             on_text: Callable[[int, str], None] | None = None, **kwargs) -> list[Completion]:
    """Complete every prompt (one batch). ``seed``: one for every row, or one per prompt (several samples of one
    prompt: the prompt repeated, each with its own seed). ``on_text(row, text)`` receives each row's text as it
    becomes safe to show (streaming). ``kwargs``: sampling and policy options of :func:`~ebtkit.eval.generate.generate`
    (``temperature``, ``top_p``, ``top_k``, ``cached``, ``steps``, ...)."""
    prompts = list(prompts)
    if not prompts:
        raise ValueError("no prompts")
    ids = []
    for i, p in enumerate(prompts):
        enc = tokenizer.encode(p)
        if not enc:
            raise ValueError(f"prompt {i + 1} is empty (a prompt needs at least one token)")
        ids.append(enc)
    streams = [StopStream(tokenizer, stop) for _ in prompts]
    tokens: list[list[int]] = [[] for _ in prompts]

    def on_token(nxt: torch.Tensor) -> list[bool]:
        for b, t in enumerate(nxt.tolist()):
            if t < 0:
                continue
            tokens[b].append(t)
            text = streams[b].feed(t)
            if text and on_text is not None:
                on_text(b, text)
        return [s.stopped is not None for s in streams]

    seeds = [seed] * len(prompts) if isinstance(seed, int) else list(seed)
    if len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    generate(model, ids, max_new_tokens, generator=gens, on_token=on_token, keep=False, max_time=max_time, **kwargs)
    out = []
    for b, (p, s) in enumerate(zip(prompts, streams)):
        rest = s.finish()
        if rest and on_text is not None:
            on_text(b, rest)
        finish = "stop" if s.stopped is not None else "length" if len(tokens[b]) >= max_new_tokens else "time"
        out.append(Completion(prompt=p, text=s.text, finish=finish, stop=s.stopped, tokens=tokens[b]))
    return out
