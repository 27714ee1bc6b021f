"""Issue 17: every number a user gives is checked before anything runs (one line naming the flag, exit 2), the
top-p/top-k rule, the seed line only when random numbers are drawn, the generation flags (--stop, --prompts,
--max-time, --out) and the output-path rules of report and think — each through ``ebtkit.cli.main``."""
import json

import pytest
import torch

import ebtkit
from ebtkit.cli import build_parser, main


def cli(args, capsys):
    """(exit status, stdout, stderr) of ``ebt ARGS``, whether argparse or the command refused it."""
    try:
        rc = main(args)
    except SystemExit as e:
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def one_line_error(rc, err, *needles):
    assert rc == 2, err
    assert err.startswith("ebt: error: ") and err.count("\n") == 1, err
    assert "internal error" not in err and "Traceback" not in err
    for n in needles:
        assert n in err, (n, err)


def _save(path, model="ebt", **kw):
    m = ebtkit.build(model, preset="tiny", vocab_size=256, **kw)
    if model == "ebt":
        torch.manual_seed(0)
        torch.nn.init.normal_(m.head.weight, std=0.5)          # non-trivial energies (the head starts at zero)
    ebtkit.save(m, path)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    return {"ebt": _save(base / "ebt", init="zeros"),                 # System 1 start: no random numbers
            "ebt-noise": _save(base / "ebt-noise", init="normal"),    # random initial candidates
            "tpp": _save(base / "tpp", "transformer++")}


# ------------------------------------------------------------------------------ the numbers of issue 17 ("Why")
@pytest.mark.parametrize("flag,value", [("--temperature", "nan"), ("--temperature", "inf"), ("--temperature", "-1"),
                                        ("--temperature", "101"), ("--alpha", "inf"), ("--alpha", "1e30"),
                                        ("--alpha", "0"), ("--sigma", "nan"), ("--sigma", "-0.1"),
                                        ("--top-p", "0"), ("--top-p", "1.5"), ("--top-p", "nan"), ("--top-k", "-1"),
                                        ("--top-k", "2.5"), ("--max-new-tokens", "-1"), ("--steps", "0"),
                                        ("--samples", "0"), ("--tol", "-1"), ("--tol", "inf"), ("--seed", "-1"),
                                        ("--alpha-mult", "1e5"), ("--max-time", "0"), ("--max-time", "nan")])
def test_generate_refuses_bad_numbers_before_loading_the_run(tmp_path, capsys, flag, value):
    """The run does not even exist: the number is refused first, naming the flag and the value."""
    rc, out, err = cli(["generate", str(tmp_path / "nope"), "--prompt", "hi", flag, value], capsys)
    one_line_error(rc, err, f"argument {flag}:", repr(value))
    assert out == ""


def test_the_bounds_themselves_are_accepted():
    p = build_parser()
    a = p.parse_args(["generate", "RUN", "--prompt", "x", "--temperature", "100", "--alpha", "1e6", "--top-p", "1",
                      "--top-k", "0", "--sigma", "0", "--tol", "0", "--max-new-tokens", "1", "--seed", "0",
                      "--steps", "10000", "--samples", "1024"])
    assert (a.temperature, a.alpha, a.top_p, a.top_k, a.sigma, a.tol, a.max_new_tokens) == (100, 1e6, 1, 0, 0, 0, 1)
    assert (a.steps, a.samples) == (10_000, 1_024)


@pytest.mark.parametrize("argv", [
    ["think", "R", "--text", "x", "--steps", "-2"], ["think", "R", "--text", "x", "--alpha", "nan"],
    ["think", "R", "--text", "x", "--sigma", "inf"], ["think", "R", "--text", "x", "--samples", "0"],
    ["eval", "R", "--max-windows", "0"], ["eval", "R", "--batch-size", "0"], ["eval", "R", "--thinking-windows", "0"],
    ["eval", "R", "--windows", "-3"], ["eval", "R", "--bon-sigma", "nan"], ["eval", "R", "--images", "0"],
    ["eval", "R", "--samples", "0"], ["eval", "R", "--tol", "nan"], ["eval", "R", "--sigma", "-1"],
    ["eval", "R", "--alpha", "inf"], ["eval", "R", "--seed", "x"],
    ["report", "R", "--think-steps", "0"], ["report", "R", "--resamples", "99"],
    ["sweep", "--jobs", "0"], ["sweep", "--eval-windows", "0"],
])
def test_every_command_checks_its_numbers(capsys, argv):
    rc, _, err = cli(argv, capsys)
    flag = next(a for a in argv if a.startswith("--") and a not in ("--text",) and argv.index(a) >= len(argv) - 2)
    one_line_error(rc, err, f"argument {flag}:")


def test_top_p_or_top_k_without_a_temperature_is_an_error(tmp_path, capsys):
    for extra in (["--top-p", "0.5"], ["--top-k", "5"], ["--top-p", "0.5", "--temperature", "0"]):
        rc, out, err = cli(["generate", str(tmp_path / "nope"), "--prompt", "hi", *extra], capsys)
        one_line_error(rc, err, extra[0], "--temperature > 0")
        assert out == ""


def test_alpha_and_alpha_mult_together_are_refused(tmp_path, capsys):
    rc, _, err = cli(["think", str(tmp_path / "nope"), "--text", "hi", "--alpha", "3", "--alpha-mult", "2"], capsys)
    one_line_error(rc, err, "--alpha or --alpha-mult")


# ------------------------------------------------------------------------------ the seed line
def _gen(capsys, run, *extra):
    rc, out, err = cli(["generate", str(run), "--prompt", "In the", "--max-new-tokens", "8", *extra], capsys)
    assert rc == 0, err
    return out, err


def test_the_seed_is_printed_only_when_random_numbers_are_drawn(runs, capsys):
    for name in ("ebt", "tpp"):                                 # greedy, nothing random: no seed, same text
        out, err = _gen(capsys, runs[name])
        assert "seed" not in err and out.startswith("In the")
        again, err = _gen(capsys, runs[name], "--seed", "2")
        assert again == out and "--seed has no effect" in err
    for name, extra in (("ebt", ["--temperature", "1"]), ("tpp", ["--temperature", "1", "--top-k", "20"]),
                        ("ebt", ["--sigma", "0.5"]), ("ebt-noise", [])):
        out, err = _gen(capsys, runs[name], *extra)
        seed = int(err.split("seed: ")[1].split()[0])
        again, err2 = _gen(capsys, runs[name], *extra, "--seed", str(seed))
        assert again == out and f"seed: {seed}" in err2, (name, extra)


# ------------------------------------------------------------------------------ --stop, --prompts, --max-time, --out
def test_stop_strings_end_the_text_and_are_not_printed(runs, capsys, tmp_path):
    out, _ = _gen(capsys, runs["ebt"], "--max-new-tokens", "40")
    text = out[len("In the"): -1]
    stop = text[5:7]                                           # two bytes = two tokens: the stop spans tokens
    cut = text[: text.index(stop)]
    got, _ = _gen(capsys, runs["ebt"], "--max-new-tokens", "40", "--stop", stop, "--stop", "\\tnever",
                  "--out", str(tmp_path / "o.txt"))
    assert got == "In the" + cut + "\n"
    assert (tmp_path / "o.txt").read_bytes().decode() == got
    rc, _, err = cli(["generate", str(runs["ebt"]), "--prompt", "x", "--stop", ""], capsys)
    one_line_error(rc, err, "argument --stop:")


def test_prompts_file_is_one_batch_equal_to_each_prompt_alone(runs, capsys, tmp_path):
    prompts = ["In the beginning", "And God said", "x"]
    f = tmp_path / "prompts.txt"
    f.write_text("\n".join(prompts[:2]) + "\n\n" + prompts[2] + "\r\n")      # empty lines skipped, CRLF ok
    opts = ["--max-new-tokens", "10", "--temperature", "1", "--seed", "5"]
    rc, out, err = cli(["generate", str(runs["ebt-noise"]), "--prompts", str(f), *opts, "--out",
                        str(tmp_path / "o.jsonl")], capsys)
    assert rc == 0, err
    recs = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in recs] == prompts and [r["index"] for r in recs] == [0, 1, 2]
    assert all(r["finish"] == "length" and r["tokens"] == 10 and r["seed"] == 5 for r in recs)
    assert out == "".join(f"=== {i + 1}/3 ===\n{r['prompt']}{r['completion']}\n" for i, r in enumerate(recs))
    for r in recs:
        rc, alone, _ = cli(["generate", str(runs["ebt-noise"]), "--prompt", r["prompt"], *opts], capsys)
        assert rc == 0 and alone == r["prompt"] + r["completion"] + "\n"
    for bad, msg in ((tmp_path / "missing.txt", "file not found"), (tmp_path / "empty.txt", "no prompts")):
        if "empty" in bad.name:
            bad.write_text("\n\n")
        rc, _, err = cli(["generate", str(runs["ebt"]), "--prompts", str(bad)], capsys)
        one_line_error(rc, err, msg)


def test_max_time_stops_cleanly_with_what_was_generated(runs, capsys, tmp_path):
    full, _ = _gen(capsys, runs["tpp"], "--max-new-tokens", "30")
    out, err = _gen(capsys, runs["tpp"], "--max-new-tokens", "30", "--max-time", "1e-9", "--out",
                    str(tmp_path / "t.txt"))
    assert "stopped: --max-time 1e-09 s reached (1 token generated)" in err
    assert len(out.encode()) < len(full.encode()) and full.startswith(out[:-1])   # the first token of the same text
    assert (tmp_path / "t.txt").read_bytes().decode() == out


# ------------------------------------------------------------------------------ output paths
def test_report_into_an_existing_folder_writes_report_html_there(runs, capsys, tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    (d / "other.txt").write_text("kept")
    rc, out, err = cli(["report", str(runs["tpp"]), "--out", str(d), "--prompt", ""], capsys)
    assert rc == 0, err
    assert out.strip() == f"report: {d / 'report.html'}"
    assert sorted(p.name for p in d.iterdir()) == ["other.txt", "report.html"]
    assert (d / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert not list(tmp_path.rglob("*.tmp*")) and not list(runs["tpp"].rglob("*.tmp*"))
    rc, _, err = cli(["report", str(runs["tpp"]), "--out", str(tmp_path / "no" / "r.html")], capsys)
    one_line_error(rc, err, "--out", "does not exist")


def test_think_checks_its_outputs_before_thinking(runs, capsys, tmp_path):
    run = runs["ebt"]
    heat = run / "think_heatmap.png"
    heat.write_bytes(b"previous heatmap")
    rc, _, err = cli(["think", str(run), "--text", "In the beginning", "--json", str(tmp_path / "missing" / "x.json")],
                     capsys)
    one_line_error(rc, err, "--json", "does not exist")
    assert heat.read_bytes() == b"previous heatmap"
    rc, _, err = cli(["think", str(run), "--text", "In the beginning", "--json", str(tmp_path)], capsys)
    one_line_error(rc, err, "--json", "is a folder")
    rc, out, err = cli(["think", str(run), "--text", "In the beginning", "--out", str(tmp_path), "--json",
                        str(tmp_path / "e.json"), "--color", "never"], capsys)
    assert rc == 0, err
    assert f"heatmap: {tmp_path / 'think_heatmap.png'}" in out and (tmp_path / "think_heatmap.png").exists()
    assert json.loads((tmp_path / "e.json").read_text())["tokens"]
    assert heat.read_bytes() == b"previous heatmap"
    heat.unlink()
