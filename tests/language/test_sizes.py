"""Logarithms, ceilings and floors in size expressions (circuits/sizes.py): values by hand,
the limits that bound them, an axis sized log2(T), and a cost formula in T·log2(T)."""

from __future__ import annotations

import math

import pytest
import torch

import ncd
from ncd.circuits.builder import Builder
from ncd.circuits.errors import SizeError, ValidationError
from ncd.circuits.limits import MAX_EXPR_DEPTH
from ncd.circuits.sizes import evaluate, parse_size, show


@pytest.mark.parametrize(
    ("text", "sizes", "value"),
    [
        ("log2(T)", {"T": 16}, 4),
        ("log2(64)", {}, 6),
        ("T*log2(T)", {"T": 1024}, 10240),
        ("log2(H*K)", {"H": 4, "K": 8}, 5),
        ("floor(log2(T))", {"T": 10}, 3),
        ("ceil(log2(T))", {"T": 10}, 4),
        ("ceil(T/3)", {"T": 16}, 6),
        ("ceiling(T/3) - floor(T/3)", {"T": 15}, 0),
        ("log(T)", {"T": 20}, math.log(20)),
        ("log2(T)", {"T": 10}, math.log2(10)),
        ("2*log(1)", {}, 0),
    ],
)
def test_values(text, sizes, value):
    got = evaluate(parse_size(text), sizes)
    assert got == pytest.approx(value, rel=1e-12)
    if isinstance(value, int):
        assert isinstance(got, int), (text, got)
    assert parse_size(show(parse_size(text))) == parse_size(text)  # shown as it reads back


@pytest.mark.parametrize("text", ["log(0)", "log2(0)", "log2(-4)", "log(T - T)", "log(2 - 3)"])
def test_logarithms_of_zero_or_negatives_are_refused(text):
    with pytest.raises(SizeError, match="logarithm"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("log(" * (MAX_EXPR_DEPTH + 2) + "T" + ")" * (MAX_EXPR_DEPTH + 2), "MAX_EXPR_DEPTH"),
        ("log2(2**70)", "MAX_EXPONENT"),
        ("log(T, 2)", "expected"),
    ],
)
def test_logarithms_are_bounded_like_the_rest(text, limit):
    with pytest.raises(SizeError, match=limit):
        parse_size(text)


def _levels(T):
    b = Builder("levels", sizes={"B": 2, "T": T}, axes={"L": "log2(T)"})
    x, x2 = b.copy(b.input("x", "B T"))
    b.output("y", b.linear(x, "T", "L", name="levels"))
    b.output("z", b.box("opaque", {"x": x2}, "sort", outputs={"y": "B T"}, flops="B*T*log2(T)"))
    return b


def test_an_axis_sized_log2_of_another():
    c = _levels(16).build()
    assert show(c.check().outputs["y"].axis("L").size) == "log2(T)"
    m = ncd.compile(c, opaque={"sort": lambda t: t.sort(-1).values})
    assert m(torch.randn(2, 16))["y"].shape == (2, 4)
    with pytest.raises(ValidationError, match="axis L has no valid size"):
        _levels(10).build()


def test_a_cost_formula_in_t_log_t():
    c = _levels(16).build()
    r = ncd.analyse(c, sizes={"T": 64})
    flops = r.formulas["flops"]
    assert "log2(T)" in str(flops)
    # the sort: B·T·log2(T) as stated; the map T -> L: 2·B·T·L plus the bias B·L, L = log2 T
    assert r.numbers["flops"] == 2 * 64 * 6 + 2 * 2 * 64 * 6 + 2 * 6
