"""Attention variants: higher-order attention (the linear-attention blocks are in linear_family)."""

from __future__ import annotations

from ncd.circuits.builder import Builder

from . import entry

KRONECKER = "How to Capture Higher-order Correlations? (Kronecker / tensor attention)"


@entry("kronecker_attention", "Triple-wise tensor attention", KRONECKER)
def kronecker_attention():
    """Each query attends to pairs of keys (s, u): one three-way contraction, a softmax over the
    pair, and a contraction with the pair's values. Its cost is cubic: T·S·U·K."""
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
