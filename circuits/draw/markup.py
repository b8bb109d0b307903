"""Text for Graphviz HTML-like labels: escaping, `L^Q` superscripts, sizes as people write them.

Every string that comes from a circuit passes through `text` before it reaches a label, so a
name such as `<b>` or `a&b` is shown, never interpreted.
"""

from __future__ import annotations

import html
import re

import sympy

from ..sizes import show

# `L^Q`, `E^pos`, `L^{Q K}`, `x_t`, `W_in`: a braced group, a run of letters and digits, or
# one other character after ^ or _.
_SCRIPT = re.compile(r"([\^_])(\{[^{}]*\}|[A-Za-z0-9]+|[^\s{}^_])")


def esc(s: str) -> str:
    """Escape for an HTML-like label (quotes too: labels sit inside attributes)."""
    return html.escape(str(s), quote=True)


def text(s: str) -> str:
    """Escaped text with `^x` / `^{xy}` as superscript and `_x` / `_{xy}` as subscript."""
    out, pos = [], 0
    for m in _SCRIPT.finditer(s):
        if m.start() == 0:  # a leading ^ or _ is literal: nothing to attach it to
            continue
        out.append(esc(s[pos : m.start()]))
        tag = "SUP" if m.group(1) == "^" else "SUB"
        body = m.group(2)
        body = body[1:-1] if body.startswith("{") else body
        out.append(f"<{tag}>{esc(body)}</{tag}>")
        pos = m.end()
    out.append(esc(s[pos:]))
    return "".join(out)


def size(expr: sympy.Expr) -> str:
    """A size or constant as a label fragment: `K<SUP>−1/2</SUP>`, `H·K`, `16`, `T+3`, `2F`,
    `⌊Y/2⌋` (symbols in italics)."""
    expr = sympy.sympify(expr)  # a Size, through its one conversion
    expr = sympy.nsimplify(expr) if expr.has(sympy.Float) else expr
    return _fmt(expr)


LONG_NUMBER = 12
"""Characters past which a scale's number is too long to read as written exactly (a factor
written as a decimal, 0.0006283185307179586, is the fraction
3141592653589793/5000000000000000000)."""


def factor(expr: sympy.Expr) -> str:
    """A scale's factor as `size` writes it, unless its number, exact or as nsimplify finds it
    (√3/3 for 0.5773502691896258), takes more than LONG_NUMBER characters: then `≈` and the
    number to 4 significant digits, the sizes still exact (`≈−0.0006283/T`)."""
    coeff, rest = (sympy.nsimplify(p) if p.has(sympy.Float) else p
                   for p in sympy.sympify(expr).as_coeff_Mul())  # fmt: skip
    if coeff.is_Integer or len(re.sub(r"<[^>]*>", "", _fmt(coeff))) <= LONG_NUMBER:
        return _fmt(coeff * rest)
    # stands for the rounded number while _fmt writes; no size is so named, and it sorts first
    mark = sympy.Symbol("0", positive=True)
    body = _fmt(sympy.sign(coeff) * mark * rest)
    return "≈" + body.replace(_fmt(mark), esc(f"{abs(float(coeff)):.4g}"))


def _fmt(e: sympy.Expr) -> str:
    if e == sympy.pi:
        return "π"
    if e.is_Symbol:  # a size symbol, set in italics as in the paper (`N_iter`: subscript)
        return f"<I>{text(str(e))}</I>"
    if e.is_Integer:
        n = abs(int(e))
        if n > 10**5 and n & (n - 1) == 0:  # a large power of two, as one writes it: 2^30
            return ("−" if e < 0 else "") + f"2<SUP>{n.bit_length() - 1}</SUP>"
        return esc(str(e))
    if e.is_Rational:
        return esc(f"{e.p}/{e.q}")
    if isinstance(e, sympy.Pow):
        base, exp = e.as_base_exp()
        b = _fmt(base) if (base.is_Symbol or base.is_Integer) else f"({_fmt(base)})"
        ex = str(exp.p) + (f"/{exp.q}" if exp.q != 1 else "") if exp.is_Rational else show(exp)
        return f"{b}<SUP>{esc(ex.replace('-', '−'))}</SUP>"
    if isinstance(e, sympy.Mul):
        coeff, rest = e.as_coeff_Mul()
        if coeff < 0:
            return "−" + _fmt(-e)
        # a fraction: what is divided by a whole power (l/L, Y/2), the rest above the line
        num, den = [], []
        for f in sympy.Mul.make_args(rest):
            base, ex = f.as_base_exp()
            if ex.is_Integer and ex < 0:
                den.append(base**-ex)
            else:
                num.append(f)
        p, q = (coeff.p, coeff.q) if coeff.is_Rational else (coeff, 1)
        top = _product(p, num)
        if q == 1 and not den:
            return top
        bottom = _product(q, den)
        return f"{top}/({bottom})" if len(den) + (q != 1) > 1 else f"{top}/{bottom}"
    if isinstance(e, sympy.Add):
        out = ""
        for i, term in enumerate(e.as_ordered_terms()):
            negative = term.could_extract_minus_sign()
            body = _fmt(-term if negative else term)
            out += ("−" if negative else "+" if i else "") + body
        return out
    if isinstance(e, sympy.floor | sympy.ceiling):
        left, right = ("⌊", "⌋") if isinstance(e, sympy.floor) else ("⌈", "⌉")
        return left + _fmt(e.args[0]) + right
    return esc(show(e))


def _product(n, factors: list) -> str:
    """A whole number times factors as one writes it: `2F`, `H·K`, `2(T+1)`, `3`."""
    body = "·".join(f"({_fmt(f)})" if f.is_Add else _fmt(f) for f in factors)
    if n == 1:
        return body or "1"
    return f"{_fmt(sympy.sympify(n))}{body}"
