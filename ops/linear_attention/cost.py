"""FLOP and HBM-traffic formulas of chunked causal linear attention, for the cost model.

Plain functions of the sizes; only + - * /, so sympy symbols work as well as numbers. A
multiply-add counts 2 FLOPs; the products (tl.dot) are counted as the kernels run them, whole
tiles (the causal mask's zeros included). ``C`` is the chunk length, ``block_v`` / ``block_k``
the kernels' value and key block widths (64 each in the tuned kernels). Per chunk of C tokens
and head, each forward program (one per value block) forms the intra-chunk scores q k^T
(2 C^2 K, so once per value block), their product with its block of v, the inter-chunk read
q S and the state update k^T v. The backward's three roles (dq and dk programs per key block,
dv programs per value block) form their own score tiles likewise (``flops_backward``).

``normalize=True`` (``o = num / (q . z)``, z the running sum of k) runs a second forward and
a second backward on ``NORM_COLUMNS`` columns of ones for the denominator (their value-block
programs on tiles of ``max(NORM_COLUMNS, block_v)`` columns, the dq and dk programs on
``NORM_COLUMNS``), writes num and den in float32 and keeps the float32 output and denominator
for the backward. With 16-bit inputs (``precise``) both runs multiply their float32 operands as
hi + lo pairs of the input dtype: two products where one would do (q S and its product with v
in the forward; do S^T and dA k in the dq programs, v dS^T in the dk programs, k dS in the
dv programs). The element-wise division is not counted. Checked against the products the
kernels run under the interpreter (tests/ops/test_linear_attention.py).
"""

NORM_COLUMNS = 16


def _forward_run(K, width, nv, C, precise):
    """One forward launch per token: nv programs, ``width`` value columns in all."""
    return 2 * C * K * nv + 4 * K * width + 2 * C * width + (2 * K + 2 * C) * width * precise


def _backward_run(K, full, width, nk, nv, C, precise):
    """One backward launch per token: the dq and dk programs (nk each) over the ``full`` value
    columns, the dv programs (nv) over ``width``."""
    dq = 2 * C * full * nk + 4 * K * full + 2 * C * K + (2 * K * full + 2 * C * K) * precise
    dk = 2 * C * full * nk + 4 * K * full + 2 * C * K + 2 * K * full * precise
    dv = 2 * C * K * nv + 4 * K * width + 2 * C * width + 2 * K * width * precise
    return dq + dk + dv


def flops_forward(B, T, H, K, V=None, C=64, normalize=False, block_v=64, precise=False):
    V = K if V is None else V
    p = 1 if (normalize and precise) else 0
    f = _forward_run(K, V, V / block_v, C, p)
    if normalize:  # the denominator's run: one value-block program
        f += _forward_run(K, max(NORM_COLUMNS, block_v), 1, C, p)
    return B * H * T * f


def flops_backward(B, T, H, K, V=None, C=64, normalize=False, block_k=64, block_v=64,
                   precise=False):  # fmt: skip
    """Three roles: dq (per key block: do v^T, do S^T, its product with k, k^T v), dk (v
    do^T, v dS^T, its product with q, q^T do) and dv (per value block: k q^T, k dS, its
    product with do, q^T do); with ``normalize``, the same for the denominator."""
    V = K if V is None else V
    nk = K / block_k
    p = 1 if (normalize and precise) else 0
    f = _backward_run(K, V, V, nk, V / block_v, C, p)
    if normalize:
        f += _backward_run(K, NORM_COLUMNS, max(NORM_COLUMNS, block_v), nk, 1, C, p)
    return B * H * T * f


def flops_minimal(B, T, H, K, V=None):
    """The recurrence itself: one outer product and one vector-matrix product per token."""
    V = K if V is None else V
    return B * H * T * 4 * K * V


def io_forward(B, T, H, K, V=None, bytes_per=2, block_v=64, normalize=False):
    """q and k once per value block of ``block_v``, v read and o written once. Normalised:
    num written in float32, the denominator's scan (its own q, k reads, 16 float32 columns
    out), and the division (num, den read; float32 o kept and o in the input dtype written)."""
    V = K if V is None else V
    io = bytes_per * B * T * H * (2 * K * (V / block_v) + 2 * V)
    if normalize:
        io += B * T * H * (
            (4 - bytes_per) * V
            + bytes_per * 2 * K + (bytes_per + 4) * NORM_COLUMNS
            + 4 * V + 4 * NORM_COLUMNS + 4 * V + bytes_per * V
        )  # fmt: skip
    return io


def io_backward(B, T, H, K, V=None, bytes_per=2, block_k=64, block_v=64, normalize=False):
    """dq programs (K/block_k) read k, v, do; dk programs read q, v, do; dv programs
    (V/block_v) read q, k, do; each writes its gradient once. Normalised: the same for the
    denominator's scan, gradients written in float32."""
    V = K if V is None else V
    nk = K / block_k
    nv = V / block_v
    reads = nk * (block_k + 2 * V) * 2 + nv * (2 * K + block_v)
    if not normalize:
        return bytes_per * B * T * H * (reads + 2 * K + V)
    n = NORM_COLUMNS
    reads_den = nk * (block_k + 2 * n) * 2 + (2 * K + block_v) * n / block_v  # (exact in sympy)
    return B * T * H * (bytes_per * (reads + reads_den) + 4 * (2 * K + V) + 4 * 2 * K)


def activation_bytes(B, T, H, K, V=None, bytes_per=2, normalize=False):
    """Kept for the backward: q, k, v only (no chunk states); normalised, also the float32
    output and denominator."""
    V = K if V is None else V
    kept = bytes_per * B * T * H * (2 * K + V)
    return kept + (4 * B * T * H * (V + 1) if normalize else 0)


def backward_temp_bytes(B, T, H, K, V=None, bytes_per=2, normalize=False):
    """Memory the backward holds at its peak beyond the gradients it returns. None for the
    plain op (its kernels write dq, dk, dv directly). Normalised
    (`NormalizedLinearAttentionFunction.backward`), per token and head: the float32 dq, dk,
    dv of the numerator's scan and dq, dk, dv of the denominator's (16 K + 4 V + 64), the
    rescaled cotangent, its float32 part and the denominator's 16-column operands (2 V + 70
    in a 2-byte dtype), and at the peak either the sum dk + dk2 beside the rounded dq (at
    2-byte dtypes: 24 K + 4 V + 64 with the gradients) or, when V > 2 K, the rounded dv
    (20 K + 6 V + 64); less the gradients, max(20 K + 4 V, 16 K + 6 V) + 134. In float32 the
    roundings copy nothing: 16 K + 4 V + 196. Checked allocation by allocation on the CPU with
    the kernel launches stubbed (tests/ops/test_cost.py). With symbolic sizes (no order
    between the two), 2-byte dtypes take 20 K + 6 V + 134, at least either."""
    if not normalize:
        return 0
    V = K if V is None else V
    if bytes_per == 4:
        return B * T * H * (16 * K + 4 * V + 196)
    a, b = 20 * K + 4 * V, 16 * K + 6 * V
    try:
        peak = max(a, b)
    except TypeError:  # symbols: no order between the two
        peak = 20 * K + 6 * V
    return B * T * H * (peak + 134)
