"""The linear-attention family and the gated linear recurrences: Katharopoulos et al.;
TransNormerLLM and Lightning Attention; GLA; DeltaNet; Gated DeltaNet; Mamba(-2).

Each block's token mixer is one fused `linear_attention` box (its variant is the state
update of the paper); what surrounds it (projections, short convolutions, gates, norms) is
drawn box by box as the paper writes it.
"""

from __future__ import annotations

from ncd.circuits.builder import Builder

from . import entry

KATHAROPOULOS = "Katharopoulos et al., Transformers are RNNs (2020); Lightning Attention-2 (2024)"
TRANSNORMER = (
    "Qin et al., The Devil in Linear Transformer (2022); TransNormerLLM: A Faster and Better "
    "Large Language Model with Improved TransNormer (2023)"
)
LIGHTNING = (
    "Qin et al., Various Lengths, Constant Speed: Efficient Language Modeling with Lightning "
    "Attention (2024); Lightning Attention-2 (2024)"
)
GLA = "Yang et al., Gated Linear Attention Transformers with Hardware-Efficient Training (2024)"
DELTA = "Yang et al., Parallelizing Linear Transformers with the Delta Rule over Sequence Length"
GATED_DELTA = "Yang, Kautz, Hatamizadeh, Gated Delta Networks: Improving Mamba2 with Delta Rule"
MAMBA = (
    'Ren et al., Can Mamba Always Enjoy the "Free Lunch"? (2024); Dao & Gu, Transformers are '
    "SSMs (Mamba-2, 2024)"
)

CONV = 4
"""Width of the short causal convolutions (DeltaNet, Gated DeltaNet, Mamba)."""


@entry("linear_attention", "Causal linear attention", KATHAROPOULOS)
def linear_attention():
    """Causal linear attention, drawn in its recurrent form.

    Implements: Katharopoulos et al. (2020), causal linear attention as a recurrence (their
    section on causal masking), o_t = φ(q_t)·S_t / φ(q_t)·z_t with S_t = Σ_{s<=t} φ(k_s) v_sᵀ
    and z_t = Σ_{s<=t} φ(k_s), and their feature map φ(x) = elu(x) + 1.

    Drawn in its recurrent form, so that its cost is visibly linear in T; the compiler lowers the
    outer product → scan → contraction chain to the chunked kernel of ncd.ops (Lightning
    Attention-2's split: quadratic within a block, the running state between blocks), which
    never keeps the running states in memory.
    """
    b = Builder(
        "linear_attention",
        title="Causal linear attention",
        paper=KATHAROPOULOS,
        doc="Feature map φ = elu + 1; running state K×V per position; no softmax.",
        sizes={"B": 2, "H": 4, "T": 16, "K": 8, "V": 8},
    )
    q = b.input("q", "B H T K")
    k = b.input("k", "B H T K")
    v = b.input("v", "B H T V")
    with b.group("Feature map φ"):
        fq = b.unary(q, "elu_plus_one", name="phi_q", label="φ")
        fk = b.unary(k, "elu_plus_one", name="phi_k", label="φ")
    kv = b.contract(fk, v, over="", name="outer")  # B H T K V
    state = b.scan(kv, "T", name="state")  # running Σ_{s<=t}
    num = b.contract(fq, state, over="K", name="read")  # B H T V
    z = b.scan(fk, "T", name="norm_state")  # B H T K
    den = b.contract(fq, z, over="K", name="read_norm")  # B H T
    b.output("y", b.div(num, den, name="normalise"))
    return b.build()


# ---------------------------------------------------------------- helpers
def _short_conv(b: Builder, x, channel: str, name: str, *, bias: bool = False, heads=None):
    """SiLU of a causal depthwise convolution of width CONV over T (padded CONV - 1 on both
    sides, the first T outputs kept: output t sees x_{t-3} … x_t), then the channel axis
    split into `heads` (e.g. "H K") when given."""
    h = b.conv(x, "T", channel, channel, CONV, padding=CONV - 1, depthwise=True, bias=bias,
               name=f"{name}_conv", label=f"★{CONV}")  # fmt: skip
    h = b.slice(h, "T", 0, "T", name=f"{name}_causal")
    h = b.silu(h, name=f"{name}_act")
    return b.split_axis(h, channel, heads, name=f"{name}_heads") if heads else h


# ---------------------------------------------------------------- TransNormerLLM / TNL
TNL_SIZES = {"B": 2, "T": 32, "H": 2, "K": 8, "V": 8, "F": 32}


def _tnl_layer(b: Builder, x, decay_scale: str, p: str = "", tag: str = ""):
    """One TransNormerLLM layer on x (B T D): x + GLA(SRMSNorm(x)), then x + SGLU(SRMSNorm(x)).
    Box names start with `p`, group titles with `tag`.

    GLA (Lightning Attention paper eq. 11): O = SRMSNorm(Q Kᵀ V ⊙ decay mask) ⊙ U,
    Q = φ(X W_q), K = φ(X W_k), V = X W_v, U = X W_u, φ = Swish; SGLU (eq. 12):
    O = [(X W_v) ⊙ (X W_u)] W_o; SRMSNorm (eq. 14) x / (‖x‖₂/√d), no learned scale.
    """
    h = b.rmsnorm(x, "D", affine=False, name=f"{p}norm1", label="SRMS")
    with b.group(f"{tag}Gated Linear Attention"):
        q = b.linear(h, "D", "H K", bias=False, name=f"{p}q_proj", label="L^Q")
        k = b.linear(h, "D", "H K", bias=False, name=f"{p}k_proj", label="L^K")
        q, k = b.silu(q, name=f"{p}phi_q", label="φ"), b.silu(k, name=f"{p}phi_k", label="φ")
        v = b.linear(h, "D", "H V", bias=False, name=f"{p}v_proj", label="L^V")
        u = b.linear(h, "D", "H V", bias=False, name=f"{p}u_proj", label="L^U")
        o = b.linear_attention(q, k, v, key="T", variant="lightning", decay_scale=decay_scale,
                               name=f"{p}mixer")  # fmt: skip
        o = b.rmsnorm(o, "H V", affine=False, name=f"{p}out_norm", label="SRMS")
        o = b.mul(o, u, name=f"{p}gate")
        o = b.linear(o, "H V", "D", bias=False, name=f"{p}o_proj", label="L^O")
    x = b.add(x, o, name=f"{p}res1")
    h = b.rmsnorm(x, "D", affine=False, name=f"{p}norm2", label="SRMS")
    with b.group(f"{tag}SGLU"):
        v = b.linear(h, "D", "F", bias=False, name=f"{p}glu_v", label="L^V")
        u = b.linear(h, "D", "F", bias=False, name=f"{p}glu_u", label="L^U")
        o = b.mul(v, u, name=f"{p}glu")
        o = b.linear(o, "F", "D", bias=False, name=f"{p}glu_o", label="L^O")
    return b.add(x, o, name=f"{p}res2")


@entry("transnormer_block", "TransNormerLLM block (Lightning Attention)", TRANSNORMER)
def transnormer_block():
    """One TransNormerLLM layer, layer l of L (sizes `l`, `L`), pre-norm.

    Implements: The Devil in Linear Transformer (Qin et al. 2022) §3, NormAttention, the
    scaling of the scores replaced by a norm after the product, here gated as TransNormerLLM
    does: O = SRMSNorm(Q Kᵀ V) ⊙ U, then W_o, with Q = Swish(X W_q), K = Swish(X W_k),
    V = X W_v, U = X W_u; TransNormerLLM (2023) §3.1, causal, with the exponential decay of
    LRPE-d a_ts = q_tᵀ k_s λ^{t-s}, λ of head h in layer l = exp(-(8h/H)(1 - l/L)), not
    learned; the channel mixer SGLU, O = [(X W_v) ⊙ (X W_u)] W_o; both pre-norm,
    x + mixer(SRMSNorm(x)) with SRMSNorm(x) = x / (‖x‖₂/√d). The Lightning Attention paper's
    eqs. 9–14 write the same layer.

    The head rate 8h/H is taken, as TransNormerLLM's code and the `lightning` variant do, as
    the ALiBi slope 2^(-8h/H): λ = exp(-2^(-8h/H) (1 - l/L)), h = 1 … H. The rotation part of
    LRPE-d, kept only in the first layer, is left out. SRMSNorm has no learned scale and
    normalises the attention output over all heads' values together.
    """
    b = Builder("transnormer_block", title="TransNormerLLM layer l of L", paper=TRANSNORMER,
                doc="Pre-SRMSNorm; gated NormAttention with per-head, per-layer decay; SGLU.",
                axes={"D": "H*K"}, sizes={**TNL_SIZES, "l": 1, "L": 4})  # fmt: skip
    b.output("y", _tnl_layer(b, b.input("x", "B T D"), "1 - l/L"))
    return b.build()


@entry("lightning_block", "TNL: TransNormerLLM layers with Lightning Attention", LIGHTNING)
def lightning_block():
    """TNL as the Lightning Attention paper draws it (its Fig. 3): L = 2 layers.

    Implements: Qin et al. (2024), Various Lengths, Constant Speed, each layer
    x + GLA(SRMSNorm(x)), then x + SGLU(SRMSNorm(x)): eq. 10, layer l's own decay
    λ = exp(-2^(-8h/H)(1 - l/L)) per head h (the head rate read as the ALiBi slope, as in the
    released code); eq. 11, GLA O = SRMSNorm([(Q Kᵀ) ⊙ M] V) ⊙ U, then W_o, with
    Q = φ(X W_q), K = φ(X W_k), V = X W_v, U = X W_u, φ = Swish, M_ts = λ^{t-s} for s <= t
    (Lightning Attention-2's O = [(Q Kᵀ) ⊙ M] V); eq. 12, SGLU O = [(X W_v) ⊙ (X W_u)] W_o;
    eq. 14, SRMSNorm(x) = x / (‖x‖₂/√d).

    The token mixer is one fused Lightning Attention box per layer, which the compiler lowers
    to the chunked kernel (intra-block quadratic, inter-block state); the decay weakens with
    depth (l = 1: rate 1/2; l = 2: rate 0, no decay).
    """
    b = Builder("lightning_block", title="TNL (Lightning Attention), L = 2 layers",
                paper=LIGHTNING, doc="Two TransNormerLLM layers; the decay weakens with depth.",
                axes={"D": "H*K"}, sizes=TNL_SIZES)  # fmt: skip
    x = b.input("x", "B T D")
    for layer, rate in ((1, "1/2"), (2, "0")):
        x = _tnl_layer(b, x, rate, p=f"l{layer}_", tag=f"Layer {layer}: ")
    b.output("y", x)
    return b.build()


# ---------------------------------------------------------------- GLA
@entry("gla_block", "Gated linear attention block", GLA)
def gla_block():
    """The GLA layer of Yang et al., pre-norm, with its residual.

    Implements: Yang et al. (2024) §4.1, the gated recurrence S_t = (α_tᵀ 1) ⊙ S_{t-1} +
    k_tᵀ v_t, o_t = q_t S_t per head, q = x W_Q, k = x W_K, v = x W_V, with the gate
    α_t = σ(x_t W_α1 W_α2 + b_α)^{1/τ}; §4.4 (GLA Transformer), the layer's output
    O' = LN(O^h) per head, R = Swish(X W_r + b_r), Y = (R ⊙ O') W_O; then y = x + Y.

    The gate's projection has rank 16 (W_α1: D → 16, W_α2: 16 → K per head) and temperature
    τ = 16, so log α = logsigmoid(.)/τ, the log-gate the `gla` variant takes. The pre-norm is
    an RMSNorm. The channel mixer of the layer (SwiGLU) is left out: the block is the token
    mixer.
    """
    b = Builder("gla_block", title="Gated linear attention", paper=GLA, axes={"D": "H*K"},
                sizes={"B": 2, "T": 32, "H": 2, "K": 8, "V": 8, "R": 16})  # fmt: skip
    x = b.input("x", "B T D")
    h = b.rmsnorm(x, "D", name="norm")
    with b.group("Gated linear attention"):
        q = b.linear(h, "D", "H K", bias=False, name="q_proj", label="L^Q")
        k = b.linear(h, "D", "H K", bias=False, name="k_proj", label="L^K")
        v = b.linear(h, "D", "H V", bias=False, name="v_proj", label="L^V")
        g = b.linear(h, "D", "R", bias=False, name="g_down", label="L^{α1}")
        g = b.linear(g, "R", "H K", name="g_up", label="L^{α2}")
        g = b.unary(g, "logsigmoid", name="log_gate")
        g = b.scale(g, "1/16", name="temperature", label="1/τ")
        o = b.linear_attention(q, k, v, key="T", variant="gla", g=g, name="mixer")
        o = b.layernorm(o, "V", name="out_norm")
        r = b.silu(b.linear(h, "D", "H V", name="r_proj", label="L^R"), name="swish")
        o = b.linear(b.mul(r, o, name="gate"), "H V", "D", bias=False, name="o_proj",
                     label="L^O")  # fmt: skip
    b.output("y", b.add(x, o, name="residual"))
    return b.build()


# ---------------------------------------------------------------- delta rules
def _delta_qkv(b: Builder, h):
    """q, k, v of DeltaNet and Gated DeltaNet: projections, short causal convolutions with
    SiLU, and L2-normalised q and k."""
    q = b.linear(h, "D", "E", bias=False, name="q_proj", label="L^Q")
    k = b.linear(h, "D", "E", bias=False, name="k_proj", label="L^K")
    v = b.linear(h, "D", "F", bias=False, name="v_proj", label="L^V")
    q = b.normalize(_short_conv(b, q, "E", "q", heads="H K"), "K", name="l2_q")
    k = b.normalize(_short_conv(b, k, "E", "k", heads="H K"), "K", name="l2_k")
    v = _short_conv(b, v, "F", "v", heads="H V")
    return q, k, v


@entry("deltanet_block", "DeltaNet block", DELTA)
def deltanet_block():
    """The DeltaNet layer of Yang et al. (2024), pre-norm, with its residual.

    Implements: Yang et al. (2024) §2.2, the delta rule S_t = S_{t-1} - β_t (S_{t-1} k_t - v_t)
    k_tᵀ, o_t = S_t q_t; the layer of §3.3/§4, q, k, v = SiLU(ShortConv(x W_Q)), …, q and k
    L2-normalised per head, β_t = σ(x_t W_β) per head and token, y = x + RMSNorm(o) W_O with
    the RMSNorm per head.

    In row form (states K × V, keys as rows) the rule reads S_t = S_{t-1} + β_t k_tᵀ (v_t -
    k_t S_{t-1}), the `delta` variant. ShortConv is a causal depthwise convolution of width 4
    over T; the pre-norm is an RMSNorm.
    """
    b = Builder("deltanet_block", title="DeltaNet", paper=DELTA,
                axes={"D": "H*K", "E": "H*K", "F": "H*V"},
                sizes={"B": 2, "T": 32, "H": 2, "K": 8, "V": 8})  # fmt: skip
    x = b.input("x", "B T D")
    h = b.rmsnorm(x, "D", name="norm")
    with b.group("DeltaNet"):
        q, k, v = _delta_qkv(b, h)
        beta = b.unary(b.linear(h, "D", "H", bias=False, name="b_proj", label="L^β"),
                       "sigmoid", name="beta")  # fmt: skip
        o = b.linear_attention(q, k, v, key="T", variant="delta", beta=beta, name="mixer")
        o = b.rmsnorm(o, "V", name="out_norm")
        o = b.linear(o, "H V", "D", bias=False, name="o_proj", label="L^O")
    b.output("y", b.add(x, o, name="residual"))
    return b.build()


@entry("deltanet_packed", "DeltaNet block on packed sequences", DELTA)
def deltanet_packed():
    """The DeltaNet block of `deltanet_block` on sequences packed end to end along T (no
    padding; offsets as `cu_seqlens`, N + 1 values for N sequences), as variable-length
    training batches are fed: each sequence starts from a zero state and its short
    convolutions never read another sequence's tokens.

    Implements: Yang et al. (2024) §2.2, S_t = S_{t-1} - β_t (S_{t-1} k_t - v_t) k_tᵀ,
    o_t = S_t q_t with S = 0 at each sequence's first token, and the layer of §3.3/§4 as in
    `deltanet_block`; the short convolutions are `short_conv` boxes (causal depthwise, width
    4, SiLU) with the offsets, and the delta rule a packed `linear_attention` box.
    """
    b = Builder("deltanet_packed", title="DeltaNet, packed sequences", paper=DELTA,
                axes={"D": "H*K", "E": "H*K", "F": "H*V"},
                sizes={"T": 48, "N": 4, "H": 2, "K": 8, "V": 8})  # fmt: skip
    x = b.input("x", "T D")
    offsets = b.input("offsets", "N", dtype="int32")
    h = b.rmsnorm(x, "D", name="norm")
    with b.group("DeltaNet"):
        convs = []
        for p, proj, chan, heads in (("q", "L^Q", "E", "H K"), ("k", "L^K", "E", "H K"),
                                     ("v", "L^V", "F", "H V")):  # fmt: skip
            u = b.linear(h, "D", chan, bias=False, name=f"{p}_proj", label=proj)
            u = b.box("short_conv", {"x": u, "offsets": offsets}, f"{p}_conv", axis="T",
                      channel=chan, kernel=CONV, activation="silu", packed=True,
                      label=f"★{CONV}")  # fmt: skip
            convs.append(b.split_axis(u, chan, heads, name=f"{p}_heads"))
        q = b.normalize(convs[0], "K", name="l2_q")
        k = b.normalize(convs[1], "K", name="l2_k")
        beta = b.unary(b.linear(h, "D", "H", bias=False, name="b_proj", label="L^β"),
                       "sigmoid", name="beta")  # fmt: skip
        o = b.linear_attention(q, k, convs[2], key="T", variant="delta", beta=beta,
                               offsets=offsets, name="mixer")  # fmt: skip
        o = b.rmsnorm(o, "V", name="out_norm")
        o = b.linear(o, "H V", "D", bias=False, name="o_proj", label="L^O")
    b.output("y", b.add(x, o, name="residual"))
    return b.build()


def _mamba2_decay(b: Builder, h, name: str = "a"):
    """g = -exp(A_log) · softplus(x W + b_Δ), per head and token (Mamba-2's Δ A): the log of
    the decay α = exp(g) in (0, 1). Returns (g, Δ)."""
    with b.group("Decay"):
        dt = b.linear(h, "D", "H", bias=False, name=f"{name}_proj", label="L^Δ")
        dt = b.add(dt, b.param("H", name="dt_bias", label="b^Δ"), name="dt_shift")
        dt = b.unary(dt, "softplus", name="dt", label="Δ")
        a = b.unary(b.param("H", name="A_log", label="log A"), "exp", name="A_exp")
        g = b.unary(b.mul(dt, a, name="dt_A"), "neg", name="log_decay")
    return g, dt


@entry("gated_deltanet_block", "Gated DeltaNet block", GATED_DELTA)
def gated_deltanet_block():
    """The Gated DeltaNet layer (Yang, Kautz, Hatamizadeh), pre-norm, with its residual.

    Implements: Yang, Kautz, Hatamizadeh eq. 10, the gated delta rule
    S_t = S_{t-1} (α_t (I - β_t k_t k_tᵀ)) + β_t v_t k_tᵀ, o_t = S_t q_t, with
    α_t = exp(g_t), g_t = -exp(A_log) · softplus(x_t W_a + b_Δ) (Mamba-2's parametrisation,
    one per head and token) and β_t = σ(x_t W_β); the block of their Fig. 1,
    q, k, v = SiLU(ShortConv(x W_Q)), …, q and k L2-normalised,
    y = x + (RMSNorm(o) ⊙ SiLU(x W_g)) W_O with the RMSNorm per head.

    In row form the rule reads S_t = α_t S_{t-1} + β_t k_tᵀ (v_t - α_t k_t S_{t-1}), the
    `gated_delta` variant. ShortConv is a causal depthwise convolution of width 4 over T; the
    pre-norm is an RMSNorm.
    """
    b = Builder("gated_deltanet_block", title="Gated DeltaNet", paper=GATED_DELTA,
                axes={"D": "H*K", "E": "H*K", "F": "H*V"},
                sizes={"B": 2, "T": 32, "H": 2, "K": 8, "V": 8})  # fmt: skip
    x = b.input("x", "B T D")
    h = b.rmsnorm(x, "D", name="norm")
    with b.group("Gated DeltaNet"):
        q, k, v = _delta_qkv(b, h)
        g, _ = _mamba2_decay(b, h)
        beta = b.unary(b.linear(h, "D", "H", bias=False, name="b_proj", label="L^β"),
                       "sigmoid", name="beta")  # fmt: skip
        o = b.linear_attention(q, k, v, key="T", variant="gated_delta", g=g, beta=beta,
                               name="mixer")  # fmt: skip
        o = b.rmsnorm(o, "V", name="out_norm")
        gate = b.silu(b.linear(h, "D", "H V", bias=False, name="g_proj", label="L^G"),
                      name="gate_act")  # fmt: skip
        o = b.linear(b.mul(o, gate, name="gate"), "H V", "D", bias=False, name="o_proj",
                     label="L^O")  # fmt: skip
    b.output("y", b.add(x, o, name="residual"))
    return b.build()


# ---------------------------------------------------------------- Mamba
@entry("mamba_block", "Mamba block as a gated linear recurrence", MAMBA)
def mamba_block():
    """The selective state-space block drawn as gated linear attention, pre-norm: Mamba-2's
    block with B and C shared by groups of heads (`ngroups`, size G; 1 as in the Mamba-2
    reference models).

    Implements: the selective SSM as "Free Lunch" (Ren et al. 2024) §3 writes it,
    h_t = Ā_t h_{t-1} + B̄_t u_t, y_t = C_t h_t with Ā_t = exp(Δ_t A), B̄_t = Δ_t B_t
    (Mamba's discretisation), and its unrolled, linear-attention form
    y_t = Σ_s C_tᵀ (Π_{r=s+1..t} Ā_r) B̄_s u_s; with Mamba-2's (Dao & Gu 2024) scalar A per
    head, S_t = exp(g_t) S_{t-1} + B_tᵀ (Δ_t u_t), y_t = C_t S_t, g_t = Δ_t A,
    A = -exp(A_log), Δ_t = softplus(x̂_t W_Δ + b_Δ), head h reading B and C of group
    ⌊h / (H/G)⌋ (the SSD layer's ngroups = G); and Mamba-2's block,
    out = x + W_out RMSNorm((y + D ⊙ u) ⊙ SiLU(x̂ W_z)) with x̂ = RMSNorm(x),
    u = SiLU(ShortConv(x̂ W_x)), B = SiLU(ShortConv(x̂ W_B)), C = SiLU(ShortConv(x̂ W_C)).

    Δ_t is one per head and token; B_t (the keys) and C_t (the queries) depend on the input,
    G groups of N channels that the H heads share (one `linear_attention` box with grouped
    heads). Mamba-2's one input projection and one convolution over x, B and C are drawn as
    a projection and a convolution each (the same maps: the projection's rows, the
    depthwise convolution's channels, split). ShortConv is a causal depthwise convolution of
    width 4 over T, with bias. The skip D is one per head; the output RMSNorm comes after the
    gate (Mamba-2's norm placement) and is taken over all heads' channels: Mamba-2's
    RMSNormGated normalises each group's heads together (group_size = d_inner / ngroups),
    which is all of them at G = 1, as drawn; for G > 1 it would be per group.
    """
    b = Builder("mamba_block", title="Mamba-2 (selective SSM as gated linear attention)",
                paper=MAMBA, axes={"E": "H*P", "F": "G*N"},
                sizes={"B": 2, "T": 32, "D": 16, "H": 2, "P": 8, "G": 1, "N": 8})  # fmt: skip
    x = b.input("x", "B T D")
    h = b.rmsnorm(x, "D", name="norm")
    with b.group("Selective SSM"):
        xs = b.linear(h, "D", "E", bias=False, name="x_proj", label="L^x")
        bk = b.linear(h, "D", "F", bias=False, name="B_proj", label="L^B")
        cq = b.linear(h, "D", "F", bias=False, name="C_proj", label="L^C")
        xs = _short_conv(b, xs, "E", "x", bias=True, heads="H P")
        bk = _short_conv(b, bk, "F", "B", bias=True, heads="G N")
        cq = _short_conv(b, cq, "F", "C", bias=True, heads="G N")
        g, dt = _mamba2_decay(b, h, name="dt")
        v = b.mul(xs, dt, name="dt_x")
        y = b.linear_attention(cq, bk, v, key="T", head="N", value="P", variant="decay", g=g,
                               heads="H", qk_heads="G", name="mixer")  # fmt: skip
        skip = b.mul(xs, b.param("H", name="D_skip", label="D"), name="skip")
        y = b.add(y, skip, name="with_skip")
        z = b.linear(h, "D", "H P", bias=False, name="z_proj", label="L^z")
        y = b.mul(y, b.silu(z, name="z_act"), name="gate")
        y = b.rmsnorm(y, "H P", name="out_norm")
        y = b.linear(y, "H P", "D", bias=False, name="out_proj", label="L^out")
    b.output("y", b.add(x, y, name="residual"))
    return b.build()
