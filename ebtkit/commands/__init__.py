"""Subcommands of the ``ebt`` CLI, one module each (``add_parser`` + ``run``)."""
from pathlib import Path

from ..core.output import atomic_write_json


def write_json_atomic(path: Path, obj) -> None:
    """``obj`` as JSON, written atomically (a hidden temporary renamed into place; removed on failure)."""
    atomic_write_json(path, obj)


def parse_int_list(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"expected a comma-separated list of integers, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise ValueError(f"expected positive integers, got {text!r}")
    return vals
