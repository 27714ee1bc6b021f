"""Downstream task formats: BIG-bench ``task.json`` examples and users' JSONL files, as :class:`Example` lists.

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
Where tasks come from (the BIG-bench sources, Hugging Face datasets, the generated Dyck task) is
:mod:`ebtkit.data.bigbench`'s business; this module only reads and checks.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .text import DataError

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
    """A named list of examples, where they were read from, and a ``note`` the user must see (e.g. that the
    examples were generated, not read)."""

    name: str
    source: str
    examples: list[Example] = field(default_factory=list)
    note: str | None = None

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


def read_task_json(path: str | Path) -> TaskData:
    """A task file of one's own in BIG-bench's ``task.json`` format (examples with targets or target_scores)."""
    p, text = _read_task_file(path)
    _, examples = parse_task_json(text, str(p))
    if not examples:
        raise DataError(f"{p}:1: no 'examples'")
    return TaskData(p.parent.name if p.name == "task.json" else p.stem, str(p), examples)


__all__ = ["Example", "TaskData", "format_question", "bigbench_example", "example_lines", "parse_task_json",
           "jsonl_example", "read_jsonl", "read_task_json"]
