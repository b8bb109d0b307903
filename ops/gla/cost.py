"""FLOP and HBM-traffic formulas of chunked gated linear attention, for the cost model.

Plain functions of the sizes; only + - * /, so sympy symbols work as well as numbers. A
multiply-add counts 2 FLOPs, an exponential 1. ``C`` is the chunk (64 on the GPU), ``BC`` the
sub-chunk (16): per chunk of ``C`` tokens and head the forward computes ``NC (NC - 1) / 2``
off-diagonal sub-blocks of A by tensor-core products (``2 BC^2 K`` each, ``NC = C / BC``) and
``NC`` diagonal sub-blocks elementwise (``BC^2 K`` each of exp, two products and a sum: ``5 BC^2
K``), then the inter-chunk read ``q S`` and state update ``k^T v`` (``2 C K V`` each) and
``A v`` (``2 C^2 V``). Per token that is what the functions below add up. Tiles are computed
whole (masked parts included), as the kernels do. Where a chunk's gates span little
(``SAFE_SPAN``, gla/reference.py), the kernels form its A as one ``C x C x K`` product instead
(``2 C K`` per token, all on tensor cores): at C = 64, BC = 16 the same count as the
sub-chunk form's ``(C - BC) K + 5 BC K``, of which the diagonal blocks' part is elementwise.
The products are therefore not checked against the interpreter's count as the other
families' are (their number depends on the gates). ``bytes_per`` is the size of a q/k/v
element, ``gate_bytes`` of a gate element (float32 gates with 16-bit q/k/v: 4).
"""


def flops_forward(B, T, H, K, V=None, C=64, BC=16):
    V = K if V is None else V
    intra = (C - BC) * K + 5 * BC * K  # off-diagonal products + the exact diagonal blocks
    return B * H * T * (intra + 4 * K * V + 2 * C * V)


def flops_backward(B, T, H, K, V=None, C=64, BC=16):
    """_bwd_states (dO S^T, the state scan), _bwd_scan (dk role: v U^T, U scan, w; dv role:
    k U, A^T dO, U scan), _bwd_dA (dO V^T, a whole C x C tile per chunk), _bwd_intra (for
    dq and for dk: the dA blocks' products with the gated keys / queries, the exact diagonal
    blocks; then dg)."""
    V = K if V is None else V
    states = 4 * K * V
    scan_dk = 4 * K * V + 2 * K * V / C
    scan_dv = 4 * K * V + 2 * C * V
    da = 2 * C * V
    intra = 2 * ((C - BC) * K + 5 * BC * K) + 6 * K
    return B * H * T * (states + scan_dk + scan_dv + da + intra)


def flops_minimal(B, T, H, K, V=None):
    """The recurrence itself: one outer product and one vector-matrix product per token."""
    V = K if V is None else V
    return B * H * T * 4 * K * V


def io_forward(B, T, H, K, V=None, bytes_per=2, gate_bytes=None, C=64, block_v=64):
    """_fwd_A reads q, k, g once (its sub-block re-reads hit the cache) and writes A in
    float32 (C per token); _gate_prep reads g, q, k and writes b in float32 and the gated
    q e^b, k e^(beta - b) in the inputs' dtype; _fwd_walk reads the gated q, k, one row of b
    per chunk (beta) and A once per value block, v once, and writes o."""
    V = K if V is None else V
    gb = bytes_per if gate_bytes is None else gate_bytes
    fwd_a = 2 * K * bytes_per + K * gb + 4 * C
    prep = K * gb + 4 * K + 4 * K * bytes_per
    walk = (2 * K * bytes_per + 4 * K / C + 4 * C) * V / block_v + 2 * V * bytes_per
    return B * T * H * (fwd_a + prep + walk)


def io_backward(B, T, H, K, V=None, bytes_per=2, gate_bytes=None, C=64, block_k=64, block_v=64):
    """_gate_prep: g, q, k read, b written in float32 and the gated q e^b, k e^(beta - b) in
    the inputs' dtype (b is what _bwd_intra reads as "g" below; the scans read one row of it
    per chunk, beta); _bwd_states: the gated k once, v and dO once per key block, float32
    dq part and the chunk states (K V per chunk) written; _bwd_scan: dk role the gated q
    once, v and dO per key block, chunk states read, float32 dk part and w written; dv role
    the gated q and k and A per value block, dO once, dv written; _bwd_dA: v and dO read, dA
    written (float32, C per token); _bwd_intra: q, k, g once, dA once per key block, the
    float32 dq and dk parts and w read, dq, dk, dg written."""
    V = K if V is None else V
    gb = bytes_per if gate_bytes is None else gate_bytes
    nk, nv = K / block_k, V / block_v
    beta = 4 * K / C
    cumsum = K * gb + 4 * K + 4 * K * bytes_per
    states = K * bytes_per + beta + nk * 2 * V * bytes_per + 4 * K + 4 * K * V / C
    scan_dk = K * bytes_per + beta + nk * 2 * V * bytes_per + 4 * K * V / C + 4 * K / C + 4 * K
    scan_dv = nv * (2 * K * bytes_per + beta + 4 * C) + 2 * V * bytes_per
    da = 2 * V * bytes_per + 4 * C
    intra = K * (2 * bytes_per + gb) + nk * 4 * C + 4 * 4 * K + 4 * K / C
    intra += 2 * K * bytes_per + K * gb
    return B * T * H * (cumsum + states + scan_dk + scan_dv + da + intra)


def activation_bytes(B, T, H, K, V=None, bytes_per=2, gate_bytes=None, C=64):
    """Kept for the backward: q, k, v, g and A (float32, C per token); no chunk states."""
    V = K if V is None else V
    gb = bytes_per if gate_bytes is None else gate_bytes
    return B * T * H * (bytes_per * (2 * K + V) + gb * K + 4 * C)


def forward_temp_bytes(B, T, H, K, V=None, bytes_per=2):
    """Held by the forward while it runs: b (float32, 4 K per token) and the gated q and k
    (the inputs' dtype, 2 K per token)."""
    return B * T * H * (4 * K + 2 * K * bytes_per)


def backward_temp_bytes(B, T, H, K, V=None, C=64, bytes_per=2):
    """Held by the backward beyond the gradients it returns: float32 dq and dk parts (8 K per
    token), the gates' in-chunk cumulative sums b (float32, 4 K per token, until the end),
    w (K per chunk), and until _bwd_scan is done the float32 chunk states (K V per chunk)
    and the gated q and k (the inputs' dtype, 2 K per token); these are freed before dA
    (float32, C per token) is made for _bwd_intra: the peak is the larger of the two sets."""
    V = K if V is None else V
    first = 4 * K * V / C + 2 * K * bytes_per
    return B * T * H * (8 * K + 4 * K / C + 4 * K + _max(first, 4 * C))


def _max(a, b):
    """max of two sizes, numbers or sympy expressions alike: (a + b + |a - b|) / 2."""
    return (a + b + abs(a - b)) / 2
