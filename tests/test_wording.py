"""Counts in output agree with their nouns: "1 step", "2 steps" (issue 22, item 10)."""
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
