"""Integer-only inference: I-ViT's encoder block, every step integer arithmetic and bit shifts.

Shiftmax, ShiftGELU and I-LayerNorm are subcircuits made of the integer vocabulary (`binary`
shifts and floor divisions, `reduce`, `clamp`, `constant`), so their figures show the integer
arithmetic; the linear maps are `int_linear` (int8 x int8 -> int32) followed by `requantize`
(HAWQ-V3's dyadic b/2^c). Scales live in the calibrated buffers (multipliers, shifts, x₀,
integer biases), loaded with the quantised weights.
"""

from __future__ import annotations

from ncd.circuits.builder import Builder

from . import entry

IVIT = (
    "Li & Gu, I-ViT: Integer-only Quantization for Efficient Vision Transformer Inference "
    "(ICCV 2023); Yao et al., HAWQ-V3: Dyadic Neural Network Quantization (ICML 2021)"
)
SIZES = {"B": 2, "T": 8, "H": 2, "K": 16, "F": 64}
# Shiftmax's and ShiftGELU's exponent offsets: ShiftExp's results are scaled by 2^n.
N_SOFTMAX, N_GELU = 16, 23
# IntDiv's output bits: k_out = 8, from M = 31 (2^31 − 1 over the sum), shift M − (k_out − 1).
INT_DIV_SHIFT = 24


def _consts(b: Builder, **values):
    """Integer constants (int32 scalars) by name."""
    return {k: b.box("constant", {}, k, value=v) for k, v in values.items()}


def _shift_exp(b: Builder, i, x0, c, tag: str = ""):
    """ShiftExp (I-ViT Sec. 3.3, the exponential within Shiftmax's eqs. 7 to 13), for I ≤ 0 at
    scale S, x₀ = ⌊−1/S⌋, n = c["n"]: e^x = 2^(x log₂e) with log₂e ≈ 1.0111b, so
    I_p = I + (I ≫ 1) − (I ≫ 4), clipped at n·x₀; q = ⌊I_p / x₀⌋, r = I_p − q·x₀, so
    2^(S I_p) = 2^(S r) ≫ q; 2^(S r) ≈ S r/2 + 1 = S ((r ≫ 1) − x₀); the result
    ((r ≫ 1) − x₀) ≪ (n − q) has scale S/2^n."""
    with b.group("ShiftExp"):
        ip = b.binary(i, b.binary(i, c["one"], "shift_right", name=f"half{tag}"), "add",
                      name=f"log2e_a{tag}")  # fmt: skip
        ip = b.binary(ip, b.binary(i, c["four"], "shift_right", name=f"sixteenth{tag}"), "sub",
                      name=f"log2e{tag}", label="× log₂e")  # fmt: skip
        ip = b.binary(ip, b.mul(c["n"], x0, name=f"n_x0{tag}"), "maximum", name=f"clip{tag}")
        q = b.binary(ip, x0, "floordiv", name=f"q{tag}")
        r = b.sub(ip, b.mul(q, x0, name=f"q_x0{tag}"), name=f"r{tag}")
        e = b.sub(b.binary(r, c["one"], "shift_right", name=f"r_half{tag}"), x0,
                  name=f"lin{tag}", label="2^(Sr)")  # fmt: skip
        return b.binary(e, b.sub(c["n"], q, name=f"n_q{tag}"), "shift_left", name=f"pow{tag}")


def _int_div(b: Builder, num, den, c, tag: str = ""):
    """IntDiv (I-ViT Sec. 3.3, the division closing eqs. 7 to 13):
    (⌊(2^31 − 1)/den⌋ · num) ≫ (31 − (k_out − 1)), num/den at scale 2^−(k_out − 1), k_out = 8."""
    f = b.binary(c["big"], den, "floordiv", name=f"factor{tag}", label="⌊(2³¹−1)/Σ⌋")
    return b.binary(b.mul(f, num, name=f"scaled{tag}"), c["out_shift"], "shift_right",
                    name=f"div{tag}")  # fmt: skip


def shiftmax(axes: str = "B T H S", over: str = "S"):
    """Shiftmax (I-ViT Sec. 3.3, eqs. 7 to 13): softmax over `over` of int8 scores at scale S,
    the maximum subtracted (eq. 7), ShiftExp, the row sum and IntDiv."""
    b = Builder("shiftmax", title="Shiftmax", sizes=dict(SIZES))
    s = b.input("s", axes, dtype="int8")
    c = _consts(b, one=1, four=4, n=N_SOFTMAX, big="2**31 - 1", out_shift=INT_DIV_SHIFT)
    x0 = b.box("constant", {}, "x0", label="x₀ = ⌊−1/S⌋", value=-1)
    i = b.cast(s, "int32", name="widen")
    i = b.sub(i, b.reduce(i, over, "max", name="max"), name="delta", label="I − I_max")
    e = _shift_exp(b, i, x0, c)
    p = _int_div(b, e, b.reduce(e, over, "sum", name="sum"), c)
    b.output("p", b.cast(p, "int8", name="narrow"))
    return b.build()


def shiftgelu(axes: str = "B T F", over: str = "F"):
    """ShiftGELU (I-ViT Sec. 3.4, eqs. 14 to 16): GELU(x) ≈ x·σ(1.702x), 1.702 ≈ 1.1011b as
    shifts, σ(S I_p) = e^(S(I_p − I_max)) / (e^(S(I_p − I_max)) + e^(−S I_max)) with I_max the
    token's maximum, each exponential by ShiftExp and the quotient by IntDiv; int32 out at
    scale S/2^7."""
    b = Builder("shiftgelu", title="ShiftGELU", sizes=dict(SIZES))
    u = b.input("u", axes, dtype="int8")
    c = _consts(b, one=1, three=3, four=4, n=N_GELU, big="2**31 - 1", out_shift=INT_DIV_SHIFT)
    x0 = b.box("constant", {}, "x0", label="x₀ = ⌊−1/S⌋", value=-1)
    i = b.cast(u, "int32", name="widen")
    with b.group("× 1.702"):
        ip = b.add(i, b.binary(i, c["one"], "shift_right", name="sh1"), name="p1")
        ip = b.add(ip, b.binary(i, c["three"], "shift_right", name="sh3"), name="p3")
        ip = b.add(ip, b.binary(i, c["four"], "shift_right", name="sh4"), name="p4")
    m = b.reduce(ip, over, "max", name="max")
    e1 = _shift_exp(b, b.sub(ip, m, name="delta"), x0, c, "_num")
    e2 = _shift_exp(b, b.unary(m, "neg", name="neg_max"), x0, c, "_one")
    sig = _int_div(b, e1, b.add(e1, e2, name="den"), c)
    b.output("g", b.mul(i, sig, name="gate", label="x·σ"))
    return b.build()


def newton_step():
    """One step of I-LayerNorm's integer square root: k ← (k + ⌊v/k⌋) ≫ 1."""
    b = Builder("isqrt_step", title="Newton step", sizes=dict(SIZES))
    k = b.input("k", "B T", dtype="int32")
    v = b.input("var", "B T", dtype="int32")
    one = b.box("constant", {}, "one", value=1)
    s = b.add(k, b.binary(v, k, "floordiv", name="v_over_k"), name="sum")
    b.output("k", b.binary(s, one, "shift_right", name="halve"))
    b.output("var", v)  # carried to the next step
    return b.build()


def ilayernorm():
    """I-LayerNorm (I-ViT Sec. 3.5, eqs. 17 to 19): mean μ = round(ΣI/D), y = I − μ,
    var = Σy², std by the integer Newton iteration k ← (k + ⌊var/k⌋) ≫ 1 (eq. 19), ten steps
    from 2¹⁶ as the authors' released code runs it, then y·⌊2³⁰/std⌋ + ⌊β/(γ S)⌋ at scale
    S = √D/2³⁰ (γ in the next requantisation's multipliers)."""
    b = Builder("ilayernorm", title="I-LayerNorm", sizes={**SIZES, "D": 32})
    x = b.input("x", "B T D", dtype="int8")
    c = _consts(b, one=1, d="D", two_d="2*D", big="2**30")
    i = b.cast(x, "int32", name="widen")
    with b.group("Mean"):
        s = b.reduce(i, "D", "sum", name="sum")
        twice = b.binary(s, c["one"], "shift_left", name="twice")
        mu = b.binary(b.add(twice, c["d"], name="plus_d"), c["two_d"], "floordiv", name="mean",
                      label="round(Σ/D)")  # fmt: skip
    y = b.sub(i, mu, name="centre")
    with b.group("Integer square root"):
        var = b.reduce(b.unary(y, "square", name="square"), "D", "sum", name="var")
        k0 = b.box("clamp", {"x": var}, "start", low="2**16", high="2**16", label="2¹⁶")
        std = b.call(newton_step(), repeat=10, name="isqrt", label="Newton step", k=k0, var=var)
        std = std["k"]
    f = b.binary(c["big"], std, "floordiv", name="inv_std", label="⌊2³⁰/std⌋")
    bias = b.box("constant", {}, "bias", axes="D", label="⌊β/γS⌋", value=0)
    b.output("y", b.add(b.mul(y, f, name="normalise"), bias, name="shift"))
    return b.build()


def _requant(b: Builder, x, name, dtype="int8", axes=""):
    return b.box("requantize", {"x": x}, name, dtype=dtype, axes=axes)


def _int_linear(b: Builder, x, over, out, name, label):
    return b.box("int_linear", {"x": x}, name, over=over, out=out, label=label)


@entry("ivit_block", "I-ViT: integer-only ViT encoder block", IVIT)
def ivit_block():
    """I-ViT's integer-only encoder block (Li & Gu 2023), pre-norm as ViT: x + MHA(LN(x)),
    then + MLP(LN(.)), with int8 activations and weights, every step integer.

    Implements: Li & Gu (2023), I-ViT, Shiftmax (Sec. 3.3, eqs. 7 to 13) for the attention's
    softmax, ShiftGELU (Sec. 3.4, eqs. 14 to 16) for the MLP's GELU, I-LayerNorm (Sec. 3.5,
    eqs. 17 to 19) for both LayerNorms, and the dyadic arithmetic of linear operations
    (Sec. 3.2), I' = (b · I) ≫ c with b/2^c = S_in/S_out (Yao et al. 2021, HAWQ-V3 Sec. 3,
    dyadic quantisation), after every integer product and around every residual add.

    Step by step:

    - linear maps and both attention products: int8 × int8 accumulated in int32, then
      requantised dyadically, I' = (b · I) ≫ c with b/2^c = S_in/S_out (I-ViT Sec. 3.2,
      dyadic arithmetic for linear operations; HAWQ-V3 Sec. 3, dyadic quantisation), rounding
      half up, clipped to int8; the score scale 1/√K is folded into the scores' b/2^c;
    - Shiftmax (I-ViT Sec. 3.3, eqs. 7 to 13) over the keys, int8 probabilities at scale 2⁻⁷;
    - ShiftGELU (Sec. 3.4, eqs. 14 to 16) in the MLP;
    - I-LayerNorm (Sec. 3.5, eqs. 17 to 19) with its integer Newton square root; γ rides in
      the per-channel multipliers of the requantisation that follows it;
    - residual adds in int32: both branches requantised to one int32 scale, added, and the
      sum requantised to int8 (HAWQ-V3 Sec. 3.3).

    Inference only: integer arithmetic has no gradient, so there is no training check; the
    buffers (int8 weights, int32 biases, b and c, x₀, the norms' integer biases) come from a
    calibration of a float block (tests/gallery/test_ivit.py shows one). Shift widths:
    ShiftExp's n = 16 in Shiftmax, 23 in ShiftGELU; IntDiv from 2³¹ − 1 with k_out = 8.
    I-LayerNorm's factor is ⌊2³⁰/std⌋ (the authors' ⌊(2³¹ − 1)/std⌋ halved before the
    product rather than after, so y·factor stays within int32)."""
    b = Builder(
        "ivit_block",
        title="I-ViT integer-only encoder block",
        paper=IVIT,
        doc="int8 ViT block: integer linear maps with dyadic requantisation, Shiftmax, "
        "ShiftGELU and I-LayerNorm in integer arithmetic and bit shifts.",
        axes={"D": "H*K", "V": "K"},
        sizes=dict(SIZES),
    )
    x = b.input("x", "B T D", dtype="int8")
    iln, smax, sgelu = ilayernorm(), shiftmax(), shiftgelu()
    with b.group("Residual Component"):
        h = b.call(iln, name="ln1", label="I-LayerNorm", x=x)
        h = _requant(b, h, "ln1_q", axes="D")
    with b.group("Multi-Head Attention"):
        q = _requant(b, _int_linear(b, h, "D", "H K", "q_proj", "L^Q"), "q_q")
        k = _requant(b, _int_linear(b, h, "D", "H K", "k_proj", "L^K"), "k_q")
        v = _requant(b, _int_linear(b, h, "D", "H V", "v_proj", "L^V"), "v_q")
        k = b.rename(k, T="S", name="k_keys")
        v = b.rename(v, T="S", name="v_keys")
        s = b.contract(b.cast(q, "int32", name="q32"), b.cast(k, "int32", name="k32"),
                       over="K", name="scores")  # fmt: skip
        s = _requant(b, s, "scores_q")
        p = b.call(smax, name="softmax", label="Shiftmax", s=s)
        o = b.contract(b.cast(p, "int32", name="p32"), b.cast(v, "int32", name="v32"),
                       over="S", name="mix")  # fmt: skip
        o = b.merge_axes(_requant(b, o, "mix_q"), "H V", "D", name="heads")
        a = _int_linear(b, o, "D", "D", "o_proj", "L^O")
    with b.group("Residual add (attention)"):
        r = b.add(_requant(b, x, "skip1", "int32"), _requant(b, a, "branch1", "int32"),
                  name="res1")  # fmt: skip
        x1 = _requant(b, r, "res1_q")
    with b.group("MLP"):
        h = _requant(b, b.call(iln, name="ln2", label="I-LayerNorm", x=x1), "ln2_q", axes="D")
        u = _requant(b, _int_linear(b, h, "D", "F", "ff_up", "L₊"), "ff_up_q")
        g = _requant(b, b.call(sgelu, name="act", label="ShiftGELU", u=u), "act_q")
        m = _int_linear(b, g, "F", "D", "ff_down", "L₊")
    with b.group("Residual add (MLP)"):
        r = b.add(_requant(b, x1, "skip2", "int32"), _requant(b, m, "branch2", "int32"),
                  name="res2")  # fmt: skip
    b.output("y", _requant(b, r, "res2_q"))
    return b.build()
