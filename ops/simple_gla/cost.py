"""FLOP, HBM-traffic and memory formulas of chunked scalar-gate linear attention (chunk.py).

Plain functions of the sizes; only + - * / (and max of numbers), so sympy symbols work as well
as numbers. A multiply-add counts 2 FLOPs; only the products (tl.dot) are counted, not the
gates' elementwise work (`exp2_forward` / `exp2_backward` count the exponentials). ``C`` is the
chunk length (64 in the tuned kernels), ``block_v``/``block_k`` the kernels' value and key block
widths (64). Every program loads its chunk of q, k whole along K (or v, do whole along V), so
the intra-chunk score matrices are recomputed once per block: ``K / block_k`` and
``V / block_v`` appear as factors.

``want_dg``: g needs a gradient. Every backward program then writes a float32 per-token row of
dg's terms: the dq and dk programs also read q (resp. k), and with 16-bit inputs (``precise``)
read the state as a hi + lo pair (one more product each per chunk); the dv programs read their
block of v and form the chunk's pair terms (one more product per chunk). One more launch sums
the rows and reverse-cumsums them (float64) into dg.

The kernels compute whole chunks: a sequence of T tokens runs ceil(T / C) chunks of C, the
last one's rows past T masked but multiplied, so the FLOP and exponential counts take T
rounded up to a multiple of C (`padded`). ``tail(T, C)`` is T mod C (the cost model passes a
sympy function of its own, which stays a bounded term while T is a symbol).
"""


def _mod(T, C):
    return T % C


def padded(T, C=64, tail=_mod):
    """T rounded up to a whole number of chunks of C: the tokens the kernels' tiles cover."""
    return T + tail(-T, C)


def flops_forward(B, T, H, K, V=None, C=64, block_v=64, tail=_mod):
    """Per chunk and value block: q k^T (C C K), its product with v (C C bv), the read of the
    entering state q S (C K bv) and the state update k^T v (K C bv)."""
    V = K if V is None else V
    nv = V / block_v
    return B * H * padded(T, C, tail) * (2 * C * K * nv + 2 * C * V + 4 * K * V)


def flops_backward(B, T, H, K, V=None, C=64, block_k=64, block_v=64, want_dg=True, precise=True,
                   tail=_mod):  # fmt: skip
    """dq programs (per key block): do v^T, do S^T, its product with k, k^T v; dk programs
    (per key block): v do^T, v dS^T, its product with q, q^T do; dv programs (per value block):
    k q^T, k dS, its product with do, q^T do. ``precise`` (with ``want_dg``): the S and dS reads
    of the dq and dk programs twice; ``want_dg``: the dv programs' v do^T."""
    V = K if V is None else V
    nk, nv = K / block_k, V / block_v
    extra = 1 if (want_dg and precise) else 0
    dq = 2 * C * V * nk + 2 * V * K * (1 + extra) + 2 * C * K + 2 * K * V
    dv = 2 * C * K * nv + 2 * K * V + 2 * C * V * (2 if want_dg else 1) + 2 * K * V
    return B * H * padded(T, C, tail) * (2 * dq + dv)


def flops_minimal(B, T, H, K, V=None):
    """The recurrence itself: one outer product and one vector-matrix product per token."""
    V = K if V is None else V
    return B * H * T * 4 * K * V


def exp2_forward(B, T, H, K, V=None, C=64, block_v=64, exact=False):
    """Exponentials per forward, per token and program: the factored decay's row weights
    exp(G_last - G_i) and exp(G_i - G_last) and a chunk's exp(G_last) (2 + 1 / C); ``exact``
    (a sequence with a chunk past the bound): a row of the C x C decay matrix, exp(G_i) and
    the key weights (C + 2)."""
    V = K if V is None else V
    per = (C + 2) if exact else (2 + 1 / C)
    return B * H * T * (V / block_v) * per


def exp2_backward(B, T, H, K, V=None, C=64, block_k=64, block_v=64, exact=False,
                  want_dg=True):  # fmt: skip
    """As `exp2_forward`, per token and backward program (with ``want_dg`` the dv programs'
    pair sums add the query side's row weights: one more per token)."""
    V = K if V is None else V
    programs = 2 * K / block_k + V / block_v
    per = (C + 2) if exact else (2 + 1 / C)
    extra = V / block_v if (want_dg and not exact) else 0
    return B * H * T * (programs * per + extra)


def io_forward(B, T, H, K, V=None, bytes_per=2, block_v=64, N=None, initial_state=False,
               final_state=False):  # fmt: skip
    """Per value block q and k whole, the v block and g (float32) read, the o block written;
    float32 states [N, H, K, V] read/written once (N = B unless packed)."""
    V = K if V is None else V
    N = B if N is None else N
    nv = V / block_v
    io = B * T * H * (bytes_per * (2 * K * nv + 2 * V) + 4 * nv)
    states = (1 if initial_state else 0) + (1 if final_state else 0)
    return io + states * 4 * N * H * K * V


def io_backward(B, T, H, K, V=None, bytes_per=2, block_k=64, block_v=64, want_dg=True, N=None,
                initial_state=False, final_state=False):  # fmt: skip
    """dq programs read k (their block), v, do; dk programs q (their block), v, do; dv
    programs q, k, do (their block); all read g; each gradient written once. ``want_dg``: the
    dq/dk programs also read q/k (their block), the dv programs v (their block), every program
    writes a float32 row per token, and one launch reads those rows back and writes dg (counted
    at 4 bytes; it is written in g's dtype).
    States: the initial state read and dS0 written, the final state's gradient read
    (float32)."""
    V = K if V is None else V
    N = B if N is None else N
    nk, nv = K / block_k, V / block_v
    reads = 2 * nk * (block_k + 2 * V) + nv * (2 * K + block_v)
    io = bytes_per * (reads + 2 * K + V) + 4 * (2 * nk + nv)
    if want_dg:
        rows = 2 * nk + nv
        io += bytes_per * (2 * K + V) + 4 * rows + (4 * rows + 4)
    states = (2 if initial_state else 0) + (1 if final_state else 0)
    return B * T * H * io + states * 4 * N * H * K * V


def activation_bytes(B, T, H, K, V=None, bytes_per=2, N=None, final_state=False):
    """Kept for the backward: q, k, v, the gates' in-chunk cumulative sums (float32 [H, B T],
    the op's own whatever g's dtype and layout), and the float32 final state when it is
    returned (its gradient's term in dg needs it). No chunk states."""
    V = K if V is None else V
    N = B if N is None else N
    kept = B * T * H * (bytes_per * (2 * K + V) + 4)
    return kept + (4 * N * H * K * V if final_state else 0)


def backward_temp_bytes(B, T, H, K, V=None, block_k=64, block_v=64, want_dg=True):
    """Memory the backward holds beyond the gradients it returns: with ``want_dg`` the
    float32 rows of dg's terms (one per backward program and token: 2 K / block_k +
    V / block_v). None otherwise: the kernels write dq, dk, dv directly."""
    if not want_dg:
        return 0
    V = K if V is None else V
    return B * T * H * 4 * (2 * K / block_k + V / block_v)


# The chunked PyTorch form (reference.simple_gla_chunked, and through it linear_attention's
# chunked form): what CPU tensors and float64 run. Its chunks are those of the sequence, C
# tokens each and the last one shorter; `minimum` is the smaller of two sizes (sympy's Min in
# the cost model). The products are GLA's chunked form's: ops/gla/cost.py, chunked_flops_*.
def _chunks(T, C, tail):
    """(number of chunks, sum of their squared lengths) of T tokens."""
    rest, short = tail(T, C), tail(-T, C)
    whole = T + short
    chunks = whole // C if isinstance(whole, int) else whole / C
    return chunks, C * T - rest * (C - rest)


def chunked_flops_forward(B, T, H, K, V=None, C=64, share=1, tail=_mod):
    """The products of simple_gla_chunked's forward as FlopCounterMode counts them: per chunk
    of n tokens, q k^T once per group of q and k (2 n^2 K; ``share`` = groups / heads), A V
    (2 n^2 V), the read q S and the state update (2 n K V each) per head."""
    V = K if V is None else V
    _, squares = _chunks(T, C, tail)
    return B * H * (2 * (share * K + V) * squares + 4 * K * V * T)


def chunked_flops_backward(B, T, H, K, V=None, C=64, share=1, tail=_mod, minimum=min):
    """Two gradient products per forward product, less those autograd skips: the zero state
    entering the first chunk (q S's gradient of S: 2 n K V, n the first chunk's length) and
    the state the last chunk leaves, not an output (its update's two: 4 n K V)."""
    V = K if V is None else V
    last = C - tail(-T, C)  # the last chunk's length
    fwd = chunked_flops_forward(B, T, H, K, V, C, share, tail)
    return 2 * fwd - B * H * K * V * (2 * minimum(T, C) + 4 * last)


def chunked_kept_bytes(B, T, H, K, V=None, C=64, compute_bytes=4, want_dg=True,
                       qk_copies=True, v_copy=True, share=1, tail=_mod,
                       minimum=min, sequences=1):  # fmt: skip
    """What autograd keeps of simple_gla_chunked beyond its inputs, per chunk of n tokens and
    head, in the compute dtype: the scaled decay matrix and the scores (n x n each); q and k
    as einsum lays them out for q k^T, for the read q S (the entering state needs a gradient
    after the first chunk, whose zero state does not: the product keeps q there too) and
    k for the state update (n x K each;
    none where einsum reads them in place: ``qk_copies`` False, a single sequence or group);
    v as einsum lays it out for A v (n x V; ``v_copy`` False where it reads v in place) and
    v scaled by the keys' weights (n x V); the queries' and keys' row weights (n each); the
    entering state (K x V) and, after the first chunk, e^(G_last). ``want_dg`` (g needs a
    gradient): also the causal mask (n x n bools, shared by the heads), e^(G_i - G_j) and
    q k^T (n x n each, q k^T once per group: ``share`` = groups / heads), e^G (n), the read
    q S before its row weights (n x V) and the first chunk's e^(G_last). The operands of q
    and k are per group too. ``sequences`` packed along T each take chunks of their own:
    priced as the most they can take, one more chunk a sequence (a chunk's squared length
    is then largest with one sequence)."""
    V = K if V is None else V
    chunks, squares = _chunks(T, C, tail)
    first = minimum(T, C)
    chunks += sequences - 1  # packed: at most one more chunk a sequence
    qkc, vc = (1 if qk_copies else 0), (1 if v_copy else 0)
    per_head = 2 * squares + T * (2 + V + vc * V) + chunks * (K * V + 1) - 1
    per_head += share * qkc * K * (4 * T - first)
    masks = 0
    if want_dg:
        per_head += (1 + share) * squares + T * (1 + V) + 1
        masks = squares
    return compute_bytes * B * H * per_head + masks


def chunked_backward_temp_bytes(B, T, H, K, V=None, C=64, compute_bytes=4, want_dg=True,
                                minimum=min):  # fmt: skip
    """Held by simple_gla_chunked's backward beyond what the forward kept, as it starts: the
    last chunk's passing gradients, about one n x n where g needs a gradient, none otherwise
    (fitted on the CPU allocator: within 10% at K = V of 8 to 64, T of 32 to 3000).
    Each chunk's kept tensors are freed as its gradients are made, so the inputs' gradients,
    joined at the end, are held without them (the cost rule's `frees_kept`)."""
    if not want_dg:
        return 0
    n = minimum(T, C)
    return compute_bytes * B * H * n * n


def chunked_temp_bytes(B, T, H, K, V=None, C=64, compute_bytes=4, want_dg=True, minimum=min,
                       tail=_mod):  # fmt: skip
    """Held by simple_gla_chunked's forward beyond what it keeps and returns, at its peak
    (measured on the CPU allocator: tests/cost/test_chunked_forms.py): the chunks' outputs
    (V per token and head, joined at the end) and, where g needs no gradient, a chunk's gate
    differences on their way to the kept decay matrix, the first chunk's and the last one's
    (n x n each; with ``want_dg`` they are kept). Also the last chunk's state update (its
    product and the new state, two K x V), which no later chunk reads."""
    V = K if V is None else V
    n, last = minimum(T, C), C - tail(-T, C)  # the first chunk's length and the last one's
    squares = 0 if want_dg else n * n + last * last
    return compute_bytes * B * H * (V * T + squares + 2 * K * V)
