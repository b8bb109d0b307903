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


_SAMPLES = (7, 101, 1009)


def _values(c: sympy.Expr, syms) -> tuple[float, ...]:
    """c at a few size points (every size the same prime, then mixed), for a cheap test of
    which candidate can dominate which before the exact one."""
    pts = [dict.fromkeys(syms, sympy.Integer(p)) for p in _SAMPLES]
    pts.append({s: sympy.Integer(_SAMPLES[i % 3]) for i, s in enumerate(syms)})
    out = []
    for pt in pts:
        v = sympy.sympify(c).xreplace(pt)
        out.append(float(v) if v.is_number else float("nan"))
    return tuple(out)


def prune(cands: list[sympy.Expr]) -> list[sympy.Expr]:
    """The candidates that no other candidate dominates (one of equals kept), in their order.

    Candidates are visited from the largest at sample sizes down; the exact test (`dominates`)
    runs only where the samples allow it, so that long schedules stay fast."""
    if len(cands) <= 1:
        return list(cands)
    syms = sorted(set().union(*(sympy.sympify(c).free_symbols for c in cands)), key=str)
    vals = [_values(c, syms) for c in cands]
    order = sorted(range(len(cands)), key=lambda i: -vals[i][0] if vals[i][0] == vals[i][0]
                   else 0.0)  # fmt: skip
    kept: list[int] = []
    for i in order:
        if any(
            all(a >= b for a, b in zip(vals[k], vals[i])) and dominates(cands[k], cands[i])
            for k in kept
        ):
            continue
        kept.append(i)
    return [sympy.expand(cands[i]) for i in sorted(kept)]


def maximum(cands: list[sympy.Expr]) -> sympy.Expr:
    kept = prune(cands)
    return kept[0] if len(kept) == 1 else sympy.Max(*kept, evaluate=False)


def _opaque(expr: sympy.Expr) -> dict[sympy.Symbol, sympy.Expr]:
    """A stand-in symbol for each floor/ceiling in `expr` (`floor(X/4)` counts as a size of
    degree 1), so that a cost with a strided convolution's output size is still a polynomial."""
    atoms = sorted(expr.atoms(sympy.floor, sympy.ceiling), key=sympy.default_sort_key)
    return {a: sympy.Symbol(sympy.sstr(a), positive=True, integer=True) for a in atoms}


def leading(expr: sympy.Expr) -> sympy.Expr:
    """The terms of highest total degree in the sizes, factored: 2·B·H·S·T·(K + V).

    For a maximum of several candidates, the maximum of their leading terms. A floor or
    ceiling of sizes counts as one size (degree 1)."""
    expr = sympy.sympify(expr)
    if isinstance(expr, sympy.Max):
        return maximum([leading(a) for a in expr.args])
    stand = _opaque(expr)
    if stand:
        back = {s: a for a, s in stand.items()}
        return leading(expr.xreplace(stand)).xreplace(back)
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
