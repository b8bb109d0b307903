"""Arithmetic of the efficiency papers on a transformer's feed-forward block: a weight
gradient from sampled rows (WTA-CRS) and products by integer addition (L-Mul)."""

from __future__ import annotations

import inspect

from ncd.circuits.builder import Builder

from . import entry

WTACRS = (
    "Liu et al., Winner-Take-All Column Row Sampling for Memory Efficient Adaptation of "
    "Language Model (NeurIPS 2023)"
)
LMUL = "Luo & Sun, Addition is All You Need for Energy-efficient Language Models (2024)"


def _ffn(name, title, paper, doc, **linear):
    b = Builder(name, title=title, paper=paper, doc=doc,
                sizes={"B": 2, "T": 10, "D": 16, "F": 32})  # fmt: skip
    x = b.input("x", "B T D")
    with b.group("Feed-forward"):
        h = b.linear(x, "D", "F", name="up", label="L₊", **linear)
        h = b.unary(h, "gelu", name="act")
        h = b.linear(h, "F", "D", name="down", label="L₊", **linear)
    b.output("y", b.add(x, h, name="residual"))
    return b.build()


@entry("wtacrs_linear", "WTA-CRS linear maps (sampled weight gradient)", WTACRS)
def wtacrs_linear():
    """A feed-forward block y = x + W₂ GELU(W₁ x + b₁) + b₂ whose two linear maps run their
    forward exactly and estimate their weight gradient from sampled rows.

    Implements: Liu et al. (2023) eq. 1c, the weight gradient dW = dYᵀ X = Σᵢ dyᵢᵀ xᵢ over
    the B·T rows, estimated by WTA-CRS (eq. 5): dW ≈ Σ_{i ∈ C} dyᵢᵀ xᵢ +
    Σ_{j ∈ S} (1 − Σ_{i ∈ C} pᵢ) / ((k − |C|) pⱼ) · dyⱼᵀ xⱼ, C the |C| most probable
    column-row pairs, S the k − |C| more sampled from the rest, with probabilities pᵢ ∝ ‖xᵢ‖.

    ‖dyᵢ‖ is not known in the forward, so the probabilities use ‖xᵢ‖ only; k = 30% of the
    rows. Only the k sampled rows of each map's input are kept for the backward (the paper's
    Fig. 5), so the cost table shows 6 of 20 rows kept; dx and the biases' gradients stay
    exact."""
    doc = inspect.getdoc(wtacrs_linear)
    return _ffn("wtacrs_linear", "WTA-CRS feed-forward block", WTACRS, doc, backward="wtacrs",
                budget=0.3)  # fmt: skip


@entry("lmul_linear", "L-Mul linear maps (products by integer addition)", LMUL)
def lmul_linear():
    """A feed-forward block y = x + W₂ GELU(W₁ x + b₁) + b₂ whose linear maps multiply by
    L-Mul with 3-bit mantissas.

    Implements: Luo & Sun (2024) eq. 3, L-Mul, x·y ≈ (1 + x_m + y_m + 2^{−l(m)}) 2^{x_e + y_e}
    with l(3) = 3, for every product inside the two linear maps of
    y = x + W₂ GELU(W₁ x + b₁) + b₂, the setting in which the paper replaces all
    multiplications of a transformer (its Section 4).

    Each product is one integer addition of the operands' bit patterns, the mantissa sum
    carrying into the exponent; the sums stay floating point. Gradients are those of the
    exact products."""
    return _ffn("lmul_linear", "L-Mul feed-forward block", LMUL, inspect.getdoc(lmul_linear),
                product="lmul3")  # fmt: skip
