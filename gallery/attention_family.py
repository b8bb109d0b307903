"""Attention variants: higher-order attention and the linear-attention blocks of the papers."""

from __future__ import annotations

from ncd.circuits.builder import Builder

from . import entry

KRONECKER = "How to Capture Higher-order Correlations? (Kronecker / tensor attention)"
TRANSNORMER = "Qin et al., The Devil in Linear Transformer (2022); TransNormerLLM (2023)"
GLA = "Yang et al., Gated Linear Attention Transformers with Hardware-Efficient Training (2024)"
DELTA = "Yang et al., Parallelizing Linear Transformers with the Delta Rule (2024)"


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


def _projections(b, x, gates: bool = False):
    q = b.linear(x, "D", "H K", bias=False, name="q_proj", label="L^Q")
    k = b.linear(x, "D", "H K", bias=False, name="k_proj", label="L^K")
    v = b.linear(x, "D", "H V", bias=False, name="v_proj", label="L^V")
    return q, k, v


def _block(name, title, paper, variant, *, feature=None, norm_keys=False, gate=False,
           beta=False, norm_out=False):  # fmt: skip
    b = Builder(name, title=title, paper=paper, axes={"D": "H*K"},
                sizes={"B": 2, "T": 32, "H": 2, "K": 8, "V": 8})  # fmt: skip
    x = b.input("x", "B T D")
    h = b.rmsnorm(x, "D", name="norm")
    with b.group(title):
        q, k, v = _projections(b, h)
        if feature:
            q, k = b.unary(q, feature, name="phi_q"), b.unary(k, feature, name="phi_k")
        if norm_keys:
            k = b.normalize(k, "K", name="l2_keys")
        kw = {}
        if gate:
            g = b.linear(h, "D", "H K", name="g_proj", label="L^G")
            kw["g"] = b.unary(g, "logsigmoid", name="log_gate")
        if beta:
            kw["beta"] = b.unary(b.linear(h, "D", "H", name="b_proj", label="L^β"), "sigmoid",
                                 name="beta")  # fmt: skip
        o = b.linear_attention(q, k, v, key="T", variant=variant, name="mixer", **kw)
        if norm_out:
            o = b.rmsnorm(o, "V", name="out_norm")
        o = b.linear(o, "H V", "D", bias=False, name="o_proj", label="L^O")
    b.output("y", b.add(x, o, name="residual"))
    return b.build()


@entry("transnormer_block", "TransNormerLLM block (Lightning Attention)", TRANSNORMER)
def transnormer_block():
    """NormAttention: linear attention with a per-head decay and no scaling, whose output is
    normalised instead (RMS norm), inside a pre-norm residual block."""
    return _block("transnormer_block", "NormAttention", TRANSNORMER, "lightning",
                  feature="silu", norm_out=True)  # fmt: skip


@entry("gla_block", "Gated linear attention block", GLA)
def gla_block():
    return _block("gla_block", "Gated linear attention", GLA, "gla", gate=True, norm_out=True)


@entry("deltanet_block", "DeltaNet block", DELTA)
def deltanet_block():
    return _block("deltanet_block", "DeltaNet", DELTA, "delta", feature="silu", norm_keys=True,
                  beta=True, norm_out=True)  # fmt: skip
