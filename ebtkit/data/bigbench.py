"""Downstream task data for ``ebt eval RUN --tasks NAME[,NAME...]``: one name, one :class:`TaskData`.

A name is one of:

* a BIG-bench task, ``dyck_languages``, or a subtask ``parent/sub`` (``elementary_math_qa/question_only``); a
  parent whose own ``task.json`` has no examples (``elementary_math_qa``) means all its subtasks, in name order.
  It is read from the source ``ebt data bigbench [--from PATH]`` indexed into the user cache
  (:mod:`ebtkit.data.bigbench_sources`: a BIG-bench clone, its ``benchmark_tasks`` folder, a folder of Hugging
  Face exports, or the sdist). When there is no BIG-bench at all, or the source lacks it, ``dyck_languages`` is
  generated in BIG-bench's format and size (:mod:`ebtkit.data.dyck`) and :attr:`TaskData.note` says so;
* ``hf:DATASET[:CONFIG[:SPLIT]]``: a Hugging Face dataset or a local parquet/JSONL table, through an adapter
  (BIG-bench export, GSM8K, SQuAD; :mod:`ebtkit.data.hf_tasks`);
* a path ending in ``.json``: a task file of one's own in BIG-bench's format; one ending in ``.jsonl`` (or any
  other existing file): a user's JSONL task file (:mod:`ebtkit.data.bigbench_format`).

Every problem is one :class:`~ebtkit.data.text.DataError` line; a missing source names every route.
"""
from __future__ import annotations

import difflib
from pathlib import Path

from . import dyck
from .bigbench_format import (Example, TaskData, bigbench_example, example_lines, format_question, jsonl_example,
                              parse_task_json, read_jsonl, read_task_json)
from .bigbench_sources import (INDEX, PAPER_TASKS, PIP_SPEC, ROOT, SDIST, SDIST_SHA256, active_index, cache_dir,
                               describe, fetch_sdist, index_from, pip_download, read_task, routes, sha256)
from .hf_tasks import load_hf, read_export
from .text import DataError


def list_tasks(cache: Path | None = None) -> list[str]:
    """Every task and subtask name of the indexed source (a cached sdist is indexed on first use, ~8 s)."""
    index = active_index(cache or cache_dir())
    if index is None:
        raise DataError(f"BIG-bench is not in the cache ({cache or cache_dir()}): {routes()}")
    return list(index["tasks"])


def load_bigbench_task(name: str, cache: Path | None = None) -> TaskData:
    """The examples of a BIG-bench task or subtask (a parent without examples: all its subtasks)."""
    cache = cache or cache_dir()
    index = active_index(cache)
    names = list(index["tasks"]) if index else []
    subs = sorted(n for n in names if n.startswith(name + "/"))
    if name not in names and not subs:
        if name == dyck.NAME:
            why = (f"{describe(index)} has no {name}" if index else f"there is no BIG-bench in {cache}")
            return dyck.generated_task(why)
        if index is None:
            raise DataError(f"BIG-bench is not in the cache ({cache}), so there is no task {name!r}: {routes()}")
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; 'ebt data bigbench --list' lists them"
        raise DataError(f"no BIG-bench JSON task {name!r} in {describe(index)}{hint}")
    if index["source"]["kind"] == "hf":
        return load_hf_export(name, index)
    own = [name] if name in names else []
    read = dict(zip(own + subs, read_task(index, cache, own + subs)))
    if own and read[name][1]:
        label, examples = read[name]
        return TaskData(name, label, examples)
    if not subs:
        raise DataError(f"{read[name][0]}: the task has no examples and no subtasks")
    examples = [e for sub in subs for e in read[sub][1]]
    label = read[subs[0]][0].replace(f"{subs[0]}/task.json", f"{name}/*/task.json")
    return TaskData(name, label, examples)


def load_hf_export(name: str, index: dict) -> TaskData:
    """A task of an indexed folder of Hugging Face BIG-bench exports."""
    root = Path(index["source"]["path"])
    return read_export(name, [root / f for f in index["tasks"][name]])


def load_task(name: str, cache: Path | None = None) -> TaskData:
    """A BIG-bench task name, ``hf:DATASET[:CONFIG[:SPLIT]]``, or a path to a user's ``.jsonl`` or ``.json``."""
    name = name.strip()
    if not name:
        raise DataError("empty task name")
    if name.startswith("hf:"):
        return load_hf(name[3:])
    if name.endswith(".json"):
        return read_task_json(name)
    if name.endswith(".jsonl") or Path(name).is_file():
        return read_jsonl(name)
    return load_bigbench_task(name, cache)


__all__ = ["Example", "TaskData", "cache_dir", "list_tasks", "load_task", "load_bigbench_task", "read_jsonl",
           "read_task_json", "parse_task_json", "format_question", "bigbench_example", "example_lines",
           "jsonl_example", "fetch_sdist", "index_from", "active_index", "pip_download", "sha256", "routes",
           "PAPER_TASKS", "PIP_SPEC", "SDIST", "SDIST_SHA256", "ROOT", "INDEX"]
