"""Integer-only ViT operations in plain PyTorch integer arithmetic: the ground truth the Triton
kernels match bit for bit.

Dyadic requantisation and the int8 matrix product with int32 accumulation follow HAWQ-V3
(Yao et al., ICML 2021); Shiftmax, ShiftGELU and I-LayerNorm follow I-ViT (Li & Gu, ICCV
2023). Every step below is one equation of README.md, worked on int32 / int64 tensors with
additions, multiplications, shifts and integer divisions. Floats appear only on the host,
before any tensor arithmetic, to turn float scales into integer constants (`dyadic`,
`exp_unit`, `layernorm_constants`), as the papers do ahead of inference.

Quantisation is symmetric throughout: a real value is `scale * integer`, no zero point.
"""

import math

import torch

EXP_BITS = 15  # n: 2^(x log2 e) is resolved down to 2^-n, then flushed to 0
SIGMOID_BITS = 7  # ShiftGELU's sigmoid: an unsigned 7-bit fraction (scale 2^-7)
DIV_BITS = 31  # I-ViT's IntDiv: floor((2^31 - 1) / sum) for ShiftGELU's per-element division
SOFTMAX_DIV_BITS = 62  # Shiftmax's row division: floor(2^62 / row sum), the sum in int64
# F: I-LayerNorm's mean and centred values carry F fractional bits: 8 for int8 inputs, 4 for
# int32 ones (|x| < 2^15), so that the sum of squares fits int64 at D = 2^16 either way
LN_MEAN_BITS = {torch.int8: 8, torch.int32: 4}
LN_SQRT_BITS = 11  # G: the integer square root is taken of the variance times 2^(2G)
LN_RECIP_BITS = 52  # R: floor(2^R / std) normalises the centred values
LN_Z_BITS = 16  # the normalised values carry 16 fractional bits before the affine map
LN_AFFINE_BITS = 30  # W: gamma / out_scale is an integer over 2^(W - 16), beta / out_scale over 2^W
ISQRT_STEPS = 10  # I-ViT's bound on the iterations of the integer square root
MAX_ACC_K = (2**31 - 1) // (128 * 128)  # the longest int8 dot product an int32 holds


def _int(x: torch.Tensor, dtype=torch.int32) -> torch.Tensor:
    return x if x.dtype == dtype else x.to(dtype)


def _rshift_round(v: torch.Tensor, shift) -> torch.Tensor:
    """floor(v / 2^shift + 1/2): round to nearest, halves upwards (towards +inf), as an
    addition of 2^(shift - 1) and an arithmetic shift right; shift >= 1."""
    one = torch.ones((), dtype=v.dtype, device=v.device)
    return (v + (one << (shift - 1))) >> shift


def _clamp_bits(v: torch.Tensor, bits: int) -> torch.Tensor:
    return v.clamp(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


# ---------------------------------------------------------------------------- host constants


def dyadic(scale: float) -> tuple[int, int]:
    """HAWQ-V3's dyadic number b / 2^c for a positive float scale: frexp gives scale = m 2^e
    with m in [0.5, 1); b = round(m 2^31) (a 31-bit multiplier in [2^30, 2^31]) and
    c = 31 - e, so that b / 2^c is scale to 31 significant bits. Requires 1 <= c <= 62."""
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"dyadic: scale: expected a positive finite number, found {scale!r}")
    m, e = math.frexp(scale)
    b, c = round(m * 2**31), 31 - e
    if b == 2**31:  # m rounded up to 1
        b, c = 2**30, c - 1
    if not 1 <= c <= 62:
        raise ValueError(
            f"dyadic: scale: expected between 2^-31 and 2^30 (shift 1..62), found {scale!r}"
        )
    return b, c


def exp_unit(scale: float, op: str = "shiftmax") -> int:
    """I_0 = floor(1 / scale): the integer that stands for 1 in Shiftmax's exponent (I-ViT
    eq. 9). The exponent's integer part is how many I_0 fit in -x log2 e."""
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"{op}: scale: expected a positive finite number, found {scale!r}")
    i0 = math.floor(1.0 / scale)
    if not 1 <= i0 < 2 ** (30 - EXP_BITS):
        raise ValueError(
            f"{op}: scale: expected in (2^-{30 - EXP_BITS}, 1] (floor(1/scale) an integer from "
            f"1 to 2^{30 - EXP_BITS} - 1, so that exponentials fit int32), found {scale!r}"
        )
    return i0


def layernorm_constants(weight, bias, out_scale: float, D: int, device=None):
    """I-LayerNorm's affine map as integers: m_j = round(gamma_j 2^(W-16) / out_scale) (int64,
    |m_j| < 2^31) and b_j = round(beta_j 2^W / out_scale) (int64), W = LN_AFFINE_BITS, so
    that out_j = (z_j 2^16 m_j + b_j) / 2^W in units of out_scale. weight, bias: [D] float
    tensors or None (gamma = 1, beta = 0)."""
    op = "i_layernorm"
    if not (isinstance(out_scale, (int, float)) and math.isfinite(out_scale) and out_scale > 0):
        raise ValueError(f"{op}: out_scale: expected a positive finite number, found {out_scale!r}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and (not isinstance(t, torch.Tensor) or tuple(t.shape) != (D,)):
            raise ValueError(
                f"{op}: {name}: expected a float tensor [{D}] (D of x [..., D]) or None, found "
                f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}"
            )
    if device is None:
        device = (
            weight.device if weight is not None else (bias.device if bias is not None else "cpu")
        )
    gamma = torch.ones(D, dtype=torch.float64, device=device) if weight is None else weight.double()
    beta = torch.zeros(D, dtype=torch.float64, device=device) if bias is None else bias.double()
    m = torch.round(gamma * 2.0 ** (LN_AFFINE_BITS - LN_Z_BITS) / out_scale).to(torch.int64)
    b = torch.round(beta * 2.0**LN_AFFINE_BITS / out_scale).to(torch.int64)
    if m.device.type == "cpu":  # values on the host are checked; CUDA ones trusted (no sync)
        if not bool((m.abs() < 2**31).all()):
            raise ValueError(
                f"{op}: weight / out_scale: expected below 2^{31 - LN_AFFINE_BITS + LN_Z_BITS} "
                f"in magnitude, found {float((gamma / out_scale).abs().max())}"
            )
        if not bool((b.abs() < 2**61).all()):
            raise ValueError(
                f"{op}: bias / out_scale: expected below 2^{61 - LN_AFFINE_BITS} in magnitude, "
                f"found {float((beta / out_scale).abs().max())}"
            )
    return m.to(device), b.to(device)


# ---------------------------------------------------------------------------- HAWQ-V3


def requantize_reference(acc, multiplier, shift, bits: int = 8) -> torch.Tensor:
    """Dyadic requantisation: clamp(round((acc b) / 2^c)) to `bits` signed bits, the rounding
    to nearest with halves upwards (b, c from `dyadic`). acc: int32 or int64 [..., N];
    multiplier b and shift c: ints or int tensors broadcasting against acc (per channel:
    [N]). Returns int8 (bits <= 8) or int32."""
    b = torch.as_tensor(multiplier, dtype=torch.int64, device=acc.device)
    c = torch.as_tensor(shift, dtype=torch.int64, device=acc.device)
    y = _clamp_bits(_rshift_round(_int(acc, torch.int64) * b, c), bits)
    return y.to(torch.int8 if bits <= 8 else torch.int32)


def int8_matmul_reference(a, b, bias=None, multiplier=None, shift=None, bits: int = 8):
    """a [M, K] int8 @ b [K, N] int8 with int32 accumulation -> int32 [M, N]; plus bias
    (int32 [N], in the accumulator's units) and, given multiplier and shift, requantised
    (`requantize_reference`). The products are formed in int64 on the CPU; CUDA has no
    integer matrix product in PyTorch, so there the int8 values are multiplied in float64,
    whose sums are exact integers here (|sum| <= K 2^14 < 2^53)."""
    if a.is_cuda:
        acc = (a.double() @ b.double()).to(torch.int64)
    else:
        acc = a.to(torch.int64) @ b.to(torch.int64)
    acc = acc.to(torch.int32)  # exact: K <= MAX_ACC_K
    if bias is not None:
        acc = acc + _int(bias)
    if multiplier is None:
        return acc
    return requantize_reference(acc, multiplier, shift, bits)


# ---------------------------------------------------------------------------- I-ViT


def shift_exp(d: torch.Tensor, i0: int, n: int = EXP_BITS) -> torch.Tensor:
    """e ~ 2^n 2^(d s log2 e) / s for integers d <= 0 (int32) of scale s ~ 1 / i0, in units of
    s / 2^n (I-ViT eqs. 7-11):

    - p = d + (d >> 1) - (d >> 4): d log2 e with log2 e ~ 1.0111b;
    - -p = q i0 + r, 0 <= r < i0: 2^(p s) = 2^-q 2^(-r s);
    - 2^(-r s) ~ 1 - r s / 2 (linear on [0, 1)), that is (2 i0 - r) / 2 in units of s;
    - 2^-q by a shift: e = ((2 i0 - r) << (n - q)) >> 1; e = 0 where q > n.

    d below -(n + 1) i0 gives q > n whatever its size, so it is clamped there first.
    """
    d = torch.clamp(_int(d), min=-(n + 1) * i0)
    p = d + (d >> 1) - (d >> 4)
    q = torch.div(-p, i0, rounding_mode="floor")  # -p >= 0
    r = -p - q * i0
    qs = torch.clamp(q, max=n)
    e = ((2 * i0 - r) << (n - qs)) >> 1
    return torch.where(q > n, torch.zeros_like(e), e)


def shiftmax_reference(x, scale: float, bits: int = 8):
    """Shiftmax over the last axis (I-ViT eqs. 7-13). x: int8 or int32 [..., D] of scale
    `scale` (at most 1). Returns (y int8 [..., D], 2^-(bits - 1)): y / 2^(bits - 1) ~
    softmax(x scale), y in [0, 2^(bits - 1) - 1].

    - d = x - max(x) <= 0 (in int64, then clamped into int32: see `shift_exp`);
    - e = shift_exp(d): the exponentials in units of scale / 2^n;
    - IntDiv: f = floor(2^62 / sum(e)) (int64; one division per row), y = (e f) >> (62 -
      bits + 1), capped at 2^(bits - 1) - 1 (reached only by a row whose sum is one power of
      two, all in one element).
    """
    i0 = exp_unit(scale, "shiftmax")
    x = _int(x, torch.int64)
    d = x - x.amax(dim=-1, keepdim=True)
    d = torch.clamp(d, min=-(EXP_BITS + 1) * i0).to(torch.int32)
    e = shift_exp(d, i0).to(torch.int64)
    total = e.sum(dim=-1, keepdim=True)  # >= e(0) = i0 2^n > 0
    f = torch.div(torch.full_like(total, 1 << SOFTMAX_DIV_BITS), total, rounding_mode="floor")
    y = (e * f) >> (SOFTMAX_DIV_BITS - bits + 1)
    y = torch.clamp(y, max=(1 << (bits - 1)) - 1)
    return y.to(torch.int8), 2.0 ** -(bits - 1)


def shift_sigmoid(p: torch.Tensor, i0: int) -> torch.Tensor:
    """sigmoid(p s) as an unsigned 7-bit fraction (int32, units 2^-7), p int32 of scale s ~
    1 / i0 (I-ViT eq. 15 with the maximum taken per element, max(p, 0)):
    sigmoid(v) = e^(v - m) / (e^(v - m) + e^(-m)), so with t = shift_exp(-|p|) and
    e0 = shift_exp(0) = i0 2^n, the numerator is e0 for p >= 0 and t below; IntDiv with
    I-ViT's 2^31 - 1: f = floor((2^31 - 1) / (e0 + t)) (int32), sigmoid = (num f) >> 24."""
    e0 = i0 << EXP_BITS
    t = shift_exp(-p.abs(), i0)
    num = torch.where(p >= 0, torch.full_like(t, e0), t)
    f = torch.div(torch.full_like(t, (1 << DIV_BITS) - 1), e0 + t, rounding_mode="floor")
    return ((num.to(torch.int64) * f) >> (DIV_BITS - SIGMOID_BITS)).to(torch.int32)


def shiftgelu_reference(x, scale: float, out_scale: float | None = None, bits: int = 8):
    """ShiftGELU (I-ViT eqs. 14-16): GELU(v) ~ v sigmoid(1.702 v). x: int8 or int32 (|x| <
    2^24) of scale `scale` (at most 1); out_scale defaults to scale. Returns (y int8, out_scale).

    - p = x + (x >> 1) + (x >> 3) + (x >> 4): 1.702 x with 1.702 ~ 1.1011b;
    - s = shift_sigmoid(p): sigmoid(1.702 x scale) in units of 2^-7;
    - y = x s (scale scale 2^-7), requantised to out_scale with the dyadic b / 2^c of
      scale 2^-7 / out_scale (for out_scale = scale: y = round(x s / 2^7)).
    """
    out_scale = scale if out_scale is None else out_scale
    i0 = exp_unit(scale, "shiftgelu")
    b, c = dyadic(scale * 2.0**-SIGMOID_BITS / out_scale)
    x = _int(x)
    p = x + (x >> 1) + (x >> 3) + (x >> 4)
    s = shift_sigmoid(p, i0)
    g = x.to(torch.int64) * s
    return requantize_reference(g, b, c, bits), float(out_scale)


def isqrt_newton(v: torch.Tensor) -> torch.Tensor:
    """floor(sqrt(v)) for int64 v in [0, 2^62), by I-ViT's iteration (eq. 19) I_{i+1} =
    (I_i + floor(v / I_i)) >> 1, started at 2^ceil(bits(v) / 2) >= sqrt(v) so that it
    decreases to floor(sqrt(v)); the stop rule I_{i+1} >= I_i is a minimum, ISQRT_STEPS
    iterations. bits(v) by a binary search of shifts."""
    bits = torch.zeros_like(v)
    w = v.clone()
    for k in (32, 16, 8, 4, 2, 1):
        hi = (w >> k) > 0
        w = torch.where(hi, w >> k, w)
        bits = bits + torch.where(hi, k, 0)
    bits = bits + (w > 0).to(v.dtype)  # v < 2^bits
    s = torch.ones_like(v) << ((bits + 1) >> 1)
    for _ in range(ISQRT_STEPS):
        nxt = (s + torch.div(v, s.clamp(min=1), rounding_mode="floor")) >> 1  # v = 0 reaches 0
        s = torch.minimum(s, nxt)
    return s


def i_layernorm_reference(
    x, weight=None, bias=None, out_scale: float = 2.0**-4, bits: int = 8, constants=None
):
    """I-LayerNorm over the last axis (I-ViT eqs. 17-19). x: int8 or int32 (|x| < 2^15)
    [..., D], D <= 2^16; its scale cancels. weight, bias: float [D] or None; out_scale: the output's
    scale. Returns (y int8 [..., D], out_scale), y ~ LayerNorm(x) gamma + beta over out_scale.
    constants: (m, b) from `layernorm_constants` where computed ahead (then weight and bias
    are not read).

    With F = LN_MEAN_BITS[x.dtype], G = LN_SQRT_BITS, R = LN_RECIP_BITS (all int64):
    - mu = round(sum(x) 2^F / D) (halves up; an integer division), y = (x << F) - mu;
    - v = round(sum(y^2) / D): the variance in units of 2^-2F;
    - s = isqrt(max(v, 1) << 2G) ~ sigma 2^(F + G) (a constant row has y = 0, so z = 0);
    - z16 = round(y floor(2^R / s) / 2^(R - G - 16)) ~ (x - mean) / sigma 2^16;
    - out = clamp(round((z16 m_j + b_j) / 2^W)) with m_j, b_j from `layernorm_constants`.
    """
    D = x.shape[-1]
    F = LN_MEAN_BITS[x.dtype]
    if constants is None:
        constants = layernorm_constants(weight, bias, out_scale, D, device=x.device)
    m, b = constants
    x = _int(x, torch.int64)
    total = x.sum(dim=-1, keepdim=True)
    mu = torch.div((total << (F + 1)) + D, 2 * D, rounding_mode="floor")
    y = (x << F) - mu
    v = torch.div((y * y).sum(dim=-1, keepdim=True) + D // 2, D, rounding_mode="floor")
    s = isqrt_newton(torch.clamp(v, min=1) << (2 * LN_SQRT_BITS))
    f = torch.div(torch.full_like(s, 1 << LN_RECIP_BITS), s, rounding_mode="floor")
    z = _rshift_round(y * f, LN_RECIP_BITS - LN_SQRT_BITS - LN_Z_BITS)
    out = _clamp_bits(_rshift_round(z * m + b, LN_AFFINE_BITS), bits)
    return out.to(torch.int8), float(out_scale)
