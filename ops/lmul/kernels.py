"""L-Mul as Triton kernels: the elementwise product and a tiled matrix product whose every
product is L-Mul, summed in float32 (outer products, one k at a time: integer work on the
CUDA cores, no tensor cores). Operands are float32 or 16-bit floats (read as float32,
exactly); the arithmetic is that of product.py on float32 bit patterns. README.md gives the
maths and the field form used here.

Field form of a float32 v with m mantissa bits: F(v) = (bits(v) & 0x7FFFFFFF) >> (23 − m), the
biased exponent and the truncated mantissa side by side, (e << m) + f. L-Mul's integer sum is
r = F(a) + F(b) − (127 << m) + 2^{m − l(m)}; where 0 < r >> m < 255 the result's magnitude
bits are r << (23 − m); r >> m ≥ 255 is inf, ≤ 0 is zero. An operand with a zero exponent
(zero or subnormal) gets the field ZERO, so far below any other that every sum with it is
negative (a zero product). The sign is the XOR of the sign bits; inf and nan operands give the
IEEE product.
"""

import torch

from .. import _backend
from .._backend import cdiv, launch
from .._traced import kernel_op
from .._triton import tl, triton

ZERO = tl.constexpr(-(1 << 21))


@triton.jit
def _fields(v, M: tl.constexpr, L: tl.constexpr, SECOND: tl.constexpr):
    """(field, sign bit as int32, inf-or-nan) of a float32 tensor v. The second operand's
    field carries the constant −(127 << m) + 2^{m − l(m)}, so a product is one addition."""
    bits = v.to(tl.int32, bitcast=True)
    exp = (bits >> 23) & 0xFF
    field = (bits & 0x7FFFFFFF) >> (23 - M)
    if SECOND:
        field = field - (127 << M) + (1 << (M - L))
    field = tl.where(exp == 0, ZERO, field)
    sign = (bits >> 31) << 31
    return field, sign, exp == 0xFF


@triton.jit
def _combine(fa, fb, sign, M: tl.constexpr):
    """The float32 L-Mul products of fields fa and fb (broadcast) with sign bits `sign`."""
    r = fa + fb
    mag = tl.where(r < (1 << M), 0, tl.minimum(r, 0xFF << M)) << (23 - M)
    return (mag | sign).to(tl.float32, bitcast=True)


@triton.jit
def _lmul_kernel(X, Y, O, N, M: tl.constexpr, L: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    a = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(Y + offs, mask=mask, other=0.0).to(tl.float32)
    fa, sa, xa = _fields(a, M, L, False)
    fb, sb, xb = _fields(b, M, L, True)
    out = _combine(fa, fb, sa ^ sb, M)
    out = tl.where(xa | xb, a * b, out)
    tl.store(O + offs, out.to(O.dtype.element_ty), mask=mask)


@triton.jit
def _mm_loop(x_ptr, w_ptr, rmask, cmask, K, sxk, swk, acc, M: tl.constexpr, L: tl.constexpr,
             SPECIAL: tl.constexpr):  # fmt: skip
    """acc + Σ_k L-Mul(x[:, k], w[:, k]) as outer products: per k, one column of the x tile
    and one of the w tile make a [BLOCK_N, BLOCK_J] block of products, added to acc in order
    of k. SPECIAL: some operand of the tile may be inf or nan (the IEEE product there)."""
    for k in range(0, K):
        a = tl.load(x_ptr + k * sxk, mask=rmask, other=0.0).to(tl.float32)
        b = tl.load(w_ptr + k * swk, mask=cmask, other=0.0).to(tl.float32)
        fa, sa, xa = _fields(a, M, L, False)
        fb, sb, xb = _fields(b, M, L, True)
        prod = _combine(fa[:, None], fb[None, :], sa[:, None] ^ sb[None, :], M)
        if SPECIAL:
            prod = tl.where(xa[:, None] | xb[None, :], a[:, None] * b[None, :], prod)
        acc += prod
    return acc


@triton.jit
def _lmul_mm_kernel(
    X, W, B, O, XS, WS, n, J, K,
    sxn, sxk, swj, swk, son, soj,
    HAS_BIAS: tl.constexpr, M: tl.constexpr, L: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_J: tl.constexpr,
):  # fmt: skip
    """O[i, j] = Σ_k L-Mul(X[i, k], W[j, k]) (+ B[j]) for one [BLOCK_N, BLOCK_J] tile of O,
    summed in float32 in order of k. XS [n] and WS [J] flag the rows of X and W holding an inf
    or nan: a tile with none runs the loop without the IEEE fallback (one branch per program,
    the same for all its threads)."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.program_id(1) * BLOCK_J + tl.arange(0, BLOCK_J)
    rmask, cmask = rows < n, cols < J
    x_ptr = X + rows.to(tl.int64) * sxn
    w_ptr = W + cols.to(tl.int64) * swj
    special = tl.max(tl.load(XS + rows, mask=rmask, other=0).to(tl.int32)) + tl.max(
        tl.load(WS + cols, mask=cmask, other=0).to(tl.int32)
    )
    acc = tl.zeros((BLOCK_N, BLOCK_J), dtype=tl.float32)
    if special > 0:
        acc = _mm_loop(x_ptr, w_ptr, rmask, cmask, K, sxk, swk, acc, M, L, True)
    else:
        acc = _mm_loop(x_ptr, w_ptr, rmask, cmask, K, sxk, swk, acc, M, L, False)
    if HAS_BIAS:
        acc += tl.load(B + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
    o_ptr = O + rows[:, None].to(tl.int64) * son + cols[None, :] * soj
    tl.store(o_ptr, acc.to(O.dtype.element_ty), mask=rmask[:, None] & cmask[None, :])


ELEMENTWISE_BLOCK = 1024
INTERPRET_MM = {"BLOCK_N": 16, "BLOCK_J": 16}
MM_CONFIGS = [
    triton.Config({"BLOCK_N": bn, "BLOCK_J": bj}, num_warps=w, num_stages=1)
    for bn, bj, w in ((64, 64, 4), (128, 64, 4), (64, 128, 4))
]


def offset_bits(m: int) -> int:
    """l(m) of the paper."""
    return m if m <= 3 else (3 if m == 4 else 4)


def _lmul_elementwise(x: torch.Tensor, y: torch.Tensor, m: int,
                      out_dtype: torch.dtype) -> torch.Tensor:  # fmt: skip
    """L-Mul of x and y (same shape, float32 or 16-bit) -> out_dtype, one program per BLOCK
    elements of their contiguous forms."""
    x, y = x.contiguous(), y.contiguous()
    out = torch.empty(x.shape, device=x.device, dtype=out_dtype)
    N = x.numel()
    if N and not _backend.skip_launches:
        grid = (cdiv(N, ELEMENTWISE_BLOCK),)
        _lmul_kernel[grid](x, y, out, N, M=m, L=offset_bits(m), BLOCK=ELEMENTWISE_BLOCK)
    return out


def _lmul_matmul(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, m: int,
                 out_dtype: torch.dtype) -> torch.Tensor:  # fmt: skip
    """x [n, K] and w [J, K] (float32 or 16-bit, any strides), bias [J] or None ->
    [n, J] in out_dtype: Σ_k L-Mul(x[i, k], w[j, k]) (+ bias[j]) summed in float32."""
    n, K = x.shape
    J = w.shape[0]
    out = torch.empty(n, J, device=x.device, dtype=out_dtype)
    if n == 0 or J == 0:
        return out

    def grid(c):
        return (cdiv(n, c["BLOCK_N"]), cdiv(J, c["BLOCK_J"]))

    x_special = ~torch.isfinite(x).all(dim=1)  # [n], on the device: no host read
    w_special = ~torch.isfinite(w).all(dim=1)  # [J]
    args = (x, w, bias if bias is not None else x, out, x_special, w_special, n, J, K,
            *x.stride(), *w.stride(), *out.stride())  # fmt: skip
    meta = {"HAS_BIAS": bias is not None, "M": m, "L": offset_bits(m)}
    launch(_lmul_mm_kernel, MM_CONFIGS, grid, args, meta, INTERPRET_MM, key=["J", "K"])
    return out


lmul_elementwise = kernel_op("lmul_elementwise", _lmul_elementwise)
lmul_matmul = kernel_op("lmul_matmul", _lmul_matmul)
