"""Triton helpers shared by the op families' kernels."""

from ._triton import tl, triton


@triton.jit
def mm(a, b, acc=None):
    """`tl.dot` that keeps float32 accurate: float32 operands are multiplied as three tf32
    products (a_hi b_hi + a_hi b_lo + a_lo b_hi, Triton's "tf32x3"), about float32's accuracy,
    where one tf32 product (Triton's default) leaves relative errors near 1e-3 in attention's
    gradients. 16-bit operands are multiplied as they are.

    Used by the softmax kernels only; the linear-attention kernels pass the precision as a
    constexpr instead (linear_attention/chunk.py `_dot`; ../README.md says why)."""
    if a.dtype == tl.float32:
        return tl.dot(a, b, acc, input_precision="tf32x3")
    return tl.dot(a, b, acc)


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
