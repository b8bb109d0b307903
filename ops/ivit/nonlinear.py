"""Integer-only nonlinear ops of I-ViT and HAWQ-V3's requantisation: Triton kernels, launch
wrappers and the public functions (inference only: no autograd).

Each kernel computes exactly the integer steps of reference.py (README.md gives the
equations): int8 or int32 loads, int32 arithmetic, int64 where a product or a row sum needs
it, integer divisions only of non-negative numbers (Triton's division truncates) except the
mean of I-LayerNorm, which is floored explicitly. Row ops (Shiftmax, I-LayerNorm) hold one
row per program; ShiftGELU and the requantisation are elementwise.
"""

import weakref

import torch

from .. import _backend
from .._backend import cdiv, check, launch, pow2, use_triton
from .._traced import kernel_op, tracing
from .._triton import tl, triton
from .reference import (
    DIV_BITS,
    EXP_BITS,
    ISQRT_STEPS,
    LN_AFFINE_BITS,
    LN_MEAN_BITS,
    LN_RECIP_BITS,
    LN_SQRT_BITS,
    LN_Z_BITS,
    SIGMOID_BITS,
    SOFTMAX_DIV_BITS,
    dyadic,
    exp_unit,
    i_layernorm_reference,
    layernorm_constants,
    requantize_reference,
    shiftgelu_reference,
    shiftmax_reference,
)

MAX_ROW = 16384  # the widest row that Shiftmax and I-LayerNorm hold in one program
MAX_LN_ROW = 1 << 16  # I-LayerNorm's bound on D (its int64 ranges), reference included
INTS = (torch.int8, torch.int32)


@triton.jit
def _rshift_round(v, SHIFT: tl.constexpr):
    """floor(v / 2^SHIFT + 1/2) for int64 v, SHIFT >= 1."""
    return (v + (1 << (SHIFT - 1))) >> SHIFT


@triton.jit
def _shift_exp(d, i0, N: tl.constexpr):
    """reference.shift_exp: int32 d <= 0, i0 the integer of 1 -> int32 in units of s / 2^N."""
    d = tl.maximum(d, -(N + 1) * i0)
    p = d + (d >> 1) - (d >> 4)
    q = (-p) // i0
    r = -p - q * i0
    qs = tl.minimum(q, N)
    e = ((2 * i0 - r) << (N - qs)) >> 1
    return tl.where(q > N, 0, e)


@triton.jit
def _shiftmax_kernel(
    x_ptr, y_ptr, D, i0, stride_x, stride_y,
    BITS: tl.constexpr, BLOCK_D: tl.constexpr, N: tl.constexpr, M: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_D)
    mask = cols < D
    x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0).to(tl.int64)
    big = tl.full([BLOCK_D], -(1 << 62), tl.int64)
    mx = tl.max(tl.where(mask, x, big), axis=0)
    d = tl.maximum(x - mx, -(N + 1) * i0).to(tl.int32)
    e = tl.where(mask, _shift_exp(d, i0, N), 0).to(tl.int64)
    total = tl.sum(e, axis=0)
    f = (1 << M) // total
    y = tl.minimum((e * f) >> (M - BITS + 1), (1 << (BITS - 1)) - 1)
    tl.store(y_ptr + row * stride_y + cols, y.to(tl.int8), mask=mask)


@triton.jit
def _shiftgelu_kernel(
    x_ptr, y_ptr, n, i0, mult, shift, QMIN, QMAX,
    BLOCK: tl.constexpr, N: tl.constexpr, DIV: tl.constexpr, SIG: tl.constexpr,
):  # fmt: skip
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0).to(tl.int32)
    p = x + (x >> 1) + (x >> 3) + (x >> 4)
    e0 = i0 << N
    t = _shift_exp(-tl.abs(p), i0, N)
    num = tl.where(p >= 0, e0, t)
    f = ((1 << DIV) - 1) // (e0 + t)
    s = (num.to(tl.int64) * f) >> (DIV - SIG)
    g = x.to(tl.int64) * s
    one = tl.full([BLOCK], 1, tl.int64)
    y = (g * mult + (one << (shift - 1))) >> shift
    y = tl.minimum(tl.maximum(y, QMIN), QMAX)
    tl.store(y_ptr + offs, y.to(tl.int8), mask=mask)


@triton.jit
def _requantize_kernel(
    acc_ptr, y_ptr, mult_ptr, shift_ptr, n, N_COLS, QMIN, QMAX, BLOCK: tl.constexpr,
):  # fmt: skip
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    col = offs % N_COLS
    acc = tl.load(acc_ptr + offs, mask=mask, other=0).to(tl.int64)
    b = tl.load(mult_ptr + col, mask=mask, other=0)
    c = tl.load(shift_ptr + col, mask=mask, other=1)
    one = tl.full([BLOCK], 1, tl.int64)
    y = (acc * b + (one << (c - 1))) >> c
    y = tl.minimum(tl.maximum(y, QMIN), QMAX)
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _floor_div(a, b):
    """floor(a / b) for int64 a of any sign, b > 0 (Triton's // truncates towards zero)."""
    q = a // b
    return q - ((q * b) > a).to(tl.int64)


@triton.jit
def _isqrt(v, STEPS: tl.constexpr):
    """reference.isqrt_newton: floor(sqrt(v)) for int64 v in [0, 2^62)."""
    bits = tl.zeros_like(v)
    w = v
    for k in tl.static_range(6):  # shifts of 32, 16, ..., 1 (a constexpr is not reassigned)
        hi = (w >> (32 >> k)) > 0
        w = tl.where(hi, w >> (32 >> k), w)
        bits = bits + tl.where(hi, 32 >> k, 0)
    bits = bits + (w > 0).to(tl.int64)
    s = tl.full(v.shape, 1, tl.int64) << ((bits + 1) >> 1)
    for _ in tl.static_range(STEPS):
        s = tl.minimum(s, (s + v // tl.maximum(s, 1)) >> 1)
    return s


@triton.jit
def _layernorm_kernel(
    x_ptr, y_ptr, m_ptr, b_ptr, D, stride_x, stride_y, QMIN, QMAX,
    BLOCK_D: tl.constexpr, F: tl.constexpr, G: tl.constexpr, R: tl.constexpr,
    Z: tl.constexpr, W: tl.constexpr, STEPS: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_D)
    mask = cols < D
    x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0).to(tl.int64)
    total = tl.sum(x, axis=0)
    mu = _floor_div((total << (F + 1)) + D, 2 * D)
    y = tl.where(mask, (x << F) - mu, 0)
    v = (tl.sum(y * y, axis=0) + D // 2) // D
    v = tl.maximum(v, 1)
    s = _isqrt(tl.full([1], 1, tl.int64) * (v << (2 * G)), STEPS)
    f = (1 << R) // s
    z = _rshift_round(y * f, R - G - Z)
    m = tl.load(m_ptr + cols, mask=mask, other=0)
    b = tl.load(b_ptr + cols, mask=mask, other=0)
    out = _rshift_round(z * m + b, W)
    out = tl.minimum(tl.maximum(out, QMIN), QMAX)
    tl.store(y_ptr + row * stride_y + cols, out.to(tl.int8), mask=mask)


# ---------------------------------------------------------------------------- launches

ROW_CONFIGS = [triton.Config({}, num_warps=w) for w in (4, 8, 16)]
FLAT_CONFIGS = [triton.Config({"BLOCK": b}, num_warps=w) for b, w in ((1024, 4), (2048, 8),
                                                                        (4096, 8))]  # fmt: skip
INTERPRET_FLAT = {"BLOCK": 256}


def _check_int(x, op, name="x", dtypes=INTS):
    check(isinstance(x, torch.Tensor), op, name, "a torch.Tensor", type(x).__name__)
    check(x.dtype in dtypes, op, f"{name}.dtype", " or ".join(map(str, dtypes)), x.dtype)
    check(x.dim() >= 1, op, f"{name}.shape", "at least 1 dim [..., D]", tuple(x.shape))


def _check_range(x, op, bits: int):
    """int32 inputs within +-2^bits, where they lie on the host (CUDA values are trusted, so
    that a call never waits on the GPU; int8 always fits)."""
    if x.dtype != torch.int32 or x.is_cuda or x.numel() == 0 or torch.compiler.is_compiling():
        return
    lo, hi = int(x.min()), int(x.max())
    check(-(2**bits) <= lo and hi <= 2**bits, op, "int32 x values", f"within +-2^{bits}",
          f"[{lo}, {hi}]")  # fmt: skip


def _check_bits(bits, op):
    check(isinstance(bits, int) and 2 <= bits <= 8, op, "bits", "an int from 2 to 8", bits)


def _rows(x):
    """x as [rows, D] with unit stride along D (a view where it can be)."""
    x2 = x.reshape(-1, x.shape[-1])
    return x2 if x2.stride(-1) == 1 else x2.contiguous()


def _launch_rows(kernel, x, y, *args, **meta):
    rows, D = x.shape
    if rows == 0 or D == 0:
        return
    launch(
        kernel, ROW_CONFIGS, lambda m: (rows,), (x, y, *args), {"BLOCK_D": pow2(D), **meta}, {},
        key=["D"],
    )  # fmt: skip


def shiftmax(x: torch.Tensor, scale: float, bits: int = 8, backend: str = "auto"):
    """Shiftmax (I-ViT): softmax over the last axis of integers, by shifts and one integer
    division per row.

    Args:
        x: int8 or int32 ``[..., D]``, the integers of ``x * scale`` (logits); on the Triton
            path D <= 16384.
        scale: the input's scale, a float in ``(2^-15, 1]``.
        bits: output bits (2..8).
        backend: ``"auto"`` (Triton on CUDA tensors, the reference on CPU), ``"triton"`` or
            ``"reference"``.

    Returns:
        ``(y, y_scale)``: y int8 ``[..., D]`` in ``[0, 2^(bits-1) - 1]`` and
        ``y_scale = 2^-(bits-1)``, ``y * y_scale ~ softmax(x * scale, -1)``.

    >>> y, s = shiftmax(torch.tensor([[0, 10, 20]], dtype=torch.int8), 0.1)
    >>> y.tolist(), s
    ([[12, 33, 82]], 0.0078125)
    """
    op = "shiftmax"
    _check_int(x, op)
    _check_bits(bits, op)
    i0 = exp_unit(scale, op)
    if x.shape[-1] == 0:  # no features: empty, as torch.softmax
        return torch.empty(x.shape, dtype=torch.int8, device=x.device), 2.0 ** -(bits - 1)
    if not use_triton(x, backend, op):
        return shiftmax_reference(x, scale, bits)
    D = x.shape[-1]
    check(D <= MAX_ROW, op, "x.shape[-1] on the Triton path", f"at most {MAX_ROW}", D)
    return _shiftmax(x, i0, bits).reshape(x.shape), 2.0 ** -(bits - 1)


def _shiftmax_rows(x: torch.Tensor, i0: int, bits: int) -> torch.Tensor:
    """Shiftmax's kernel on x [..., D] (D <= MAX_ROW) -> int8 [rows, D]."""
    x2 = _rows(x)
    y = torch.empty(x2.shape, dtype=torch.int8, device=x.device)
    _launch_rows(_shiftmax_kernel, x2, y, x2.shape[1], i0, x2.stride(0), y.stride(0), BITS=bits,
                 N=EXP_BITS, M=SOFTMAX_DIV_BITS)  # fmt: skip
    return y


_shiftmax = kernel_op("ivit_shiftmax", _shiftmax_rows)


def shiftgelu(
    x: torch.Tensor, scale: float, out_scale: float | None = None, bits: int = 8,
    backend: str = "auto",
):  # fmt: skip
    """ShiftGELU (I-ViT): GELU(v) ~ v sigmoid(1.702 v) elementwise on integers, the sigmoid
    from Shiftmax's shift exponential, the output requantised by a dyadic multiplier.

    Args:
        x: int8 or int32 (values within +-2^24) of any shape, the integers of ``x * scale``.
        scale: the input's scale, in ``(2^-15, 1]``.
        out_scale: the output's scale (default ``scale``: GELU(v) lies in (-0.17, max(v, 0)],
            so x's range holds it).
        bits: output bits (2..8).
        backend: as ``shiftmax``.

    Returns:
        ``(y int8 of x's shape, out_scale)``, ``y * out_scale ~ GELU(x * scale)``.

    >>> shiftgelu(torch.tensor([-40, -5, 0, 5, 40], dtype=torch.int8), 0.05)[0].tolist()
    [-1, -2, 0, 3, 38]
    """
    op = "shiftgelu"
    _check_int(x, op)
    _check_range(x, op, 24)
    _check_bits(bits, op)
    i0 = exp_unit(scale, op)
    out_scale = scale if out_scale is None else out_scale
    check(isinstance(out_scale, (int, float)) and out_scale > 0, op, "out_scale",
          "a positive float", out_scale)  # fmt: skip
    if not use_triton(x, backend, op):
        return shiftgelu_reference(x, scale, out_scale, bits)
    b, c = dyadic(scale * 2.0**-SIGMOID_BITS / out_scale)
    return _shiftgelu(x, i0, b, c, bits), float(out_scale)


def _shiftgelu_flat(x: torch.Tensor, i0: int, mult: int, shift: int, bits: int) -> torch.Tensor:
    """ShiftGELU's kernel on x (any shape), the output requantised by mult / 2^shift -> int8
    of x's shape."""
    xc = x.contiguous()
    y = torch.empty(x.shape, dtype=torch.int8, device=x.device)
    n = xc.numel()
    if n:
        launch(
            _shiftgelu_kernel, FLAT_CONFIGS, lambda m: (cdiv(n, m["BLOCK"]),),
            (xc, y, n, i0, mult, shift, -(1 << (bits - 1)), (1 << (bits - 1)) - 1),
            {"N": EXP_BITS, "DIV": DIV_BITS, "SIG": SIGMOID_BITS}, INTERPRET_FLAT, key=["n"],
        )  # fmt: skip
    return y


_shiftgelu = kernel_op("ivit_shiftgelu", _shiftgelu_flat)


def per_channel_values(v, N, op, name, device, keep_int=False):
    """A requantisation parameter (multiplier or shift): an int, kept as it is where `keep_int`
    (a kernel argument), or an integer tensor of 1 or N values, made int64 ``[N]`` on
    `device`."""
    if isinstance(v, bool) or (isinstance(v, torch.Tensor) and v.dtype == torch.bool):
        check(False, op, name, f"an int or an integer tensor [{N}]", v)
    if keep_int and isinstance(v, int):
        return v
    t = torch.as_tensor(v, device=device)
    check(not t.is_floating_point() and t.dim() <= 1 and t.numel() in (1, N), op, name,
          f"an int or an integer tensor [{N}]", tuple(t.shape) if t.dim() else v)  # fmt: skip
    return t.to(torch.int64).expand(N).contiguous()


def requantize(
    acc: torch.Tensor, multiplier, shift, bits: int = 8, backend: str = "auto"
) -> torch.Tensor:
    """Dyadic requantisation (HAWQ-V3): ``clamp(round(acc * multiplier / 2^shift))``, rounded
    to nearest with halves upwards, clamped to `bits` signed bits.

    Args:
        acc: int32 ``[..., N]`` (an accumulator, such as ``int8_matmul``'s output).
        multiplier, shift: ints or integer tensors ``[N]`` (per channel), from
            ``dyadic(scale_in / scale_out)``: multiplier below 2^31, shift 1..62.
        bits: output bits (2..8 give int8; up to 32 give int32).
        backend: as ``shiftmax``.

    Returns:
        int8 (bits <= 8) or int32, acc's shape.
    """
    op = "requantize"
    _check_int(acc, op, "acc", (torch.int32,))
    check(isinstance(bits, int) and 2 <= bits <= 32, op, "bits", "an int from 2 to 32", bits)
    N = acc.shape[-1]
    b = per_channel_values(multiplier, N, op, "multiplier", acc.device)
    c = per_channel_values(shift, N, op, "shift", acc.device)
    if not acc.is_cuda and not tracing():  # host values: checked (CUDA ones trusted, no sync)
        ok = bool(((b.abs() < 2**31) & (c >= 1) & (c <= 62)).all())
        check(ok, op, "multiplier, shift", "|multiplier| < 2^31 and shift in 1..62",
              (b.tolist()[:4], c.tolist()[:4]))  # fmt: skip
    if not use_triton(acc, backend, op):
        return requantize_reference(acc, b, c, bits)
    return _requantize(acc, b, c, bits)


def _requantize_flat(acc: torch.Tensor, mult: torch.Tensor, shift: torch.Tensor,
                     bits: int) -> torch.Tensor:  # fmt: skip
    """The requantisation kernel on acc int32 [..., N] with mult, shift int64 [N] -> int8
    (bits <= 8) or int32 of acc's shape."""
    a = acc.contiguous()
    y = torch.empty(acc.shape, dtype=torch.int8 if bits <= 8 else torch.int32, device=acc.device)
    n = a.numel()
    if n:
        launch(
            _requantize_kernel, FLAT_CONFIGS, lambda m: (cdiv(n, m["BLOCK"]),),
            (a, y, mult, shift, n, acc.shape[-1], -(1 << (bits - 1)), (1 << (bits - 1)) - 1), {},
            INTERPRET_FLAT, key=["n"],
        )  # fmt: skip
    return y


_requantize = kernel_op("ivit_requantize", _requantize_flat)


_CONSTANTS: dict = {}
_CONSTANTS_KEPT = 64


def _constants(weight, bias, out_scale, D, device):
    """layernorm_constants, kept for the same weight and bias tensors (the same objects, not
    modified in place since: their version counters) so that a call on CUDA launches only its
    kernel."""
    key = (id(weight), id(bias), float(out_scale), D, str(device))
    hit = _CONSTANTS.get(key)
    vers = tuple(None if t is None else t._version for t in (weight, bias))
    if hit is not None:
        refs, seen, consts = hit
        if all(r() is t for r, t in zip(refs, (weight, bias))) and seen == vers:
            return consts
    consts = layernorm_constants(weight, bias, out_scale, D, device=device)
    if len(_CONSTANTS) >= _CONSTANTS_KEPT:
        _CONSTANTS.clear()
    refs = tuple((lambda: None) if t is None else weakref.ref(t) for t in (weight, bias))
    _CONSTANTS[key] = (refs, vers, consts)
    return consts


def i_layernorm(
    x: torch.Tensor, weight=None, bias=None, out_scale: float = 2.0**-4, bits: int = 8,
    backend: str = "auto",
):  # fmt: skip
    """I-LayerNorm (I-ViT): LayerNorm over the last axis with an integer mean and variance, the
    standard deviation by the integer Newton iteration, one integer division per row, and the
    affine map as per-channel dyadic multipliers.

    Args:
        x: int8 or int32 (values within +-2^15) ``[..., D]``; its scale cancels. D <= 16384 on
            the Triton path (2^16 for the reference).
        weight, bias: float ``[D]`` (gamma, beta) or None; turned into integers on the host
            (``reference.layernorm_constants``).
        out_scale: the output's scale (default 2^-4: outputs within +-8).
        bits: output bits (2..8).
        backend: as ``shiftmax``.

    Returns:
        ``(y int8 [..., D], out_scale)``, ``y * out_scale ~ LayerNorm(x) * weight + bias``
        (no epsilon: a row of variance below 2^-8 LSB^2 counts as 2^-8).

    >>> i_layernorm(torch.tensor([[1, 2, 3, 4]], dtype=torch.int8))[0].tolist()
    [[-21, -7, 7, 21]]
    """
    op = "i_layernorm"
    _check_int(x, op)
    _check_range(x, op, 15)
    _check_bits(bits, op)
    D = x.shape[-1]
    check(D <= MAX_LN_ROW, op, "x.shape[-1]", f"at most {MAX_LN_ROW}", D)
    if D == 0:  # no features: empty, as torch's layer_norm
        return torch.empty(x.shape, dtype=torch.int8, device=x.device), float(out_scale)
    if not use_triton(x, backend, op):
        return i_layernorm_reference(x, weight, bias, out_scale, bits)
    check(D <= MAX_ROW, op, "x.shape[-1] on the Triton path", f"at most {MAX_ROW}", D)
    if tracing():  # the constants read weight and bias: made inside the operator
        m = b = None
    else:
        m, b = _constants(weight, bias, out_scale, D, x.device)
    y = _i_layernorm(x, weight, bias, m, b, float(out_scale), bits)
    return y.reshape(x.shape), float(out_scale)


def _affine_constants(weight, bias, out_scale, D, device):
    """layernorm_constants; under fake tensors (`_backend.skip_launches`) its checks of the
    arguments (shapes, out_scale) on stand-ins of weight's and bias's shapes on the meta device,
    which skip the checks of values, and two empty int64 [D] tensors of the constants'
    shapes."""
    if not _backend.skip_launches:
        return layernorm_constants(weight, bias, out_scale, D, device=device)

    def meta(t):
        return t if t is None else torch.empty(t.shape, dtype=t.dtype, device="meta")

    layernorm_constants(meta(weight), meta(bias), out_scale, D, device="meta")
    return tuple(torch.empty(D, dtype=torch.int64, device=device) for _ in range(2))


def _i_layernorm_rows(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                      m: torch.Tensor | None, b: torch.Tensor | None, out_scale: float,
                      bits: int) -> torch.Tensor:  # fmt: skip
    """I-LayerNorm's kernel on x [..., D] (D <= MAX_ROW) -> int8 [rows, D], with the integer
    affine constants m, b (int64 [D]) given (eager calls: `_constants`) or, where None, made
    here from weight, bias and out_scale (traced calls)."""
    D = x.shape[-1]
    if m is None or b is None:
        m, b = _affine_constants(weight, bias, out_scale, D, x.device)
    x2 = _rows(x)
    y = torch.empty(x2.shape, dtype=torch.int8, device=x.device)
    _launch_rows(
        _layernorm_kernel, x2, y, m, b, D, x2.stride(0), y.stride(0), -(1 << (bits - 1)),
        (1 << (bits - 1)) - 1, F=LN_MEAN_BITS[x.dtype], G=LN_SQRT_BITS, R=LN_RECIP_BITS,
        Z=LN_Z_BITS, W=LN_AFFINE_BITS, STEPS=ISQRT_STEPS,
    )  # fmt: skip
    return y


_i_layernorm = kernel_op("ivit_i_layernorm", _i_layernorm_rows)
