"""The command layer's name for :mod:`ebtkit.core.output` (checked output places, atomic and staged writes).

The module lives in ``core`` so that the evaluation layer (:mod:`ebtkit.eval.runs`) writes its files the same
way; commands import it from here or from there alike.
"""
from ..core.output import (Stage, atomic_write_bytes, atomic_write_json, atomic_write_text, check_dir,  # noqa: F401
                           check_file, check_new_dir, probe_dir, staged_files, staged_outputs, temp_path)
