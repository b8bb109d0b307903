"""FLOP and HBM-traffic formulas of chunked causal linear attention, for the cost model.

Plain functions of the sizes; only + - * /, so sympy symbols work as well as numbers. A
multiply-add counts 2 FLOPs. ``C`` is the chunk length (64 in the tuned kernels). Per chunk
of C tokens and head: intra-chunk scores q k^T (2 C^2 K), their product with v (2 C^2 V),
the inter-chunk read q S (2 C K V) and the state update k^T v (2 C K V); causal masking
halves the useful part of the first two but the kernels compute whole tiles.
"""


def flops_forward(B, T, H, K, V=None, C=64):
    V = K if V is None else V
    return B * H * T * (2 * C * (K + V) + 4 * K * V)


def flops_backward(B, T, H, K, V=None, C=64):
    """Three scans: dq (do v^T, its product with k, do S^T, k^T v), dk and dv likewise."""
    V = K if V is None else V
    return 3 * flops_forward(B, T, H, K, V, C)


def flops_minimal(B, T, H, K, V=None):
    """The recurrence itself: one outer product and one vector-matrix product per token."""
    V = K if V is None else V
    return B * H * T * 4 * K * V


def io_forward(B, T, H, K, V=None, bytes_per=2, block_v=64):
    """q and k once per value block of ``block_v``, v read and o written once."""
    V = K if V is None else V
    return bytes_per * B * T * H * (2 * K * (V / block_v) + 2 * V)


def io_backward(B, T, H, K, V=None, bytes_per=2, block_k=64, block_v=64):
    """dq programs (K/block_k) read k, v, do; dk programs read q, v, do; dv programs
    (V/block_v) read q, k, do; each writes its gradient once."""
    V = K if V is None else V
    nk = K / block_k
    nv = V / block_v
    reads = nk * (block_k + 2 * V) * 2 + nv * (2 * K + block_v)
    return bytes_per * B * T * H * (reads + 2 * K + V)


def activation_bytes(B, T, H, K, V=None, bytes_per=2):
    """Kept for the backward: q, k, v only (no chunk states)."""
    V = K if V is None else V
    return bytes_per * B * T * H * (2 * K + V)
