"""``ebt generate --num-samples N`` draws N different samples of every prompt, each with its own seed, printed
beside it and stored in ``--out``; the seed a sample reports reproduces it alone (issue 22 item 10)."""
from __future__ import annotations

import json
import re

import pytest
import torch

import ebtkit
from ebtkit.cli import main
from ebtkit.commands.generate import NUM_SAMPLES_MAX

HEADER = re.compile(r"^=== (?:(\d+)/(\d+) )?sample (\d+)/(\d+) \(seed (\d+)\) ===$")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    torch.manual_seed(0)
    ebtkit.save(ebtkit.build("transformer++", preset="tiny", vocab_size=256), root / "tpp")
    return root / "tpp"


def _samples(out: str) -> list[tuple[tuple, str]]:
    """(header fields, text) of each printed sample."""
    parts, cur = [], None
    for line in out.split("\n"):
        m = HEADER.match(line)
        if m:
            cur = [m.groups(), []]
            parts.append(cur)
        elif cur is not None:
            cur[1].append(line)
    return [(g, "\n".join(t).rstrip("\n")) for g, t in parts]


def _gen(capsys, *args):
    capsys.readouterr()
    try:
        rc = main(["generate", *args])
    except SystemExit as e:            # a parse error
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_n_samples_differ_and_each_reproduces_with_its_seed(run, capsys):
    rc, out, err = _gen(capsys, str(run), "--prompt", "In the", "--temperature", "1", "--max-new-tokens", "12",
                        "--num-samples", "4", "--seed", "7")
    assert rc == 0, err
    got = _samples(out)
    assert [g[2:] for g, _ in got] == [("1", "4", "7"), ("2", "4", "8"), ("3", "4", "9"), ("4", "4", "10")]
    texts = [t for _, t in got]
    assert all(t.startswith("In the") for t in texts)
    assert len(set(texts)) == 4, texts                  # four different samples
    assert "seeds: 7 to 10" in err
    for (g, text) in (got[0], got[2]):                # sample i alone, with the seed it reports
        rc, alone, err = _gen(capsys, str(run), "--prompt", "In the", "--temperature", "1", "--max-new-tokens", "12",
                              "--seed", g[4])
        assert rc == 0, err
        assert alone.rstrip("\n") == text


def test_prompts_file_out_stores_sample_and_seed(run, capsys, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("In the\nAnd God\n")
    dest = tmp_path / "o.jsonl"
    rc, out, err = _gen(capsys, str(run), "--prompts", str(prompts), "--temperature", "1", "--max-new-tokens", "8",
                        "--num-samples", "3", "--out", str(dest))
    assert rc == 0, err
    rows = [json.loads(ln) for ln in dest.read_text().splitlines()]
    assert [(r["index"], r["sample"]) for r in rows] == [(i, j) for i in (0, 1) for j in (1, 2, 3)]
    seed = rows[0]["seed"]
    assert [r["seed"] for r in rows] == [seed, seed + 1, seed + 2] * 2
    assert len({r["completion"] for r in rows if r["index"] == 0}) == 3
    printed = _samples(out)
    assert [(g[0], g[2], int(g[4])) for g, _ in printed] == [(str(r["index"] + 1), str(r["sample"]), r["seed"])
                                                             for r in rows]
    # a prompt of the file alone, with a sample's seed, is that sample
    r = rows[4]
    rc, alone, err = _gen(capsys, str(run), "--prompt", r["prompt"], "--temperature", "1", "--max-new-tokens", "8",
                          "--seed", str(r["seed"]))
    assert rc == 0 and alone.rstrip("\n") == r["prompt"] + r["completion"], err


@pytest.mark.parametrize("value", ["0", "-1", str(NUM_SAMPLES_MAX + 1), "two"])
def test_num_samples_out_of_range_is_one_line(run, capsys, value):
    rc, out, err = _gen(capsys, str(run), "--prompt", "In", "--temperature", "1", "--num-samples", value)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and "--num-samples" in err and value in err, err


def test_num_samples_without_randomness_is_refused(run, capsys, tmp_path):
    dest = tmp_path / "o.txt"
    rc, out, err = _gen(capsys, str(run), "--prompt", "In", "--num-samples", "2", "--out", str(dest))
    assert rc == 2 and err.count("\n") == 1 and "--num-samples 2" in err and "--temperature" in err, err
    assert not dest.exists()
