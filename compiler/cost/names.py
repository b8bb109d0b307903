"""Derived sizes written back as the axes that carry them, for formulas people can read.

Unification resolves every axis to base sizes, so the patch-token axis T of a vision
transformer shows up in every formula as `floor(X/4)·floor(Y/4)`. `derived_axes` finds such
axes and `readable` writes the product back as `T` (and its square as `T^2`). Only the
display changes: `Report.formulas` and every number stay in base sizes.

Which sizes qualify: those that are not a polynomial with integer coefficients (a floor,
a ceiling, a fraction or a root). A product such as the declared `D = H*K` stays expanded,
so that attention's cost keeps its heads and head width (2·B·H·S·T·(K + V), not 2·B·D·S·T).
"""

from __future__ import annotations

import sympy

from ncd.circuits.errors import NcdError
from ncd.circuits.sizes import symbol
from ncd.circuits.types import TensorType


def _polynomial(expr: sympy.Expr) -> bool:
    """Whether `expr` is a polynomial in its sizes with integer coefficients (H*K, 6*C)."""
    if expr.has(sympy.floor, sympy.ceiling):
        return False
    try:
        p = sympy.Poly(sympy.expand(expr), *sorted(expr.free_symbols, key=str))
    except sympy.PolynomialError:
        return False
    return all(c.is_Integer for c in p.coeffs())


def _levels(checked, depth: int = 0):
    """(depth, checked) of the circuit and every called subcircuit, outermost first."""
    yield depth, checked
    for sub in checked.calls.values():
        yield from _levels(sub, depth + 1)


def _own_axes(checked) -> dict[sympy.Symbol, set[sympy.Expr]]:
    """The axis names on the wires and parameters of one level (not inside its calls), each
    with the sizes it takes there."""
    values = [
        *checked.inputs.values(),
        *(v for outs in checked.outs.values() for v in outs.values()),
        *(t for ps in checked.params.values() for t in ps.values()),
    ]
    out: dict[sympy.Symbol, set[sympy.Expr]] = {}
    for v in values:
        for t in [v] if isinstance(v, TensorType) else [t for _, t in v.items]:
            for a in t.axes:
                out.setdefault(symbol(a.name), set()).add(sympy.expand(checked.resolve(a.size)))
    return out


def derived_axes(checked) -> dict[sympy.Symbol, sympy.Expr]:
    """{axis symbol: its size in base sizes} for the axes whose size is derived and may be
    written back by name: {T: floor(X/4)·floor(Y/4)} for the vision transformer.

    An axis qualifies when its resolved size is not a polynomial with integer coefficients
    and its name is not itself a size of the circuit (a strided convolution's output axis
    keeps the name X with size floor(X/4): writing X for it would be wrong), nor an axis
    with different sizes in different places (two calls of one block). When several
    axes share one size, those on the outermost circuit's wires win (the vision
    transformer's T over the S inside its blocks), then an axis that a circuit's own
    equations make an alias of another (S := T) gives way to it; if more than one is left,
    the size is ambiguous and stays written out."""
    levels = list(_levels(checked))
    free = {symbol(s) for s in checked.symbols()}
    depth: dict[sympy.Symbol, int] = {}  # the outermost level an axis is on a wire of
    sizes: dict[sympy.Symbol, set[sympy.Expr]] = {}  # every size an axis takes anywhere
    alias: dict[sympy.Symbol, sympy.Symbol] = {}  # S -> T where a circuit says S = T
    for d, c in levels:
        for a, taken in _own_axes(c).items():
            depth.setdefault(a, d)
            sizes.setdefault(a, set()).update(taken)
        # a subcircuit is typed with its caller's sizes (S := floor(X/4)·floor(Y/4)); its
        # own check keeps the equation it states between its axes (S := T)
        try:
            own = c if d == 0 else c.circuit.check()
        except NcdError:  # a subcircuit that types only with its caller's sizes
            own = c
        for s, v in own.unifier.subst.items():
            if isinstance(v, sympy.Symbol):
                alias.setdefault(s, v)
    by_size: dict[sympy.Expr, set[sympy.Symbol]] = {}
    for name, size in checked.axis_sizes().items():
        a = symbol(name)
        if size.is_number or isinstance(size, sympy.Symbol) or _polynomial(size):
            continue
        if a in free or a in size.free_symbols or len(sizes.get(a, ())) > 1:
            continue  # a size itself (conv output axes keep the name X), or two sizes
        by_size.setdefault(sympy.expand(size), set()).add(a)
    out = {}
    for size, axes in by_size.items():
        top = min(depth.get(a, 0) for a in axes)
        axes = {a for a in axes if depth.get(a, 0) == top}
        kept = {a for a in axes if alias.get(a) not in axes}
        if len(kept) == 1:
            out[kept.pop()] = size
    return out


def readable(expr: sympy.Expr, derived: dict[sympy.Symbol, sympy.Expr]) -> sympy.Expr:
    """`expr` with each derived size written as its axis: 2·B·floor(X/4)^2·floor(Y/4)^2 ->
    2·B·T^2. The result equals `expr` once the axes are replaced by their sizes; where it
    would not, `expr` comes back unchanged.

    A size that is a sum (an unpadded strided convolution's (floor(X/2 - 3/2) + 1)·(…),
    expanded) is matched across the terms of the formula by polynomial division: each
    floor and ceiling is a variable, ordered before the axes, and the remainder of `expr`
    modulo `size - axis` has no multiple of the size's leading monomial left."""
    expr = sympy.sympify(expr)
    if not derived or expr.is_number:
        return expr
    if isinstance(expr, sympy.Max):
        return sympy.Max(*(readable(a, derived) for a in expr.args), evaluate=False)
    out = expr
    # larger sizes first, so that a size built from another one is matched whole
    for a, size in sorted(derived.items(), key=lambda kv: -sympy.count_ops(kv[1])):
        out = _divide(out, size, a)
    if out == expr:
        return expr
    back = out
    for _ in range(len(derived)):
        back = back.xreplace(derived)
    return out if sympy.expand(back - expr) == 0 else expr


def _divide(expr: sympy.Expr, size: sympy.Expr, axis: sympy.Symbol) -> sympy.Expr:
    """The remainder of `expr` divided by `size - axis` (lexicographic, floors first)."""
    floors = size.atoms(sympy.floor, sympy.ceiling)
    if not floors <= expr.atoms(sympy.floor, sympy.ceiling) or not (
        floors or size.free_symbols <= expr.free_symbols
    ):
        return expr  # the size cannot divide a term of `expr`
    if not isinstance(sympy.expand(size), sympy.Add):
        return expr.subs(size, axis)  # a product: sympy's own (faster) match, powers included
    atoms = sorted((expr + size).atoms(sympy.floor, sympy.ceiling), key=sympy.default_sort_key)
    stand = {a: sympy.Dummy(sympy.sstr(a)) for a in atoms}
    f, g = sympy.expand(expr).xreplace(stand), sympy.expand(size).xreplace(stand) - axis
    rest = sorted((f.free_symbols | g.free_symbols) - set(stand.values()) - {axis}, key=str)
    try:
        _, r = sympy.reduced(f, [g], *stand.values(), *rest, axis, order="lex")
    except (sympy.PolynomialError, sympy.GeneratorsNeeded):
        return expr.subs(size, axis)
    return r.xreplace({d: a for a, d in stand.items()})
