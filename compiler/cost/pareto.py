"""Pareto pruning of polynomial cost candidates by their coefficient vectors.

A polynomial in positive sizes whose every coefficient is at least another's is at least as
large at every size, so a maximum over a schedule's steps keeps only candidates that no other
dominates coefficient by coefficient; comparing integer vectors (numpy) instead of sympy
formulas keeps this fast on schedules of tens of thousands of steps.
"""

from __future__ import annotations

import sympy


def coefficient_vectors(cands: list[sympy.Expr]):
    """Each candidate as integer coefficients over one list of monomials in the sizes, or None
    where a candidate is not a polynomial with integer coefficients (then `prune` compares
    formulas)."""
    rows, monomials, expanded = [], {}, []
    for c in cands:
        terms = sympy.sympify(c).as_coefficients_dict()
        expanded.append(all(k.is_Integer and monomial(m) for m, k in terms.items()))
        if not expanded[-1]:
            terms = sympy.expand(c).as_coefficients_dict()
        for m, k in terms.items():
            if not k.is_Integer or abs(k) > 2**62 or not monomial(m):
                return None
            monomials.setdefault(m, len(monomials))
        rows.append(terms)
    vecs = [[0] * len(monomials) for _ in rows]
    for v, terms in zip(vecs, rows):
        for m, k in terms.items():
            v[monomials[m]] = int(k)
    return vecs, list(monomials), expanded


def prune_polynomials(cands: list[sympy.Expr]) -> list[sympy.Expr] | None:
    """`symbolic.prune` for polynomials with integer coefficients (expanded), None for other
    candidates."""
    got = coefficient_vectors(cands)
    if got is None:
        return None
    vecs, monomials, expanded = got
    return [
        cands[i] if expanded[i] else sympy.expand(cands[i]) for i in prune_vectors(vecs, monomials)
    ]


def monomial(m: sympy.Expr) -> bool:
    """Whether `m` is 1 or a product of generators to positive integer powers: positive
    sizes, and functions of sizes that are never negative (`floor(T/4)`, a chunk's tail
    `chunk_tail(T, 64)`), each taken as a variable of its own. Coefficients that dominate
    over independent non-negative variables dominate at the values those functions take."""
    factors = m.args if m.is_Mul else (m,)
    return all(
        f == 1
        or _generator(f)
        or (f.is_Pow and _generator(f.base) and f.exp.is_Integer and f.exp > 0)
        for f in factors
    )


def _generator(f: sympy.Expr) -> bool:
    if f.is_Symbol:
        return bool(f.is_positive)
    return bool(f.is_Function and f.free_symbols and f.is_nonnegative)


def prune_vectors(vecs: list[list[int]], monomials: list[sympy.Expr]) -> list[int]:
    """`prune` for polynomials given as integer coefficients over `monomials`: the indices
    of the vectors no other dominates (each coefficient at least as large, sizes being
    positive), one of equal ones kept, in their order. Visited from the largest value at
    sizes 7 down, so a dominating vector (or the first of equal ones) is kept before those it
    dominates."""
    import numpy as np

    if not vecs:
        return []
    weight = [int(m.xreplace(dict.fromkeys(m.free_symbols, sympy.Integer(7)))) for m in monomials]
    value = [sum(k * w for k, w in zip(v, weight)) for v in vecs]
    order = sorted(range(len(vecs)), key=lambda i: -value[i])
    arr = np.array(vecs, dtype=np.int64).reshape(len(vecs), len(monomials))
    front = np.empty_like(arr)
    kept: list[int] = []
    for i in order:
        row = arr[i]
        if kept and (front[: len(kept)] >= row).all(axis=1).any():
            continue
        front[len(kept)] = row
        kept.append(i)
    return sorted(kept)


def integer_value(expr, sizes: dict[str, int]) -> int | None:
    """The value of a polynomial with integer coefficients at `sizes` (name -> int), computed
    with Python integers; None for any other formula or where a size is not bound."""
    if not isinstance(expr, sympy.Expr):
        return None
    total = 0
    for m, k in expr.as_coefficients_dict().items():
        if not k.is_Integer:
            return None
        v = int(k)
        for f in m.args if m.is_Mul else (m,):
            if f == 1:
                continue
            base, exp = (f.base, f.exp) if f.is_Pow else (f, sympy.Integer(1))
            if not (base.is_Symbol and exp.is_Integer and exp > 0) or base.name not in sizes:
                return None
            v *= sizes[base.name] ** int(exp)
        total += v
    return total
