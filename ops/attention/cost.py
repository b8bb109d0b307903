"""FLOP and HBM-traffic formulas of fused softmax attention, for the cost model.

Plain functions of the sizes; they use only + - * / so sympy symbols work as well as numbers
(and no float constants, so that sympy's formulas stay exact).
A multiply-add counts 2 FLOPs. ``bytes_per`` is the element size of q, k, v (2 for bf16).
Causal counts assume ``T <= S`` (query i sees i + 1 keys), the usual self-attention case.
"""


def score_pairs(T, S, causal):
    """Number of (query, key) pairs that are computed with."""
    return T * (T + 1) / 2 if causal else T * S


def flops_forward(B, T, H, K, V=None, S=None, causal=True):
    V = K if V is None else V
    S = T if S is None else S
    return 2 * B * H * score_pairs(T, S, causal) * (K + V)


def flops_backward(B, T, H, K, V=None, S=None, causal=True):
    """Recomputes q k^T, then dV, dP, dQ, dK: 2.5 times the forward."""
    V = K if V is None else V
    S = T if S is None else S
    return 2 * B * H * score_pairs(T, S, causal) * (2 * K + 3 * V)


def io_forward(B, T, H, K, V=None, S=None, Hkv=None, causal=True, bytes_per=2, block_m=128):
    """Bytes between HBM and the chip: q and o once, the log-sum-exp once, and k, v once per
    query block of ``block_m`` rows (half of them when causal)."""
    V = K if V is None else V
    S = T if S is None else S
    kv_reads = B * H * (T / block_m) * S * (K + V) / (2 if causal else 1)
    return bytes_per * (B * T * H * (K + V) + kv_reads) + 4 * B * H * T


def io_backward(
    B, T, H, K, V=None, S=None, Hkv=None, causal=True, bytes_per=2, block_m=128, block_n=128
):
    """dK/dV pass reads q, dO once per key block; dQ pass reads k, v once per query block;
    plus delta = rowsum(dO * O) and writing dq, dk, dv."""
    V = K if V is None else V
    S = T if S is None else S
    Hkv = H if Hkv is None else Hkv
    half = 2 if causal else 1  # (a divisor, so that sympy keeps the formulas exact)
    delta = bytes_per * 2 * B * T * H * V + 4 * B * H * T
    dkdv = B * H * (S / block_n) * T * (K + V) * bytes_per / half + 8 * B * H * T * S / block_n
    dq = B * H * (T / block_m) * S * (K + V) * bytes_per / half
    writes = bytes_per * (B * T * H * K + B * S * Hkv * (K + V))
    reads_once = bytes_per * B * S * Hkv * (K + V) + 8 * B * H * T
    return delta + dkdv + dq + writes + reads_once


def activation_bytes(B, T, H, K, V=None, S=None, Hkv=None, bytes_per=2):
    """Kept for the backward: q, k, v, o and the float32 log-sum-exp."""
    V = K if V is None else V
    S = T if S is None else S
    Hkv = H if Hkv is None else Hkv
    return bytes_per * (B * T * H * (K + V) + B * S * Hkv * (K + V)) + 4 * B * H * T


def backward_temp_bytes(B, T, H, K=None, V=None, atomic_dq=False, bytes_per=2):
    """Memory the backward holds beyond the gradients it returns (and beyond a copy of a
    permuted cotangent, which depends on the caller's layout): the float32 ``rowsum(dO * O)``
    per query row; with the atomic-dQ schedule also a float32 dQ buffer, rounded at the end."""
    rows = 4 * B * H * T
    if not atomic_dq:
        return rows
    return rows + 4 * B * T * H * K
