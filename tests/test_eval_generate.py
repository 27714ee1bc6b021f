"""Generation: the KV-cached path (default) equals full recomputation, for equal and ragged batch rows, across
the context-window boundary, for the text EBT (every step conditioning) and the Transformer++."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from ebtkit.eval.generate import generate, sample_next
from tests.helpers import close, tiny_model

V, CTX = 13, 8


def _prompt(B, n, seed=0):
    return torch.randint(0, V, (B, n), generator=torch.Generator().manual_seed(seed))


def _gen(m, prompt, new, cached, seed=5, **kw):
    return generate(m, prompt, new, cached=cached, generator=torch.Generator().manual_seed(seed), **kw)


def _same(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), (a, b)
    else:
        assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b)), (a, b)


@pytest.mark.parametrize("step_cond,landscapes", [("stream", 2), ("token", 2), ("none", 1)])
@pytest.mark.parametrize("decode", [dict(), dict(temperature=1.0, top_p=0.9)], ids=["greedy", "top-p"])
def test_ebt_cached_equals_full_recomputation(step_cond, landscapes, decode):
    m = tiny_model(step_cond=step_cond, n_landscapes=landscapes, vocab_size=V, context=CTX)
    prompt = _prompt(3, 3)
    a = _gen(m, prompt, 4, cached=True, steps=3, **decode)          # stays inside the window: cache extended
    b = _gen(m, prompt, 4, cached=False, steps=3, **decode)
    assert a.shape == (3, 7) and torch.equal(a[:, :3], prompt)
    _same(a, b)


@pytest.mark.parametrize("step_cond", ["stream", "token"])
def test_ebt_crossing_the_context_window_equals_full_recomputation(step_cond):
    """6 prompt tokens + 5 new with a window of 8: the cache is extended, then rebuilt once the window slides."""
    m = tiny_model(step_cond=step_cond, vocab_size=V, context=CTX)
    kw = dict(init_scale=0.0)                # candidates start at 0: the tokens are decided by ∇E alone
    a = _gen(m, _prompt(4, 6), 5, cached=True, **kw)
    _same(a, _gen(m, _prompt(4, 6), 5, cached=False, **kw))
    assert len(set(a[:, 6:].flatten().tolist())) > 2            # the decoded tokens are not degenerate


@pytest.mark.parametrize("step_cond", ["stream", "token"])
def test_ebt_ragged_rows_and_window_overflow_equal_full_recomputation(step_cond):
    """Rows of different lengths, run past the context window (the cache is rebuilt as the window slides)."""
    m = tiny_model(step_cond=step_cond, vocab_size=V, context=CTX)
    prompt = [[1, 2], [3, 4, 5, 6, 7], [8], [9, 10, 11, 12, 0, 1, 2, 3, 4, 5]]   # the last is longer than CTX
    policy = dict(steps=2, samples=2, langevin_sigma=0.3)
    a = _gen(m, prompt, 9, cached=True, **policy)
    b = _gen(m, prompt, 9, cached=False, **policy)
    assert isinstance(a, list) and [len(r) for r in a] == [11, 14, 10, 19]
    for r, p in zip(a, prompt):
        assert r[: len(p)].tolist() == p
    _same(a, b)


@pytest.mark.parametrize("model", ["ebt", "transformer++"])
def test_batched_ragged_generation_equals_each_row_alone(model):
    """With a deterministic policy (zero initial candidates, greedy) a ragged batch decodes each row exactly as
    a batch of one: right padding never leaks into a row."""
    m = tiny_model(model=model, vocab_size=V, context=CTX)
    prompt = [[3, 1, 4, 1, 5], [9], [2, 6, 5]]
    kw = dict(init_scale=0.0) if model == "ebt" else {}
    batched = _gen(m, prompt, 6, cached=True, **kw)
    for row, p in zip(batched, prompt):
        alone = _gen(m, torch.tensor([p]), 6, cached=True, **kw)
        assert torch.equal(row, alone[0]), (row, alone)


@pytest.mark.parametrize("prompt", [_prompt(2, 3), _prompt(2, 6), _prompt(2, 10), [[1, 2, 3], [4], [5, 6, 7, 8, 9, 10]]],
                         ids=["equal", "crossing-window", "longer-than-window", "ragged-crossing"])
@pytest.mark.parametrize("decode", [dict(), dict(temperature=0.8)], ids=["greedy", "sampled"])
def test_transformer_cached_equals_full_recomputation(prompt, decode):
    m = tiny_model(model="transformer++", vocab_size=V, context=CTX)
    _same(_gen(m, prompt, 7, cached=True, **decode), _gen(m, prompt, 7, cached=False, **decode))


def test_cache_extension_matches_a_fresh_encoding_row_by_row():
    """Growing the context cache one token per row at per-row positions gives exactly the keys/values of
    encoding each row's whole sequence (at every slot the row can see)."""
    m = tiny_model(step_cond="token", vocab_size=V, context=CTX)
    seqs = [torch.tensor([1, 2, 3, 4, 5, 6]), torch.tensor([7, 8, 9]), torch.tensor([10, 11, 12, 0, 1])]
    start = [2, 1, 3]                                                  # prompt lengths; then grow to the end
    buf = torch.zeros(3, max(start), dtype=torch.long)
    for b, n in enumerate(start):
        buf[b, :n] = seqs[b][:n]
    cache = m.encode_context(buf, 1)
    lens = list(start)
    for _ in range(max(len(s) for s in seqs) - min(start)):
        nxt = torch.tensor([s[min(n, len(s) - 1)] for s, n in zip(seqs, lens)])
        cache = m.encode_context(nxt[:, None], 1, cache=cache, positions=torch.tensor(lens))
        lens = [n + 1 for n in lens]
    for b, s in enumerate(seqs):
        fresh = m.encode_context(s[None], 1)
        T = fresh.length                                               # P + len(s) slots
        for layer in range(len(cache.keys)):
            # the same float64 sums over other batch shapes (tests.helpers.tol): a layer's keys follow the earlier
            # layers' attention (≤ T slots) and MLP and their own projection, each a sum over at most the width 16
            depth = 2 * layer + 1
            close(cache.keys[layer][b, :, :T], fresh.keys[layer][0], 16, depth=depth)
            close(cache.values[layer][b, :, :T], fresh.values[layer][0], 16, depth=depth)
    with pytest.raises(ValueError, match="landscape"):
        m.energy_cached(cache, torch.zeros(3, 1, V, dtype=torch.float64), 0, torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="positions"):
        m.encode_context(torch.zeros(3, 2, dtype=torch.long), 1, cache=cache, positions=torch.tensor(lens))


def test_cached_generation_is_the_default_and_does_a_fraction_of_the_work(monkeypatch):
    m = tiny_model(dtype=torch.float32, vocab_size=V, context=32, d_model=32)
    calls = {"reference": 0, "encode": 0}
    ref, enc = m.energy_reference, m.encode_context
    monkeypatch.setattr(m, "energy_reference", lambda *a, **k: calls.__setitem__("reference", calls["reference"] + 1) or ref(*a, **k))
    monkeypatch.setattr(m, "encode_context", lambda *a, **k: calls.__setitem__("encode", calls["encode"] + 1) or enc(*a, **k))
    prompt = _prompt(2, 16)
    flops = {}
    for cached in (True, False):
        with FlopCounterMode(display=False) as fc:
            generate(m, prompt, 8, steps=2, generator=torch.Generator().manual_seed(0), **({} if cached else {"cached": False}))
        flops[cached] = fc.get_total_flops()
        if cached:
            assert calls == {"reference": 0, "encode": 8}              # the prompt once, then one token at a time
    assert calls["reference"] == 8 * 2                                  # full path: every thinking step
    assert flops[True] * 5 < flops[False], flops


def test_generation_validates_its_inputs():
    m = tiny_model(vocab_size=V, context=CTX)
    for bad in (torch.zeros(2, 0, dtype=torch.long), [], [[]]):
        with pytest.raises(ValueError):
            generate(m, bad, 2)
    with pytest.raises(ValueError):
        generate(m, _prompt(1, 2), -1)
    with pytest.raises(ValueError):
        generate(m, _prompt(1, 2), 2, temperature=-1.0)
    with pytest.raises(ValueError):
        generate(m, _prompt(1, 2), 2, top_p=0.0)
    with pytest.raises(ValueError, match="unknown"):
        generate(m, _prompt(1, 2), 2, bogus=1)
    with pytest.raises(ValueError, match="selection"):
        generate(m, _prompt(1, 2), 2, select="best")
    with pytest.raises(ValueError, match="EBT"):
        generate(tiny_model(model="transformer++", vocab_size=V, context=CTX), _prompt(1, 2), 2, steps=3)
    assert torch.equal(generate(m, _prompt(1, 2), 0), _prompt(1, 2))
    assert sample_next(torch.tensor([[0.0, 3.0, 1.0]])).tolist() == [1]


@pytest.mark.parametrize("model", ["ebt", "transformer++"])
@pytest.mark.parametrize("ragged", [False, True])
def test_streaming_keeps_memory_bounded_and_gives_the_same_tokens(monkeypatch, model, ragged):
    """``keep=False`` holds at most ``prompt + context + 1 + CHUNK`` token columns whatever the number of new
    tokens, and streams exactly the tokens a full run returns."""
    from ebtkit.eval import generate as gen_mod
    m = tiny_model(model=model, dtype=torch.float32)
    monkeypatch.setattr(gen_mod._Batch, "CHUNK", 4)
    widths = []
    real = gen_mod._Batch.append

    def append(self, nxt):
        real(self, nxt)
        widths.append(self.buf.shape[1])

    monkeypatch.setattr(gen_mod._Batch, "append", append)
    prompt = [[1, 2, 3], [4, 5]] if ragged else torch.tensor([[1, 2, 3], [4, 5, 6]])
    full = generate(m, prompt, 40, temperature=1.0, generator=torch.Generator().manual_seed(0))
    streamed = []
    generate(m, prompt, 40, temperature=1.0, generator=torch.Generator().manual_seed(0), keep=False,
             on_token=streamed.append)
    got = torch.stack(streamed, 1)                                      # B × 40
    for b in range(2):
        n = len(prompt[b])
        torch.testing.assert_close(got[b], full[b][n:], rtol=0, atol=0)
    bounded = widths[-40:]                                              # the streaming run
    assert max(bounded) <= 3 + m.cfg.context + 1 + 4 < 40
