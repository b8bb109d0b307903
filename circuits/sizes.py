"""Symbolic sizes: the size form `Size`, a safe parser for size expressions, and unification.

A size is a `Size`: a polynomial over positive integer size symbols (one per axis name: `T`,
`H*K`, `X/2 - 1/2`) kept in expanded form with exact rational coefficients, which decides
equality, evaluates and prints without sympy. What is not such a polynomial (a floor, a
logarithm, a root, a float, a product of sums) is held as a sympy expression, and sympy is
imported only then; `Size._sympy_` is the one conversion between the two. Attributes a Size
does not define are read from its sympy form, so emitters use sizes as sympy expressions.

Strings from a circuit are parsed here by a small recursive-descent parser, never by
`sympify`/`eval`, so a hostile spec cannot run code.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from functools import lru_cache

from .errors import SizeError
from .limits import (
    MAX_ELEMENTS,  # noqa: F401 - validate reads it from here
    MAX_EXPONENT,
    MAX_EXPR_CHARS,
    MAX_EXPR_DEPTH,
    MAX_EXPR_TERMS,
    MAX_INT_DIGITS,
    MAX_NUMBER,
    exceeded,
)

MAX_DEPTH = MAX_EXPR_DEPTH
# Names sympy or Python read as numbers: a size so named would read as one to people.
_NOT_SIZES = {"nan", "inf", "infinity", "oo", "zoo", "i", "e", "pi"}

_TOKEN = re.compile(r"\s*(?:(\d+\.\d*|\d*\.\d+|\d+)|([A-Za-z_][A-Za-z0-9_]*)|(\*\*|[-+*/^(),]))")

FUNCTIONS = ("floor", "ceiling", "ceil", "sqrt", "log", "log2")
"""Functions a size expression may apply (`log` is the natural logarithm, `ceil` is
`ceiling`)."""


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
    def __add__(self, other):
        o = _as_size(other)
        if o is None:
            return NotImplemented
        if self._poly is not None and o._poly is not None:
            poly = _add(self._poly, o._poly)
            if poly is not None:
                return Size(poly)
        return Size.from_sympy(self._sympy_() + o._sympy_())

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
        o = _as_size(other)
        if o is None:
            return NotImplemented
        if self._poly is not None and o._poly is not None:
            poly = _mul(self._poly, o._poly)
            if poly is not None:
                return Size(poly)
        return Size.from_sympy(self._sympy_() * o._sympy_())

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


# -- sympy names: the symbols and functions of the sympy form (imported on first use)


@lru_cache(maxsize=4096)
def symbol(name: str):
    """The sympy symbol of size `name` (a positive integer), for emitters' formulas."""
    import sympy

    return sympy.Symbol(name, positive=True, integer=True)


@lru_cache(maxsize=1)
def _sympy_functions() -> dict:
    import sympy

    class log2(sympy.Function):  # noqa: N801 - named as written in size expressions
        """The base-2 logarithm, kept as `log2(T)` until its argument is a number (then
        exact: log2(64) = 6), so that a size bound later to a power of two is a whole
        number."""

        is_real = True

        @classmethod
        def eval(cls, x):
            if x.is_Number:
                return sympy.log(x, 2)
            return None

    return {
        "floor": sympy.floor,
        "ceiling": sympy.ceiling,
        "ceil": sympy.ceiling,
        "sqrt": sympy.sqrt,
        "log": sympy.log,
        "log2": log2,
    }


def apply(function: str, x: Size) -> Size:
    """`function` (one of FUNCTIONS) of `x`. A floor or ceiling of a size that is a whole
    number is that size, as sympy has it; the rest is sympy's."""
    if function in ("floor", "ceiling", "ceil") and x.is_own and x.is_integer:
        return x
    if x.is_own and x.is_number and function in ("floor", "ceiling", "ceil"):
        v = x._const()
        return Size.number(math.floor(v) if function == "floor" else math.ceil(v))
    return Size.from_sympy(_sympy_functions()[function](x._sympy_()))


def floor(x: Size) -> Size:
    return apply("floor", x)


def ceiling(x: Size) -> Size:
    return apply("ceiling", x)


def product(sizes) -> Size:
    """The product of `sizes` (1 for none)."""
    out = Size.number(1)
    for s in sizes:
        out = out * s
    return out


def simplify(x: Size) -> Size:
    """sympy's simplify for a size held as sympy; a polynomial of the own form is kept."""
    if x.is_own:
        return x
    import sympy

    return Size.from_sympy(sympy.simplify(x._sympy_()))


def parse_size(text: str | int | float) -> Size:
    """Parse `"H*K"`, `"X/s"`, `"K**-0.5"`, `64` into a Size.

    >>> parse_size("H*K")
    H*K
    """
    if isinstance(text, bool):
        raise SizeError(f"a size must be a number or an expression, found {text!r}")
    if isinstance(text, int):
        return Size.number(text)
    if isinstance(text, float):
        return _as_size(text)
    if not isinstance(text, str):
        raise SizeError(f"a size must be a number or an expression, found {type(text).__name__}")
    return _parse_cached(text)


def _not_finite(value: Size) -> bool:
    if value.is_own:
        return False
    import sympy

    return bool(value._expr.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo, sympy.I))


@lru_cache(maxsize=4096)
def _parse_cached(text: str) -> Size:
    if len(text) > MAX_EXPR_CHARS:
        raise SizeError(
            f"size expression {text[:20]!r}… is "
            + exceeded("characters long", "MAX_EXPR_CHARS", len(text))
        )
    tokens = _tokenize(text)
    parser = _Parser(tokens, text)
    expr = parser.expr(0)
    if parser.pos != len(tokens):
        raise SizeError(f"unexpected {tokens[parser.pos][1]!r} in size expression {text!r}")
    if _not_finite(expr):
        raise SizeError(f"size expression {text!r} is not a finite real number ({expr})")
    return expr


def terms_bound(expr) -> int:
    """An upper bound on the number of terms `expr` expands to (a sum of n terms to the power
    k: n**k), computed without expanding."""
    if isinstance(expr, Size):
        if expr.is_own:
            return max(len(expr._poly), 1)
        expr = expr._expr
    if expr.is_Add:
        return sum(terms_bound(a) for a in expr.args)
    if expr.is_Mul:
        out = 1
        for a in expr.args:
            out *= terms_bound(a)
            if out > MAX_EXPR_TERMS**2:
                return out
        return out
    if expr.is_Pow and expr.exp.is_Integer and expr.exp > 0 and expr.base.is_Add:
        n = terms_bound(expr.base)
        return n ** min(int(expr.exp), 64)
    return 1


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise SizeError(f"cannot read size expression {text!r} at character {pos + 1}")
        num, name, op = m.groups()
        tokens.append(("num", num) if num else ("name", name) if name else ("op", op))
        pos = m.end()
    if not tokens:
        raise SizeError("empty size expression")
    return tokens


class _Parser:
    """expr := term (('+'|'-') term)*; term := unary (('*'|'/') unary)*;
    unary := '-' unary | power; power := atom (('**'|'^') unary)?"""

    def __init__(self, tokens, text):
        self.tokens, self.text, self.pos = tokens, text, 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def take(self, value=None):
        tok = self.peek()
        if value is not None and tok[1] != value:
            found = tok[1] or "the end"
            raise SizeError(f"expected {value!r} in size expression {self.text!r}, found {found!r}")
        self.pos += 1
        return tok

    def fail(self, what: str):
        raise SizeError(f"size expression {self.text!r}: {what}")

    def checked(self, value: Size) -> Size:
        """`value`, refused where arithmetic on numbers left the finite reals or grew past
        MAX_NUMBER, or where it would expand to more than MAX_EXPR_TERMS terms."""
        if _not_finite(value):
            self.fail(
                "not a finite real number (a division by zero, a root or a logarithm of a "
                "negative number, or a logarithm of zero?)"
            )
        if value.is_Number and abs(value) > MAX_NUMBER:
            self.fail("a number larger than 2**64 (limit MAX_NUMBER)")
        n = terms_bound(value)
        if n > MAX_EXPR_TERMS:
            self.fail(exceeded("terms once expanded", "MAX_EXPR_TERMS", n))
        return value

    def expr(self, depth):
        if depth > MAX_DEPTH:
            self.fail(f"nested deeper than {MAX_DEPTH} (limit MAX_EXPR_DEPTH)")
        left = self.term(depth)
        while self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            right = self.term(depth)
            left = self.checked(left + right if op == "+" else left - right)
        return left

    def term(self, depth):
        left = self.unary(depth)
        while self.peek()[1] in ("*", "/"):
            op = self.take()[1]
            right = self.unary(depth)
            if op == "/" and right == 0:
                self.fail("division by zero")
            left = self.checked(left * right if op == "*" else left / right)
        return left

    def unary(self, depth):
        if self.peek()[1] == "-":
            self.take()
            return -self.unary(depth + 1)
        return self.power(depth)

    def power(self, depth):
        base = self.atom(depth)
        if self.peek()[1] in ("**", "^"):
            self.take()
            exp = self.unary(depth + 1)
            if not exp.is_Number:
                self.fail(f"the exponent {show(exp)} is not a number (exponents are constants)")
            if abs(exp) > MAX_EXPONENT:
                self.fail(f"the exponent {show(exp)} is larger than {MAX_EXPONENT} "
                          "(limit MAX_EXPONENT)")  # fmt: skip
            if base == 0 and exp < 0:
                self.fail("division by zero")
            big = base.is_Number and abs(base) > 1 and exp > 0
            if big and float(exp) * math.log2(abs(float(base))) > 64:
                self.fail("a number larger than 2**64 (limit MAX_NUMBER)")
            return self.checked(base**exp)
        return base

    def atom(self, depth):
        kind, value = self.take()
        if kind == "num":
            digits = len(value.replace(".", "").lstrip("0"))
            if digits > MAX_INT_DIGITS:
                self.fail(f"a number of {digits} digits, more than {MAX_INT_DIGITS} "
                          "(limit MAX_INT_DIGITS)")  # fmt: skip
            if value.isdigit():
                return Size.number(int(value))
            return Size.decimal(value)
        if kind == "name":
            if value in FUNCTIONS and self.peek()[1] == "(":
                self.take("(")
                arg = self.expr(depth + 1)
                self.take(")")
                return self.checked(apply(value, arg))
            if value.lower() in _NOT_SIZES:
                self.fail(f"{value!r} is not a size (a size is a positive whole number)")
            return Size.of(value)
        if value == "(":
            inner = self.expr(depth + 1)
            self.take(")")
            return inner
        raise SizeError(f"unexpected {value or 'end'!r} in size expression {self.text!r}")


def show(expr) -> str:
    """A size as people write it: `H*K`, `T`, `64`."""
    return str(expr).replace(" ", "")


class Unifier:
    """Equates sizes symbolically, binding free symbols as it learns (`D := H*K`).

    Only a bare symbol is ever bound, to an expression that does not contain it; general
    equations are never solved, so `X = floor(X/2)` is a mismatch rather than `X := 1`.
    """

    def __init__(self, bindings: dict[str, int] | None = None):
        self.bound: dict[str, Size] = {}
        """Size name -> what it was unified with."""
        for name, value in (bindings or {}).items():
            self.bound[name] = Size.number(value)

    @property
    def subst(self) -> dict:
        """The bindings as sympy symbol -> sympy expression (for emitters' formulas)."""
        return {symbol(n): v._sympy_() for n, v in self.bound.items()}

    def resolve(self, expr) -> Size:
        if isinstance(expr, str):  # text goes through parse_size, never through sympify
            raise TypeError("resolve takes a parsed size, not text")
        expr = as_size(expr)
        for _ in range(8):  # substitutions are acyclic; a few rounds reach the fixed point
            new = self._substitute(expr) if self.bound else expr
            if new == expr:
                break
            expr = new
        return expr

    def _substitute(self, expr: Size) -> Size:
        if not expr.names() & self.bound.keys():
            return expr
        if expr.is_own:
            out = Size.number(0)
            for mono, c in expr._poly.items():
                term = Size.number(c)
                for name, e in mono:
                    term = term * self.bound.get(name, Size.of(name)) ** e
                out = out + term
            return out
        sub = {symbol(n): v._sympy_() for n, v in self.bound.items()}
        return Size.from_sympy(expr._expr.xreplace(sub))

    def unify(self, a, b) -> bool:
        a, b = self.resolve(a), self.resolve(b)
        if same(a, b):
            return True
        for x, y in ((a, b), (b, a)):
            name = _bare_symbol(x)
            if name is not None and name not in y.names():
                self.bound[name] = y
                return True
        return False


def _bare_symbol(x: Size) -> str | None:
    if x.is_own and len(x._poly) == 1:
        ((mono, c),) = x._poly.items()
        if c == 1 and len(mono) == 1 and mono[0][1] == 1:
            return mono[0][0]
    return None


def same(a, b) -> bool:
    """Whether two sizes are provably equal (in the own form: equal polynomials; else sympy's
    expand, and simplify only where floors and roots appear)."""
    a, b = as_size(a), as_size(b)
    if a.is_own and b.is_own:
        return a._poly == b._poly  # by value: 0.5 and 1/2 are the same size
    import sympy

    diff = sympy.expand(a._sympy_() - b._sympy_())
    if diff == 0:
        return True
    return bool(diff.has(sympy.floor, sympy.ceiling, sympy.Pow) and sympy.simplify(diff) == 0)


def evaluate(expr, values: dict[str, int]) -> int | float | None:
    """The number an expression takes under `values`, or None where symbols stay free."""
    if isinstance(expr, str):
        raise TypeError("evaluate takes a parsed size, not text")
    s = as_size(expr)
    if s.is_own:
        if not s.names() <= values.keys():
            return None
        total = Fraction(0)
        for mono, c in s._poly.items():
            term = c
            for name, e in mono:
                term *= Fraction(values[name]) ** e
            total += term
        if isinstance(total, float):
            return int(total) if total.is_integer() else total
        return int(total) if total.denominator == 1 else float(total)
    import sympy

    sub = {symbol(k): sympy.Integer(v) for k, v in values.items()}
    out = s._expr.xreplace(sub)
    if out.free_symbols:
        return None
    out = sympy.nsimplify(out) if not out.is_Integer else out
    return int(out) if out.is_integer else float(out)
