"""Pruning a peak's candidates by their coefficients, with sizes' functions among the terms."""

from __future__ import annotations

import random

import sympy

from ncd.circuits.sizes import symbol
from ncd.compiler.cost.pareto import coefficient_vectors
from ncd.compiler.cost.symbolic import chunk_tail, prune

T, X, B = symbol("T"), symbol("X"), symbol("B")


def _value(c, sizes):
    return int(sympy.sympify(c).subs(sizes))


def test_floors_and_chunk_tails_are_pruned_as_variables_of_their_own():
    """Pooled and chunked sizes (floor(T/4), chunk_tail(T, 64)) are never negative: taken as
    variables of their own, candidates whose coefficients dominate dominate at every size.
    They once sent a peak to pairwise sympy comparisons (soft_attention's analysis: 5 s, now
    a quarter of a second). The kept ones give the same maximum as all of them, at random
    sizes."""
    f, r = sympy.floor(T / 4), chunk_tail(T, 64)
    cands = [
        8 * B * T + 4 * B * f + 3 * r,
        8 * B * T + 8 * B * f + 3 * r,  # dominates the first
        4 * B * T + 12 * B * f,  # neither dominates the second: kept
        2 * B * T * f + X,
        B * T * f + X,  # dominated by the one before
    ]
    assert coefficient_vectors(cands) is not None
    kept = prune(cands)
    assert len(kept) == 3
    rng = random.Random(0)
    for _ in range(200):
        sizes = {T: rng.randint(1, 5000), X: rng.randint(1, 5000), B: rng.randint(1, 64)}
        assert max(_value(c, sizes) for c in kept) == max(_value(c, sizes) for c in cands)


def test_a_term_that_can_be_negative_is_no_variable():
    assert coefficient_vectors([T + sympy.sin(T), 2 * T]) is None
