"""9×9 Sudoku: an exact solver that counts solutions, a generator of puzzles with a unique solution, and the
validity-preserving symmetries that turn a small pool of puzzles into an endless stream.

* :func:`solve` — depth-first search with bit masks and the most-constrained cell first; stops after ``limit``
  solutions, so ``count_solutions(p, 2) == 1`` is the uniqueness check.
* :func:`full_grid` — a random solved grid (the search with a shuffled digit order).
* :func:`make_puzzle` — removes the cells of a full grid in random order, keeping a removal only if the puzzle stays
  uniquely solvable, until ``givens`` cells remain; a grid whose removals get stuck above ``givens`` is replaced.
  Random removal reaches about 22–26 givens (published minimum: 17; those puzzles need a targeted search, so the
  generator refuses fewer than :data:`MIN_GIVENS`).
* :func:`reveal` — adds solution cells to a puzzle (uniqueness is kept by construction): the easy, many-givens
  training split (SAT-Net's 31–42 givens) from harder puzzles.
* :func:`augment` — a random element of Sudoku's symmetry group (digit relabelling, row and column permutations
  within bands and stacks, band and stack permutations, transposition): maps valid puzzles to valid puzzles with
  the same number of givens and a unique solution.

Boards are ``(81,)`` int arrays in row-major order; 0 is an empty cell, 1–9 are digits.
"""
from __future__ import annotations

import numpy as np

MIN_GIVENS = 24          # random removal from a full grid reaches this within a few tries (lower: refused)
MAX_GIVENS = 81
_ALL = 0x3FE             # bits 1..9

_ROW = np.arange(81) // 9
_COL = np.arange(81) % 9
_BOX = (_ROW // 3) * 3 + _COL // 3
# the 20 peers of every cell (same row, column or box)
PEERS = [np.array([j for j in range(81) if j != i and (_ROW[j] == _ROW[i] or _COL[j] == _COL[i] or _BOX[j] == _BOX[i])])
         for i in range(81)]
ROW, COL, BOX = _ROW, _COL, _BOX


def _bits(mask: int) -> list[int]:
    return [d for d in range(1, 10) if mask >> d & 1]


def solve(board, limit: int = 1, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Up to ``limit`` solutions of ``board`` ((81,) ints, 0 = empty); ``rng`` shuffles the digit order (random
    full grids). An inconsistent board (a digit twice in a unit) has no solution."""
    b = [int(v) for v in np.asarray(board).reshape(81)]
    rows, cols, boxes = [0] * 9, [0] * 9, [0] * 9
    for i, v in enumerate(b):
        if v:
            bit = 1 << v
            r, c, x = _ROW[i], _COL[i], _BOX[i]
            if rows[r] & bit or cols[c] & bit or boxes[x] & bit:
                return []
            rows[r] |= bit
            cols[c] |= bit
            boxes[x] |= bit
    empty = [i for i in range(81) if not b[i]]
    out: list[np.ndarray] = []

    def search() -> bool:
        best, best_mask, best_n = -1, 0, 10
        for i in empty:
            if b[i]:
                continue
            mask = _ALL & ~(rows[_ROW[i]] | cols[_COL[i]] | boxes[_BOX[i]])
            n = bin(mask).count("1")
            if n < best_n:
                best, best_mask, best_n = i, mask, n
                if n <= 1:
                    break
        if best < 0:
            out.append(np.array(b, dtype=np.int64))
            return len(out) >= limit
        if best_n == 0:
            return False
        digits = _bits(best_mask)
        if rng is not None:
            rng.shuffle(digits)
        r, c, x = _ROW[best], _COL[best], _BOX[best]
        for d in digits:
            bit = 1 << d
            b[best] = d
            rows[r] |= bit
            cols[c] |= bit
            boxes[x] |= bit
            done = search()
            rows[r] &= ~bit
            cols[c] &= ~bit
            boxes[x] &= ~bit
            b[best] = 0
            if done:
                return True
        return False

    search()
    return out


def count_solutions(board, limit: int = 2) -> int:
    return len(solve(board, limit))


def is_valid_solution(grid) -> bool:
    """Every row, column and box of a full grid holds 1–9 once."""
    g = np.asarray(grid).reshape(9, 9)
    want = set(range(1, 10))
    boxes = [g[r:r + 3, c:c + 3].reshape(-1) for r in (0, 3, 6) for c in (0, 3, 6)]
    return all(set(u.tolist()) == want for u in [*g, *g.T, *boxes])


def full_grid(rng: np.random.Generator) -> np.ndarray:
    return solve(np.zeros(81, dtype=np.int64), 1, rng)[0]


def check_givens(givens) -> int:
    """``givens`` as an int in [MIN_GIVENS, 81], or a ValueError naming what the generator can make."""
    g = float(givens)
    if not np.isfinite(g) or g != int(g) or not MIN_GIVENS <= g <= MAX_GIVENS:
        raise ValueError(f"sudoku difficulty is the number of given cells, an integer in [{MIN_GIVENS}, {MAX_GIVENS}] "
                         f"(this generator's range), got {givens!r}")
    return int(g)


def make_puzzle(givens: int, rng: np.random.Generator, tries: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """``(puzzle, solution)`` with exactly ``givens`` given cells and a unique solution."""
    givens = check_givens(givens)
    for _ in range(tries):
        sol = full_grid(rng)
        puzzle = sol.copy()
        filled = 81
        for i in rng.permutation(81):
            if filled == givens:
                break
            keep = puzzle[i]
            puzzle[i] = 0
            if count_solutions(puzzle, 2) == 1:
                filled -= 1
            else:
                puzzle[i] = keep
        if filled == givens:
            return puzzle, sol
    raise RuntimeError(f"no unique puzzle with {givens} givens after {tries} grids")


def reveal(puzzle: np.ndarray, solution: np.ndarray, givens: int, rng: np.random.Generator) -> np.ndarray:
    """``puzzle`` with solution cells added until ``givens`` cells are given (unique, since the solution is)."""
    p = puzzle.copy()
    empty = np.flatnonzero(p == 0)
    need = givens - (81 - len(empty))
    if need < 0:
        raise ValueError(f"the puzzle already has {81 - len(empty)} givens, more than {givens}")
    idx = rng.choice(empty, size=need, replace=False)
    p[idx] = solution[idx]
    return p


def augment(puzzle: np.ndarray, solution: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The same random symmetry applied to a puzzle and its solution."""
    digits = np.concatenate([[0], rng.permutation(9) + 1])                  # 0 stays empty
    bands = rng.permutation(3)
    rows = np.concatenate([b * 3 + rng.permutation(3) for b in bands])
    stacks = rng.permutation(3)
    cols = np.concatenate([s * 3 + rng.permutation(3) for s in stacks])
    transpose = bool(rng.integers(2))

    def apply(board):
        g = digits[board.reshape(9, 9)][rows][:, cols]
        return (g.T if transpose else g).reshape(81).copy()

    return apply(puzzle), apply(solution)


__all__ = ["solve", "count_solutions", "is_valid_solution", "full_grid", "make_puzzle", "reveal", "augment",
           "check_givens", "MIN_GIVENS", "MAX_GIVENS", "PEERS", "ROW", "COL", "BOX"]
