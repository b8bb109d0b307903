"""Symbolic sizes: a safe parser for size expressions, and unification of sizes.

Sizes are sympy expressions over positive integer symbols, one symbol per axis name (`T`,
`H*K`, `X/s`). Strings from a circuit are parsed here by a small recursive-descent parser,
never by `sympify`/`eval`, so a hostile spec cannot run code.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

import sympy

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
_NOT_FINITE = (sympy.nan, sympy.zoo, sympy.oo, -sympy.oo, sympy.I)

_TOKEN = re.compile(r"\s*(?:(\d+\.\d*|\d*\.\d+|\d+)|([A-Za-z_][A-Za-z0-9_]*)|(\*\*|[-+*/^(),]))")


class log2(sympy.Function):  # noqa: N801 - named as written in size expressions
    """The base-2 logarithm, kept as `log2(T)` until its argument is a number (then exact:
    log2(64) = 6), so that a size bound later to a power of two is a whole number."""

    is_real = True

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sympy.log(x, 2)
        return None


FUNCTIONS = {
    "floor": sympy.floor,
    "ceiling": sympy.ceiling,
    "ceil": sympy.ceiling,
    "sqrt": sympy.sqrt,
    "log": sympy.log,  # natural logarithm
    "log2": log2,
}


@lru_cache(maxsize=4096)
def symbol(name: str) -> sympy.Symbol:
    """The size symbol of axis `name` (a positive integer)."""
    return sympy.Symbol(name, positive=True, integer=True)


def parse_size(text: str | int | float) -> sympy.Expr:
    """Parse `"H*K"`, `"X/s"`, `"K**-0.5"`, `64` into a sympy expression.

    >>> parse_size("H*K")
    H*K
    """
    if isinstance(text, bool):
        raise SizeError(f"a size must be a number or an expression, found {text!r}")
    if isinstance(text, int):
        return sympy.Integer(text)
    if isinstance(text, float):
        return sympy.Float(text)
    if not isinstance(text, str):
        raise SizeError(f"a size must be a number or an expression, found {type(text).__name__}")
    return _parse_cached(text)


@lru_cache(maxsize=4096)
def _parse_cached(text: str) -> sympy.Expr:
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
    if expr.has(*_NOT_FINITE):
        raise SizeError(f"size expression {text!r} is not a finite real number ({expr})")
    return expr


def terms_bound(expr: sympy.Expr) -> int:
    """An upper bound on the number of terms `expr` expands to (a sum of n terms to the power
    k: n**k), computed without expanding."""
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

    def checked(self, value: sympy.Expr) -> sympy.Expr:
        """`value`, refused where arithmetic on numbers left the finite reals or grew past
        MAX_NUMBER, or where it would expand to more than MAX_EXPR_TERMS terms."""
        if value.has(*_NOT_FINITE):
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
            return sympy.Integer(int(value)) if value.isdigit() else sympy.Float(value)
        if kind == "name":
            if value in FUNCTIONS and self.peek()[1] == "(":
                self.take("(")
                arg = self.expr(depth + 1)
                self.take(")")
                return self.checked(FUNCTIONS[value](arg))
            if value.lower() in _NOT_SIZES:
                self.fail(f"{value!r} is not a size (a size is a positive whole number)")
            return symbol(value)
        if value == "(":
            inner = self.expr(depth + 1)
            self.take(")")
            return inner
        raise SizeError(f"unexpected {value or 'end'!r} in size expression {self.text!r}")


def show(expr: sympy.Expr) -> str:
    """A size as people write it: `H*K`, `T`, `64`."""
    return str(expr).replace(" ", "")


class Unifier:
    """Equates sizes symbolically, binding free symbols as it learns (`D := H*K`).

    Only a bare symbol is ever bound, to an expression that does not contain it; general
    equations are never solved, so `X = floor(X/2)` is a mismatch rather than `X := 1`.
    """

    def __init__(self, bindings: dict[str, int] | None = None):
        self.subst: dict[sympy.Symbol, sympy.Expr] = {}
        for name, value in (bindings or {}).items():
            self.subst[symbol(name)] = sympy.Integer(value)

    def resolve(self, expr: sympy.Expr) -> sympy.Expr:
        if isinstance(expr, str):  # text goes through parse_size, never through sympify
            raise TypeError("resolve takes a parsed size, not text")
        expr = sympy.sympify(expr)
        for _ in range(8):  # substitutions are acyclic; a few rounds reach the fixed point
            new = expr.xreplace(self.subst) if self.subst else expr
            if new == expr:
                break
            expr = new
        return expr

    def unify(self, a: sympy.Expr, b: sympy.Expr) -> bool:
        a, b = self.resolve(a), self.resolve(b)
        if same(a, b):
            return True
        for x, y in ((a, b), (b, a)):
            if isinstance(x, sympy.Symbol) and x not in y.free_symbols:
                self.subst[x] = y
                return True
        return False


def same(a: sympy.Expr, b: sympy.Expr) -> bool:
    """Whether two sizes are provably equal (expand is enough for the products and quotients
    sizes are made of; simplify only where floors and roots appear)."""
    diff = sympy.expand(a - b)
    if diff == 0:
        return True
    return bool(diff.has(sympy.floor, sympy.ceiling, sympy.Pow) and sympy.simplify(diff) == 0)


def evaluate(expr: sympy.Expr, values: dict[str, int]) -> int | float | None:
    """The number an expression takes under `values`, or None where symbols stay free."""
    if isinstance(expr, str):
        raise TypeError("evaluate takes a parsed size, not text")
    sub = {symbol(k): sympy.Integer(v) for k, v in values.items()}
    out = sympy.sympify(expr).xreplace(sub)
    if out.free_symbols:
        return None
    out = sympy.nsimplify(out) if not out.is_Integer else out
    return int(out) if out.is_integer else float(out)
