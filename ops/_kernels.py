"""Triton helpers shared by the op families' kernels."""

import triton
import triton.language as tl


@triton.jit
def mm(a, b, acc=None):
    """`tl.dot` that keeps float32 accurate: float32 operands are multiplied as three tf32
    products (a_hi b_hi + a_hi b_lo + a_lo b_hi, Triton's "tf32x3"), about float32's accuracy,
    where one tf32 product (Triton's default) leaves relative errors near 1e-3 in attention's
    gradients (bench/RESULTS.md, GPU check). 16-bit operands are multiplied as they are.

    Used by the softmax kernels only. The linear-attention kernels pass the precision as a
    constexpr instead (chunk._dot): through this helper their backward kept the same PTX
    instructions but its debug labels moved, ptxas built it differently, and it ran 40% slower
    on the H200 (bench/results/linear_ab_2026-11-28_c3de9b9.txt); the softmax kernels' times
    did not move when they took it (9f299f1)."""
    if a.dtype == tl.float32:
        return tl.dot(a, b, acc, input_precision="tf32x3")
    return tl.dot(a, b, acc)
