"""Text completions (issue 17): stop strings (streamed text never shows a stop string, even one spanning tokens),
rows that end on their own in a batch (their cache rows dropped) equal each prompt alone, per-row generators,
top-k, the wall-clock budget, non-finite logits."""
import random

import pytest
import torch

from ebtkit.eval import generate as gen_mod
from ebtkit.eval.completion import StopStream, check_stops, complete
from ebtkit.eval.generate import generate, sample_next
from tests.helpers import tiny_model

V, CTX = 13, 8


class Pieces:
    """A tokenizer of 13 multi-character pieces (prompts are encoded one character per token)."""

    PIECES = ["a", "b", "c", "d", "e", " ", "\n", "ab", "ba", "\n\n", "é", "xy", "z."]

    def encode(self, text):
        return [self.PIECES.index(ch) for ch in text]

    def token_bytes(self, i):
        return self.PIECES[i].encode()


TOK = Pieces()


def _ids(*pieces):
    return [Pieces.PIECES.index(p) for p in pieces]


def _stream(pieces, stops):
    s = StopStream(TOK, stops)
    chunks = [s.feed(i) for i in _ids(*pieces)]
    return s, chunks


# ------------------------------------------------------------------------------------------------ StopStream
def test_a_stop_string_spanning_tokens_ends_the_text_before_it():
    s, chunks = _stream(["xy", "z.", "ab"], ["z.a"])            # "z." + "a|b": the stop spans two tokens
    assert chunks == ["xy", "", ""]                             # "z." was held back, never shown
    assert s.stopped == "z.a" and s.text == "xy" and s.finish() == ""


def test_held_back_text_is_released_once_ruled_out_or_at_the_end():
    s, chunks = _stream(["xy", "z.", "c"], ["z.a"])
    assert chunks == ["xy", "", "z.c"] and s.stopped is None
    assert s.finish() == "" and s.text == "xyz.c"
    s, chunks = _stream(["xy", "z."], ["z.a"])
    assert chunks == ["xy", ""] and s.finish() == "z." and s.text == "xyz."


def test_the_earliest_stop_wins_and_text_after_it_in_the_same_token_is_dropped():
    s, chunks = _stream(["c", "ba", "\n\n", "c"], ["\n", "a\n"])    # "cba\n\n": "a\n" at 2 before "\n" at 3
    assert chunks == ["c", "b", "", ""] and s.stopped == "a\n" and s.text == "cb"     # fed after the stop: nothing
    s, chunks = _stream(["c", "\n\n"], ["\n\n", "\n"])          # same start: the longer one is reported
    assert s.stopped == "\n\n" and s.text == "c"


def test_streaming_invariants_on_random_token_sequences():
    """For random pieces and stops: what is shown is always a prefix of the final text, held back text is at
    most (longest stop − 1) characters, and the final text is the raw text cut at the first stop occurrence."""
    rnd = random.Random(0)
    letters = "ab\n"
    for _ in range(300):
        stops = ["".join(rnd.choice(letters) for _ in range(rnd.randint(1, 4))) for _ in range(rnd.randint(1, 3))]
        ids = [rnd.randrange(len(Pieces.PIECES)) for _ in range(rnd.randint(0, 12))]
        s = StopStream(TOK, stops)
        shown, raw = "", ""
        for i in ids:
            shown += s.feed(i)
            raw += Pieces.PIECES[i]
            assert raw.startswith(shown) and not any(t in shown for t in stops)
            if s.stopped is None:
                assert len(raw) - len(shown) <= max(map(len, stops)) - 1
        shown += s.finish()
        full = "".join(Pieces.PIECES[i] for i in ids)
        hits = [(full.find(t), t) for t in stops if t in full]
        expect = full[: min(hits)[0]] if hits else full
        assert shown == s.text == expect, (ids, stops)


def test_empty_stop_strings_are_refused():
    with pytest.raises(ValueError, match="non-empty"):
        check_stops(["\n", ""])


# ------------------------------------------------------------------------------------------------ batches
PROMPTS = ["ab", "c", "ba d", "e e ab c"]


def _alone(m, decode, stop=(), max_new=10, **kw):
    return [complete(m, TOK, [p], max_new, stop=stop, seed=7, **decode, **kw)[0] for p in PROMPTS]


@pytest.mark.parametrize("model,cached", [("ebt", True), ("transformer++", True)])   # both paths: the next test
@pytest.mark.parametrize("decode", [dict(), dict(temperature=1.0, top_k=6, top_p=0.9)], ids=["greedy", "sampled"])
def test_a_batch_of_prompts_equals_each_prompt_alone(monkeypatch, model, cached, decode):
    """Rows end at different tokens (a stop string taken from one row's own text); the batch drops them and the
    rest go on; every completion equals that prompt generated alone with the same seed (the EBT draws random
    initial candidates: per-row generators make this exact for sampling too)."""
    m = tiny_model(model=model, vocab_size=V, context=CTX, init="normal")
    decode = {**decode, "cached": cached}
    free = [c.text for c in _alone(m, decode)]
    stop = next(t[i: i + 2] for t in free for i in range(1, len(t) - 1) if any(t[i: i + 2] not in u for u in free))
    alone = _alone(m, decode, stop=[stop])
    drops = []
    real = gen_mod._Batch.drop
    monkeypatch.setattr(gen_mod._Batch, "drop", lambda self, keep: (drops.append(list(keep)), real(self, keep))[1])
    batch = complete(m, TOK, PROMPTS, 10, stop=[stop], seed=7, **decode)
    assert drops, "no row ended early"
    assert {c.finish for c in batch} == {"stop", "length"}
    for a, b, t in zip(alone, batch, free):
        assert (b.text, b.finish, b.stop, b.tokens) == (a.text, a.finish, a.stop, a.tokens)
        assert b.text == (t[: t.index(stop)] if stop in t else t)         # cut before the stop, nothing else


@pytest.mark.parametrize("model,cached", [("ebt", True), ("ebt", False), ("transformer++", True),
                                          ("transformer++", False)])
def test_rows_ending_across_the_context_window_equal_each_row_alone(model, cached):
    """Ragged rows (one longer than the window) end after 3, 7 and 11 tokens: the cache rows of ended rows are
    dropped while the window slides; per-row generators make each row equal itself alone."""
    m = tiny_model(model=model, vocab_size=V, context=CTX)
    prompt = [[1, 2], [3, 4, 5, 6, 7], [9, 10, 11, 12, 0, 1, 2, 3, 4, 5]]
    ends = [7, 3, 11]
    kw = dict(temperature=0.9, cached=cached, **({"steps": 2, "samples": 2 if cached else 1} if model == "ebt" else {}))

    def flags(nxt):
        flags.n += 1
        return [flags.n >= e for e in ends]
    flags.n = 0
    gens = [torch.Generator().manual_seed(3) for _ in prompt]
    out = generate(m, prompt, 11, generator=gens, on_token=flags, **kw)
    assert [len(r) - len(p) for r, p in zip(out, prompt)] == ends
    for r, p, e in zip(out, prompt, ends):
        alone = generate(m, torch.tensor([p]), e, generator=[torch.Generator().manual_seed(3)], **kw)
        assert torch.equal(r, alone[0]), (r, alone)


def test_one_generator_per_row_is_the_single_generator_for_one_row():
    """The CLI passes a list of one generator for a single prompt: the same draws as the generator itself (so
    a seed printed before this change still gives the same text)."""
    m = tiny_model(vocab_size=V, context=CTX, init="normal")
    p = torch.tensor([[1, 2, 3]])
    a = generate(m, p, 6, temperature=1.0, top_p=0.9, generator=torch.Generator().manual_seed(4))
    b = generate(m, p, 6, temperature=1.0, top_p=0.9, generator=[torch.Generator().manual_seed(4)])
    assert torch.equal(a, b)


def test_max_time_ends_every_row_after_the_token_in_progress():
    m = tiny_model(vocab_size=V, context=CTX)
    out = complete(m, TOK, PROMPTS, 30, max_time=1e-9)
    assert [c.finish for c in out] == ["time"] * len(PROMPTS) and all(len(c.tokens) == 1 for c in out)
    assert all(c.text == Pieces.PIECES[c.tokens[0]] for c in out)
    full = generate(m, torch.tensor([[1, 2]]), 30, max_time=1e-9)
    assert full.shape == (1, 3)
    assert complete(m, TOK, ["ab"], 5)[0].finish == "length"
    with pytest.raises(ValueError, match="max_time"):
        generate(m, torch.tensor([[1, 2]]), 3, max_time=float("nan"))


def test_top_k():
    logits = torch.randn(4, V, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    draws = torch.stack([sample_next(logits, 2.0, top_k=3, generator=torch.Generator().manual_seed(s))
                         for s in range(300)], 1)                                    # 4 × 300
    top3 = logits.topk(3, -1).indices
    for b in range(4):
        assert set(draws[b].tolist()) == set(top3[b].tolist())                      # all three, nothing else
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    assert torch.equal(sample_next(logits, 5.0, top_k=1, generator=g()), logits.argmax(-1))
    assert torch.equal(sample_next(logits, 1.0, top_k=V, generator=g()), sample_next(logits, 1.0, generator=g()))
    for bad in (dict(top_k=-1), dict(top_k=1.5), dict(temperature=float("nan")), dict(temperature=float("inf")),
                dict(top_p=float("nan"))):
        with pytest.raises(ValueError):
            sample_next(logits, **{"temperature": 1.0, **bad})


@pytest.mark.parametrize("model", ["ebt", "transformer++"])
def test_non_finite_logits_stop_generation_with_a_clear_error(model):
    m = tiny_model(model=model, vocab_size=V, context=CTX)
    w = m.head.weight if model == "ebt" else m.lm_head.weight
    with torch.no_grad():
        w.fill_(float("nan"))
    seen = []
    with pytest.raises(ValueError, match="non-finite logits"):
        generate(m, torch.tensor([[1, 2]]), 4, on_token=seen.append)
    assert seen == []                                            # no token of NaN logits was reported
