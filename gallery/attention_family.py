"""Attention blocks beyond the NCD paper's: higher-order attention; the LLaMA decoder block
(rotary positions, grouped-query attention, SwiGLU). The linear-attention blocks are in
linear_family."""

from __future__ import annotations

from ncd.circuits.builder import Builder

from . import entry

KRONECKER = "How to Capture Higher-order Correlations? (Kronecker / tensor attention)"
LLAMA = (
    "Touvron et al., LLaMA: Open and Efficient Foundation Language Models (2023); Touvron et "
    "al., Llama 2: Open Foundation and Fine-Tuned Chat Models (2023)"
)


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


@entry("llama_block", "LLaMA decoder block", LLAMA)
def llama_block():
    """The LLaMA decoder block (LLaMA, Llama 2 and Llama 3): pre-norm RMSNorm, rotary positions
    on the queries and keys, causal grouped-query attention, a SwiGLU feed-forward; no biases.

    Implements: LLaMA (Touvron et al. 2023, Sec. 2.2: pre-normalization with RMSNorm, SwiGLU,
    rotary embeddings) and Llama 2's grouped-query attention, h = x + Attn(RMSNorm(x)) W^O,
    y = h + (SiLU(z W₁) ⊙ z W₃) W₂ with z = RMSNorm(h) (Shazeer 2020's SwiGLU), where
    RMSNorm(x) = x / √(mean_D x² + ε) ⊙ g (Zhang & Sennrich 2019) and, per query head
    h = 1 … H, Attn_t = Σ_{s<=t} softmax_s(R_t q_th · R_s k_sg / √K) v_sg with
    q = a W^Q, k = a W^K, v = a W^V (a = RMSNorm(x)), query head h reading key/value head
    g = ⌊h / (H/G)⌋ (GQA, Ainslie et al. 2023), and R_p RoPE's rotation at position p (Su et
    al. 2021): feature pair (i, i + K/2) turned by the angle p·θ_i, θ_i = 10000^(−2i/K).

    Sizes are small: D = H·K = 32, H = 4 query heads sharing G = 2 key/value heads, K = V = 8
    features a head, F = 96 SwiGLU features (LLaMA's 2/3·4D = 85 rounded up to a multiple of
    32, as Meta's code rounds to `multiple_of`). The maps are named as in Meta's code (wq, wk,
    wv, wo; w1, w3, w2; attention_norm, ffn_norm). The rotary pairs feature i with i + K/2
    (Hugging Face's `rotate_half`; Meta's code pairs 2i with 2i + 1, the same rotation with
    the features of W^Q and W^K permuted); Llama 3 takes θ = 500000 (the box's `base`).
    """
    b = Builder("llama_block", title="LLaMA decoder block", paper=LLAMA,
                doc="x + Attn(RMSNorm(x)), rotary q and k, grouped-query heads; then "
                    "+ SwiGLU(RMSNorm(.)); no biases.",
                axes={"D": "H*K"},
                sizes={"B": 2, "T": 16, "H": 4, "G": 2, "K": 8, "V": 8, "F": 96})  # fmt: skip
    x = b.input("x", "B T D")
    with b.group("Attention"):
        h = b.rmsnorm(x, "D", name="attention_norm")
        q = b.linear(h, "D", "H K", bias=False, name="wq", label="L^Q")  # B T H K
        k = b.linear(h, "D", "G K", bias=False, name="wk", label="L^K")  # B T G K
        v = b.linear(h, "D", "G V", bias=False, name="wv", label="L^V")
        k = b.rename(k, T="S", name="k_keys")  # keys live on their own axis S
        v = b.rename(v, T="S", name="v_keys")
        q = b.rotary(q, "T", "K", name="rope_q")
        k = b.rotary(k, "S", "K", name="rope_k")
        o = b.attention(q, k, v, causal=True, heads="H", kv_heads="G", name="attention")
        o = b.linear(o, "H V", "D", bias=False, name="wo", label="L^O")  # B T D
    x = b.add(x, o, name="res1")
    with b.group("SwiGLU"):
        h = b.rmsnorm(x, "D", name="ffn_norm")
        gate = b.silu(b.linear(h, "D", "F", bias=False, name="w1", label="L^1"), name="act")
        up = b.linear(h, "D", "F", bias=False, name="w3", label="L^3")
        y = b.linear(b.mul(gate, up, name="gated"), "F", "D", bias=False, name="w2", label="L^2")
    b.output("y", b.add(x, y, name="res2"))
    return b.build()
