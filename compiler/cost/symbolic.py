"""Small sympy helpers: the leading term of a cost, its terms and how it scales at given sizes,
a maximum without dominated candidates."""

from __future__ import annotations

import math
from dataclasses import dataclass

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

    Polynomials with integer coefficients (bytes) are compared by their coefficient vectors;
    other candidates are visited from the largest at sample sizes down, the exact test
    (`dominates`) running only where the samples allow it."""
    if len(cands) <= 1:
        return list(cands)
    from .pareto import prune_polynomials

    kept = prune_polynomials(cands)
    if kept is not None:
        return kept
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


class fft_length(sympy.Function):  # lower case: formulas print it as the runtime's function
    """The length of the FFTs of a long convolution of n = T + L − 1 outputs: the smallest
    2^a·3^b·5^c ≥ n, as compiler/runtime.py's `fft_length` picks it; unevaluated (a size of
    its own) while n is a formula."""

    is_integer = True
    is_positive = True

    @classmethod
    def eval(cls, n):
        if n.is_Integer:
            return sympy.Integer(_next_smooth(max(int(n), 1)))
        return None


class chunk_tail(sympy.Function):  # lower case, as fft_length
    """T mod C: the length of the last, partial chunk of T tokens cut into chunks of C (0 when
    C divides T); a number once T is one. Between 0 and C - 1, so it counts as a constant in a
    cost's leading term and degree (`_bounded`)."""

    is_integer = True
    is_nonnegative = True

    @classmethod
    def eval(cls, T, C):
        if T.is_Integer and C.is_Integer:
            return sympy.Integer(int(T) % int(C))
        return None


def _bounded(expr: sympy.Expr) -> dict[sympy.Expr, sympy.Expr]:
    """Each part of `expr` that stays below a number however large the sizes grow, with that
    number: a chunk's tail (`chunk_tail`, below C) and the minimum of a size and a number
    (a short sequence's only chunk, `Min(T, 64)`). The leading term and the degree take them
    as those constants: the chunked CPU forms' costs are linear in T, not a maximum of T and 64."""
    out = {}
    for a in expr.atoms(chunk_tail, sympy.Min):
        numbers = [x for x in a.args if x.is_number]
        if isinstance(a, chunk_tail) and a.args[1].is_number:
            out[a] = a.args[1]
        elif isinstance(a, sympy.Min) and numbers:
            out[a] = min(numbers)
    return out


def as_constants(expr: sympy.Expr) -> sympy.Expr:
    """`expr` with its bounded parts (`_bounded`) replaced by their bounds: what its growth in
    the sizes and its leading term are read from."""
    expr = sympy.sympify(expr)
    return expr.xreplace(_bounded(expr))


def _next_smooth(n: int) -> int:
    """The smallest integer ≥ n with no prime factor but 2, 3 and 5, counted up from n."""
    m = n
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def _opaque(expr: sympy.Expr) -> dict[sympy.Symbol, sympy.Expr]:
    """A stand-in symbol for each floor/ceiling in `expr` (`floor(X/4)` counts as a size of
    degree 1), so that a cost with a strided convolution's output size is still a polynomial;
    the same for an FFT length (`fft_length`)."""
    atoms = sorted(expr.atoms(sympy.floor, sympy.ceiling, fft_length), key=sympy.default_sort_key)
    atoms += sorted(_bounded(expr), key=sympy.default_sort_key)
    return {a: sympy.Symbol(sympy.sstr(a), positive=True, integer=True) for a in atoms}


def leading(expr: sympy.Expr) -> sympy.Expr:
    """The terms of highest total degree in the sizes, factored: 2·B·H·S·T·(K + V).

    For a maximum of several candidates, the maximum of their leading terms. A floor or
    ceiling of sizes counts as one size (degree 1)."""
    expr = sympy.sympify(expr)
    if isinstance(expr, sympy.Max):
        return maximum([leading(a) for a in expr.args])
    expr = as_constants(expr)
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
    expr = as_constants(expr)
    try:
        return sympy.Poly(sympy.expand(expr), symbol(axis)).degree()
    except sympy.PolynomialError:
        return None


def pretty(expr: sympy.Expr) -> str:
    """A formula as people write it: `2·B·H·S·T·(K + V)`."""
    return sympy.sstr(expr).replace("**", "^").replace("*", "·")


@dataclass(frozen=True)
class Term:
    """One term of a cost at given sizes: its formula, its value there and its share of the
    whole (a term may be negative, so shares can exceed 1)."""

    expr: sympy.Expr
    value: float
    share: float

    def __str__(self) -> str:
        return ordered(self.expr)


def _numeric(expr: sympy.Expr, values: dict[sympy.Symbol, int]) -> float:
    v = sympy.sympify(expr).xreplace({s: sympy.Integer(n) for s, n in values.items()})
    if v.free_symbols:
        raise ValueError(f"free sizes {sorted(map(str, v.free_symbols))} in {expr}")
    return float(v)


def _monomials(expr: sympy.Expr) -> tuple[tuple, dict[tuple, sympy.Expr]] | None:
    """(generators, {exponents: coefficient}) of `expr` expanded, each floor or ceiling of
    sizes standing as one generator; None when `expr` is not a polynomial in them."""
    expr = sympy.sympify(expr)
    stand = _opaque(expr)
    flat = sympy.expand(expr.xreplace(stand))
    syms = sorted(flat.free_symbols, key=lambda s: s.name)
    if not syms:
        return (), {(): flat}
    try:
        p = sympy.Poly(flat, *syms)
    except sympy.PolynomialError:
        return None
    back = {s: a for a, s in stand.items()}
    gens = tuple(back.get(g, g) for g in p.gens)
    return gens, dict(zip(p.monoms(), p.coeffs()))


def _alike(ms: list[tuple[int, ...]]) -> bool:
    """Whether monomials are one size standing for another over a common part: each is the
    common part times one size of degree 1 that the common part does not hold."""
    common = [min(col) for col in zip(*ms)]
    for m in ms:
        extra = [(e - c, c) for e, c in zip(m, common) if e != c]
        if extra != [(1, 0)]:
            return False
    return True


def _groups(monoms: list[tuple[int, ...]]) -> list[list[int]]:
    """Monomials that differ by one size standing for another (B·H·K·T^2 and B·H·T^2·V: K and
    V, neither in their common part) in one group, so that 2·B·H·T^2·(K + V) is one term;
    B^2·T and B·T^2 differ by sizes in their common part and stay apart."""
    groups: list[list[int]] = []
    for i, m in enumerate(monoms):
        for g in groups:
            if _alike([monoms[j] for j in g] + [m]):
                g.append(i)
                break
        else:
            groups.append([i])
    return groups


def terms(expr: sympy.Expr, values: dict[sympy.Symbol, int]) -> list[Term] | None:
    """The terms of a cost, largest first at `values` (every size of `expr` bound), with
    their shares: 2·T^2·B·H·(K + V) 83 %, 6·T^2·B·H 16 %, ... for multi-head attention at
    T = 4096. Monomials are grouped as `_groups` says. None when `expr` is not a polynomial
    in its sizes (a maximum, a fraction of sizes)."""
    poly = _monomials(expr)
    if poly is None:
        return None
    gens, coeffs = poly
    gen_values = [_numeric(g, values) for g in gens]
    monoms = list(coeffs)
    total = 0.0
    found = []
    for group in _groups(monoms):
        ms = [monoms[i] for i in group]
        common = [min(col) for col in zip(*ms)] if gens else []
        cs = [coeffs[m] for m in ms]
        c = sympy.gcd_list(cs) if len(cs) > 1 else cs[0]
        c = -c if all(x < 0 for x in cs) and c > 0 else c
        rest = sympy.Add(
            *[
                x / c * sympy.Mul(*[g ** (e - k) for g, e, k in zip(gens, m, common)])
                for x, m in zip(cs, ms)
            ]
        )
        part = sympy.Mul(*[g**k for g, k in zip(gens, common)])
        value = sum(
            float(x) * math.prod(v**e for v, e in zip(gen_values, m)) for x, m in zip(cs, ms)
        )
        total += value
        found.append((sympy.Mul(c, part, rest, evaluate=False), value))
    found.sort(key=lambda t: -abs(t[1]))
    return [Term(e, v, v / total if total else 0.0) for e, v in found]


def per_doubling(expr: sympy.Expr, values: dict[sympy.Symbol, int]) -> dict[str, float]:
    """{size: the factor by which `expr` grows when that size alone doubles} at `values`,
    largest first: {"T": 3.97, "H": 2.05, "B": 2.0, ...} for multi-head attention at
    T = 4096. Sizes the cost does not depend on are left out."""
    expr = sympy.sympify(expr)
    base = _numeric(expr, values)
    out = {}
    for s in sorted(expr.free_symbols, key=lambda s: s.name):
        if not base:
            break
        factor = _numeric(expr, {**values, s: 2 * values[s]}) / base
        if factor != 1.0:
            out[s.name] = factor
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _factors(expr: sympy.Expr):
    for f in sympy.Mul.make_args(expr):
        if isinstance(f, sympy.Mul):
            yield from _factors(f)
        else:
            yield f


def ordered(expr: sympy.Expr, constant: bool = True) -> str:
    """A product written with its highest powers first, sums last: `2·T^2·B·H·(K + V)`
    (without the constant factor: `T^2·B·H·(K + V)`)."""
    if not isinstance(expr, sympy.Mul):
        return pretty(expr)
    coeff, factors = sympy.Integer(1), []
    for f in _factors(expr):
        if f.is_number:
            coeff *= f
        else:
            factors.append(f)
    powers, sums = {}, []
    for f in factors:
        b, e = f.as_base_exp()
        if isinstance(f, sympy.Add) or not (b.is_Symbol or b.is_Function) or not e.is_Integer:
            sums.append(f)
        else:
            powers[b] = powers.get(b, 0) + int(e)
    parts = [
        pretty(b) + (f"^{e}" if e != 1 else "")
        for b, e in sorted(powers.items(), key=lambda be: (-be[1], str(be[0])))
    ]
    parts += [f"({pretty(s)})" if isinstance(s, sympy.Add) else pretty(s) for s in sums]
    if not constant or coeff == 1:
        return "·".join(parts) or "1"
    p, q = sympy.fraction(coeff)
    text = "·".join([pretty(p)] * (p != 1) + parts) or "1"
    return text if q == 1 else f"{text}/{pretty(q)}"


def dominant(expr: sympy.Expr, values: dict[sympy.Symbol, int]) -> str | None:
    """What a cost is made of at the sizes `values`: `O(T^2·B·H·(K + V))`, the largest term
    without its constant and with its highest powers first (None when `expr` has no terms)."""
    found = terms(expr, values)
    if not found:
        return None
    lead = found[0].expr
    return "O(1)" if lead.is_number else f"O({ordered(lead, constant=False)})"
