"""Derived sizes written back as their axes (compiler/cost/names.py): the vision transformer's
formulas in T, not floor(X/4)·floor(Y/4); declared products such as D = H*K stay expanded; no
number changes."""

from __future__ import annotations

import dataclasses

import pytest
import sympy

from ncd import gallery
from ncd.circuits.builder import Builder
from ncd.circuits.sizes import evaluate, symbol
from ncd.compiler.cost import analyse
from ncd.compiler.cost.symbolic import leading

B, C, E, H, K, N, T, V, X, Y, P = (symbol(n) for n in "BCEHKNTVXYP")
TOKENS = sympy.floor(X / 4) * sympy.floor(Y / 4)  # 4×4 patches of a Y×X image


def test_vision_transformer_formulas_name_the_patch_axis():
    r = analyse(gallery.get("vision_transformer"))
    assert r.derived == {T: TOKENS}
    # per block, by hand: Q and K projections 2·2·B·T·D·H·K, V and output projections
    # 2·2·B·T·D·H·V with D = H·K
    assert sympy.expand(r.leading("flops") - 4 * B * H**2 * K * N * T * (K + V)) == 0
    assert r.big_o("flops") == "O(B·H^2·K·N·T·(K + V))"
    # scores Q·Kᵀ and their product with V: 2·B·H·T²·(K + V) per block
    mm = sympy.expand(r.readable(r.formulas["mm_flops"]))
    assert sympy.expand(mm.coeff(T, 2) - 2 * B * H * N * (K + V)) == 0
    assert r.degree("T") == 2
    d = r.to_dict()
    assert d["derived_sizes"] == {"T": "floor(X/4)·floor(Y/4)"}
    shown = [*d["formulas"].values(), *d["leading"].values(), d["total"]["flops_big_o"]]
    assert not [f for f in shown if "floor" in f]
    assert "T = floor(X/4)·floor(Y/4) (the size of axis T)" in r.table()
    # in base sizes a floor counts as one size, so the scores (T² = four floors) lead too
    base = leading(r.formulas["flops"])
    want = 2 * B * H * N * (K + V) * TOKENS * (2 * H * K + TOKENS)
    assert sympy.expand(base - want) == 0


@pytest.mark.parametrize("name", ["multihead_attention", "transformer_block", "transformer"])
def test_declared_products_stay_expanded(name):
    r = analyse(gallery.get(name))
    assert r.derived == {}  # D = H*K is a polynomial: attention keeps its heads and width
    lead = r.leading("flops")
    assert symbol("D") not in lead.free_symbols
    expected = 4 * B * H**2 * K * T * (K + V) * (N if name == "transformer" else 1)
    assert sympy.expand(lead - expected) == 0


@pytest.mark.parametrize("name", gallery.names())
def test_named_sizes_change_no_number(name):
    r = analyse(gallery.get(name))
    plain = dataclasses.replace(r, derived={}, _shown={})  # the report as before naming
    assert r.numbers == plain.numbers
    assert {k: v for k, v in r.to_dict()["total"].items() if not isinstance(v, str)} == {
        k: v for k, v in plain.to_dict()["total"].items() if not isinstance(v, str)
    }
    # every shown formula, with each named axis at its size's value, gives the number
    values = {a: sympy.Integer(evaluate(s, r.sizes)) for a, s in r.derived.items()}
    shown = {k: r.readable(f) for k, f in r.formulas.items()}
    shown["peak_bytes"] = r.readable(r.peak_formula())
    for k, f in shown.items():
        assert r.number(f.xreplace(values)) == pytest.approx(r.numbers[k]), k
        assert {s.name for s in f.free_symbols} <= set(r.sizes) | {a.name for a in r.derived}


def _strided(merge_to: tuple[str, ...] = (), kernel: int = 2):
    """Convolutions of stride 2 over a Y×X image (no padding), each output merged into one
    axis named in `merge_to` (none: a single convolution whose output keeps the names Y X)."""
    b = Builder("strided", sizes={"B": 2, "C": 3, "Y": 8, "X": 8, "E": 4})
    img = b.input("image", "B C Y X")
    for i, axis in enumerate(merge_to or ("",)):
        out = b.unary(b.conv(img, "Y X", "C", "E", kernel, stride=2), "relu")
        b.output(f"o{i}", b.merge_axes(out, "Y X", axis) if axis else out)
    return b.build()


def test_an_axis_named_like_a_size_is_not_written_back():
    # the output axes keep the names Y X with sizes floor(Y/2 - 3/2) + 1: writing X for
    # them would be wrong; the leading term counts each floor as one size
    r = analyse(_strided(kernel=3))
    assert r.derived == {}
    assert r.big_o("flops") == "O(B·C·E·floor(X/2 - 3/2)·floor(Y/2 - 3/2))"
    # by hand: 3×3 outputs, 2·C·9 per output and channel, then bias and relu
    assert r.numbers["flops"] == 2 * 4 * 9 * (2 * 3 * 9) + 2 * (2 * 4 * 9)


def test_a_size_that_is_a_sum_is_matched_across_terms():
    # unpadded: the token count (floor(X/2 - 3/2) + 1)·(floor(Y/2 - 3/2) + 1) is expanded in
    # every formula; it comes back as P
    r = analyse(_strided(("P",), kernel=3))
    assert r.derived_sizes() == {"P": "(floor(X/2 - 3/2) + 1)·(floor(Y/2 - 3/2) + 1)"}
    assert sympy.expand(r.readable(r.formulas["flops"]) - (18 * B * C * E * P + 2 * B * E * P)) == 0
    assert r.big_o("flops") == "O(B·C·E·P)"


def test_two_axes_of_one_size_are_ambiguous():
    assert analyse(_strided(("T",))).derived == {T: sympy.floor(X / 2) * sympy.floor(Y / 2)}
    r = analyse(_strided(("T", "S")))
    assert r.derived == {}  # T or S: neither is written
    assert "floor(X/2)" in r.big_o("flops")
