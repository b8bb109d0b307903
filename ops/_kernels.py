"""Triton helpers shared by the op families' kernels."""

import torch

from ._backend import GATE_FLOOR as _GATE_FLOOR
from ._triton import tl, triton

# _backend.GATE_FLOOR for the kernels that read log-gates: tl.maximum(g, GATE_FLOOR) at load.
GATE_FLOOR: tl.constexpr = tl.constexpr(_GATE_FLOOR)

# The factored decay of the gated families (simple_gla/README.md, "Factored decay"): a chunk's
# decay matrix exp(G_i - G_j) taken as a scaling of one operand's rows by exp(G_last - G_j)
# (rounded to the input dtype) and of the product's rows by exp(G_i - G_last), so those
# operands span 2^bound for a chunk whose log2-decays sum to -bound. float16 keeps about
# 2^-14 .. 2^15 at full precision (a few powers of two), bfloat16 and float32 (tf32 products)
# 2^-126 .. 2^127. In log2 units; a program whose sequence has a stronger chunk takes the exact
# decay matrix in every chunk.
FACTOR_BOUND_LOG2 = {torch.float16: 8.0, torch.bfloat16: 64.0, torch.float32: 64.0}


@triton.jit
def mm(a, b, acc=None):
    """`tl.dot` that keeps float32 accurate: float32 operands are multiplied as three tf32
    products (a_hi b_hi + a_hi b_lo + a_lo b_hi, Triton's "tf32x3"), about float32's accuracy,
    where one tf32 product (Triton's default) leaves relative errors near 1e-3 in attention's
    gradients. 16-bit operands are multiplied as they are.

    Used by the softmax kernels only; the linear-attention kernels pass the precision as a
    constexpr instead (`_backend.dot_precision`; README.md says why)."""
    if a.dtype == tl.float32:
        return tl.dot(a, b, acc, input_precision="tf32x3")
    return tl.dot(a, b, acc)


# A float32 operand (a state, a cotangent) multiplied as a hi + lo pair of the input dtype when
# PRECISE: two products instead of one, about 16 mantissa bits for bf16. DOT: the product
# precision (_backend.dot_precision).
@triton.jit
def dot_rhs32(a, b, PRECISE: tl.constexpr, DOT: tl.constexpr):
    """a @ b with a in the input dtype and b float32."""
    b_hi = b.to(a.dtype)
    out = tl.dot(a, b_hi, input_precision=DOT)
    if PRECISE:
        out = tl.dot(a, (b - b_hi.to(tl.float32)).to(a.dtype), out, input_precision=DOT)
    return out


@triton.jit
def dot_lhs32(a, b, acc, PRECISE: tl.constexpr, DOT: tl.constexpr):
    """acc + a @ b with a float32 and b in the input dtype."""
    a_hi = a.to(b.dtype)
    if PRECISE:
        acc = tl.dot((a - a_hi.to(tl.float32)).to(b.dtype), b, acc, input_precision=DOT)
    return tl.dot(a_hi, b, acc, input_precision=DOT)


@triton.jit
def chunk_slot0(bos, i_n, T, C: tl.constexpr, VARLEN: tl.constexpr):
    """Index of sequence i_n's first chunk in a per-chunk buffer (chunks of C tokens). Padded
    batches: i_n * cdiv(T, C). Packed (VARLEN, bos the sequence's first token): bos // C + i_n,
    which never collides with the previous sequence's chunks (that one, of length L from
    bos', starts at bos' // C + i_n - 1 and needs cdiv(L, C) <= L // C + 1 slots, while
    (bos' + L) // C >= bos' // C + L // C). A buffer of cdiv(total tokens, C) + N slots holds
    every packed sequence's chunks."""
    if VARLEN:
        return bos // C + i_n
    else:
        return i_n.to(tl.int64) * tl.cdiv(T, C)


@triton.jit
def all_chunks_within(GC, g_base, L, BOUND: tl.constexpr, BLOCK_T: tl.constexpr):
    """Whether every chunk of a sequence of L tokens has its chunk-local cumulative log decay
    G_last > -BOUND (GC + g_base: the sequence's per-token chunk-local cumulative sums, any log
    base as BOUND's), so that all of them may take the factored decay: a pass over the chunks'
    last values, 4 bytes per chunk."""
    n = tl.cdiv(L, BLOCK_T)
    lo = tl.zeros([128], tl.float32)
    for c in range(0, n, 128):
        idx = c + tl.arange(0, 128)
        ends = tl.minimum((idx + 1) * BLOCK_T, L) - 1
        lo = tl.minimum(lo, tl.load(GC + g_base + ends, mask=idx < n, other=0.0))
    return tl.min(lo, 0) > -BOUND


@triton.jit
def grouped_tile(tile, grid_m, grid_n, GROUP_M: tl.constexpr):
    """(row, column) of output tile `tile` of a matrix product: tiles are walked in groups of
    GROUP_M tile rows, so that programs running at the same time share the right operand's
    tiles in L2. A plain integer function: Gluon kernels call it too."""
    per_group = GROUP_M * grid_n
    first_m = (tile // per_group) * GROUP_M
    rows = tl.minimum(grid_m - first_m, GROUP_M)
    return first_m + (tile % per_group) % rows, (tile % per_group) // rows
