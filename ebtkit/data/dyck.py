"""BIG-bench's ``dyck_languages`` task, generated: for a machine that has no BIG-bench file at all.

**The real task.** BIG-bench's ``dyck_languages/task.json`` has 1,000 distinct examples. Each input is a
Dyck-4 word (brackets ``( ) [ ] { } < >``, separated by spaces) with its last 1–3 closing brackets removed; the
target is the removed closing run (``"] }"``); ``target_scores`` lists all 84 closing runs of length 1–3
(4 + 16 + 64) with the right one at 1, so chance is 1/84. The full words are 4–100 brackets long.

**The generator** follows the grammar the task's author describes for it (HELM's ``DyckLanguageScenario``
docstring: "a similar version of this generation was used" for BIG-bench): the probabilistic context-free
grammar ``S → (_i S )_i`` with probability p/4 per bracket type, ``S → S S`` with probability q, else the
empty word, with p = 0.5, q = 0.25, nesting at most 100 deep, and a sub-word longer than 100 brackets
replaced by the empty word. A word of at least 4 brackets is cut before its last ``n`` unmatched closers
(``n`` uniform in 1–3); the input is what precedes them, the target closes it. Inputs are distinct. Only
``random.Random.random`` is drawn from, so a seed gives the same task on every Python version.

**Checked against the real task.** :data:`REAL` holds the statistics of real examples (depth, length and
closing-run length); ``tests/test_data_routes.py`` checks that generated examples match them within their
sampling error. The prompt (``example_input_prefix``) is the real task's wording as BIG-Bench Hard quotes it.
"""
from __future__ import annotations

import itertools
import json
import random
import statistics
from dataclasses import dataclass

from .bigbench_format import TaskData, parse_task_json

NAME = "dyck_languages"
SIZE = 1000                       # examples in BIG-bench's task.json
OPEN, CLOSE = "([{<", ")]}>"
P_NEST, P_CONCAT = 0.5, 0.25      # the grammar's p and q
MAX_DEPTH, MIN_LEN, MAX_LEN = 100, 4, 100
MAX_RUN = 3                       # closing runs of 1-3 brackets: 84 choices
PREFIX = "Complete the rest of the sequence, making sure that the parentheses are closed properly. Input: "
SEED = 0

# Statistics of real dyck_languages examples, computed once (ebtkit.data.dyck.stats) from the 250 examples that
# BIG-Bench Hard drew from BIG-bench's task (github.com/suzgunmirac/BIG-Bench-Hard, bbh/dyck_languages.json,
# commit 9ee07bd, MIT license; BIG-bench's own task.json was not reachable from here). Lengths and depths count
# brackets of the input; ``run`` is the closing run (target) length. 20 of those examples are in
# tests/fixtures/dyck_real_excerpt.json.
REAL = {"examples": 250,
        "length": {"mean": 23.9, "median": 13.0, "sd": 24.81, "min": 2, "max": 99},
        "depth": {"mean": 7.064, "median": 6.0, "sd": 4.825, "min": 1, "max": 26},
        "run": {1: 81, 2: 97, 3: 72}}


@dataclass(frozen=True)
class Pair:
    """One example: the input brackets and the closing run that completes them."""

    input: tuple[str, ...]
    target: tuple[str, ...]


def _word(rng: random.Random, depth: int = 0) -> list[str]:
    """One word of the grammar (see the module docstring); a sub-word over MAX_LEN becomes empty."""
    if depth > MAX_DEPTH:
        return []
    u = rng.random()
    if u < P_NEST:
        k = int(rng.random() * len(OPEN))
        w = [OPEN[k], *_word(rng, depth + 1), CLOSE[k]]
    elif u < P_NEST + P_CONCAT:
        w = _word(rng, depth) + _word(rng, depth)
    else:
        w = []
    return w if len(w) <= MAX_LEN else []


def closing_run(prefix) -> tuple[str, ...]:
    """The closers that complete ``prefix`` (innermost first); ValueError if it is not a Dyck prefix."""
    stack = []
    for t in prefix:
        if t in OPEN:
            stack.append(CLOSE[OPEN.index(t)])
        elif not stack or stack.pop() != t:
            raise ValueError(f"not a Dyck prefix: {' '.join(prefix)}")
    return tuple(reversed(stack))


def _cut(word: list[str], n: int) -> list[str]:
    """``word`` before the closer where, counting from the end, ``n`` more closers than openers were seen."""
    net = 0
    for i in range(len(word) - 1, -1, -1):
        net += 1 if word[i] in CLOSE else -1
        if net == n:
            return word[:i]
    return []


def generate(n: int = SIZE, seed: int = SEED) -> list[Pair]:
    """``n`` distinct examples drawn from the grammar."""
    rng, seen, out = random.Random(seed), set(), []
    while len(out) < n:
        word = _word(rng)
        if len(word) < MIN_LEN:
            continue
        prefix = tuple(_cut(word, 1 + int(rng.random() * MAX_RUN)))
        if prefix and prefix not in seen:
            seen.add(prefix)
            out.append(Pair(prefix, closing_run(prefix)))
    return out


def choices() -> list[str]:
    """Every closing run of 1 to MAX_RUN brackets (84), shortest first, in bracket order."""
    return [" ".join(c) for k in range(1, MAX_RUN + 1) for c in itertools.product(CLOSE, repeat=k)]


def task_json(n: int = SIZE, seed: int = SEED) -> dict:
    """The generated task in BIG-bench's ``task.json`` format (what ``parse_task_json`` reads)."""
    runs = choices()
    examples = []
    for p in generate(n, seed):
        target = " ".join(p.target)
        examples.append({"input": " ".join(p.input), "target": target,
                         "target_scores": {c: int(c == target) for c in runs}})
    return {"name": NAME, "description": "Correctly close a Dyck-n word (generated by ebtkit, seed "
            f"{seed}, in the format and size of BIG-bench's task)", "metrics": ["multiple_choice_grade"],
            "preferred_score": "multiple_choice_grade", "append_choices_to_input": False,
            "example_input_prefix": PREFIX, "examples": examples}


def generated_task(why: str, n: int = SIZE, seed: int = SEED) -> TaskData:
    """The generated task as :class:`TaskData`, with a note saying so (and ``why`` the real one is absent)."""
    task = task_json(n, seed)
    source = f"generated (ebtkit.data.dyck, seed {seed}, {n} examples)"
    _, examples = parse_task_json(json.dumps(task), source)
    note = (f"{NAME}: {why}, so its {n:,} examples were generated in BIG-bench's format and size (seed {seed}; "
            f"same depth, length and closing-run statistics); for the real task: "
            f"'ebt data bigbench --from PATH'")
    return TaskData(NAME, source, examples, note)


def stats(pairs) -> dict:
    """Depth, length and closing-run statistics of examples (``Pair``s or ``(input, target)`` token lists)."""
    ins = [list(p.input if isinstance(p, Pair) else p[0]) for p in pairs]
    runs = [len(p.target if isinstance(p, Pair) else p[1]) for p in pairs]

    def depth(seq):
        d = m = 0
        for t in seq:
            d += 1 if t in OPEN else -1
            m = max(m, d)
        return m

    def summary(v):
        return {"mean": statistics.fmean(v), "median": float(statistics.median(v)), "sd": statistics.pstdev(v),
                "min": min(v), "max": max(v)}

    return {"examples": len(pairs), "length": summary([len(s) for s in ins]),
            "depth": summary([depth(s) for s in ins]),
            "run": {k: runs.count(k) for k in range(1, MAX_RUN + 1)}}


__all__ = ["NAME", "SIZE", "REAL", "PREFIX", "Pair", "generate", "choices", "closing_run", "task_json",
           "generated_task", "stats"]
