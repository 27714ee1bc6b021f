"""Subcommands of the ``ebt`` CLI, one module each (``add_parser`` + ``run``)."""
import json
import os
from pathlib import Path


def write_json_atomic(path: Path, obj) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def parse_int_list(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"expected a comma-separated list of integers, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise ValueError(f"expected positive integers, got {text!r}")
    return vals
