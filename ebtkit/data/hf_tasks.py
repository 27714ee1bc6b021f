"""Tasks from Hugging Face ``datasets`` tables: BIG-bench exports, GSM8K, SQuAD, and rows in ebtkit's JSONL form.

**``--tasks hf:DATASET[:CONFIG[:SPLIT]]``.** ``DATASET`` is a Hub dataset (``openai/gsm8k``,
``rajpurkar/squad_v2``, ``tasksource/bigbench``), loaded with ``datasets.load_dataset`` (the optional extra
``pip install 'ebtkit[hf]'``; it needs the network the first time), or a local ``.parquet``/``.jsonl`` file or
a folder of them (read here with pyarrow or json, without ``datasets``). In a folder, ``CONFIG`` keeps the files
under a folder of that name and ``SPLIT`` the files whose name starts with it (``test-00000-of-00001.parquet``),
the Hub's own layout. Without a split: ``test``, else ``validation``, else ``default``, else ``train``, else all
(the paper: GSM8K test, SQuAD v2 validation, BIG-bench validation). GSM8K's config defaults to ``main``.

**Adapters**, chosen by the table's columns (the first that fits):

* BIG-bench export (``idx, inputs, targets, multiple_choice_targets, multiple_choice_scores``; the HF
  ``bigbench`` datasets): ``inputs`` is BIG-bench's zero-shot question already formatted, so the question is
  ``inputs`` with ``" Answer:"`` removed and the answer ``targets[0]`` (the paper's code), else the first
  choice with the top score; the choices and their scores are the multiple choice.
* SQuAD (``context, question, answers``): question ``context + "\\n" + question``, answer the first of
  ``answers["text"]``; SQuAD v2's unanswerable questions (no answer) are skipped and counted in the source.
* GSM8K (``question, answer``): the question and the whole answer (its reasoning and ``#### N``).
* ebtkit's JSONL form (``input`` + ``target``, or ``input`` + ``choices`` + ``answer``).

Each becomes the perplexity-of-the-answer text ``"Question: {q}\\nAnswer: {a}"`` (:class:`Example`). Without
``datasets``, or offline, a Hub name is one :class:`DataError` line naming the other routes.
"""
from __future__ import annotations

import json
from pathlib import Path

from .bigbench_format import JSONL_KEYS, Example, TaskData, jsonl_example
from .text import DataError

ROW_FILES = (".parquet", ".jsonl")
SPLITS = ("test", "validation", "default", "train")      # preferred split when none is named
DEFAULT_CONFIG = {"gsm8k": "main", "openai/gsm8k": "main"}
BIGBENCH_COLUMNS = {"inputs", "targets", "multiple_choice_targets", "multiple_choice_scores"}
ROUTES = ("other routes: hf:PATH (a local .parquet/.jsonl file or folder), your own JSONL file, "
          "'ebt data bigbench --from PATH' for BIG-bench (dyck_languages is generated when absent)")


# ------------------------------------------------------------------------------------------ rows
def _pyarrow(path: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading .parquet needs pyarrow (pip install pyarrow), or give JSON lines") from None
    return pq


def read_rows(path: Path) -> list[dict]:
    """The rows of a ``.parquet`` file (pyarrow) or a JSON-lines file (one object per line, blank lines skipped)."""
    if path.suffix == ".parquet":
        pq = _pyarrow(path)
        try:
            return pq.read_table(path).to_pylist()
        except Exception as e:  # noqa: BLE001 — pyarrow raises several types for a damaged file
            raise DataError(f"{path}: unreadable parquet ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    for n, line in enumerate(lines, start=1):
        if line.strip():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: invalid JSON ({e.msg}, column {e.colno})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{n}: each line must be a JSON object")
            rows.append(obj)
    return rows


def columns(path: Path) -> set[str]:
    """A table's column names, cheaply: the parquet schema, or the keys of a JSON-lines file's first row."""
    if path.suffix == ".parquet":
        try:
            return set(_pyarrow(path).read_schema(path).names)
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001
            raise DataError(f"{path}: unreadable parquet ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{n}: invalid JSON ({e.msg}, column {e.colno})") from None
                return set(obj) if isinstance(obj, dict) else set()
    return set()


# ------------------------------------------------------------------------------------------ adapters
def _strings(v, what: str, where: str) -> list[str]:
    if v is None:
        return []
    if not (isinstance(v, (list, tuple)) and all(isinstance(s, str) for s in v)):
        raise DataError(f"{where}: '{what}' must be a list of strings")
    return list(v)


def bigbench_row(row: dict, where: str) -> Example:
    """A row of a Hugging Face BIG-bench export (see the module docstring)."""
    if not isinstance(row.get("inputs"), str):
        raise DataError(f"{where}: 'inputs' must be a string")
    targets = _strings(row.get("targets"), "targets", where)
    choices = [c.strip() for c in _strings(row.get("multiple_choice_targets"), "multiple_choice_targets", where)]
    scores = row.get("multiple_choice_scores") or []
    if len(scores) != len(choices) or not all(isinstance(s, (int, float)) and not isinstance(s, bool)
                                              for s in scores):
        raise DataError(f"{where}: 'multiple_choice_scores' must hold one number per multiple-choice target")
    correct: tuple[int, ...] = ()
    if choices:
        if len(choices) < 2 or max(scores) <= min(scores):
            raise DataError(f"{where}: multiple choice needs at least two choices and a right one (a higher score)")
        correct = tuple(i for i, s in enumerate(scores) if s == max(scores))
    if not targets and not choices:
        raise DataError(f"{where}: a row needs 'targets' or multiple-choice targets")
    answer = targets[0] if targets else choices[correct[0]]
    question = row["inputs"].strip().replace(" Answer:", "")
    return Example(question, answer.strip(), tuple(choices), correct)


def squad_row(row: dict, where: str) -> Example | None:
    """SQuAD: context and question → the first answer; None for an unanswerable (SQuAD v2) question."""
    ans = row.get("answers")
    if not (isinstance(row.get("context"), str) and isinstance(row.get("question"), str) and isinstance(ans, dict)):
        raise DataError(f"{where}: SQuAD rows need string 'context' and 'question' and an 'answers' object")
    texts = _strings(ans.get("text"), "answers.text", where)
    if not texts:
        return None
    return Example(f"{row['context'].strip()}\n{row['question'].strip()}", texts[0].strip())


def gsm8k_row(row: dict, where: str) -> Example:
    """GSM8K: the question → the whole answer (reasoning and ``#### N``)."""
    if not (isinstance(row.get("question"), str) and isinstance(row.get("answer"), str)):
        raise DataError(f"{where}: GSM8K rows need string 'question' and 'answer'")
    return Example(row["question"].strip(), row["answer"].strip())


ADAPTERS = (("BIG-bench export", BIGBENCH_COLUMNS, bigbench_row),
            ("SQuAD", {"context", "question", "answers"}, squad_row),
            ("GSM8K", {"question", "answer"}, gsm8k_row),
            ("ebtkit JSONL", {"input"}, jsonl_example))


def adapter_for(cols: set[str], where: str):
    """The first adapter whose columns the table has (the JSONL form: only its keys)."""
    for name, need, fn in ADAPTERS:
        if need <= cols and (fn is not jsonl_example or cols <= JSONL_KEYS):
            return name, fn
    raise DataError(f"{where}: no adapter for columns {', '.join(sorted(cols)) or '(none)'}; known: BIG-bench "
                    f"export (inputs, targets, multiple_choice_targets, multiple_choice_scores), SQuAD (context, "
                    f"question, answers), GSM8K (question, answer), input + target / choices + answer")


def examples_from_rows(rows, label: str) -> tuple[list[Example], str, int]:
    """Every row through the adapter its columns pick: ``(examples, adapter name, rows skipped)``."""
    rows = list(rows)
    if not rows:
        raise DataError(f"{label}: no rows")
    name, fn = adapter_for(set(rows[0]), label)
    out, skipped = [], 0
    for k, row in enumerate(rows):
        ex = fn(row, f"{label}: row {k}")
        if ex is None:
            skipped += 1
        else:
            out.append(ex)
    if not out:
        raise DataError(f"{label}: no usable rows ({skipped} skipped)")
    return out, name, skipped


def read_export(name: str, files: list[Path]) -> TaskData:
    """One BIG-bench task exported with ``datasets`` (its files in order): the same examples a task.json gives."""
    examples = []
    for f in files:
        if not f.is_file():
            raise DataError(f"{f} (BIG-bench export of {name!r}) is gone; run 'ebt data bigbench --from DIR' again")
        exs, _, _ = examples_from_rows(read_rows(f), str(f))
        examples.extend(exs)
    return TaskData(name, ", ".join(str(f) for f in files), examples)


# ------------------------------------------------------------------------------------------ hf:SPEC
def parse_spec(spec: str) -> tuple[str, str | None, str | None]:
    """``DATASET[:CONFIG[:SPLIT]]`` (empty parts are None)."""
    parts = spec.split(":")
    if not parts[0] or len(parts) > 3:
        raise DataError(f"--tasks hf:{spec}: expected hf:DATASET[:CONFIG[:SPLIT]]")
    parts += [""] * (3 - len(parts))
    return parts[0], parts[1] or None, parts[2] or None


def _split_of(f: Path) -> str:
    return f.name.split("-")[0].split(".")[0]


def _pick_split(names, split: str | None, what: str):
    names = sorted(set(names))
    if split is not None:
        if split not in names:
            raise DataError(f"{what} has no split {split!r} (it has {', '.join(names)})")
        return split
    return next((s for s in SPLITS if s in names), None)


def local_files(path: Path, config: str | None, split: str | None) -> list[Path]:
    """The files of a local ``hf:PATH`` (a file, or a folder in the Hub's layout)."""
    if path.is_file():
        if path.suffix not in ROW_FILES:
            raise DataError(f"hf:{path}: expected a .parquet or .jsonl file")
        return [path]
    files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix in ROW_FILES)
    if config is not None:
        files = [f for f in files if config in f.relative_to(path).parts[:-1]]
    if not files:
        raise DataError(f"hf:{path}: no .parquet or .jsonl files" + (f" under a folder {config!r}" if config else ""))
    chosen = _pick_split([_split_of(f) for f in files], split, f"hf:{path}")
    return [f for f in files if _split_of(f) == chosen] if chosen else files


def _hub_rows(dataset: str, config: str | None, split: str | None, spec: str):
    try:
        import datasets
    except ImportError:
        raise DataError(f"--tasks hf:{spec} needs the 'datasets' package (pip install 'ebtkit[hf]') and the "
                        f"network once; {ROUTES}") from None
    config = config or DEFAULT_CONFIG.get(dataset)
    logging = getattr(getattr(datasets, "utils", None), "logging", None)
    if logging is not None and hasattr(logging, "set_verbosity_error"):
        logging.set_verbosity_error()                   # warnings would break the one-line error when offline
    try:
        ds = datasets.load_dataset(dataset, config, split=split) if split else datasets.load_dataset(dataset, config)
    except Exception as e:  # noqa: BLE001 — offline, unknown name, missing config: all one line
        msg = (str(e).strip().splitlines() or [""])[0][:200]
        raise DataError(f"could not load hf:{spec} from the Hugging Face Hub ({type(e).__name__}: {msg}); "
                        f"{ROUTES}") from None
    if split is None:
        split = _pick_split(list(ds), None, f"hf:{spec}") or sorted(ds)[0]
        ds = ds[split]
    return ds, config, split


def load_hf(spec: str) -> TaskData:
    """``hf:DATASET[:CONFIG[:SPLIT]]`` as a task (see the module docstring)."""
    dataset, config, split = parse_spec(spec)
    path = Path(dataset).expanduser()
    if path.exists():
        files = local_files(path, config, split)
        rows = [r for f in files for r in read_rows(f)]
        name, where = (path.stem if path.is_file() else path.name), ", ".join(str(f) for f in files)
    else:
        rows, config, split = _hub_rows(dataset, config, split, spec)
        name, where = dataset, f"hf:{dataset}" + (f" (config {config})" if config else "") + f" split {split}"
    examples, adapter, skipped = examples_from_rows(rows, where)
    source = f"{where}; {adapter} adapter" + (f"; {skipped} rows without an answer skipped" if skipped else "")
    return TaskData(name, source, examples)


__all__ = ["read_rows", "columns", "bigbench_row", "squad_row", "gsm8k_row", "adapter_for", "examples_from_rows",
           "read_export", "parse_spec", "local_files", "load_hf", "ROUTES", "BIGBENCH_COLUMNS"]
