"""Small things of issue 22, item 10: counts agree with their nouns ("1 step"), the training val line says what it
scored, default run names are unique."""
from __future__ import annotations

from ebtkit.data.sequences import load_sequence_data
from ebtkit.eval.sequence import evaluate_sequence, format_sequence_report
from ebtkit.tasks import get_task
from ebtkit.tasks.sequence import preset


def test_sequence_thinking_rows_say_1_step(tmp_path):
    cfg = preset("tiny")
    data = load_sequence_data(cfg.data, cfg.model.context + 1)
    cfg = cfg.replace(**{"model.features": int(data.test.shape[-1])})
    model = get_task("sequence").build_model(cfg)
    res = evaluate_sequence({"EBT": (model, 2)}, data, tmp_path, max_windows=2, batch_size=2, think_steps=(1, 2),
                            bon=(2,), log=lambda *a: None)
    assert [r["policy"] for r in res["models"]["EBT"]["thinking"]] == ["1 step", "2 steps", "best-of-2"]
    report = format_sequence_report(res)
    assert "1 step " in report and "1 steps" not in report


def test_text_policy_labels_say_1_step():
    """The text thinking labels (eval tables, downstream rows, ``think``'s header, the thinking study) agree with
    their count."""
    from ebtkit.eval.inference import Policy
    from ebtkit.eval.thinking_study import default_policies
    assert Policy(steps=1).label() == "1 step" and Policy(steps=3).label() == "3 steps"
    assert Policy(steps=1, samples=2).label() == "1 step, BoN-2"
    labels = [r.label for r in default_policies(1, think_steps=(1, 2), bon=(2,))]
    assert labels == ["EBT, trained (1 step)", "think longer: 2 steps", "best-of-2 (min E), 1 step"], labels


def test_the_training_val_line_says_what_it_scored():
    """``ebt train`` prints a quick validation figure during training and ``ebt eval``'s table after it; the two
    differ (different windows), so the training line names its tokens (the table's header names its windows)."""
    from ebtkit import tasks
    run = tasks.get_task("text")(tasks.preset("text", "tiny"))
    assert run.eval_line({"val_ppl": 25.5072, "val_tokens": 512}) == \
        "val ppl 25.507 (quick check: the first 512 val tokens)"


def test_default_run_names_started_in_the_same_second_differ(monkeypatch):
    import os
    import time

    from ebtkit import tasks
    from ebtkit.commands.train import default_run_dir
    cfg = tasks.preset("text", "tiny")
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20261207-101500")
    names = set()
    for pid in (4001, 4002):
        monkeypatch.setattr(os, "getpid", lambda pid=pid: pid)
        names.add(str(default_run_dir(tasks.get_task("text"), cfg)))
    assert names == {"runs/ebt-tiny-20261207-101500-4001", "runs/ebt-tiny-20261207-101500-4002"}
