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

The kernels run whole chunks: T tokens take ceil(T / C) chunks of C, the last one's rows past
T masked but multiplied, so the FLOP counts take T rounded up to a multiple of C (`padded`;
``tail(T, C)`` is T mod C, a sympy function of the cost model's own while T is a symbol).
"""


def _mod(T, C):
    return T % C


def padded(T, C=64, tail=_mod):
    """T rounded up to a whole number of chunks of C: the tokens the kernels' tiles cover."""
    return T + tail(-T, C)


def flops_forward(B, T, H, K, V=None, C=64, BC=16, tail=_mod):
    V = K if V is None else V
    intra = (C - BC) * K + 5 * BC * K  # off-diagonal products + the exact diagonal blocks
    return B * H * padded(T, C, tail) * (intra + 4 * K * V + 2 * C * V)


def flops_backward(B, T, H, K, V=None, C=64, BC=16, tail=_mod):
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
    return B * H * padded(T, C, tail) * (states + scan_dk + scan_dv + da + intra)


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


def backward_temp_bytes(B, T, H, K, V=None, C=64, bytes_per=2, final_state_grad=False):
    """Held by the backward beyond the gradients it returns: float32 dq and dk parts (8 K per
    token), the gates' in-chunk cumulative sums b (float32, 4 K per token, until the end),
    w (K per chunk), with a final-state gradient the gated k (the inputs' dtype, K per token,
    which dg's key term then reads in _bwd_intra), and until _bwd_scan is done the float32
    chunk states (K V per chunk) and the gated q and (else) k (K per token each); these are
    freed before dA (float32, C per token) is made for _bwd_intra: the peak is the larger of
    the two sets."""
    V = K if V is None else V
    kd = K * bytes_per if final_state_grad else 0  # the gated k kept until _bwd_intra
    first = 4 * K * V / C + 2 * K * bytes_per - kd
    return B * T * H * (8 * K + 4 * K / C + 4 * K + kd + _max(first, 4 * C))


# The chunked PyTorch form (reference.gla_chunked): what CPU tensors, float64 and heads wider
# than the kernels take run. Its chunks are those of the sequence, C tokens each and the last
# one shorter, so a short sequence costs its own n x n scores, not a C x C tile. `tail` is
# T mod C as above and `minimum` the smaller of two sizes (sympy's Min in the cost model).
def _chunks(T, C, tail):
    """(number of chunks, sum of their squared lengths, the last one's length) of T tokens."""
    rest, short = tail(T, C), tail(-T, C)  # the last chunk's length mod C, and its shortfall
    whole = T + short  # a multiple of C
    chunks = whole // C if isinstance(whole, int) else whole / C
    return chunks, C * T - rest * (C - rest), C - short


def chunked_flops_forward(B, T, H, K, V=None, C=64, tail=_mod):
    """The products of gla_chunked's forward (the factored scores), as FlopCounterMode counts
    them. Per chunk of n tokens and head: the scores (Q e^(b - b_m)) (K e^(b_m - b))^T
    (2 n^2 K), A V (2 n^2 V), the read of the entering state (Q e^b) S and the state update
    (K e^(beta - b))^T V (2 n K V each). Chunks whose gates are too strong for the factored
    scores (`SAFE_SPAN`) form every weight e^(b_i - b_j) and multiply as many."""
    V = K if V is None else V
    _, squares, _ = _chunks(T, C, tail)
    return B * H * (2 * (K + V) * squares + 4 * K * V * T)


def chunked_flops_backward(B, T, H, K, V=None, C=64, tail=_mod, minimum=min):
    """Two gradient products per forward product, less those autograd skips: the state entering
    the first chunk is zeros (no gradient: 2 n K V, n the first chunk's length) and the state
    the last chunk leaves is not an output (its update's two products: 4 n K V, n the last
    chunk's length)."""
    V = K if V is None else V
    _, _, last = _chunks(T, C, tail)
    first = minimum(T, C)
    fwd = chunked_flops_forward(B, T, H, K, V, C, tail)
    return 2 * fwd - B * H * K * V * (2 * first + 4 * last)


def chunked_kept_bytes(B, T, H, K, V=None, C=64, compute_bytes=4, tail=_mod, minimum=min,
                       sequences=1):  # fmt: skip
    """What autograd keeps of gla_chunked beyond q, k and g (which it keeps at the compute
    width: the inputs themselves, or their float32 copies). Per chunk of n tokens and head, in
    the compute dtype: four n x K exponentials (e^b, e^(b - b_m), e^(b_m - b), e^(beta - b));
    the products' operands as einsum lays them out, three n x K (four after the first chunk,
    whose zero entering state needs no gradient) and two n x V (one where the batch is a
    single sequence: einsum then reads v in place); the scores (n x n); the entering state
    (K x V) and e^beta (K). Per chunk: its causal mask (n x n bools, shared by the heads).
    Chunks of strong gates (`SAFE_SPAN`) keep their e^(b_i - b_j) too, about three n x K more
    per token. ``sequences`` packed along T each take chunks of their own: priced as the most
    they can take, one more chunk a sequence (the squared lengths are largest with one)."""
    V = K if V is None else V
    chunks, squares, _ = _chunks(T, C, tail)
    first = minimum(T, C)
    chunks += sequences - 1  # packed: at most one more chunk a sequence
    per_head = (7 * K + 2 * V) * T + squares + chunks * (K * V + K) + K * (T - first)
    return compute_bytes * B * H * per_head + squares


def chunked_temp_bytes(B, T, H, K, V=None, C=64, compute_bytes=4, minimum=min):
    """Held by gla_chunked's forward beyond what it keeps and returns, at its peak (the pieces
    of o joined at the end): the chunks' outputs (V per token and head) and one chunk's
    passing tensors (the cumulative gates and their differences, the scaled q and k: n x K
    each, and the scores' product before its mask, n x n). The backward needs none beyond
    the gradients it returns: it frees each chunk's kept tensors as it walks back over them,
    more than that chunk's passing gradients take."""
    V = K if V is None else V
    n = minimum(T, C)
    return compute_bytes * B * H * (V * T + n * n + 5 * n * K)


def _max(a, b):
    """max of two sizes, numbers or sympy expressions alike: (a + b + |a - b|) / 2."""
    return (a + b + abs(a - b)) / 2
