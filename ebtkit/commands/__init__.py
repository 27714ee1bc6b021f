"""Subcommands of the ``ebt`` CLI, one module each (``add_parser`` + ``run``)."""
from pathlib import Path

from ..core.output import atomic_write_json


def write_json_atomic(path: Path, obj) -> None:
    """``obj`` as JSON, written atomically (a hidden temporary renamed into place; removed on failure)."""
    atomic_write_json(path, obj)


def parse_int_list(text: str, flag: str | None = None) -> list[int]:
    """Comma-separated positive integers; errors name ``flag`` (when given) and echo the text."""
    name = f"{flag} " if flag else ""
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name}expected a comma-separated list of integers, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise ValueError(f"{name}expected positive integers, got {text!r}")
    return vals


def run_config(meta: dict):
    """The typed run config of a checkpoint's metadata (``ckpt.read_config``), without building the model."""
    from ..tasks import get_task
    return get_task(meta["task"]).config_from_dict(meta["config"])


def check_inference_memory(cfg, device, what: str, hint: str, **counts) -> None:
    """Refuse in one line, before the run is loaded, an inference whose estimated memory
    (:func:`ebtkit.core.estimate_inference.inference_estimate` of ``counts``: rows, positions, steps, samples,
    extra_bytes) exceeds what ``device`` has free. Tasks the estimate does not model are not checked."""
    from ..core.estimate import model_kind
    from ..core.estimate_inference import check_inference_fits, inference_estimate
    try:
        model_kind(cfg.model)
    except ValueError:
        return
    check_inference_fits(inference_estimate(cfg, **counts), what, device, hint)
