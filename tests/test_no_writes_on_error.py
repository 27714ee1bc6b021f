"""Issue 17: a command that fails writes nothing. Every failure path — bad numbers, bad output paths, missing runs,
and a failure injected in the middle of the work after some output was already produced — leaves the directory
tree exactly as it was: the same paths, and every file with the same size, mtime and hash (no half-written
file, no temporary, no new folder)."""
import hashlib
import json

import numpy as np
import pytest
import torch

import ebtkit
from ebtkit.cli import main
from ebtkit.commands import output


def snapshot(root):
    """Every path under ``root``: folders by name; files by (size, mtime in ns, SHA-256). Folder mtimes are left
    out: creating and removing a temporary inside a folder changes it, and that is not a write of an output."""
    tree = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_dir() and not p.is_symlink():
            tree[rel] = "folder"
        else:
            st = p.stat()
            tree[rel] = (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return tree


def fails_cleanly(root, argv, capsys, rc=2):
    before = snapshot(root)
    try:
        got = main(argv)
    except SystemExit as e:                      # argparse's own errors
        got = e.code
    err = capsys.readouterr().err
    assert got == rc, (argv, err)
    if rc == 2:                                  # (eval may log progress to stderr before it fails)
        assert err.endswith("\n") and err.splitlines()[-1].startswith("ebt: error:"), err
    assert snapshot(root) == before, argv
    return err


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace: a text EBT and a Transformer++ run (each with an earlier heatmap and eval.json), a prompts
    file, an existing output file and an empty folder."""
    root = tmp_path_factory.mktemp("ws")
    for name, model in (("ebt", "ebt"), ("tpp", "transformer++")):
        m = ebtkit.build(model, preset="tiny", vocab_size=256)
        if model == "ebt":
            torch.manual_seed(0)
            torch.nn.init.normal_(m.head.weight, std=0.5)
        ebtkit.save(m, root / name)
        (root / name / "think_heatmap.png").write_bytes(b"an earlier heatmap")
        (root / name / "eval.json").write_text(json.dumps({"rows": []}))
    (root / "prompts.txt").write_text("In the\nAnd God\n")
    (root / "old.txt").write_text("an earlier output")
    (root / "folder").mkdir()
    return root


# ------------------------------------------------------------------------------ bad numbers and paths, missing runs
def _cases():
    E, T = "{ws}/ebt", "{ws}/tpp"
    return [
        # bad numbers, with outputs that would be written
        ["generate", E, "--prompt", "x", "--out", "{ws}/new.txt", "--temperature", "nan"],
        ["generate", E, "--prompt", "x", "--out", "{ws}/old.txt", "--alpha", "1e30"],
        ["generate", E, "--prompts", "{ws}/prompts.txt", "--out", "{ws}/o.jsonl", "--top-p", "0.5"],
        ["think", E, "--text", "In the beginning", "--sigma", "nan"],
        ["think", E, "--text", "In the beginning", "--json", "{ws}/e.json", "--steps", "0"],
        ["eval", E, "--batch-size", "0"],
        ["eval", E, "--thinking-windows", "-1"],
        ["report", E, "--resamples", "5"],
        ["sweep", "--preset", "tiny", "--steps", "1,2", "--out", "{ws}/sweep", "--jobs", "0"],
        # bad output paths
        ["generate", E, "--prompt", "x", "--out", "{ws}/missing/x.txt"],
        ["generate", E, "--prompt", "x", "--out", "{ws}/folder"],
        ["generate", T, "--prompts", "{ws}/prompts.txt", "--out", "{ws}/missing/o.jsonl"],
        ["think", E, "--text", "In the beginning", "--out", "{ws}/missing/h.png"],
        ["think", E, "--text", "In the beginning", "--json", "{ws}/missing/dir/x.json"],
        ["think", E, "--text", "In the beginning", "--json", "{ws}/folder"],
        ["think", E, "--text", "In the beginning", "--out", "{ws}/old.txt/h.png"],
        ["report", T, "--out", "{ws}/missing/r.html"],
        ["report", T, "--out", "{ws}/old.txt/r.html"],
        ["sweep", "--preset", "tiny", "--steps", "1,2", "--out", "{ws}/old.txt"],
        # missing runs, files and bad input
        ["generate", "{ws}/nope", "--prompt", "x", "--out", "{ws}/new.txt"],
        ["generate", E, "--prompts", "{ws}/missing.txt", "--out", "{ws}/o.jsonl"],
        ["think", "{ws}/nope", "--text", "In the beginning"],
        ["think", E, "--file", "{ws}/missing.txt"],
        ["eval", "{ws}/nope"],
        ["report", "{ws}/nope"],
        ["report", E, "{ws}/nope", "--out", "{ws}/r.html"],
        ["think", T, "--text", "In the beginning", "--json", "{ws}/e.json"],        # not an EBT
        ["generate", T, "--prompt", "x", "--steps", "3", "--out", "{ws}/new.txt"],  # policy flags on a T++
    ]


@pytest.mark.parametrize("argv", _cases(), ids=lambda a: " ".join(a[:1] + [x for x in a[2:] if x.startswith("--")]))
def test_refused_commands_leave_the_tree_untouched(ws, capsys, monkeypatch, argv):
    monkeypatch.chdir(ws)
    fails_cleanly(ws, [a.format(ws=ws) for a in argv], capsys)


# ------------------------------------------------------------------------------ failures in the middle of the work
class Injected(RuntimeError):
    pass


def _raise_after_writing(path_arg: int):
    """A stand-in for a plotting function that writes part of its file, then fails."""
    def fail(*args, **kwargs):
        with open(args[path_arg], "wb") as f:
            f.write(b"half a picture")
        raise Injected("injected failure")
    return fail


def test_think_writes_neither_file_when_plotting_fails(ws, capsys, monkeypatch):
    import ebtkit.commands.think as think
    monkeypatch.setattr(think, "plot_heatmaps", _raise_after_writing(1))
    err = fails_cleanly(ws, ["think", str(ws / "ebt"), "--text", "In the beginning", "--json", str(ws / "e.json")],
                        capsys)
    assert "Injected" in err


def test_think_writes_no_heatmap_when_the_json_fails(ws, capsys, monkeypatch):
    import ebtkit.commands.think as think

    class BadJson:
        @staticmethod
        def dumps(obj):
            raise Injected("injected failure")
    monkeypatch.setattr(think, "json", BadJson)            # the heatmap is already drawn when this fails
    fails_cleanly(ws, ["think", str(ws / "ebt"), "--text", "In the beginning", "--out", str(ws / "h.png"), "--json",
                       str(ws / "e.json")], capsys)


def test_generate_out_is_not_written_when_generation_is_interrupted(ws, capsys, monkeypatch):
    from ebtkit.eval import completion
    real, n = completion.StopStream.feed, {"tokens": 0}

    def feed(self, token_id):
        n["tokens"] += 1
        if n["tokens"] == 4:
            raise KeyboardInterrupt                         # Ctrl-C after three tokens were printed
        return real(self, token_id)
    monkeypatch.setattr(completion.StopStream, "feed", feed)
    for out in ("new.txt", "old.txt"):
        n["tokens"] = 0
        fails_cleanly(ws, ["generate", str(ws / "ebt"), "--prompt", "In the", "--out", str(ws / out)], capsys, rc=130)


def test_generate_jsonl_is_not_written_when_formatting_fails(ws, capsys, monkeypatch):
    import ebtkit.commands.generate as gen

    class BadJson:
        @staticmethod
        def dumps(obj, **kw):
            raise Injected("injected failure")
    monkeypatch.setattr(gen, "json", BadJson)
    fails_cleanly(ws, ["generate", str(ws / "tpp"), "--prompts", str(ws / "prompts.txt"), "--max-new-tokens", "3",
                       "--out", str(ws / "o.jsonl")], capsys)


def test_report_is_not_written_when_the_page_fails(ws, capsys, monkeypatch):
    import ebtkit.study.report as report

    def env_html(recorded):                                 # the last section: everything else was computed
        raise Injected("injected failure")
    monkeypatch.setattr(report, "env_html", env_html)
    for out in (ws / "folder", ws / "old.txt"):             # into a folder; over an existing file
        fails_cleanly(ws, ["report", str(ws / "ebt"), "--prompt", "", "--out", str(out)], capsys)


def test_staged_outputs_commit_together_or_not_at_all(tmp_path):
    (tmp_path / "a.json").write_text("old")
    before = snapshot(tmp_path)
    with pytest.raises(Injected):
        with output.staged_outputs(tmp_path) as stage:
            output.atomic_write_json(stage.path("a.json"), {"new": 1})
            with output.staged_outputs(tmp_path) as inner:       # joins the outer stage
                assert inner is stage
                inner.path("b.png").write_bytes(b"png")
            assert not (tmp_path / "b.png").exists()             # nothing is committed before the outer exits
            raise Injected("injected failure")
    assert snapshot(tmp_path) == before
    with output.staged_outputs(tmp_path) as stage:
        output.atomic_write_json(stage.path("a.json"), {"new": 1})
        stage.path("b.png").write_bytes(b"png")
    assert json.loads((tmp_path / "a.json").read_text()) == {"new": 1} and (tmp_path / "b.png").read_bytes() == b"png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.png"]
    with pytest.raises(ValueError, match="is a folder"):
        output.atomic_write_text(tmp_path, "x")
    with pytest.raises(ValueError, match="does not exist"):
        output.staged_outputs(tmp_path / "missing").__enter__()


@pytest.mark.slow
def test_eval_writes_nothing_when_a_late_step_fails(tmp_path, capsys, monkeypatch):
    """Text (eval.json and thinking.png are ready when the heatmap fails), image denoising (the JSON and the
    PSNR plot are ready when the sample grid fails) and sequences (one plot is ready when the next fails)."""
    import ebtkit.eval.runs as ev
    import ebtkit.eval.sequence as seq
    import ebtkit.eval.thinking_study as ts
    text = tmp_path / "text"
    ebtkit.save(ebtkit.build("ebt", preset="tiny", vocab_size=256), text)
    np.save(tmp_path / "walk.npy", np.cumsum(np.random.default_rng(0).normal(size=(6, 40, 3)), 1).astype(np.float32))
    for argv in (["--task", "sequence", "--data", str(tmp_path / "walk.npy"), "--out", str(tmp_path / "seq")],
                 ["--task", "denoise", "--dataset", "mini", "--out", str(tmp_path / "den")]):
        assert main(["train", "--preset", "tiny", "--steps", "1", "--no-progress", "--no-eval", *argv]) == 0
    capsys.readouterr()
    monkeypatch.setattr(ts, "plot_heatmaps", _raise_after_writing(1))
    fails_cleanly(tmp_path, ["eval", str(text), "--steps-list", "1", "--max-windows", "1", "--batch-size", "1",
                             "--thinking-windows", "1", "--think-steps", "2", "--bon", "2", "--tols", "0.1"], capsys)
    monkeypatch.setattr(ev, "plot_samples", _raise_after_writing(1))
    fails_cleanly(tmp_path, ["eval", str(tmp_path / "den"), "--images", "4", "--sigmas", "0.01", "--ebt-nfe", "1"],
                  capsys)
    monkeypatch.setattr(seq, "plot_error_vs_nfe", _raise_after_writing(1))
    fails_cleanly(tmp_path, ["eval", str(tmp_path / "seq"), "--windows", "2", "--think-steps", "1", "--bon", "2"],
                  capsys)
