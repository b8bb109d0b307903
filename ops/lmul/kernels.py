"""L-Mul as Triton kernels: the elementwise product and a tiled matrix product whose every
product is L-Mul, summed in float32. Operands are float32 or 16-bit floats (read as float32,
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
import triton
import triton.language as tl

from .._backend import cdiv, launch

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
def _lmul_mm_kernel(
    X, W, B, O, n, J, K,
    sxn, sxk, swj, swk, son, soj,
    HAS_BIAS: tl.constexpr, M: tl.constexpr, L: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """O[i, j] = Σ_k L-Mul(X[i, k], W[j, k]) (+ B[j]) for one [BLOCK_N, BLOCK_J] tile of O:
    the operands' fields are made once per loaded tile, the products as a
    [BLOCK_N, BLOCK_J, BLOCK_K] block summed over k into a float32 accumulator."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.program_id(1) * BLOCK_J + tl.arange(0, BLOCK_J)
    ks = tl.arange(0, BLOCK_K)
    x_ptr = X + rows[:, None].to(tl.int64) * sxn + ks[None, :] * sxk
    w_ptr = W + cols[:, None].to(tl.int64) * swj + ks[None, :] * swk
    acc = tl.zeros((BLOCK_N, BLOCK_J), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kin = (k0 + ks)[None, :] < K
        a = tl.load(x_ptr, mask=(rows[:, None] < n) & kin, other=0.0).to(tl.float32)
        b = tl.load(w_ptr, mask=(cols[:, None] < J) & kin, other=0.0).to(tl.float32)
        fa, sa, xa = _fields(a, M, L, False)  # [BLOCK_N, BLOCK_K]
        fb, sb, xb = _fields(b, M, L, True)  # [BLOCK_J, BLOCK_K]
        prod = _combine(fa[:, None, :], fb[None, :, :], sa[:, None, :] ^ sb[None, :, :], M)
        if tl.max(xa.to(tl.int32)) + tl.max(xb.to(tl.int32)) > 0:  # an inf or nan operand
            special = xa[:, None, :] | xb[None, :, :]
            prod = tl.where(special, a[:, None, :] * b[None, :, :], prod)
        acc += tl.sum(prod, axis=2)
        x_ptr += BLOCK_K * sxk
        w_ptr += BLOCK_K * swk
    if HAS_BIAS:
        acc += tl.load(B + cols, mask=cols < J, other=0.0).to(tl.float32)[None, :]
    o_ptr = O + rows[:, None].to(tl.int64) * son + cols[None, :] * soj
    tl.store(o_ptr, acc.to(O.dtype.element_ty), mask=(rows[:, None] < n) & (cols[None, :] < J))


ELEMENTWISE_BLOCK = 1024
INTERPRET_MM = {"BLOCK_N": 16, "BLOCK_J": 16, "BLOCK_K": 8}
MM_CONFIGS = [
    triton.Config({"BLOCK_N": bn, "BLOCK_J": bj, "BLOCK_K": bk}, num_warps=w, num_stages=s)
    for bn, bj, bk, w, s in (
        (64, 64, 4, 4, 2),
        (64, 64, 8, 8, 2),
        (128, 64, 4, 8, 2),
        (32, 32, 16, 4, 2),
    )
]


def offset_bits(m: int) -> int:
    """l(m) of the paper."""
    return m if m <= 3 else (3 if m == 4 else 4)


def lmul_elementwise(x: torch.Tensor, y: torch.Tensor, m: int, out_dtype) -> torch.Tensor:
    """L-Mul of x and y (same shape, float32 or 16-bit) -> out_dtype, one program per BLOCK
    elements of their contiguous forms."""
    x, y = x.contiguous(), y.contiguous()
    out = torch.empty(x.shape, device=x.device, dtype=out_dtype)
    N = x.numel()
    if N:
        grid = (cdiv(N, ELEMENTWISE_BLOCK),)
        _lmul_kernel[grid](x, y, out, N, M=m, L=offset_bits(m), BLOCK=ELEMENTWISE_BLOCK)
    return out


def lmul_matmul(x: torch.Tensor, w: torch.Tensor, bias, m: int, out_dtype) -> torch.Tensor:
    """x [n, K] and w [J, K] (float32 or 16-bit, any strides), bias [J] or None ->
    [n, J] in out_dtype: Σ_k L-Mul(x[i, k], w[j, k]) (+ bias[j]) summed in float32."""
    n, K = x.shape
    J = w.shape[0]
    out = torch.empty(n, J, device=x.device, dtype=out_dtype)
    if n == 0 or J == 0:
        return out

    def grid(c):
        return (cdiv(n, c["BLOCK_N"]), cdiv(J, c["BLOCK_J"]))

    args = (x, w, bias if bias is not None else x, out, n, J, K, *x.stride(), *w.stride(),
            *out.stride())  # fmt: skip
    meta = {"HAS_BIAS": bias is not None, "M": m, "L": offset_bits(m)}
    launch(_lmul_mm_kernel, MM_CONFIGS, grid, args, meta, INTERPRET_MM, key=["J", "K"])
    return out
