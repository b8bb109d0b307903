"""The size form: `Size`, an expanded polynomial over positive integer size symbols with exact
rational coefficients, held without sympy, or a sympy expression where a size is not such a
polynomial (a floor, a logarithm, a root, a product of sums).

The own form decides equality, evaluates and prints as sympy would hold and print the same
expression (tests/circuits/test_size_form.py checks it against sympy), so the one value has one
form: `Size.from_sympy` gives the own form back wherever it applies. `Size._sympy_` is the one
conversion to sympy (imported on first use); attributes a Size does not define are read from
its sympy form, so that emitters' formulas take sizes as they are.
"""

from __future__ import annotations

import operator
from fractions import Fraction
from functools import lru_cache

# A monomial: ((name, exponent), ...) sorted by name, exponents nonzero integers (or, in a
# single monomial with coefficient 1, floats: `K**-0.5`). A polynomial: {monomial: nonzero
# Fraction}; the constant term has the monomial (). A float is held only as a number alone
# (the exponent of `K**-0.5`), never as a coefficient.
Monomial = tuple[tuple[str, int | float], ...]


class Size:
    """A size expression. Immutable and hashable; `+ - * / **` with Sizes and integers.

    >>> str(parse_size("H*K") / parse_size("K"))
    'H'
    """

    __slots__ = ("_poly", "_expr", "_hash")

    def __init__(self, poly: dict[Monomial, Fraction] | None = None, expr=None):
        # one of: `_poly` (own form) or `_expr` (a sympy expression outside it)
        self._poly = poly
        self._expr = expr
        self._hash = None

    # -- making sizes
    @staticmethod
    def number(n: int | Fraction) -> Size:
        n = Fraction(n)
        return Size({(): n} if n else {})

    @staticmethod
    def decimal(text: str) -> Size:
        """A number written with a decimal point, as sympy's Float holds it."""
        x = float(text)
        digits = len(text.replace(".", "").strip("0"))
        if digits <= 15 and not x.is_integer() and "e" not in f"{x:#.15g}":
            return Size({(): x})
        import sympy

        return Size(None, sympy.Float(text))

    @staticmethod
    def of(name: str) -> Size:
        """The size symbol of axis `name`."""
        return _symbol_size(name)

    @staticmethod
    def from_sympy(expr) -> Size:
        """`expr` (a sympy expression) as a Size: in the own form where it is a polynomial of
        the kind it holds, else held as it is."""
        poly = _poly_of_sympy(expr)
        return Size(poly) if poly is not None else Size(None, expr)

    # -- the sympy form: the one conversion
    def _sympy_(self):
        if self._expr is None:
            import sympy

            terms = []
            for mono, c in self._poly.items():
                if isinstance(c, float):
                    factors = [sympy.Float(c)]
                else:
                    factors = [sympy.Rational(c.numerator, c.denominator)]
                factors += [symbol(n) ** _sympy_exponent(e) for n, e in mono]
                terms.append(sympy.Mul(*factors))
            self._expr = sympy.Add(*terms)
        return self._expr

    @property
    def sympy(self):
        """This size as a sympy expression."""
        return self._sympy_()

    def __getattr__(self, name: str):
        if name.startswith("_"):  # sympy's private protocol (`_op_priority`) is not a Size's
            raise AttributeError(name)
        return getattr(self._sympy_(), name)

    def __reduce__(self):
        return (_restore, (self._poly, None if self._poly is not None else self._expr))

    # -- what validation asks
    @property
    def is_own(self) -> bool:
        """Whether this size is held in the own form (no sympy)."""
        return self._poly is not None

    @property
    def is_number(self) -> bool:
        if self._poly is not None:
            return not self._poly or tuple(self._poly) == ((),)
        return bool(self._expr.is_number)

    @property
    def is_Number(self) -> bool:  # noqa: N802 - sympy's name: a number, not an expression of one
        if self._poly is not None:
            return self.is_number
        return bool(self._expr.is_Number)

    @property
    def is_Integer(self) -> bool:  # noqa: N802 - sympy's name, which emitters read
        if self._poly is not None:
            return self.is_number and _whole(self._const())
        return bool(self._expr.is_Integer)

    @property
    def is_integer(self) -> bool | None:
        """True where the size is a whole number for all positive integer symbols, False
        for a number that is not whole, None where unknown (sympy's three values)."""
        if self._poly is not None:
            if self.is_number:
                return _whole(self._const())
            whole = all(_whole(c) for c in self._poly.values()) and all(
                isinstance(e, int) and e > 0 for mono in self._poly for _, e in mono
            )
            return True if whole else None
        return self._expr.is_integer

    def names(self) -> frozenset[str]:
        """The names of the size symbols in the expression."""
        if self._poly is not None:
            return frozenset(n for mono in self._poly for n, _ in mono)
        return frozenset(s.name for s in self._expr.free_symbols)

    def _const(self) -> Fraction:
        return self._poly.get((), Fraction(0))

    def __int__(self) -> int:
        if self._poly is not None:
            if not self.is_number:
                raise TypeError(f"cannot make {self} an integer")
            return int(self._const())
        return int(self._expr)

    def __float__(self) -> float:
        if self._poly is not None:
            if not self.is_number:
                raise TypeError(f"cannot make {self} a number")
            return float(self._const())
        return float(self._expr)

    # -- arithmetic: the own form where the result is an expanded polynomial as sympy
    # would hold it, else sympy's
    def _combine(self, other, own, with_sympy):
        """own(self, o) on the polynomials where both are polynomials and own gives one (not
        None), else with_sympy on the sympy forms; NotImplemented for a non-size."""
        o = _as_size(other)
        if o is None:
            return NotImplemented
        if self._poly is not None and o._poly is not None:
            poly = own(self._poly, o._poly)
            if poly is not None:
                return Size(poly)
        return Size.from_sympy(with_sympy(self._sympy_(), o._sympy_()))

    def __add__(self, other):
        return self._combine(other, _add, operator.add)

    __radd__ = __add__

    def __neg__(self):
        if self._poly is not None:
            return Size({m: -c for m, c in self._poly.items()})
        return Size.from_sympy(-self._sympy_())

    def __sub__(self, other):
        o = _as_size(other)
        return NotImplemented if o is None else self + (-o)

    def __rsub__(self, other):
        o = _as_size(other)
        return NotImplemented if o is None else o + (-self)

    def __mul__(self, other):
        return self._combine(other, _mul, operator.mul)

    __rmul__ = __mul__

    def __truediv__(self, other):
        o = _as_size(other)
        if o is None:
            return NotImplemented
        if o._poly is not None and not o._poly:
            raise ZeroDivisionError(f"{self} / 0")
        if self._poly is not None and o._poly is not None and not _floats(o._poly):
            return self * o**-1
        return Size.from_sympy(self._sympy_() / o._sympy_())

    def __rtruediv__(self, other):
        o = _as_size(other)
        return NotImplemented if o is None else o / self

    def __pow__(self, other):
        o = _as_size(other)
        if o is None:
            return NotImplemented
        if self._poly is not None and o._poly is not None and o.is_number:
            poly = _pow(self._poly, int(o) if o.is_Integer else o._const())
            if poly is not None:
                return Size(poly)
        return Size.from_sympy(self._sympy_() ** o._sympy_())

    # -- comparison: structural (one form per value), and with numbers by value
    def __eq__(self, other):
        if isinstance(other, Size):
            if self._poly is not None or other._poly is not None:
                return _typed(self._poly) == _typed(other._poly)
            return self._expr == other._expr
        if isinstance(other, int | Fraction) and not isinstance(other, bool):
            return self._poly is not None and self._poly == Size.number(other)._poly
        if isinstance(other, float):
            return self.is_number and float(self) == other
        return NotImplemented

    def __hash__(self):
        if self._hash is None:
            if self._poly is None:
                self._hash = hash(self._expr)
            elif self.is_number:
                self._hash = hash(self._const())
            else:
                self._hash = hash(frozenset(self._poly.items()))
        return self._hash

    def _compare(self, other, op):
        o = _as_size(other)
        if o is None:
            return NotImplemented
        if self._poly is not None and o._poly is not None:
            if not (self.is_number and o.is_number):
                raise TypeError(f"cannot order the sizes {self} and {o}")
            return op(self._const(), o._const())
        return op(self._sympy_(), o._sympy_())

    def __lt__(self, other):
        return self._compare(other, lambda a, b: a < b)

    def __le__(self, other):
        return self._compare(other, lambda a, b: a <= b)

    def __gt__(self, other):
        return self._compare(other, lambda a, b: a > b)

    def __ge__(self, other):
        return self._compare(other, lambda a, b: a >= b)

    def __abs__(self):
        if self._poly is None:
            return Size.from_sympy(abs(self._expr))
        return -self if self.is_number and self < 0 else self

    # -- printing: as sympy prints it
    def __str__(self) -> str:
        if self._poly is None:
            return str(self._expr)
        return _print_poly(self._poly)

    def __repr__(self) -> str:
        return str(self)


def _whole(c) -> bool:
    return c.denominator == 1 if isinstance(c, Fraction) else False


def _typed(poly: dict | None):
    """A polynomial with its floats told apart from equal rationals (0.5 is not 1/2, as in
    sympy)."""
    if poly is None:
        return None
    return {m: (type(c), c) for m, c in poly.items()}


def _sympy_exponent(e):
    import sympy

    return sympy.Float(e) if isinstance(e, float) else e


def _floats(poly: dict) -> bool:
    return any(isinstance(c, float) for c in poly.values()) or any(
        isinstance(e, float) for m in poly for _, e in m
    )


def _restore(poly, expr) -> Size:
    return Size(poly) if poly is not None else Size(None, expr)


@lru_cache(maxsize=4096)
def _symbol_size(name: str) -> Size:
    return Size({((name, 1),): Fraction(1)})


def _as_size(x) -> Size | None:
    if isinstance(x, Size):
        return x
    if isinstance(x, int | Fraction) and not isinstance(x, bool):
        return Size.number(x)
    if isinstance(x, float):
        import sympy

        return Size(None, sympy.Float(x))
    return None  # a sympy object: sympy's own arithmetic takes it from here


def as_size(x) -> Size:
    """`x` (a Size, an integer or a sympy expression) as a Size."""
    s = _as_size(x)
    if s is not None:
        return s
    if isinstance(x, str):
        raise TypeError("a size in text goes through parse_size")
    return Size.from_sympy(x)


# -- the own form: expanded polynomials over size symbols, integer exponents


def _add(a: dict, b: dict) -> dict | None:
    if not a or not b:
        return dict(a or b)
    if _floats(a) or _floats(b):
        return None  # floats in sums are sympy's
    out = dict(a)
    for m, c in b.items():
        s = out.get(m, 0) + c
        if s:
            out[m] = s
        else:
            out.pop(m, None)
    return out


def _mono_mul(a: Monomial, b: Monomial) -> Monomial:
    exps = dict(a)
    for n, e in b:
        exps[n] = exps.get(n, 0) + e
    return tuple(sorted((n, e) for n, e in exps.items() if e))


def _mul(a: dict, b: dict) -> dict | None:
    """The product in the own form, or None where sympy keeps it a product of a sum (it
    distributes a number over a sum, and multiplies out products of monomials only)."""
    if not a or not b:
        return {}
    if _floats(a) or _floats(b):
        if a == {(): 1} or b == {(): 1}:
            return dict(b if a == {(): 1} else a)
        return None  # products with floats are sympy's
    if len(a) > 1 and len(b) > 1:
        return None
    if len(a) > 1 or len(b) > 1:
        single = b if len(a) > 1 else a
        if tuple(single) != ((),):
            return None
    out: dict = {}
    for ma, ca in a.items():
        for mb, cb in b.items():
            out = _add(out, {_mono_mul(ma, mb): ca * cb})
    return out


def _pow(a: dict, n: int | Fraction | float) -> dict | None:
    """`a` to the power `n` in the own form: whole powers of numbers and monomials, and a
    float power of a monomial of coefficient 1 (sympy's `K**-0.5`); None for the rest."""
    if _floats(a):
        return None
    if isinstance(n, float):
        if len(a) != 1 or () in a or next(iter(a.values())) != 1:
            return None
        ((mono, _),) = a.items()
        exps = tuple((name, e * n) for name, e in mono)
        if any(float(e).is_integer() for _, e in exps):
            return None
        return {exps: Fraction(1)}
    if not isinstance(n, int):
        return None
    if n == 0:
        return {(): Fraction(1)}
    if n == 1:
        return dict(a)
    if len(a) != 1:
        return None if a else ({} if n > 0 else None)  # a sum to a power stays sympy's
    ((mono, c),) = a.items()
    return {tuple((name, e * n) for name, e in mono): c**n}


def _poly_of_sympy(expr) -> dict | None:
    """The own form of a sympy expression that is a polynomial as the own form holds it, else
    None."""
    if expr.is_Rational:
        return {(): Fraction(int(expr.p), int(expr.q))} if expr != 0 else {}
    if expr.is_Float:
        x = _own_float(expr)
        return None if x is None else {(): x}
    powers = expr.args if expr.is_Mul else (expr,)
    if all(f.is_Pow and f.exp.is_Float for f in powers):  # K**-0.5, H**-0.5*K**-0.5
        mono = []
        for f in powers:
            e = _own_float(f.exp)
            if e is None or not (f.base.is_Symbol and _is_size_symbol(f.base)):
                return None
            mono.append((f.base.name, e))
        return {tuple(sorted(mono)): Fraction(1)}
    if expr.is_Add:
        out: dict = {}
        for t in expr.args:
            p = _term_of_sympy(t)
            if p is None or p[0] in out:
                return None
            out[p[0]] = p[1]
        return out
    p = _term_of_sympy(expr)
    return None if p is None else {p[0]: p[1]}


def _term_of_sympy(t) -> tuple[Monomial, Fraction] | None:
    coeff, mono = Fraction(1), {}
    for f in t.args if t.is_Mul else (t,):
        if f.is_Rational:
            coeff *= Fraction(int(f.p), int(f.q))
        elif f.is_Symbol and _is_size_symbol(f):
            mono[f.name] = mono.get(f.name, 0) + 1
        elif f.is_Pow and f.base.is_Symbol and _is_size_symbol(f.base) and f.exp.is_Integer:
            mono[f.base.name] = mono.get(f.base.name, 0) + int(f.exp)
        else:
            return None
    if not coeff:
        return None
    return tuple(sorted((n, e) for n, e in mono.items() if e)), coeff


def _own_float(x) -> float | None:
    """A sympy Float as the own form holds it (double precision, not whole), else None."""
    if x._prec != 53:
        return None
    v = float(x)
    return None if v.is_integer() or "e" in f"{v:#.15g}" else v


def _is_size_symbol(s) -> bool:
    return s == symbol(s.name)


# -- printing the own form as sympy's str printer does


def _print_rational(c: Fraction | float) -> str:
    if isinstance(c, float):
        return f"{c:#.15g}"
    return str(c.numerator) if c.denominator == 1 else f"{c.numerator}/{c.denominator}"


def _print_term(mono: Monomial, c: Fraction) -> str:
    """A monomial with its coefficient: `2*X/3`, `-H*K`, `Y/X**2`, `1/(H*K)`."""
    if not mono:
        return _print_rational(c)
    if c == 1 and len(mono) == 1 and mono[0][1] < 0:  # a power alone: sympy's Pow printing
        name, e = mono[0]
        return f"1/{name}" if e == -1 else f"{name}**({_print_exponent(e)})"
    sign = "-" if c < 0 else ""
    c = abs(c)
    num = [str(c.numerator)] if c.numerator != 1 else []
    den = [str(c.denominator)] if c.denominator != 1 else []
    for name, e in mono:
        part = name if abs(e) == 1 else f"{name}**{_print_exponent(abs(e))}"
        (num if e > 0 else den).append(part)
    text = "*".join(num or ["1"])
    if not den:
        return sign + text
    return sign + text + ("/" + den[0] if len(den) == 1 else "/(" + "*".join(den) + ")")


def _print_exponent(e) -> str:
    return f"{e:.15g}" if isinstance(e, float) else str(e)


def _print_poly(poly: dict) -> str:
    if not poly:
        return "0"
    items = list(poly.items())
    if len(items) == 1:
        return _print_term(*items[0])
    gens = sorted({n for mono in poly for n, _ in mono})
    at = {n: i for i, n in enumerate(gens)}

    def key(item):
        mono, c = item
        exps = [0] * len(gens)
        for n, e in mono:
            exps[at[n]] = e
        return tuple(-e for e in exps), float(c)

    # sympy's order: exponent vectors (over the sorted symbols) in descending lexicographic
    # order, except that `1 - X` (a positive number and a negated single factor) keeps
    # the number first
    items.sort(key=key)
    const = poly.get(())
    if len(items) == 2 and const is not None and const > 0:
        (mono, c) = next(i for i in items if i[0])
        if c < 0 and len(mono) == 1:
            items = [((), const), (mono, c)]
    out = ""
    for i, (mono, c) in enumerate(items):
        t = _print_term(mono, c)
        neg = t.startswith("-")
        t = t[1:] if neg else t
        if i == 0:
            out = ("-" if neg else "") + t
        else:
            out += (" - " if neg else " + ") + t
    return out


@lru_cache(maxsize=4096)
def symbol(name: str):
    """The sympy symbol of size `name` (a positive integer), for emitters' formulas."""
    import sympy

    return sympy.Symbol(name, positive=True, integer=True)
