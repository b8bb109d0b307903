"""FLOP, HBM-traffic and memory formulas of the chunked (gated) delta rule, for the cost model.

Plain functions of the sizes; sympy symbols work for B, T, H, K, V (the chunk length ``C`` and
the value-block width ``block_v`` must be numbers: the number of products in the chunk
inverse depends on C). A multiply-add counts 2 FLOPs; the kernels compute whole tiles, so the
masked halves of the C x C products count. Per chunk of C tokens and head (README.md):

prepare (``_prep_kernel``): K K^T twice (2 C^2 K each: its diagonal blocks, then the rest, so
    that A is not held through the first part of the inverse), the inverse (``inverse_macs``:
    every product of tiles as the three products of split operands the kernel runs), W
    (2 C^2 K), U (2 C^2 V).
forward scan (``_scan_fwd_kernel``, one program per value block): W S (2 C K V), Q K^T
    (2 C^2 K, repeated in each of the V / block_v programs), Q S (2 C K V), P V' (2 C^2 V),
    K^T V' (2 C K V).
backward (W and T kept from the forward): the scan in STATES mode (U = T diag(beta) V, W S,
    K^T V'); the reverse scan (its own Q K^T per value block, or with ``prepared`` one Q K^T
    per chunk in ``_qk_kernel``; P^T dO, K dS, Q^T dO, W^T dV');
    the chunk kernel (dO S^T, dO V'^T, V' dS^T, T^T dV', (T^T dV') S^T, (T^T dV') V'^T per
    value block, then K K^T, three C x C by C x K products and, gated, Q K^T).

``keep_states`` (ops/config.py's ``delta_keep_states``): in training the forward's scan also
writes the state entering each chunk and V', autograd keeps them, and the backward has no
STATES scan; the forward's scan then forms U from T itself (the prepare kernel writes none:
the same FLOPs, moved).

``keep_values`` (ops/config.py's ``delta_keep_values``, ``gated_delta_keep_values``): in
training the forward's scan also writes V', autograd keeps it in place of -W, the backward's
STATES scan reads it and only updates the state (K^T V', one product per token) instead of
forming U and V' again, and the reverse scan forms W^T dV' as K^T (diag(beta gamma) T^T dV'):
one more product, 2 C V per token.

``prepared`` (ops/config.py's ``delta_prepared_qk``): the prepare kernel also forms Q K^T (once
per chunk instead of once per value block in the scan) and writes it (C per token) and, gated,
the decayed keys (K per token), which the scan reads; the backward's ``_qk_kernel`` forms
them again (freed before the gradients are allocated) for its two scans.

``checkpoints`` (ops/config.py's ``delta_checkpoint_states``): in training the forward's scan
also writes the state entering every ``every``-th chunk (float32, ``checkpoint_bytes``),
autograd keeps them, and the backward's STATES scan reads them (the same FLOPs, in parallel
segments).

``gated`` adds the chunk kernel's Q K^T (for dg), elementwise work (exponentials of C x C
tiles) and the gate's reads.
Element-wise work, the gate conversions to float32 and ``use_qk_l2norm``'s PyTorch
normalisation are not counted.
"""

import math

# Narrower heads take the chunked PyTorch form on CUDA: Triton 3.6 compiles the backward's
# chunk kernel for sm_90 with an out-of-bounds shared-memory read (compute-sanitizer: at its
# dk product, `tl.trans(dps) q`) where K or V is under 64 (K V < 4096 in what was tried;
# K = V = 64 and K = 128, V = 32 were right); the interpreter runs them. (Here, beside the
# formulas, so that the cost model prices that form without importing the kernels.)
MIN_GPU_WIDTH = 64


def inverse_macs(C=64):
    """Multiply-adds of the prepare kernel's inverse of one chunk, as it runs them (README.md,
    "Chunked form"); each product of tiles is three products of split operands (_dot3): four
    products for the 8 x 8 diagonal blocks, N, two per squaring of N while its power is not
    zero, and the last product with D, all of C^3."""
    levels = int(math.log2(C // 8))  # 8 x 8 blocks to C: 16, 32, .., C
    return 3 * (4 + 2 * levels) * C**3


def _prepare_flops(C, K, V):
    """Per token: K K^T twice, W, U and the inverse."""
    return 2 * C * (3 * K + V) + 2 * inverse_macs(C) // C  # C divides it


def flops_forward(B, T, H, K, V=None, C=64, block_v=64, gated=False, prepared=False):
    V = K if V is None else V
    qk = 2 * C * K if prepared else (V / block_v) * 2 * C * K
    scan = qk + 6 * K * V + 2 * C * V
    return B * H * T * (_prepare_flops(C, K, V) + scan)


def flops_backward(B, T, H, K, V=None, C=64, block_v=64, gated=False, keep_states=False,
                   prepared=False, keep_values=False):  # fmt: skip
    """The three passes (the STATES scan forms U from the kept T: one product per token; none
    with ``keep_states``; only the state update K^T V' with ``keep_values``). ``prepared``:
    Q K^T once per chunk in ``_qk_kernel`` instead of once per value block in the reverse
    scan."""
    V = K if V is None else V
    states = 0 if keep_states else 2 * K * V if keep_values else 2 * C * V + 4 * K * V
    qk = 2 * C * K if prepared else (V / block_v) * 2 * C * K
    reverse = qk + 2 * C * V + 6 * K * V + (2 * C * V if keep_values else 0)
    chunk = 6 * K * V + 6 * C * V + (10 if gated else 8) * C * K
    return B * H * T * (states + reverse + chunk)


def flops_minimal(B, T, H, K, V=None, gated=False):
    """The recurrence itself: k S, the rank-one update and q S per token (and the decay)."""
    V = K if V is None else V
    return B * H * T * (6 * K * V + (K * V if gated else 0))


def checkpoint_bytes(B, T, H, K, V=None, C=64, every=16):
    """The state checkpoints of config delta_checkpoint_states: a float32 K x V state per head
    at the start of each segment of ``every`` chunks of each of B sequences of T tokens
    (packed sequences have one partial segment each: more than this count of their total)."""
    V = K if V is None else V
    span = C * every
    segments = (T + span - 1) // span  # the ceiling, for numbers and sympy symbols alike
    return B * H * 4 * K * V * segments


def io_forward(B, T, H, K, V=None, bytes_per=2, block_v=64, gated=False, C=64,
               keep_states=False, prepared=False, keep_values=False,
               checkpoints=False):  # fmt: skip
    """prepare: k, v, beta, g read, W, U and T (C per token, kept for the backward) written;
    scan: q, k, W (and g) read by each of the V / block_v programs, U read and o written once.
    ``keep_states``: the prepare kernel writes no U; each scan program reads T and beta, the
    scan reads v instead of U and also writes V' and the entering states (one K x V per
    chunk). ``keep_values``: the scan also writes V'. ``prepared``: the prepare kernel also
    reads q and writes Q K^T (C per token) and, gated, the decayed keys, which the scan reads
    in k's place; each scan program reads Q K^T. ``checkpoints``: the scan also writes the
    state checkpoints. Gates are float32 in the kernels."""
    V = K if V is None else V
    gate = 4 if gated else 0
    prep = bytes_per * (2 * K + 2 * V + C) + 4 + gate
    scan = (V / block_v) * (3 * bytes_per * K + gate) + 2 * bytes_per * V
    if keep_states:
        prep -= bytes_per * V
        scan += (V / block_v) * (bytes_per * C + 4) + bytes_per * (V + K * V / C)
    elif keep_values:
        scan += bytes_per * V
    if prepared:
        prep += bytes_per * (K + C + (K if gated else 0))
        scan += (V / block_v) * bytes_per * C
    ck = checkpoint_bytes(B, T, H, K, V, C) if checkpoints and not keep_states else 0
    return B * T * H * (prep + scan) + ck


def io_backward(B, T, H, K, V=None, bytes_per=2, C=64, block_v=64, gated=False,
                keep_states=False, prepared=False, keep_values=False,
                checkpoints=False):  # fmt: skip
    """The STATES scan (k, W, T and beta read by each of the V / block_v programs, v read,
    V' and the entering states written; none with ``keep_states``; with ``keep_values`` k
    read by each program, V' read, the states written); the reverse scan (q, k,
    W, dO, V' read, dV' and the leaving states' gradients written); the chunk kernel (q, k,
    v, T, dO, V', dV', states and their gradients read once; dq, dk, dv, dbeta, dg
    written). ``prepared``: ``_qk_kernel`` reads q, k (and g) once and writes Q K^T (C per
    token) and, gated, the decayed keys, which the scans read in k's place; each reverse-scan
    program also reads Q K^T. ``checkpoints``: the STATES scan also reads the state
    checkpoints."""
    V = K if V is None else V
    b, gate = bytes_per, (4 if gated else 0)
    nv = V / block_v
    states = b * K * V / C  # one K x V state per chunk, per token
    scan_states = nv * (2 * b * K + b * C + 4 + gate) + 2 * b * V + states
    if keep_states:
        scan_states = 0
    elif keep_values:
        scan_states = nv * (b * K + gate) + b * V + states
    reverse = nv * (3 * b * K + gate) + 3 * b * V + states
    if keep_values:  # T and beta read in W's place (and gated prepared, k besides its decay)
        reverse += nv * (b * C + 4 - b * K + (b * K if prepared and gated else 0))
    chunk = b * C + 4 + gate + 4 * b * V + 2 * states + 2 * b * K + 2 * b * K + b * V + 4 + gate
    qk = 0
    if prepared:
        qk = 2 * b * K + gate + b * (C + (K if gated else 0))
        reverse += nv * b * C
    ck = checkpoint_bytes(B, T, H, K, V, C) if checkpoints and not keep_states else 0
    return B * T * H * (qk + scan_states + reverse + chunk) + ck


def activation_bytes(B, T, H, K, V=None, bytes_per=2, gated=False, l2norm=False, C=64,
                     keep_states=False, keep_values=False, checkpoints=False):  # fmt: skip
    """Kept for the backward: q, k, v, T (the chunk's inverse, C per token), -W (K per token)
    and beta (and g) in float32; no chunk states unless ``keep_states`` (then V' and the
    state entering each chunk, in the input dtype), or ``checkpoints`` (``checkpoint_bytes``,
    where the states are not kept); V' in place of -W with ``keep_values``.
    With ``l2norm``, PyTorch's normalisation keeps float32 copies of q and k and their norms."""
    V = K if V is None else V
    kept = bytes_per * (3 * K + V + C) + 4 + (4 if gated else 0)
    if keep_states:
        kept += bytes_per * (V + K * V / C)
    elif keep_values:
        kept += bytes_per * V
    if keep_values:  # V' in place of -W
        kept -= bytes_per * K
    if l2norm:
        kept += 2 * (4 * K + 4)
    ck = checkpoint_bytes(B, T, H, K, V, C) if checkpoints and not keep_states else 0
    return B * T * H * kept + ck


def forward_temp_bytes(B, T, H, K, V=None, bytes_per=2, keep_states=False, C=64, gated=False,
                       prepared=False, keep_values=False):  # fmt: skip
    """U, written by the prepare kernel and freed when the forward returns (chunk.py's
    FWD_FORM_U False: the forward's scan reads it); none with ``keep_states``; and -W with
    ``keep_values`` (V' kept in its place). ``prepared``: also Q K^T (C per token) and,
    gated, the decayed keys (K per token)."""
    V = K if V is None else V
    u = (0 if keep_states else V) + (K if keep_values else 0)
    return B * T * H * bytes_per * (u + (C + (K if gated else 0) if prepared else 0))


def backward_temp_bytes(B, T, H, K, V=None, bytes_per=2, C=64, keep_states=False,
                        keep_values=False):  # fmt: skip
    """Held by the backward at its peak besides the gradients and what the forward kept: V',
    dV', and the entering states and their gradients (one K x V each per chunk); with
    ``keep_states`` V' and the states were kept by the forward, with ``keep_values`` V'
    (which the backward does not free: -W, which it replaces, was not freed either).
    ``prepared`` adds nothing at the peak: its Q K^T and decayed keys (C, and gated K, per
    token) are freed before the gradients (2 K + V per token and more) are allocated."""
    V = K if V is None else V
    n = 1 if keep_states else 2
    nv = 1 if keep_states or keep_values else 2
    return B * T * H * bytes_per * (nv * V + n * K * V / C)


# The chunked PyTorch form (chunked.gated_delta_rule_chunked): what CPU tensors, float64 and
# keys wider than the kernels take run. It pads each sequence to whole chunks of C (one chunk
# at least) and forms every chunk's products at once; only the state is carried by a loop over
# the chunks. `tail(T, C)` is T mod C (the cost model passes a sympy function of its own).
def _mod(T, C):
    return T % C


def chunked_tokens(T, C=64, tail=_mod):
    """The padded length the chunked form computes on: T rounded up to whole chunks of C."""
    return T + tail(-T, C)


def chunked_flops_forward(B, T, H, K, V=None, C=64, tail=_mod):
    """The products FlopCounterMode counts, per padded token: K K^T and Q K^T (2 C K each),
    in the loop W S, Q S and the state update K^T V' (2 K V each) and P V' (2 C V). The
    triangular solves are not counted (FlopCounterMode has no formula for them)."""
    V = K if V is None else V
    return B * H * chunked_tokens(T, C, tail) * (4 * C * K + 6 * K * V + 2 * C * V)


def chunked_flops_backward(B, T, H, K, V=None, C=64, tail=_mod):
    """Two gradient products per forward product, less those autograd skips (the zero state
    entering the first chunk needs no gradient: W S's and Q S's, 2 C K V each; the state the
    last chunk leaves is not an output: its update's two), plus each solve's gradient of its
    matrix, -(grad) X^T (2 C^2 K for W, 2 C^2 V for U per chunk)."""
    V = K if V is None else V
    P = chunked_tokens(T, C, tail)
    fwd = chunked_flops_forward(B, T, H, K, V, C, tail)
    return 2 * fwd - 8 * B * H * C * K * V + 2 * B * H * P * C * (K + V)


def chunked_kept_bytes(B, T, H, K, V=None, C=64, compute_bytes=4, gated=False, copies=True,
                       tail=_mod):  # fmt: skip
    """What autograd keeps of gated_delta_rule_chunked beyond g, per padded token and head in
    the compute dtype: the products' operands as matmul lays them out (K K^T's and Q K^T's:
    4 K; the state update's K^T: K; P V's V': V; after the first chunk W for W S: K); the
    padded k, v and beta; K K^T, the unit lower triangle I + A and the masked Q K^T (C each);
    the solves' results W and U (K, V); per chunk the entering state (K x V). Gated: q and k
    scaled by the gates, e^(G_i - G_j), the decayed K K^T and Q K^T (C each more), e^G,
    e^(G_last - G) and the gates' products with beta and the scale (one each). The masks
    (two C x C bools) are shared by the heads. ``copies`` False: K K^T's and Q K^T's
    operands are views of the padded q and k (matmul folds the batch, heads and chunks of a
    padded tensor laid out heads before tokens, the features last or a single chunk)."""
    V = K if V is None else V
    P = chunked_tokens(T, C, tail)
    chunks = P / C if not isinstance(P, int) else P // C
    per_token = (8 * K + 6 * C + 3 * V + 5) if gated else (7 * K + 3 * C + 3 * V + 1)
    per_token -= 0 if copies else 4 * K
    per_head = P * per_token + chunks * K * V + (chunks - 1) * C * K
    return compute_bytes * B * H * per_head + 2 * C * C


def chunked_temp_bytes(B, T, H, K, V=None, C=64, compute_bytes=4, gated=False, tail=_mod):
    """Held by gated_delta_rule_chunked's forward at its peak beyond what it keeps and
    returns: C x C products per padded token on their way to the kept ones (the scaled and
    masked scores, beta K K^T before its mask, I + A's sum), two C per token (three gated:
    the gate differences and their masked form besides). Measured on the CPU allocator
    within 10% at K, V of 8 to 16 (tests/cost/test_chunked_forms.py)."""
    return compute_bytes * B * H * chunked_tokens(T, C, tail) * (3 if gated else 2) * C


def chunked_backward_temp_bytes(B, T, H, K, V=None, C=64, compute_bytes=4, gated=False,
                                tail=_mod, minimum=min):  # fmt: skip
    """Held by its backward at the peak beyond the input gradients, while the solves'
    backward runs: the gradients of the chunks' C x C products (Q K^T, I + A) with what the
    chunk loop's operands had kept already freed, about 3 (C - K) per padded token (fitted on
    the CPU allocator at K = V of 8 to 64, within 10%; none from K = C)."""
    return compute_bytes * B * H * chunked_tokens(T, C, tail) * 3 * (C - minimum(K, C))
