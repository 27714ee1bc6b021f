"""``benchmarks/bench.py`` (behind ``ebt bench``): FLOP counting (incl. the CPU SDPA kernel), peak memory,
tables, CLI validation. Timings themselves are benchmarks, not tests (docs/speed.md)."""
import json

import pytest
import torch

from ebtkit.cli import main
from ebtkit.commands.bench import load_bench
from tests.helpers import tiny_model

bench = load_bench()
MICRO = bench.TrainCase("4xs", 16, 32, 1)


@pytest.mark.slow
def test_flop_count_includes_the_cpu_sdpa_kernel_of_transformer_pp():
    m = tiny_model(model="transformer++", dtype=torch.float32, context=16)
    x = torch.randint(0, 13, (2, 17))
    with torch.utils.flop_counter.FlopCounterMode(display=False) as plain:
        m.loss(x).backward()
    ours = bench.count_flops(lambda: m.loss(x).backward())
    D, S, L = 16, 16, 2
    attn_fwd = 2 * 2 * 2 * S * S * D             # QKᵀ and PV over all heads, batch 2
    assert ours - plain.get_total_flops() == L * attn_fwd * (1 + 2.5)   # torch's SDPA backward = 2.5× forward


def test_peak_rss_sees_a_large_temporary():
    peak = bench.PeakRSS()
    if not peak.ok:
        pytest.skip("needs Linux /proc/self/clear_refs")
    got = peak(lambda: torch.ones(64 * 2**20 // 4).sum())    # a 64 MiB buffer, freed inside
    assert got >= 48 * 2**20, got


@pytest.mark.slow
def test_micro_grid_runs_and_reports_every_ratio():
    res = bench.run("quick", rounds=1, train_cases=[MICRO], gen_cases=[bench.GenCase("4xs", 32, 1, 4, 2)],
                    memory=False, log=lambda m: None)
    (t,), (g,) = res["train"], res["generate"]
    assert set(t["variants"]) == set(bench.TRAIN_VARIANTS)
    fast, ref, tpp = t["variants"]["fast_s1"], t["variants"]["ref_s1"], t["variants"]["tpp"]
    assert fast["time_s"]["median"] > 0 and tpp["time_s"]["median"] > 0
    assert fast["flops"] < ref["flops"] and fast["flops_vs_tpp"] > 1
    assert g["ebt_same_tokens"] and g["tpp_same_tokens"]
    res["summary"] = bench.summary(res)
    assert set(res["summary"]) == set(bench.TARGETS)
    table = bench.format_tables(res)
    assert "fast S1" in table and "cached speed-up" in table and "Targets" in table
    json.dumps(res)                                                # JSON-able


def test_cli_bench_validates_before_running(capsys):
    with pytest.raises(SystemExit) as e:                 # refused while parsing, naming the flag
        main(["bench", "--rounds", "0"])
    assert e.value.code == 2
    assert main(["bench", "--vocabs", "7"]) == 2
    assert main(["bench", "--out", "/nonexistent/dir/x.json"]) == 2
    err = capsys.readouterr().err
    assert err.count("ebt: error:") == 3 and "argument --rounds:" in err and "--out /nonexistent/dir/x.json" in err
