"""Long-convolution token mixers: the Hyena operator, whose filters are as long as the sequence
and made by a small network of the positions, applied by FFT (`long_conv`)."""

from __future__ import annotations

import math

from ncd.circuits.builder import Builder

from . import entry

HYENA = "Poli et al., Hyena Hierarchy: Towards Larger Convolutional Language Models (ICML 2023)"

SHORT = 3
"""Width of the short causal convolution over the projections (safari's
`short_filter_order`)."""

FILTER_INNER = 2
"""Linear(O, O) → Sin layers between the filter FFN's first and last maps (safari's
`num_inner_mlps`)."""

# Exponential modulation (safari's ExponentialModulation): Δ = linspace(log(target)/slow,
# log(target)/fast, D) with target 1e-2, slow 1.5, fast 0.3 = slow/5, so
# Δ_d = log(1e-2)/1.5 · (1 + 4d/(D − 1)).
_DELTA_FIRST = "-2*log(100)/3"  # log(1e-2)/1.5
_DELTA_SPREAD = "4/(D-1)"
# −2πf/T, f = 1e-4 (the one band of a 3-feature encoding). The irrational numbers are scale
# factors, evaluated in the module's own precision: a float32 constant box would keep float32
# rounding in a float64 module.
_ANGLE = f"{-2 * math.pi * 1e-4!r}/T"


def _hyena_filter(b: Builder, inner: int = FILTER_INNER):
    """The implicit filter h [T D]: h_t = FFN(z_t) ⊙ exp(−t/(T−1) · |Δ|), z_t the positional
    features [t/(T−1), cos(2πft/T), −sin(2πft/T)] (f = 1e-4), the FFN's Sin activations
    sharing one learned frequency per feature of O."""
    with b.group("Positional features z"):
        t = b.positions("T", name="t")
        t_norm = b.scale(t, "1/(T-1)", name="t_norm")  # safari's t = linspace(0, 1, T)
        angle = b.scale(t, _ANGLE, name="angle", label="−2πf/T")  # exp(−i·2πft/T) = cos + i·sin
        z = b.concat(
            b.split_axis(t_norm, "T", "T Z", name="t_feature"),  # [T 1], as safari's t[..., None]
            b.unary(angle, "cos", name="real"),
            b.unary(angle, "sin", name="imag"),
            axis="Z",
            name="z",
        )  # T Z, Z = 3 after the concatenation: emb_dim
    with b.group("FFN"):
        freq = b.param("O", init="ones", name="freq", label="ω")
        h = b.linear(z, "Z", "O", name="ffn1", label="L^1")
        for i in range(1, inner + 2):
            h = b.unary(b.mul(h, freq, name=f"ffn{i}_freq"), "sin", name=f"ffn{i}_sin")
            last = i == inner + 1
            h = b.linear(h, "O", "D" if last else "O", bias=not last, name=f"ffn{i + 1}",
                         label=f"L^{i + 1}")  # fmt: skip
    with b.group("Window"):
        d = b.scale(b.positions("D", name="d"), _DELTA_SPREAD, name="spread")
        one = b.box("constant", {}, "one", value="1", dtype="float32")
        delta = b.scale(b.add(d, one, name="from_one"), _DELTA_FIRST, name="delta")  # Δ_d
        delta = b.unary(delta, "abs", name="abs_delta")
        rate = b.scale(b.mul(t_norm, delta, name="rate"), -1, name="neg_rate")
        decay = b.unary(rate, "exp", name="decay")  # T D
    return b.mul(h, decay, name="modulate")


@entry("hyena_block", "Hyena operator (order 2)", HYENA)
def hyena_block():
    """The Hyena operator of order 2 as its reference code (HazyResearch's safari,
    `HyenaOperator`) computes it: projections and a short causal convolution, then two
    data-controlled gates around one long convolution whose filter a small network makes
    from the positions.

    Implements: Poli et al. (2023), the order-2 Hyena operator in safari's form:
    (x⁰, x¹, v) = ShortConv(u W_in + b_in), three D-channel slices of its 3·D channels (a
    causal depthwise convolution of width 3), y = (x⁰ ⊙ (h ∗ (x¹ ⊙ v) + β ⊙ (x¹ ⊙ v)))
    W_out + b_out, where (h ∗ x)_t = Σ_{s ≤ t} h_{t−s} x_s per channel and β is the
    per-channel skip of safari's `fftconv` (its D); and the implicit filter
    h_t = Window(t) · FFN(PositionalEncoding(t)) with PositionalEncoding(t) = z_t =
    [t/(T−1), cos(2πft/T), −sin(2πft/T)] (f = 1e-4), FFN = Linear(3, O) → sin(ω ⊙ ·) →
    (Linear(O, O) → sin(ω ⊙ ·)) twice → Linear(O, D, no bias) with ω one learned frequency
    per feature, and Window(t)_d = exp(−t/(T−1) · |Δ_d|), Δ = linspace(log(10⁻²)/1.5,
    log(10⁻²)/0.3, D).

    The paper writes order N as N gates x^n alternating with N long convolutions h^n from
    z¹ = v; safari makes N − 1 implicit filters and gates before each convolution (`for o,
    x_i in enumerate(reversed(x[1:]))`: x¹ first), x⁰ gating the last result, so order 2 is
    one long convolution between two gates. The long convolution is the `long_conv` box, by
    FFT in O(T log T) (safari's `fftconv_ref` pads to 2T). The circuit's T is also safari's
    `l_max`, the length that t/(T−1) and 2πft/T divide by. Departures from safari's modules,
    all at their defaults otherwise (one head, inner factor 1, no dropout, identity output
    activation, window shift 0): `PositionalEmbedding` registers z as a parameter initialised
    to these features (learning rate 1e-5), here z is computed, as the paper's positional
    encoding. As in safari's filter config, the FFN has two inner layers (`num_inner_mlps:
    2`); safari's Sin is one module reused by every activation, so ω is one parameter; Δ is
    a buffer (`modulation_lr` 0), drawn here from the positions along D.
    """
    b = Builder("hyena_block", title="Hyena operator (order 2)", paper=HYENA,
                doc="y = (x⁰ ⊙ (h ∗ (v ⊙ x¹) + β ⊙ v ⊙ x¹)) W_out: gates around one long "
                    "convolution whose filter h [T D] an FFN makes from the positions.",
                axes={"E": "S*D", "Z": "1"},
                sizes={"B": 2, "T": 64, "D": 16, "S": 3, "O": 16})  # fmt: skip
    u = b.input("u", "B T D")
    with b.group("Projections"):
        x = b.linear(u, "D", "E", name="in_proj", label="L^in")  # E = 3·D: x⁰, x¹, v
        x = b.box("short_conv", {"x": x}, "short_filter", axis="T", channel="E", kernel=SHORT,
                  bias=True)  # fmt: skip
        x = b.split_axis(x, "E", "S D", name="streams")
        x0, x1, v = (b.index(x, "S", i, name=n) for i, n in enumerate(("x0", "x1", "v")))
    with b.group("Hyena filter"):
        h = _hyena_filter(b)
    with b.group("Gated long convolution"):
        v = b.mul(v, x1, name="gate1")
        y = b.long_conv(v, h, seq="T", name="long_conv")
        skip = b.mul(v, b.param("D", name="filter_bias", label="β"), name="skip")
        y = b.mul(b.add(y, skip, name="conv_out"), x0, name="gate0")
    b.output("y", b.linear(y, "D", "D", name="out_proj", label="L^out"))
    return b.build()
