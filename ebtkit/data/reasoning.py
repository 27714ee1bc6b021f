"""Reasoning problems whose harder instances need more optimisation, generated on the fly with numpy.

Each :class:`Problem` draws ``(x, y)`` instances at a **difficulty**, the knob that makes instances harder to reach
by optimisation (REASONING_ANCHORS: IREM, IRED, Deep Thinking):

===============  ===========================================  ===================  ====================================
problem          instance                                     difficulty           train → harder
===============  ===========================================  ===================  ====================================
``addition``     x = (A, B) n×n, y = A + B                    entries' range r     U(−1, 1) → U(−2.5, 2.5) (IREM)
``inverse``      x = M symmetric positive definite, y = M⁻¹   ill-conditioning d   M = RRᵀ/n + (0.5/d)·I: d 1 → 5
                                                                                   (IREM's +0.5 I → +0.1 I)
``connectivity`` x = adjacency of a random directed graph,    nodes n              n ∈ [4, 8] → 12, 16 (IRED: 12 → 18)
                 y = reachability (reflexive, transitive)
``parity``       x ∈ {0,1}^L, y = prefix sums mod 2           length L             16 → 24, 32, 48 (Deep Thinking)
``sudoku``       x = 9×9 puzzle (0 = empty), y = solution     givens g             31–42 → 24–30 (SAT-Net → RRN)
===============  ===========================================  ===================  ====================================

``kind`` is ``"continuous"`` (the candidate is the answer matrix; metric MSE) or ``"categorical"`` (the
candidate holds per-cell logits over ``classes`` values and thinks on the simplex; metrics per-cell and
whole-instance exact accuracy). Every generator has an exact solver (:meth:`Problem.solve`) the tests check it
against. Difficulties a generator cannot make (nan, a negative size, a sudoku with 90 givens) raise a one-line
:class:`ValueError`.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from . import sudoku as sdk


class Problem(ABC):
    """A generator of (x, y) instances at a difficulty, with an exact solver."""

    name: ClassVar[str]
    kind: ClassVar[str]                   # "continuous" | "categorical"
    classes: ClassVar[int] = 0            # values per cell (categorical)
    knob: ClassVar[str]                   # what the difficulty measures
    sized: ClassVar[bool] = False         # the difficulty changes the instance's shape (one difficulty per batch)
    train: ClassVar[tuple[float, float]]  # training difficulties [lo, hi]
    val: ClassVar[float]                  # the validation difficulty recipes are chosen on (never a test one)
    test: ClassVar[tuple[float, ...]]     # the difficulties reported (in-distribution first)

    def __init__(self, size: int = 10):
        self.size = size

    @abstractmethod
    def check(self, difficulty) -> float:
        """The difficulty as a number this generator makes, else ValueError (one line)."""

    @abstractmethod
    def sample(self, n: int, difficulty: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` instances: ``x`` (n, *in_shape) float32 and ``y`` (n, *out_shape) — float32 (continuous) or
        int64 class indices (categorical)."""

    @abstractmethod
    def solve(self, x: np.ndarray) -> np.ndarray:
        """The exact answer of every instance in ``x`` (for tests)."""

    def sample_train(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
        """A training batch: one difficulty per batch for sized problems (an integer in the training range),
        else per instance uniform in the range (a single value when lo == hi)."""
        lo, hi = self.train
        if self.sized:
            d = float(rng.integers(int(lo), int(hi) + 1))
            x, y = self.sample(n, d, rng)
            return x, y, d
        if lo == hi:
            x, y = self.sample(n, lo, rng)
            return x, y, lo
        ds = rng.uniform(lo, hi, n) if self.kind == "continuous" else rng.integers(int(lo), int(hi) + 1, n)
        parts = [self.sample(1, float(d), rng) for d in ds]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), float(np.mean(ds))

    def _number(self, difficulty) -> float:
        try:
            d = float(difficulty)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name} difficulty ({self.knob}) must be a number, got {difficulty!r}") from None
        if not math.isfinite(d):
            raise ValueError(f"{self.name} difficulty ({self.knob}) must be finite, got {difficulty!r}")
        return d

    def _integer(self, difficulty, lo: int, hi: int) -> float:
        d = self._number(difficulty)
        if d != int(d) or not lo <= d <= hi:
            raise ValueError(f"{self.name} difficulty ({self.knob}) must be an integer in [{lo}, {hi}], got {difficulty!r}")
        return d


class Addition(Problem):
    name, kind, knob = "addition", "continuous", "the entries' range r: A, B ~ U(-r, r)"
    train, val, test = (1.0, 1.0), 1.5, (1.0, 2.0, 2.5)

    def check(self, difficulty) -> float:
        d = self._number(difficulty)
        if not 0 < d <= 100:
            raise ValueError(f"addition difficulty (range r) must be in (0, 100], got {difficulty!r}")
        return d

    def sample(self, n, difficulty, rng):
        r = self.check(difficulty)
        x = rng.uniform(-r, r, (n, 2, self.size, self.size)).astype(np.float32)
        return x, self.solve(x)

    def solve(self, x):
        return (x[:, 0] + x[:, 1]).astype(np.float32)


class Inverse(Problem):
    name, kind, knob = "inverse", "continuous", "ill-conditioning d: M = R Rᵀ/n + (0.5/d)·I"
    train, val, test = (1.0, 1.0), 2.0, (1.0, 3.0, 5.0)

    def check(self, difficulty) -> float:
        d = self._number(difficulty)
        if not 0.1 <= d <= 50:
            raise ValueError(f"inverse difficulty (ill-conditioning d) must be in [0.1, 50], got {difficulty!r}")
        return d

    def sample(self, n, difficulty, rng):
        d = self.check(difficulty)
        k = self.size
        r = rng.uniform(-1, 1, (n, k, k))
        m = r @ r.transpose(0, 2, 1) / k + (0.5 / d) * np.eye(k)
        x = m.astype(np.float32)
        return x, self.solve(m)

    def solve(self, x):
        return np.linalg.inv(np.asarray(x, dtype=np.float64)).astype(np.float32)


class Connectivity(Problem):
    """Random geometric directed graphs: n points in the unit square, each with out-edges to its k nearest
    neighbours, k ~ U{1, 2, 3} (IRED's generator takes U{1..n/2} and symmetrises; out-degree ≤ 3 keeps the graphs
    sparse: 63 % of ordered pairs are reachable at n = 8, 48 % at 12 and 39 % at 16, and the 90th percentile of the
    shortest path grows from 3 hops at n = 8 to 5 at n = 16)."""

    name, kind, classes, knob, sized = "connectivity", "categorical", 2, "the number of nodes n", True
    train, val, test = (4.0, 8.0), 10.0, (8.0, 12.0, 16.0)
    MAX_NODES = 64

    def check(self, difficulty) -> float:
        return self._integer(difficulty, 2, self.MAX_NODES)

    def sample(self, n, difficulty, rng):
        k = int(self.check(difficulty))
        pts = rng.uniform(0, 1, (n, k, 2))
        dist = np.linalg.norm(pts[:, :, None] - pts[:, None], axis=-1)
        dist[:, np.arange(k), np.arange(k)] = np.inf
        order = np.argsort(dist, axis=-1)                          # n, k, k: nearest first
        deg = rng.integers(1, 4, (n, k))
        adj = np.zeros((n, k, k), dtype=np.float32)
        rank = np.argsort(order, axis=-1)                          # rank of j among i's neighbours
        adj[rank < deg[..., None]] = 1.0
        return adj, self.solve(adj)

    def solve(self, x):
        reach = (np.asarray(x) > 0.5) | np.eye(x.shape[-1], dtype=bool)
        for k in range(x.shape[-1]):                               # Warshall
            reach = reach | (reach[:, :, k:k + 1] & reach[:, k:k + 1, :])
        return reach.astype(np.int64)


class Parity(Problem):
    name, kind, classes, knob, sized = "parity", "categorical", 2, "the length L", True
    train, val, test = (16.0, 16.0), 20.0, (16.0, 24.0, 32.0, 48.0)
    MAX_LENGTH = 4096

    def check(self, difficulty) -> float:
        return self._integer(difficulty, 1, self.MAX_LENGTH)

    def sample(self, n, difficulty, rng):
        length = int(self.check(difficulty))
        x = rng.integers(0, 2, (n, length)).astype(np.float32)
        return x, self.solve(x)

    def solve(self, x):
        return (np.cumsum(np.asarray(x) > 0.5, axis=-1) % 2).astype(np.int64)


class Sudoku(Problem):
    """9×9 boards from :mod:`ebtkit.data.sudoku`. Instances are drawn from a pool of unique puzzles made once per
    (seed, givens) and multiplied by Sudoku's symmetry group (:func:`~ebtkit.data.sudoku.augment`), since each
    puzzle costs tens of milliseconds of search. Training: 31–42 givens (SAT-Net); harder: 24–30 (RRN-like)."""

    name, kind, classes, knob = "sudoku", "categorical", 9, "the number of given cells"
    train, val, test = (31.0, 42.0), 28.0, (36.0, 30.0, 26.0)
    POOL = 64

    def __init__(self, size: int = 9, pool: int | None = None):
        super().__init__(9)
        self.pool_size = pool or self.POOL
        self._pools: dict[tuple[int, int], list] = {}

    def check(self, difficulty) -> float:
        d = self._number(difficulty)
        try:
            return float(sdk.check_givens(d))
        except ValueError as e:
            raise ValueError(str(e).replace("sudoku difficulty", "sudoku difficulty")) from None

    def _pool(self, givens: int, seed: int) -> list:
        key = (givens, seed)
        if key not in self._pools:
            rng = np.random.default_rng([seed, givens])
            self._pools[key] = [sdk.make_puzzle(givens, rng) for _ in range(self.pool_size)]
        return self._pools[key]

    def sample(self, n, difficulty, rng):
        g = int(self.check(difficulty))
        # puzzles of the harder difficulties are made directly; easier ones reveal cells of a 30-given base pool
        base_givens = min(g, 30)
        pool = self._pool(base_givens, int(rng.integers(4)))       # 4 pools per givens: variety, bounded cost
        xs, ys = [], []
        for i in rng.integers(len(pool), size=n):
            p, s = pool[i]
            p, s = sdk.augment(p, s, rng)
            if g > base_givens:
                p = sdk.reveal(p, s, g, rng)
            xs.append(p)
            ys.append(s - 1)                                       # classes 0..8
        return np.stack(xs).astype(np.float32), np.stack(ys).astype(np.int64)

    def solve(self, x):
        return np.stack([sdk.solve(b.astype(np.int64), 1)[0] - 1 for b in np.asarray(x)])


PROBLEMS: dict[str, type[Problem]] = {p.name: p for p in (Addition, Inverse, Connectivity, Parity, Sudoku)}


def get_problem(name: str, size: int = 10) -> Problem:
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; choose from {', '.join(PROBLEMS)}")
    return PROBLEMS[name](size)


__all__ = ["Problem", "PROBLEMS", "get_problem", "Addition", "Inverse", "Connectivity", "Parity", "Sudoku"]
