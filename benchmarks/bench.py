"""Speed benchmarks: training steps and generation, Transformer++ vs the reference and the fast text EBT.

Measurement method (also in ``docs/speed.md``):

* **Interleaved, in one process.** For each configuration every variant runs once per round (A, B, C, A, B,
  C, …) with ``torch.set_num_threads`` fixed; we report the median over rounds and the spread (min–max), and
  ratios of medians. **Time = CPU time of the process** (``time.process_time``, one torch thread by default)
  around a complete step: on a machine shared with other jobs, wall time mostly measures the scheduler (our
  niced process gets a varying share of a core), while CPU time measures the work. Wall time is kept in the
  JSON (``wall_s``). No device sync is needed on CPU.
* **Train step** = ``zero_grad`` → loss (for the EBT: thinking with second-order graphs,
  :func:`ebtkit.objectives.ebt_text_loss`) → ``backward(inputs=parameters)`` → ``AdamW.step``. Naming the
  parameters keeps autograd from back-propagating into the candidate leaves ŷ_k (a softmax backward and a
  B·S×D × D×V matmul per step whose result nobody reads): identical gradients, 26 % less time at V = 8192. System 1: 2 steps, one landscape
  each, loss on both; System 2: 3 steps, no detach, truncated, α jitter and Langevin noise.
* **FLOPs** of one step from :class:`torch.utils.flop_counter.FlopCounterMode` (matmul-class ops only; the CPU
  flash-attention kernel of Transformer++, which the counter does not know, is counted with torch's own SDPA
  formulas, i.e. the full, unmasked score matrix, like our explicit EBT attention). Counted at batch 1 and
  scaled by the batch (every op is linear in the batch). **Achieved FLOP/s** = FLOPs / median time, and
  **utilisation** = that / the peak FLOP/s of a large fp32 matmul timed in the same process, each round.
* **Peak memory** = peak resident set size during the step minus the resident size just before it: Linux
  ``VmHWM`` after resetting it through ``/proc/self/clear_refs`` (``5``). glibc keeps freed heap memory
  resident and reuses it, which would hide a variant's peak behind an earlier one, so the memory pass (one
  step per variant, after a warm-up step) runs in a fresh interpreter that first sets
  ``mallopt(M_MMAP_THRESHOLD, 64 KiB)``: every tensor buffer is then its own mapping, returned on free. The
  timed process keeps glibc's defaults. (``tracemalloc`` does not see PyTorch's allocations and ``torch.cuda`` stats do not apply.)
* **Generation** tokens/s = batch × new tokens / median time of a whole :func:`ebtkit.generate.generate` call
  (prompt included), greedy, untrained weights (speed does not depend on them).
"""
from __future__ import annotations

import ctypes
import os
import platform
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils import flop_counter as fc

from ebtkit.core.config import preset
from ebtkit.core.models import build_model
from ebtkit.eval.generate import generate
from ebtkit.tasks.text import ebt_text_loss

TRAIN_VARIANTS = ("tpp", "fast_s1", "ref_s1", "fast_s2", "ref_s2")
GEN_VARIANTS = ("ebt_cached", "ebt_full", "tpp_cached", "tpp_full")
STEPS = {"s1": 2, "s2": 3}


@dataclass(frozen=True)
class TrainCase:
    size: str
    context: int
    vocab: int
    batch: int
    variants: tuple[str, ...] = TRAIN_VARIANTS

    @property
    def name(self) -> str:
        return f"{self.size} S={self.context} V={self.vocab} B={self.batch}"


@dataclass(frozen=True)
class GenCase:
    size: str
    vocab: int
    batch: int
    prompt: int = 64
    new: int = 32
    steps: int = 2

    @property
    def name(self) -> str:
        return f"{self.size} V={self.vocab} B={self.batch} prompt={self.prompt} new={self.new} steps={self.steps}"


GRIDS = {
    # the published grid (docs/speed.md)
    # (at batch 16 only the targeted pair: the reference paths and System 2 cost ~80 % of the run and their
    # ratios to the fast path do not depend on the batch; they are measured at batch 8)
    "full": dict(train=[TrainCase(s, c, v, b, TRAIN_VARIANTS if b == 8 else ("tpp", "fast_s1"))
                        for s in ("4xs", "3xs") for c in (128, 256) for v in (256, 8192) for b in (8, 16)],
                 generate=[GenCase(s, v, b) for s in ("4xs", "3xs") for v in (256, 8192) for b in (1, 8)]),
    # a smoke test: well under a minute
    "quick": dict(train=[TrainCase("4xs", 64, 256, 4)], generate=[GenCase("4xs", 256, 2, prompt=16, new=8)]),
}


# ---------------------------------------------------------------------------------------------- measuring
def _median_spread(xs: list[float]) -> dict:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """``(cpu_seconds, wall_seconds, result)`` of one call."""
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    return time.process_time() - c, time.perf_counter() - w, out


def matmul_peak(n: int = 1536, reps: int = 3) -> float:
    """FLOP/s of an n×n fp32 matmul (best of ``reps``) at the current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(timed(lambda: a @ b)[0] for _ in range(reps))
    return 2 * n ** 3 / best


class PeakRSS:
    """Peak resident memory of a callable, in bytes above the resident size before it (Linux; else None)."""

    def __init__(self):
        self.ok = sys.platform.startswith("linux") and os.path.exists("/proc/self/clear_refs")
        self.armed = False

    def arm(self) -> None:
        """Fix glibc's mmap threshold so freed tensor buffers leave the resident set (see module doc)."""
        if self.ok and not self.armed:
            try:
                ctypes.CDLL("libc.so.6").mallopt(-3, 64 * 1024)                 # M_MMAP_THRESHOLD
            except OSError:
                self.ok = False
            self.armed = True

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"{key} not in /proc/self/status")

    def __call__(self, fn: Callable[[], None]) -> int | None:
        if not self.ok:
            fn()
            return None
        before = self._status("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self.ok = False
            fn()
            return None
        fn()
        return max(0, self._status("VmHWM") - before)


def _sdpa_cpu_fwd(q, k, v, *args, out_shape=None, **kw):
    return fc.sdpa_flop_count(q, k, v)


def _sdpa_cpu_bwd(grad_out, q, k, v, *args, out_shape=None, **kw):
    return fc.sdpa_backward_flop_count(grad_out, q, k, v)


_SDPA_CPU = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_fwd,
             torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_bwd}


def count_flops(fn: Callable[[], None]) -> int:
    with fc.FlopCounterMode(display=False, custom_mapping=_SDPA_CPU) as counter:
        fn()
    return counter.get_total_flops()


# ---------------------------------------------------------------------------------------------- train steps
def train_variants(case: TrainCase, seed: int = 0) -> dict[str, Callable[[torch.Tensor], None]]:
    """``variant -> step(tokens)`` for one configuration (models built once, AdamW each)."""
    over = {"model.vocab_size": case.vocab, "model.context": case.context}
    torch.manual_seed(seed)
    cfgs = {s: preset(case.size, s).replace(**over) for s in ("s1", "s2")}
    models = {"tpp": build_model(cfgs["s1"].replace(**{"model.model": "transformer++"}).model),
              "s1": build_model(cfgs["s1"].model), "s2": build_model(cfgs["s2"].model)}
    params = {k: [p for p in m.parameters() if p.requires_grad] for k, m in models.items()}
    opts = {k: torch.optim.AdamW(params[k], lr=1e-4) for k, m in models.items()}

    def tpp_step(tokens):
        m, opt = models["tpp"], opts["tpp"]
        opt.zero_grad(set_to_none=True)
        m.loss(tokens).backward(inputs=params["tpp"])
        opt.step()

    def ebt_step(system: str, reference: bool):
        m, opt, tcfg = models[system], opts[system], cfgs[system].thinking

        def step(tokens, gen=None):
            opt.zero_grad(set_to_none=True)
            gen = gen if gen is not None else torch.Generator().manual_seed(seed)
            loss = ebt_text_loss(m, tokens, tcfg, gen, steps=STEPS[system], reference=reference)[0]
            loss.backward(inputs=params[system])     # not into the candidate leaves (see the module doc)
            opt.step()
        return step

    return {"tpp": tpp_step, "fast_s1": ebt_step("s1", False), "ref_s1": ebt_step("s1", True),
            "fast_s2": ebt_step("s2", False), "ref_s2": ebt_step("s2", True)}


def _tokens(case: TrainCase) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, case.vocab, (case.batch, case.context + 1), generator=g)


def bench_train(case: TrainCase, rounds: int, log=print) -> dict:
    """Interleaved timing rounds and FLOP counts of every variant (memory: :func:`memory_train`)."""
    variants = case.variants
    steps = train_variants(case)
    tokens = _tokens(case)
    times: dict[str, list[float]] = {v: [] for v in variants}
    walls: dict[str, list[float]] = {v: [] for v in variants}
    peaks_flops = []
    for r in range(rounds):
        peaks_flops.append(matmul_peak())
        for v in variants:
            cpu, wall, _ = timed(lambda v=v: steps[v](tokens))
            times[v].append(cpu)
            walls[v].append(wall)
        log(f"  {case.name} round {r + 1}/{rounds}: " + " ".join(f"{v}={times[v][-1]:.2f}s" for v in variants))
    flops = {v: count_flops(lambda v=v: steps[v](tokens[:1])) * case.batch for v in variants}
    peak_flops = statistics.median(peaks_flops)
    out = {"case": case.__dict__, "name": case.name, "matmul_peak_flops": peak_flops, "variants": {}}
    for v in variants:
        med = statistics.median(times[v])
        out["variants"][v] = {"time_s": _median_spread(times[v]), "wall_s": _median_spread(walls[v]), "flops": flops[v],
                              "flops_per_s": flops[v] / med, "utilisation": flops[v] / med / peak_flops,
                              "peak_bytes": None}
    base = out["variants"].get("tpp")
    if base:
        for v, d in out["variants"].items():
            d["time_vs_tpp"] = d["time_s"]["median"] / base["time_s"]["median"]
            d["flops_vs_tpp"] = d["flops"] / base["flops"]
            d["flops_per_s_vs_tpp"] = d["flops_per_s"] / base["flops_per_s"]
    for s in ("s1", "s2"):
        if f"fast_{s}" in out["variants"] and f"ref_{s}" in out["variants"]:
            out[f"ref_over_fast_{s}"] = (out["variants"][f"ref_{s}"]["time_s"]["median"]
                                         / out["variants"][f"fast_{s}"]["time_s"]["median"])
    return out


def memory_train(case: TrainCase, peak: PeakRSS) -> dict[str, int | None]:
    """Peak memory of one step of each variant. Needs ``peak.arm()`` before the process allocated anything
    large: :func:`memory_in_subprocess` runs it in a fresh interpreter."""
    steps, tokens, variants = train_variants(case), _tokens(case), case.variants
    for v in variants:                  # one step each first: AdamW state and grads exist before measuring
        steps[v](tokens[:1])
    return {v: peak(lambda v=v: steps[v](tokens)) for v in variants}


def _memory_main() -> None:
    """Subprocess entry: cases as JSON on stdin → one ``{variant: bytes}`` per case as JSON on stdout."""
    peak = PeakRSS()
    peak.arm()                          # first thing: no freed heap chunk can hide a later peak
    spec = json.loads(sys.stdin.read())
    torch.set_num_threads(spec["threads"])
    res = [memory_train(TrainCase(**{**c, "variants": tuple(c["variants"])}), peak) if peak.ok else {}
           for c in spec["cases"]]
    print(json.dumps(res))


def memory_in_subprocess(cases: list[TrainCase], threads: int) -> list[dict]:
    """Peak memory per case and variant, measured in a fresh interpreter (see the module doc)."""
    spec = json.dumps({"threads": threads, "cases": [c.__dict__ for c in cases]})
    code = f"import runpy; runpy.run_path({__file__!r})['_memory_main']()"
    proc = subprocess.run([sys.executable, "-c", code],
                          input=spec, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory pass failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- generation
def bench_generate(case: GenCase, rounds: int, variants=GEN_VARIANTS, log=print, seed: int = 0) -> dict:
    over = {"model.vocab_size": case.vocab, "model.context": max(128, case.prompt + case.new)}
    torch.manual_seed(seed)
    cfg = preset(case.size, "s1").replace(**over)
    ebt = build_model(cfg.model)
    torch.nn.init.normal_(ebt.head.weight, std=0.5)   # trained-like head: the zero init gives ∇E ≡ 0, so the
    #                                                   same-tokens check below would be trivially true
    tpp = build_model(cfg.replace(**{"model.model": "transformer++"}).model)
    prompt = torch.randint(0, case.vocab, (case.batch, case.prompt), generator=torch.Generator().manual_seed(1))
    runs = {
        "ebt_cached": lambda: generate(ebt, prompt, case.new, steps=case.steps, cached=True,
                                       generator=torch.Generator().manual_seed(2)),
        "ebt_full": lambda: generate(ebt, prompt, case.new, steps=case.steps, cached=False,
                                     generator=torch.Generator().manual_seed(2)),
        "tpp_cached": lambda: generate(tpp, prompt, case.new, cached=True),
        "tpp_full": lambda: generate(tpp, prompt, case.new, cached=False),
    }
    times: dict[str, list[float]] = {v: [] for v in variants}
    walls: dict[str, list[float]] = {v: [] for v in variants}
    outs = {}
    for r in range(rounds):
        for v in variants:
            cpu, wall, outs[v] = timed(runs[v])
            times[v].append(cpu)
            walls[v].append(wall)
        log(f"  {case.name} round {r + 1}/{rounds}: " + " ".join(f"{v}={times[v][-1]:.2f}s" for v in variants))
    res = {"case": case.__dict__, "name": case.name, "variants": {}}
    for v in variants:
        res["variants"][v] = {"time_s": _median_spread(times[v]), "wall_s": _median_spread(walls[v]),
                              "tokens_per_s": case.batch * case.new / statistics.median(times[v])}
    if "ebt_cached" in outs and "ebt_full" in outs:
        res["ebt_same_tokens"] = bool(torch.equal(outs["ebt_cached"], outs["ebt_full"]))
        res["ebt_cached_speedup"] = (res["variants"]["ebt_full"]["time_s"]["median"]
                                     / res["variants"]["ebt_cached"]["time_s"]["median"])
    if "tpp_cached" in outs and "tpp_full" in outs:
        res["tpp_same_tokens"] = bool(torch.equal(outs["tpp_cached"], outs["tpp_full"]))
        res["tpp_cached_speedup"] = (res["variants"]["tpp_full"]["time_s"]["median"]
                                     / res["variants"]["tpp_cached"]["time_s"]["median"])
    if "ebt_cached" in outs and "tpp_cached" in outs:
        res["ebt_cached_vs_tpp_cached"] = (res["variants"]["ebt_cached"]["time_s"]["median"]
                                           / res["variants"]["tpp_cached"]["time_s"]["median"])
    return res


# ---------------------------------------------------------------------------------------------- driver
def environment(threads: int) -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"torch": torch.__version__, "python": platform.python_version(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "threads": threads, "dtype": "float32",
            "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def run(grid: str = "full", rounds: int = 3, threads: int = 1, parts=("train", "generate"), memory: bool = True,
        train_cases=None, gen_cases=None, log=print) -> dict:
    """Run a benchmark grid; returns the JSON-able result (``meta``, ``train``, ``generate``)."""
    if grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}; choose from {', '.join(GRIDS)}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    torch.set_num_threads(threads)
    t0 = time.time()
    result = {"meta": {**environment(threads), "grid": grid, "rounds": rounds}, "train": [], "generate": []}
    peak = PeakRSS()
    if "generate" in parts:     # generation first: the memory pass's malloc setting must not affect its timings
        for case in gen_cases if gen_cases is not None else GRIDS[grid]["generate"]:
            result["generate"].append(bench_generate(case, rounds, log=log))
    cases = (train_cases if train_cases is not None else GRIDS[grid]["train"]) if "train" in parts else []
    for case in cases:
        result["train"].append(bench_train(case, rounds, log=log))
    if memory and peak.ok and cases:    # a fresh process: its malloc setting must not touch these timings
        for case, res, mem in zip(cases, result["train"], memory_in_subprocess(cases, threads)):
            for v, b in mem.items():
                res["variants"][v]["peak_bytes"] = b
            log(f"  {case.name} peak memory: " + " ".join(
                f"{v}={d['peak_bytes'] / 2**20:.0f}MiB" for v, d in res["variants"].items() if d["peak_bytes"]))
    result["meta"]["matmul_peak_flops"] = matmul_peak()
    result["meta"]["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    result["meta"]["wall_s"] = round(time.time() - t0, 1)
    return result


# ---------------------------------------------------------------------------------------------- reporting
TARGETS = {"fast_s1_time_vs_tpp": ("<=", 4.0), "ebt_cached_speedup": (">=", 10.0),
           "fast_s1_flops_per_s_vs_tpp": (">=", 0.7)}


def summary(result: dict) -> dict:
    """Min / median / max over the grid of each targeted ratio, and whether every case meets the target."""
    series = {
        "fast_s1_time_vs_tpp": [r["variants"]["fast_s1"]["time_vs_tpp"] for r in result["train"]
                                if "fast_s1" in r["variants"] and "time_vs_tpp" in r["variants"]["fast_s1"]],
        "fast_s1_flops_per_s_vs_tpp": [r["variants"]["fast_s1"]["flops_per_s_vs_tpp"] for r in result["train"]
                                       if "fast_s1" in r["variants"] and "flops_per_s_vs_tpp" in r["variants"]["fast_s1"]],
        "ebt_cached_speedup": [r["ebt_cached_speedup"] for r in result["generate"] if "ebt_cached_speedup" in r],
    }
    out = {}
    for key, xs in series.items():
        if not xs:
            continue
        op, target = TARGETS[key]
        ok = [x <= target if op == "<=" else x >= target for x in xs]
        out[key] = {"min": min(xs), "median": statistics.median(xs), "max": max(xs), "target": f"{op} {target:g}",
                    "met": sum(ok), "cases": len(xs)}
    return out


def _ms(d: dict) -> str:
    t = d["time_s"]
    return f"{1000 * t['median']:.0f} [{1000 * t['min']:.0f}–{1000 * t['max']:.0f}]"


def format_tables(result: dict) -> str:
    """Markdown tables: train-step time, FLOPs/utilisation/memory, generation, and the targets."""
    lines = []
    m = result["meta"]
    lines.append(f"torch {m['torch']}, {m['cpu']}, {m['threads']} thread(s), fp32, grid '{m['grid']}', "
                 f"{m['rounds']} interleaved rounds (median [min–max]); matmul peak "
                 f"{m['matmul_peak_flops'] / 1e9:.1f} GFLOP/s; load average {m['loadavg_start']} → {m['loadavg_end']}; "
                 f"{m['wall_s']:.0f} s")
    if result["train"]:
        lines += ["", "Train step, ms (× Transformer++):", "",
                  "| config | T++ | fast S1 | ref S1 | fast S2 | ref S2 | ref/fast S1 |", "|---|---|---|---|---|---|---|"]
        for r in result["train"]:
            v = r["variants"]
            cells = [_ms(v["tpp"])] + [f"{_ms(v[k])} ({v[k]['time_vs_tpp']:.2f}×)" if k in v else "–"
                                       for k in TRAIN_VARIANTS[1:]]
            rf = f"{r['ref_over_fast_s1']:.2f}×" if "ref_over_fast_s1" in r else "–"
            lines.append(f"| {r['name']} | " + " | ".join(cells) + f" | {rf} |")
        lines += ["", "FLOPs per step, achieved FLOP/s (utilisation of the matmul peak), peak memory above the "
                  "pre-step resident size:", "",
                  "| config | GFLOP T++ | fast S1 (×) | ref S1 (×) | GFLOP/s T++ | fast S1 (×T++) | util T++ / fast S1 "
                  "| MiB T++ | fast S1 | ref S1 |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in result["train"]:
            v = r["variants"]
            mib = lambda k: f"{v[k]['peak_bytes'] / 2**20:.0f}" if v.get(k, {}).get("peak_bytes") else "–"  # noqa: E731
            ref = (f"{v['ref_s1']['flops'] / 1e9:.2f} ({v['ref_s1']['flops_vs_tpp']:.2f}×)" if "ref_s1" in v else "–")
            lines.append(
                f"| {r['name']} | {v['tpp']['flops'] / 1e9:.2f} | {v['fast_s1']['flops'] / 1e9:.2f} "
                f"({v['fast_s1']['flops_vs_tpp']:.2f}×) | {ref} "
                f"| {v['tpp']['flops_per_s'] / 1e9:.1f} | {v['fast_s1']['flops_per_s'] / 1e9:.1f} "
                f"({v['fast_s1']['flops_per_s_vs_tpp']:.2f}×) | {100 * v['tpp']['utilisation']:.0f}% / "
                f"{100 * v['fast_s1']['utilisation']:.0f}% | {mib('tpp')} | {mib('fast_s1')} | {mib('ref_s1')} |")
    if result["generate"]:
        lines += ["", "Generation, tokens/s (whole call, prompt included):", "",
                  "| config | EBT cached | EBT full | cached speed-up | same tokens | T++ cached | T++ full "
                  "| EBT cached / T++ cached time |", "|---|---|---|---|---|---|---|---|"]
        for r in result["generate"]:
            v = r["variants"]
            lines.append(f"| {r['name']} | {v['ebt_cached']['tokens_per_s']:.1f} | {v['ebt_full']['tokens_per_s']:.1f} "
                         f"| {r['ebt_cached_speedup']:.1f}× | {r['ebt_same_tokens']} | {v['tpp_cached']['tokens_per_s']:.0f} "
                         f"| {v['tpp_full']['tokens_per_s']:.0f} | {r['ebt_cached_vs_tpp_cached']:.1f}× |")
    s = summary(result)
    if s:
        lines += ["", "Targets (over the grid):", "", "| ratio | target | min | median | max | cases meeting it |",
                  "|---|---|---|---|---|---|"]
        for k, d in s.items():
            lines.append(f"| {k} | {d['target']} | {d['min']:.2f} | {d['median']:.2f} | {d['max']:.2f} "
                         f"| {d['met']}/{d['cases']} |")
    return "\n".join(lines)
