"""Symbolic sizes: a safe parser for size expressions, their functions, and unification.

Sizes are `Size`s (circuits/size_form.py): exact polynomials over positive integer size
symbols, one per axis name (`T`, `H*K`, `X/2 - 1/2`), or sympy expressions where they are not
(`floor(X/4)`, `log2(T)`). Strings from a circuit are parsed here by a small recursive-descent
parser, never by `sympify`/`eval`, so a hostile spec cannot run code.
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
from .size_form import Size, _as_size, as_size, symbol

__all__ = ["Size", "as_size", "evaluate", "parse_size", "same", "show", "symbol", "Unifier"]

MAX_DEPTH = MAX_EXPR_DEPTH
# Names sympy or Python read as numbers: a size so named would read as one to people.
# Names that read as numbers rather than sizes: nan and inf in any case, sympy's spellings of
# constants in lower case. `E` and `I` stay names (an embedding axis E, an input axis I): sizes
# are parsed here into symbols, never by sympy, so they cannot turn into e or i.
_NOT_SIZES = {"nan", "inf", "infinity", "oo", "zoo", "i", "e", "pi"}
_NOT_SIZES_ANY_CASE = {"nan", "inf", "infinity"}

_TOKEN = re.compile(r"\s*(?:(\d+\.\d*|\d*\.\d+|\d+)|([A-Za-z_][A-Za-z0-9_]*)|(\*\*|[-+*/^(),]))")

FUNCTIONS = ("floor", "ceiling", "ceil", "sqrt", "log", "log2")
"""Functions a size expression may apply (`log` is the natural logarithm, `ceil` is
`ceiling`)."""


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


def not_finite_at(expr: Size, values: dict[str, int]) -> str | None:
    """Why `expr` under `values` is not a finite real number, in words ("a division by zero
    (or a logarithm of zero)", "a root or a logarithm of a negative number: I"); None where
    it is one or symbols stay free that could make it one."""
    if expr.is_own:  # a polynomial in sizes (powers may be negative): finite at sizes >= 1
        return None
    out = Unifier(values).resolve(expr)
    if not _not_finite(out):
        return None
    import sympy

    if out.has(sympy.nan):
        return f"undefined (0/0 or alike): {show(out)}"
    if out.has(sympy.zoo, sympy.oo, -sympy.oo):
        return "a division by zero (or a logarithm of zero)"
    return f"a root or a logarithm of a negative number: {show(out)}"


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
            if value == "pi":  # π, a number (scale factors, angles), never a size
                import sympy

                return Size.from_sympy(sympy.pi)
            if value in _NOT_SIZES or value.lower() in _NOT_SIZES_ANY_CASE:
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
