"""The reasoning problems' generators against exact solvers written independently here, and their difficulty checks."""
import math

import numpy as np
import pytest

from ebtkit.data import sudoku as sdk
from ebtkit.data.reasoning import PROBLEMS, get_problem


def bfs_reach(adj):
    n = adj.shape[0]
    out = np.zeros((n, n), dtype=np.int64)
    for s in range(n):
        seen, stack = {s}, [s]
        while stack:
            u = stack.pop()
            for v in np.flatnonzero(adj[u] > 0.5):
                if v not in seen:
                    seen.add(v)
                    stack.append(v)
        out[s, list(seen)] = 1
    return out


def test_addition_is_the_sum_and_its_range_is_the_difficulty():
    p = get_problem("addition", 10)
    x, y = p.sample(64, 2.5, np.random.default_rng(0))
    assert x.shape == (64, 2, 10, 10) and y.shape == (64, 10, 10)
    np.testing.assert_array_equal(y, x[:, 0] + x[:, 1])
    assert np.abs(x).max() <= 2.5 and np.abs(x).max() > 2.4


def test_inverse_is_the_inverse_of_a_symmetric_positive_definite_matrix_and_harder_is_worse_conditioned():
    p = get_problem("inverse", 10)
    conds = []
    for d in (1.0, 5.0):
        x, y = p.sample(32, d, np.random.default_rng(1))
        np.testing.assert_allclose(x, np.swapaxes(x, 1, 2))
        assert (np.linalg.eigvalsh(x.astype(np.float64)) > 0).all()
        eye = np.broadcast_to(np.eye(10), x.shape)
        np.testing.assert_allclose(x.astype(np.float64) @ y.astype(np.float64), eye, atol=1e-4)
        conds.append(np.median(np.linalg.cond(x)))
    assert conds[1] > 3 * conds[0]


@pytest.mark.parametrize("n", [4, 8, 16])
def test_connectivity_labels_are_reachability(n):
    p = get_problem("connectivity")
    x, y = p.sample(20, n, np.random.default_rng(n))
    assert x.shape == (20, n, n) and y.shape == (20, n, n)
    for a, r in zip(x, y):
        np.testing.assert_array_equal(r, bfs_reach(a))
        assert (a.sum(1) >= 1).all() and (a.sum(1) <= 3).all()       # out-degree 1..3, no self loops
        assert np.trace(a) == 0


def test_connectivity_graphs_keep_both_labels_and_harder_needs_longer_paths():
    p = get_problem("connectivity")
    fr = {}
    for n in (8, 16):
        _, y = p.sample(300, n, np.random.default_rng(0))
        off = ~np.eye(n, dtype=bool)
        fr[n] = y[:, off].mean()
    assert 0.3 < fr[16] < fr[8] < 0.8


def test_parity_is_the_prefix_xor():
    p = get_problem("parity")
    x, y = p.sample(50, 32, np.random.default_rng(2))
    for bits, out in zip(x, y):
        acc, want = 0, []
        for b in bits:
            acc ^= int(b)
            want.append(acc)
        assert out.tolist() == want


@pytest.mark.parametrize("givens", [24, 30, 40])
def test_sudoku_puzzles_are_unique_and_their_solutions_valid(givens):
    rng = np.random.default_rng(givens)
    puzzle, sol = sdk.make_puzzle(givens, rng)
    assert (puzzle > 0).sum() == givens
    assert sdk.is_valid_solution(sol)
    assert (puzzle[puzzle > 0] == sol[puzzle > 0]).all()
    assert sdk.count_solutions(puzzle, 2) == 1
    np.testing.assert_array_equal(sdk.solve(puzzle)[0], sol)


def test_sudoku_solver_counts_several_solutions_and_refuses_contradictions():
    assert sdk.count_solutions(np.zeros(81, dtype=int), 3) == 3
    bad = np.zeros(81, dtype=int)
    bad[0] = bad[1] = 5                                              # a digit twice in a row
    assert sdk.count_solutions(bad, 2) == 0


def test_sudoku_symmetries_and_reveal_keep_puzzles_valid_and_unique():
    rng = np.random.default_rng(3)
    puzzle, sol = sdk.make_puzzle(28, rng)
    for _ in range(5):
        p2, s2 = sdk.augment(puzzle, sol, rng)
        assert sdk.is_valid_solution(s2) and (p2 > 0).sum() == 28
        assert (p2[p2 > 0] == s2[p2 > 0]).all() and sdk.count_solutions(p2, 2) == 1
    more = sdk.reveal(puzzle, sol, 40, rng)
    assert (more > 0).sum() == 40 and (more[more > 0] == sol[more > 0]).all()


def test_sudoku_problem_instances_match_the_solver():
    p = get_problem("sudoku")
    p.pool_size = 3
    x, y = p.sample(6, 36, np.random.default_rng(0))
    assert x.shape == (6, 81) and y.shape == (6, 81) and y.min() >= 0 and y.max() <= 8
    assert ((x > 0).sum(1) == 36).all()
    np.testing.assert_array_equal(p.solve(x), y)


@pytest.mark.parametrize("name,bad", [("addition", math.nan), ("addition", -1), ("addition", "x"),
                                      ("inverse", 0), ("connectivity", -3), ("connectivity", 4.5),
                                      ("connectivity", 1e9), ("parity", 0), ("parity", math.inf),
                                      ("sudoku", 90), ("sudoku", 10), ("sudoku", 30.5)])
def test_impossible_difficulties_are_one_line_errors(name, bad):
    with pytest.raises(ValueError) as e:
        get_problem(name).check(bad)
    msg = str(e.value)
    assert "\n" not in msg and name in msg and repr(bad) in msg


def test_every_problem_names_valid_train_val_and_test_difficulties():
    for name, cls in PROBLEMS.items():
        p = get_problem(name)
        for d in (*cls.train, cls.val, *cls.test):
            p.check(d)
        assert cls.val not in cls.test          # recipes are chosen on a difficulty that is never reported as a test
