"""Small sympy helpers: the leading term of a cost, a maximum without dominated candidates."""

from __future__ import annotations

import sympy


def _poly(expr: sympy.Expr):
    syms = sorted(expr.free_symbols, key=lambda s: s.name)
    if not syms:
        return None
    try:
        return sympy.Poly(sympy.expand(expr), *syms)
    except sympy.PolynomialError:
        return None


def dominates(a: sympy.Expr, b: sympy.Expr) -> bool:
    """Whether a >= b for every positive size: a - b is a polynomial with no negative
    coefficient (sizes are positive integers)."""
    d = sympy.expand(a - b)
    if d == 0 or (d.is_number and d >= 0):
        return True
    p = _poly(d)
    return p is not None and all(c >= 0 for c in p.coeffs())


def prune(cands: list[sympy.Expr]) -> list[sympy.Expr]:
    """The candidates that no other candidate dominates (first of equals kept)."""
    out: list[sympy.Expr] = []
    for c in cands:
        c = sympy.expand(c)
        if any(dominates(k, c) for k in out):
            continue
        out = [k for k in out if not dominates(c, k)] + [c]
    return out


def maximum(cands: list[sympy.Expr]) -> sympy.Expr:
    kept = prune(cands) if len(cands) < 400 else cands
    return kept[0] if len(kept) == 1 else sympy.Max(*kept)


def leading(expr: sympy.Expr) -> sympy.Expr:
    """The terms of highest total degree in the sizes, factored: 2·B·H·S·T·(K + V).

    For a maximum of several candidates, the maximum of their leading terms."""
    expr = sympy.sympify(expr)
    if isinstance(expr, sympy.Max):
        return maximum([leading(a) for a in expr.args])
    p = _poly(expr)
    if p is None:
        return expr
    top = max(sum(m) for m in p.monoms())
    terms = [
        c * sympy.Mul(*[g**e for g, e in zip(p.gens, m)])
        for m, c in zip(p.monoms(), p.coeffs())
        if sum(m) == top
    ]
    return sympy.factor(sympy.Add(*terms))


def big_o(expr: sympy.Expr) -> str:
    """`O(B·H·S·T·(K + V))`: the leading term without its constant factor."""
    lead = leading(expr)
    if lead.is_number:
        return "O(1)"
    _, rest = lead.as_coeff_Mul()
    return f"O({pretty(rest)})"


def degree(expr: sympy.Expr, axis: str) -> int | None:
    """Polynomial degree of `expr` in the size `axis` (None when not a polynomial)."""
    from ncd.circuits.sizes import symbol

    expr = sympy.sympify(expr)
    if isinstance(expr, sympy.Max):
        ds = [degree(a, axis) for a in expr.args]
        return None if None in ds else max(ds)
    try:
        return sympy.Poly(sympy.expand(expr), symbol(axis)).degree()
    except sympy.PolynomialError:
        return None


def pretty(expr: sympy.Expr) -> str:
    """A formula as people write it: `2·B·H·S·T·(K + V)`."""
    return sympy.sstr(expr).replace("**", "^").replace("*", "·")
