"""Attention variants: higher-order attention (the linear-attention blocks are in linear_family)."""

from __future__ import annotations

from ncd.circuits.builder import Builder

from . import entry

KRONECKER = "How to Capture Higher-order Correlations? (Kronecker / tensor attention)"


@entry("kronecker_attention", "Triple-wise tensor attention", KRONECKER)
def kronecker_attention():
    """Each query attends to pairs of keys (s, u): one three-way contraction, a softmax over the
    pair, and a contraction with the pair's values. Its cost is cubic: T·S·U·K.

    Implements: the tensor (triple-wise) attention of How to Capture Higher-order
    Correlations?, y_t = Σ_{s,u} p_tsu (v1_s ⊙ v2_u) with p_t = softmax over the pairs (s, u)
    of a_tsu = Σ_k q_tk k1_sk k2_uk / √K: the pair's key and value are the entrywise products
    of its two keys and its two values (the rows of the column-wise Kronecker products of K₁
    with K₂ and of V₁ with V₂).

    The scale 1/√K is this circuit's choice (as in scaled dot-product attention); the paper's
    text was not available to check its normalisation.
    """
    b = Builder("kronecker_attention", title="Triple-wise tensor attention", paper=KRONECKER,
                sizes={"B": 2, "T": 8, "S": 8, "U": 8, "K": 8, "V": 8})  # fmt: skip
    q = b.input("q", "B T K")
    k1, k2 = b.input("k1", "B S K"), b.input("k2", "B U K")
    v1, v2 = b.input("v1", "B S V"), b.input("v2", "B U V")
    s = b.contract(q, k1, k2, over="K", name="scores")  # B T S U
    s = b.merge_axes(b.scale(s, "K**-0.5", name="scale"), "S U", "R", name="pairs")
    p = b.split_axis(b.softmax(s, "R", name="softmax"), "R", "S U", name="unpair")
    b.output("y", b.contract(p, v1, v2, over="S U", name="mix"))  # B T V
    return b.build()
