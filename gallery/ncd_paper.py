"""Figures of Abbott's Neural Circuit Diagrams paper, as circuits."""

from __future__ import annotations

from ncd.circuits.builder import Builder

from . import entry

NCD = "Abbott, Neural Circuit Diagrams (TMLR 2024)"


@entry("attention", "Scaled dot-product attention", NCD)
def attention():
    """Scaled dot-product attention, the NCD paper's attention figure.

    Implements: Abbott's figure of Vaswani et al. (2017) eq. 1,
    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V.

    By axis names: scores s[b,h,t,s] = Σ_k q[b,h,t,k] k[b,h,s,k] · K^(-1/2), p = softmax over
    S, and y[b,h,t,v] = Σ_s p[b,h,t,s] v[b,h,s,v]; the heads H and batch B are broadcast.
    """
    b = Builder(
        "attention",
        title="Scaled dot-product attention",
        paper=NCD,
        doc="softmax(q·k / sqrt(K)) · v over named axes; heads H are broadcast.",
        sizes={"B": 2, "H": 4, "T": 16, "S": 16, "K": 8, "V": 8},
    )
    q = b.input("q", "B H T K")
    k = b.input("k", "B H S K")
    v = b.input("v", "B H S V")
    s = b.contract(q, k, over="K", name="scores")  # B H T S
    s = b.scale(s, "K**-0.5", name="scale")
    p = b.softmax(s, over="S", name="softmax")
    b.output("y", b.contract(p, v, over="S", name="mix"))  # B H T V
    return b.build()


def _mha(b: Builder, x, causal: bool = False, group: str = "Multi-Head Attention"):
    """Multi-head attention over x (B T D): the projections L^Q L^K L^V L^O around attention;
    `causal` masks the scores so that position t attends to positions s <= t only."""
    with b.group(group):
        q = b.linear(x, "D", "H K", name="q_proj", label="L^Q")  # B T H K
        k = b.linear(x, "D", "H K", name="k_proj", label="L^K")
        v = b.linear(x, "D", "H V", name="v_proj", label="L^V")  # B T H V
        k = b.rename(k, T="S", name="k_keys")  # keys live on their own axis S
        v = b.rename(v, T="S", name="v_keys")
        s = b.contract(q, k, over="K", name="scores")  # B T H S
        s = b.scale(s, "K**-0.5", name="scale")
        if causal:
            s = b.mask(s, "T", "S", name="causal")
        p = b.softmax(s, over="S", name="softmax")
        o = b.contract(p, v, over="S", name="mix")  # B T H V
        return b.linear(o, "H V", "D", name="o_proj", label="L^O")  # B T D


@entry("multihead_attention", "Multi-head attention", NCD)
def multihead_attention():
    """Multi-head attention, the NCD paper's figure.

    Implements: Abbott's figure of Vaswani et al. (2017) Sec. 3.2.2,
    MultiHead(x) = Concat(head_1, …, head_H) W^O with head_h = Attention(x W^Q_h, x W^K_h,
    x W^V_h), and eq. 1 per head, Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V.

    The projections L^Q, L^K, L^V map D to (H, K) so the heads are an axis, attention is
    broadcast over H, and L^O contracts (H, V) back to D (the concatenation and W^O in one
    map); D = H·K.
    """
    b = Builder(
        "multihead_attention",
        title="Multi-head attention",
        paper=NCD,
        doc="Single-head attention broadcast over heads H, with learned projections.",
        axes={"D": "H*K"},
        sizes={"B": 2, "T": 16, "H": 4, "K": 8, "V": 8},
    )
    x = b.input("x", "B T D")
    b.output("y", _mha(b, x))
    return b.build()


def _transformer_block(causal: bool):
    """The pre-norm block as a circuit named `transformer_block`: x + MHA(LN(x)), then
    x + MLP(LN(x)); each residual branch is one group, its norm included."""
    b = Builder(
        "transformer_block",
        title="Pre-norm transformer block" + (" (causal)" if causal else ""),
        paper=NCD,
        doc="x + MHA(LN(x)), then + MLP(LN(.)) with a GELU MLP of width F"
        + ("; causal attention (position t sees s <= t)." if causal else "."),
        axes={"D": "H*K"},
        sizes={"B": 2, "T": 16, "H": 4, "K": 8, "V": 8, "F": 64},
    )
    x = b.input("x", "B T D")
    with b.group("Residual Component"):
        h = b.layernorm(x, "D", name="ln1")
    h = _mha(b, h, causal=causal, group="Residual Component")
    x = b.add(x, h, name="res1")
    with b.group("MLP"):
        h = b.layernorm(x, "D", name="ln2")
        h = b.linear(h, "D", "F", name="ff_up", label="L₊")
        h = b.gelu(h, name="act")
        h = b.linear(h, "F", "D", name="ff_down", label="L₊")
    b.output("y", b.add(x, h, name="res2"))
    return b.build()


@entry("transformer_block", "Pre-norm transformer block", NCD)
def transformer_block():
    """The NCD paper's transformer block, in pre-norm form.

    Implements: Abbott's transformer block, Vaswani et al. (2017) Sec. 3.1's two sub-layers
    each wrapped in a residual connection, with the LayerNorm moved inside the branch (Xiong
    et al. 2020, pre-LN): x' = x + MultiHead(LN(x)) (Sec. 3.2.2, eq. 1 per head), then
    y = x' + FFN(LN(x')) with FFN(h) = GELU(h W₁ + b₁) W₂ + b₂ (eq. 2 with GELU for ReLU).

    The group "Residual Component" holds the first LN and the attention; the MLP group holds
    the second LN and L₊ → GELU → L₊.
    """
    return _transformer_block(causal=False)


@entry("transformer", "Decoder-only transformer (N repeated blocks)", NCD)
def transformer():
    """The NCD paper's transformer: token embedding, N pre-norm blocks, final norm and the
    unembedding to the vocabulary axis W; decoder-only.

    Implements: Abbott's transformer figure as a decoder-only stack, x⁰_t = E[token_t],
    x^λ = Block_λ(x^(λ-1)) for λ = 1 … N, logits = LN(x^N) W_U; each Block_λ the pre-norm
    block of `transformer_block` (Vaswani et al. 2017 eqs. 1 and 2) with causal attention,
    softmax(Q Kᵀ / √d_k + M) V with M_ts = 0 for s <= t and −∞ for s > t (Vaswani et al.'s
    decoder masking of the illegal connections).

    The blocks have separate parameters (the NCD parentheses λ = 1 … N, a repeated call); the
    mask is a box on the scores, so the logits at position t depend on tokens 0 … t only. The
    unembedding has no bias.
    """
    block = _transformer_block(causal=True)
    b = Builder(
        "transformer",
        title="Transformer (N blocks)",
        paper=NCD,
        doc="Embedding, N repeated causal transformer blocks, norm, unembedding.",
        axes={"D": "H*K"},
        sizes={"B": 2, "T": 16, "H": 4, "K": 8, "V": 8, "F": 64, "W": 50, "N": 2},
    )
    tokens = b.input("tokens", "B T", dtype="int64")
    x = b.embedding(tokens, "W", "D", name="embed", label="E")
    x = b.call(block, x=x, repeat="N", name="blocks")
    x = b.layernorm(x, "D", name="ln_f")
    b.output("logits", b.linear(x, "D", "W", bias=False, name="unembed", label="L^U"))
    return b.build()
