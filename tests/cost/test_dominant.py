"""What dominates a cost at the bound sizes (compiler/cost/symbolic.py `terms`, `per_doubling`,
`dominant`): expected terms counted by hand from the circuits' equations, the per-doubling
factor against a second analysis at twice the size."""

from __future__ import annotations

import pytest
import sympy

from ncd import gallery
from ncd.circuits.builder import Builder
from ncd.circuits.sizes import symbol
from ncd.cli import main
from ncd.compiler.cost import analyse
from ncd.compiler.cost.symbolic import dominant, ordered, per_doubling, terms

B, H, K, T, V = (symbol(n) for n in "BHKTV")
MHA = {"B": 2, "H": 4, "K": 8, "V": 8}  # multihead_attention's bound sizes


def _attention_matmuls(T, B=2, H=4, K=8, V=8):
    """Scores Q·Kᵀ (2·B·H·T·T·K) and their product with V (2·B·H·T·T·V), by hand."""
    return 2 * B * H * T * T * K + 2 * B * H * T * T * V


def _projections(T, B=2, H=4, K=8, V=8):
    """Q, K, V and output projections of width D = H·K, by hand: two of D -> H·K, one of
    D -> H·V, one of H·V -> D, each 2 FLOPs per multiply-add."""
    D = H * K
    return 2 * B * T * D * (2 * H * K + H * V) + 2 * B * T * H * V * D


def test_attention_at_t4096_is_named_by_t_squared():
    r = analyse(gallery.get("multihead_attention"), sizes={"T": 4096})
    assert r.sizes == {**MHA, "T": 4096}
    assert r.dominant("flops") == "O(T^2·B·H·(K + V))"
    assert r.big_o("flops") == "O(B·H^2·K·T·(K + V))"  # all sizes together: the projections
    ts = r.terms("flops")
    assert str(ts[0]) == "2·T^2·B·H·(K + V)"
    assert ts[0].value == _attention_matmuls(4096)
    assert ts[0].share == pytest.approx(_attention_matmuls(4096) / r.numbers["flops"])
    assert sum(t.value for t in ts) == pytest.approx(r.numbers["flops"])
    proj = [t.value for t in ts if str(t) in ("4·H^2·K^2·B·T", "4·H^2·B·K·T·V")]
    assert sum(proj) == _projections(4096)


def test_per_doubling_matches_a_second_analysis():
    c = gallery.get("multihead_attention")
    for t in (64, 4096):
        r = analyse(c, sizes={"T": t})
        measured = analyse(c, sizes={"T": 2 * t}).numbers["flops"] / r.numbers["flops"]
        factors = r.per_doubling("flops")
        assert factors["T"] == pytest.approx(measured)
        assert factors["T"] == pytest.approx(r.at("flops", T=2 * t) / r.numbers["flops"])
        assert factors["B"] == pytest.approx(2.0)  # every term is linear in the batch
    # at T=4096 the T^2 terms are nearly everything: close to 4, below it
    assert 3.9 < analyse(c, sizes={"T": 4096}).per_doubling()["T"] < 4.0
    assert next(iter(analyse(c, sizes={"T": 4096}).per_doubling())) == "T"  # largest first


def test_the_label_flips_where_the_order_flips():
    # projections 8·B·H^2·K^2·T (K = V) against scores, mix, scale and softmax
    # B·H·T^2·(4·K + 6): equal at T = 8·H·K^2 / (4·K + 6) = 53.9 for the bound sizes
    crossover = 8 * 4 * 8**2 / (4 * 8 + 6)
    assert 32 < crossover < 64
    c = gallery.get("multihead_attention")
    short = analyse(c, sizes={"T": 32})
    assert short.dominant() == "O(H^2·K^2·B·T)"
    assert short.per_doubling()["T"] < 3
    long = analyse(c, sizes={"T": 64})
    assert long.dominant() == "O(T^2·B·H·(K + V))"


def test_mlp_is_linear_in_every_size_of_its_dominant_term():
    r = analyse(gallery.get("mlp"))
    lead = r.terms("flops")[0]
    # the first layer, 2 FLOPs per multiply-add over the Y·X pixels to F features
    assert lead.value == 2 * r.sizes["B"] * r.sizes["F"] * r.sizes["X"] * r.sizes["Y"]
    assert r.dominant() == "O(B·F·X·Y)"
    factors = r.per_doubling()
    assert factors["B"] == pytest.approx(2.0)
    assert all(f <= 2.0 + 1e-12 for f in factors.values())


def test_named_derived_axis_scales_by_its_own_doubling():
    # vision transformer: T = floor(X/4)·floor(Y/4) is written as T; doubling T doubles
    # every linear term and quadruples the scores and mix
    r = analyse(gallery.get("vision_transformer"))
    factors = r.per_doubling()
    assert "T" in factors and "X" not in factors
    f = r.readable(r.formulas["flops"])
    t = sympy.Integer(r.sizes["X"] // 4 * (r.sizes["Y"] // 4))
    at = {symbol(k): v for k, v in r.sizes.items()}
    want = f.subs({**at, symbol("T"): 2 * t}) / f.subs({**at, symbol("T"): t})
    assert factors["T"] == pytest.approx(float(want))


def test_terms_group_sizes_standing_for_each_other():
    S = symbol("S")
    f = 2 * B * H * K * T**2 + 2 * B * H * T**2 * V + B**2 * T + B * T**2 + 3
    ts = terms(f, {B: 2, H: 4, K: 8, T: 100, V: 8})
    assert [str(t) for t in ts] == ["2·T^2·B·H·(K + V)", "T^2·B", "B^2·T", "3"]
    assert [t.value for t in ts] == [2 * 2 * 4 * 100**2 * 16, 2 * 100**2, 4 * 100, 3]
    assert dominant(f, {B: 2, H: 4, K: 8, T: 100, V: 8}) == "O(T^2·B·H·(K + V))"
    assert per_doubling(B * S * T**2, {B: 3, S: 5, T: 7}) == {"T": 4.0, "B": 2.0, "S": 2.0}
    assert ordered(sympy.Rational(1, 32) * B * H * T**2 * (K + V)) == "T^2·B·H·(K + V)/32"
    assert terms(sympy.Max(B, T), {B: 1, T: 2}) is None


def test_free_sizes_fall_back_to_the_leading_term():
    b = Builder("free", sizes={"D": 4, "E": 8})  # B and T stay free
    b.output("y", b.linear(b.input("x", "B T D"), "D", "E"))
    r = analyse(b.build(), symbolic=True)
    assert r.unbound() == ["B", "T"]
    assert r.terms() is None and r.per_doubling() is None
    assert r.dominant() == r.big_o() == "O(B·D·E·T)"
    assert "every size growing together" in r.table()


def test_cli_names_t_squared(capsys):
    assert main(["analyse", "multihead_attention", "--sizes", "T=4096"]) == 0
    out = capsys.readouterr().out
    flops = out[out.index("FLOPs (forward") :].splitlines()
    assert flops[1].split()[:2] == ["dominant", "O(T^2·B·H·(K"]
    assert "per doubling T ×3.97" in flops[1]
    assert flops[2].startswith(" ") and "terms 2·T^2·B·H·(K + V) 83%, 6·T^2·B·H 16%" in flops[2]
