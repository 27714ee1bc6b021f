"""The README's Python example runs as written, and the README cannot drift: its stated defaults, sizes, α and
fresh-clone numbers, and the captions of its number tables, are checked against the code."""
import importlib.util
import inspect
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "my-ebt" / "checkpoint" / "model.safetensors").exists()


def _table(text: str, header_start: str) -> list[dict[str, str]]:
    """The rows of the markdown table whose header line starts with ``header_start``, as {column: cell}."""
    i = text.index(header_start)
    lines = text[i:].splitlines()
    cols = [c.strip() for c in lines[0].strip().strip("|").split("|")]
    rows = []
    for line in lines[2:]:
        if not line.strip().startswith("|"):
            break
        rows.append(dict(zip(cols, (c.strip() for c in line.strip().strip("|").split("|")))))
    return rows


def _int(cell: str) -> int:
    return int(cell.replace(",", ""))


def test_defaults_table_states_the_presets_sizes():
    from ebtkit.core.config import PRESETS, preset
    from ebtkit.core.models import build_model

    rows = _table(README.read_text(), "| preset | layers | d_model |")
    assert {re.search(r"`(\w+)`", r["preset"]).group(1) for r in rows} == {"tiny", "cpu"}
    for r in rows:
        name = re.search(r"`(\w+)`", r["preset"]).group(1)
        cfg = preset(name)
        m, t = cfg.model, cfg.train
        assert (_int(r["layers"]), _int(r["d_model"]), _int(r["heads"]), _int(r["context"])) == \
            (m.n_layers, m.d_model, m.n_heads, m.context), name
        assert (_int(r["batch"]), _int(r["steps"]), float(r["lr"])) == (t.batch_size, t.steps, t.lr), name
        ebt = build_model(m)
        tpp = build_model(m.replace(model="transformer++"))
        assert _int(r["non-embedding parameters"]) == ebt.non_embedding_params() == tpp.non_embedding_params()
        both = [_int(x) for x in r["parameters, EBT / Transformer++"].split("/")]
        assert both == [sum(p.numel() for p in ebt.parameters()), sum(p.numel() for p in tpp.parameters())], name
        for alias in re.findall(r"`(ebt-s\d)`", r["preset"]):          # presets named as the same size
            assert PRESETS[alias] == PRESETS[name]
    # the prose that quotes the main job's size says what the table says
    stated = re.search(r"with ([\d.]+) M non-embedding parameters \(([\d.]+) M in all\)", README.read_text())
    cpu = build_model(preset("cpu").model)
    assert float(stated.group(1)) == round(cpu.non_embedding_params() / 1e6, 2)
    assert float(stated.group(2)) == round(sum(p.numel() for p in cpu.parameters()) / 1e6, 2)


def test_defaults_table_states_the_thinking_recipes():
    from ebtkit.core.config import PRESET_SYSTEMS, SIMPLEX_ALPHA, preset

    rows = _table(README.read_text(), "| thinking recipe (`--system`) |")
    assert len(rows) == 2
    for r in rows:
        system = re.search(r"`(s\d)`", r["thinking recipe (`--system`)"]).group(1)
        for alias in re.findall(r"`(ebt-s\d)`", r["thinking recipe (`--system`)"]):
            assert PRESET_SYSTEMS[alias] == system
        if "the default" in r["thinking recipe (`--system`)"]:
            assert preset("cpu").thinking.system == system
        cfg = preset("cpu", system)
        m, th = cfg.model, cfg.thinking
        assert r["training graph"].startswith(f"System {system[1]}:") and th.system == system
        steps = [int(x) for x in re.findall(r"\d+", r["steps in training"])]
        assert steps == ([th.steps] if th.max_steps is None else [th.steps, th.max_steps])
        assert int(r["steps at evaluation"]) == th.default_eval_steps
        alpha = float(re.match(r"([\d.]+),", r["α"]).group(1))
        assert alpha == m.resolved_alpha == SIMPLEX_ALPHA
        assert ("learnable" in r["α"]) == m.alpha_learnable and ("fixed" in r["α"]) == (not m.alpha_learnable)
        jitter = re.search(r"jittered in \[([\d.]+), ([\d.]+)\]", r["α"])
        if th.alpha_jitter != 1:
            assert (float(jitter.group(1)), float(jitter.group(2))) == (alpha / th.alpha_jitter, alpha * th.alpha_jitter)
        else:
            assert jitter is None
        assert {"zeros": "zeros", "N(0": "normal"}[re.match(r"(zeros|N\(0)", r["start"]).group(1)] == m.init
        if m.init == "normal":
            assert f"N(0, {m.init_scale:g})" in r["start"]
        assert int(re.search(r"(\d+) landscapes?", r["also"]).group(1)) == m.n_landscapes
        sigma = re.search(r"Langevin σ = ([\d.]+)", r["also"])
        assert (float(sigma.group(1)) if sigma else 0.0) == th.langevin_sigma
        replay = re.search(r"replay of (\d+) windows", r["also"])
        assert (int(replay.group(1)) if replay else 0) == th.replay_size and (th.replay_size > 0) == (th.replay_fraction > 0)


def test_every_default_alpha_in_the_prose_is_the_codes():
    """The README once said α = 76.8 in one paragraph and 20 in two others (the code: 20)."""
    from ebtkit.core.config import SIMPLEX_ALPHA, preset

    text = README.read_text()
    said = re.findall(r"default[^.;:|]{0,12}?α = ([\d.]+)|defaults \(α = ([\d.]+)\)", text)
    said = [float(a or b) for a, b in said]
    assert len(said) >= 2 and set(said) == {SIMPLEX_ALPHA}, said
    conv = re.search(r"System 1 starts from zeros; α = ([\d.]+)", text)
    assert float(conv.group(1)) == preset("cpu").model.resolved_alpha


def test_the_main_tables_windows_are_what_ebt_train_scores():
    from ebtkit.commands.eval import evaluate_text_run
    from ebtkit.core.config import preset

    text = README.read_text()
    cap = re.search(r"perplexity over the\s+\*\*first (\d+) windows\*\* of each split — validation \(([\d,]+) scored "
                    r"tokens\)", text)
    assert int(cap.group(1)) == inspect.signature(evaluate_text_run).parameters["max_windows"].default
    assert _int(cap.group(2)) == int(cap.group(1)) * preset("cpu").model.context


def _number_tables(text: str):
    """(caption + table text) of every markdown table holding more than three decimal numbers."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith("|") and i + 1 < len(lines) and set(lines[i + 1].strip()) <= set("|-: "):
            j = i
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                j += 1
            table = "\n".join(lines[i:j])
            k = i - 1
            while k >= 0 and lines[k].strip() == "":
                k -= 1
            while k >= 0 and lines[k].strip() != "" and not lines[k].lstrip().startswith("|"):
                k -= 1
            if len(re.findall(r"\d\.\d", table)) > 3:
                yield "\n".join(lines[k + 1:i]) + "\n" + table
            i = j
        else:
            i += 1


def test_every_number_table_names_its_command_windows_and_threads():
    """Two tables once gave different perplexities for what read as the same run (different windows); every
    table of numbers now says which command made it, on how many windows or images, with how many threads."""
    tables = list(_number_tables(README.read_text()))
    assert len(tables) >= 6
    for t in tables:
        assert "thread" in t.lower(), t[:300]
        assert re.search(r"windows|test images|test sequences|test instances", t), t[:300]
        assert re.search(r"`(OMP_NUM_THREADS=1 )?(ebt|python) [^`]*`|scripts/\w+\.py", t), t[:300]


def _fresh_clone():
    spec = importlib.util.spec_from_file_location("fresh_clone_numbers", README.parent / "scripts" /
                                                  "fresh_clone_numbers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fresh_clone_table_names_the_first_commands_threads():
    fc = _fresh_clone()
    rows = fc.readme_rows()
    assert set(rows) == {"cpu", "tiny"}
    first = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.S).group(1)
    assert "OMP_NUM_THREADS" not in first and first.rstrip().splitlines()[0].endswith("ebt train")
    assert all(r["threads"] == 2 and r["windows"] == "first 64 per split" for r in rows.values())
    # every row names the CPU and ISA behind it and the tolerance measured across ISAs
    assert all(re.search(r"AVX|SSE|NEON|default", r["cpu"]) and set(r["rtol"]) == {"val", "ood"} for r in rows.values())


@pytest.mark.slow
def test_fresh_clone_tiny_row_is_what_ebt_train_prints(tmp_path):
    """Trains the `tiny` row exactly as `ebt train --preset tiny` does, with the table's thread count, and scores
    the same windows (~15 s): the README's stated numbers cannot drift from the code unnoticed. Compared within the
    row's stated tolerance (the spread measured across ISAs, with a margin), not to the digit."""
    fc = _fresh_clone()
    stated = fc.readme_rows()["tiny"]
    got = fc.rerun("tiny", stated["threads"], tmp_path / "run")
    for split in ("val", "ood"):
        assert got[split] == pytest.approx(stated[split], rel=stated["rtol"][split]), (split, got, stated)


def test_the_reasoning_table_is_the_checked_in_results():
    """The README's addition curve (mean over seeds) is what ``docs/reasoning/results/addition-t2L-s*.json`` hold,
    to the digits printed: a rerun that changes the results must change the README too."""
    import json
    from statistics import mean
    files = sorted((README.parent / "docs" / "reasoning" / "results").glob("addition-t2L-s*.json"))
    assert len(files) == 3
    rows = [r for f in files for r in json.loads(f.read_text())["rows"] if r["metric"] == "mse"
            and r["policy"] == "plain"]
    text = README.read_text()
    head = next(ln for ln in text.splitlines() if ln.startswith("| MSE, 512 test instances"))
    steps = [int(re.match(r"\s*(\d+)", c).group(1)) for c in head.split("|")[2:-2]]
    assert steps == [1, 2, 4, 8, 16], head
    for label, diff in (("range 1 (in distribution)", 1.0), ("range 2.5 (harder)", 2.5)):
        cells = next(ln for ln in text.splitlines() if ln.startswith(f"| {label} |")).split("|")[2:-1]
        want = [mean(r["value"] for r in rows if r["model"] == "EBT" and r["difficulty"] == diff
                     and r["steps"] == s) for s in steps]
        want.append(mean(r["value"] for r in rows if r["model"] == "feed-forward" and r["difficulty"] == diff))
        for cell, w in zip(cells, want, strict=True):
            shown = cell.split("±")[0].strip()
            digits = len(re.sub(r"e.*|^0\.0*|\.", "", shown))       # significant digits printed
            assert float(shown) == pytest.approx(w, rel=0.5 * 10 ** (1 - digits) * 1.01), (label, cell, w)
