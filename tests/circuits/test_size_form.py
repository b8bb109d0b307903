"""The size form of circuits/size_form.py (`Size`: expanded polynomials over size symbols, held
without sympy) against sympy on random expressions: the same text, the same values, the same
equalities; and `ncd validate`, `list` and `--help` run without importing sympy."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
import sympy

from ncd.circuits.errors import SizeError
from ncd.circuits.sizes import Size, Unifier, evaluate, parse_size, same, show

NAMES = ["B", "H", "K", "T", "X", "Y"]
VALUES = {"B": 2, "H": 4, "K": 16, "T": 64, "X": 7, "Y": 3}


def _sym(name):
    return sympy.Symbol(name, positive=True, integer=True)


def _expression(rng: random.Random, depth: int = 0):
    """(text, sympy expression) of one random size expression, built side by side: the text
    for the parser, the expression by sympy's own arithmetic."""
    r = rng.random()
    if depth > 3 or r < 0.3:
        if rng.random() < 0.6:
            n = rng.choice(NAMES)
            return n, _sym(n)
        k = rng.choice([0, 1, 2, 3, 4, 6])
        return str(k), sympy.Integer(k)
    if r < 0.75:
        (ta, a), (tb, b) = _expression(rng, depth + 1), _expression(rng, depth + 1)
        op = rng.choice("+-*/")
        if op == "/" and b == 0:
            op = "*"
        value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b != 0 else None}[op]
        return f"({ta}){op}({tb})", value
    if r < 0.87:
        ta, a = _expression(rng, depth + 1)
        if a == 0:
            return ta, a
        e = rng.choice([2, 3, -1, -2, "0.5", "-0.5"])
        return f"({ta})**{e}", a ** (sympy.Float(e) if isinstance(e, str) else sympy.Integer(e))
    ta, a = _expression(rng, depth + 1)
    return f"-({ta})", -a


def _cases(n: int, seed: int):
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        text, ref = _expression(rng)
        if ref is None or ref.has(sympy.zoo, sympy.nan, sympy.I):
            continue
        try:
            parse_size(text)
        except SizeError:
            continue  # a step on the way is not real (a root of a negative): refused as before
        out.append((text, ref))
    return out


CASES = _cases(400, seed=17)


@pytest.mark.parametrize("seed", range(4))
def test_reads_prints_and_evaluates_as_sympy(seed):
    own = 0
    for text, ref in _cases(150, seed):
        s = parse_size(text)
        own += s.is_own
        assert sympy.sympify(s) == ref, text
        assert show(s) == str(ref).replace(" ", ""), text
        want = ref.xreplace({_sym(k): sympy.Integer(v) for k, v in VALUES.items()})
        if not want.is_extended_real:
            continue  # a root of a negative number at these values: no size
        got = evaluate(s, VALUES)
        assert got == pytest.approx(float(want), rel=1e-12), text
        if want.is_Integer:
            assert isinstance(got, int), text
    assert own > 100  # most random sizes are polynomials: the form held without sympy


def test_equality_is_decided_as_sympy_expands():
    rng = random.Random(5)
    pairs = [(rng.choice(CASES), rng.choice(CASES)) for _ in range(300)]
    # and pairs equal in value but written differently
    pairs += [
        ((t, r), (show(parse_size(t)), r))
        for t, r in CASES[:100]
        if sympy.expand(r) == r and "." not in show(parse_size(t))
    ]
    equal = 0
    for (ta, ra), (tb, rb) in pairs:
        want = sympy.expand(ra - rb) == 0
        assert same(parse_size(ta), parse_size(tb)) == want, (ta, tb)
        equal += want
    assert equal >= 50


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("H*K", "K*H", True),
        ("(X-1)/2", "X/2-1/2", True),
        ("2*(H+K)", "2*H+2*K", True),
        ("H*K/K", "H", True),
        ("T*(X+1)", "T*X+T", True),
        ("K**-0.5", "K**-0.5", True),
        ("2**-1", "0.5", True),
        ("H*K", "H+K", False),
        ("X/2", "X", False),
    ],
)
def test_equalities_by_hand(a, b, equal):
    assert same(parse_size(a), parse_size(b)) is equal


def test_unification_binds_a_symbol_to_a_polynomial():
    u = Unifier()
    assert u.unify(Size.of("D"), parse_size("H*K"))
    assert show(u.resolve(parse_size("D*T + D"))) == "H*K*T + H*K".replace(" ", "")
    assert not u.unify(Size.of("D"), parse_size("H + K"))
    assert u.unify(parse_size("H*K"), Size.of("D"))
    assert u.subst == {_sym("D"): _sym("H") * _sym("K")}


def test_the_sympy_form_round_trips():
    for text, ref in CASES:
        s = parse_size(text)
        assert Size.from_sympy(sympy.sympify(s)) == s, text
        assert hash(Size.from_sympy(ref)) == hash(s), text


def _modules_after(argv: list[str]) -> set[str]:
    code = (
        "import contextlib, io, sys\n"
        "from ncd.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        main({argv!r})\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(' '.join(sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "argv", [["validate", "transformer_block"], ["list"], ["--help"]], ids=" ".join
)
def test_the_quick_commands_do_not_import_sympy(argv):
    assert "sympy" not in _modules_after(argv)
