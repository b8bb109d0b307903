"""Chunked gated linear attention (GLA): kernels, launch wrappers, autograd, public function.

The sequence is cut into chunks of CHUNK tokens and each chunk into sub-chunks of SUB tokens
(secondary chunking, GLA paper section 4). Maths, the bounded exponents and the backward's
derivation in README.md. Every exponent a kernel takes is <= 0 (clamped so where rounding
could make it a hair above), so no factor exceeds 1 and nothing overflows in 16-bit.

Forward, three launches (the backward runs the first again rather than keep its output):
  _gate_prep  one program per (chunk, sequence x head): the gates' in-chunk cumulative sums b
             (float32) and the chunk's gated operands q e^b scale and k e^(beta - b) (input
             dtype), so that no scan exponentiates a tile.
  _fwd_A     one program per (sub-chunk row block, chunk, sequence x head): the intra-chunk
             score matrix A (float32, [B, T, H, CHUNK]); off-diagonal sub-blocks by tensor-core
             products, diagonal sub-blocks exactly, elementwise over the key channels.
  _fwd_walk  one program per (value block, sequence x head) walks its chunks carrying the
             state S in registers: o = (q e^b scale) S + A v, S <- e^beta S + (k e^(beta-b))^T v.
Backward, five launches (_gate_prep, then):
  _bwd_states  per (key block, sequence x head), forward scan of S: dO S^T (dq's inter-chunk
               part before its gate factor), and S after every chunk written once (float32)
               for dg's chunk term.
  _bwd_scan    per key block (dk role) and per value block (dv role), backward scans of the
               state gradient U: v U^T (dk's inter-chunk part before its gate factor), dg's
               chunk term w, d initial_state; dv whole (A^T dO + its inter-chunk part).
  _bwd_dA      per (chunk, sequence x head): dA = scale dO V^T (lower triangle, float32,
               A's layout), once for every key-channel block of _bwd_intra.
  _bwd_intra   per (key-channel block, chunk, sequence x head): the intra-chunk parts of dq
               and dk (secondary chunking again), then dg by a reverse cumulative sum within
               the chunk; sub-chunks last to first, so each one's dq, dk and dg are written
               together and the kernel only reads what the scans wrote (it can be tuned).
"""

import torch

from .._backend import (
    autocast_inputs,
    cdiv,
    check,
    check_gate,
    check_sequences,
    check_state,
    default_scale,
    interpreting,
    launch,
    pow2,
    use_triton,
)
from .._kernels import GATE_FLOOR, chunk_slot0
from .._traced import opaque, tracing
from .._triton import tl, triton
from .reference import gla_chunked


@triton.jit
def _sequence(CU, T, i_n, VARLEN: tl.constexpr):
    """Sequence i_n: its length L and the row of its first token in the flattened [B * T]
    token rows. Packed sequences lie along T between offsets in CU."""
    if VARLEN:
        bos = tl.load(CU + i_n).to(tl.int64)
        L = (tl.load(CU + i_n + 1).to(tl.int64) - bos).to(tl.int32)
    else:
        L = T
        bos = i_n.to(tl.int64) * T
    return L, bos


@triton.jit
def _chunk_program(CU, T, H, C: tl.constexpr, VARLEN: tl.constexpr):
    """(head, sequence length, first token, chunk start) of a program (chunk, sequence x
    head)."""
    i_nh = tl.program_id(1)
    L, bos = _sequence(CU, T, i_nh // H, VARLEN)
    return i_nh % H, L, bos, tl.program_id(0) * C


@triton.jit
def _tile(base, rows, cols, L, D, RS):
    """rows x cols of a [rows, D] matrix with row stride RS; rows >= L and cols >= D read 0."""
    mask = (rows < L)[:, None] & (cols < D)[None, :]
    return tl.load(base + rows[:, None] * RS + cols[None, :], mask=mask, other=0.0)


@triton.jit
def _row(base, row, cols, L, D, RS):
    """One row as a float32 vector (zeros when row >= L)."""
    mask = (cols < D) & (row + 0 * cols < L)
    return tl.load(base + row * RS + cols, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _qk_rows(bos, i_h, H, K_DIM: tl.constexpr, GROUP: tl.constexpr):
    """(offset, row stride) of the q and k rows that value head i_h reads, from token row bos
    on: head i_h // GROUP of q and k's H // GROUP heads (grouped heads: GROUP value heads read
    one head of q and k), its own head when GROUP is 1."""
    n_qk = H
    i_qk = i_h
    if GROUP > 1:
        n_qk = H // GROUP
        i_qk = i_h // GROUP
    return (bos * n_qk + i_qk) * K_DIM, n_qk * K_DIM


@triton.jit
def _gate_prep(
    G, Q, K, GC, QG, KD, CU, T, H, scale, K_DIM: tl.constexpr, BLOCK_K: tl.constexpr,
    C: tl.constexpr, VARLEN: tl.constexpr, GROUP: tl.constexpr,
):  # fmt: skip
    """One chunk and key block (program (chunk, sequence x head, key block)), all
    [B, T, H, K]: GC, float32, the log-gates' (G) cumulative sums over the chunk's tokens, b;
    QG = q e^b scale and KD = k e^(beta - b) in the inputs' dtype, beta = b at the chunk's
    last valid token. q and k are read at the head value head i_h reads (_qk_rows); the
    outputs are per value head."""
    i_h, L, bos, t0 = _chunk_program(CU, T, H, C, VARLEN)
    if t0 < L:
        offs_t = tl.arange(0, C)
        rows = t0 + offs_t
        offs_k = tl.program_id(2) * BLOCK_K + tl.arange(0, BLOCK_K)
        RS = H * K_DIM
        qk = (bos * H + i_h) * K_DIM
        qq, RQ = _qk_rows(bos, i_h, H, K_DIM, GROUP)
        g = tl.maximum(_tile(G + qk, rows, offs_k, L, K_DIM, RS).to(tl.float32), GATE_FLOOR)
        b = tl.cumsum(g, 0)
        last = tl.minimum(C, L - t0) - 1
        beta = tl.sum(tl.where((offs_t == last)[:, None], b, 0.0), 0)
        q = _tile(Q + qq, rows, offs_k, L, K_DIM, RQ)
        k = _tile(K + qq, rows, offs_k, L, K_DIM, RQ)
        mask = (rows < L)[:, None] & (offs_k < K_DIM)[None, :]
        ptrs = qk + rows[:, None] * RS + offs_k[None, :]
        tl.store(GC + ptrs, b, mask=mask)
        tl.store(QG + ptrs, (q * tl.exp(b) * scale).to(QG.dtype.element_ty), mask=mask)
        kd = k * tl.exp(tl.minimum(beta[None, :] - b, 0.0))
        tl.store(KD + ptrs, kd.to(KD.dtype.element_ty), mask=mask)


@triton.jit
def _gate_tile(GC, qk, rows, offs_k, L, K_DIM: tl.constexpr, RS):
    """rows x channels of b, the in-chunk cumulative gates; rows past the sequence's end read
    its last token's (b is flat there, as if their gates were 0)."""
    r = tl.minimum(rows, L - 1)
    return tl.load(GC + qk + r[:, None] * RS + offs_k[None, :], mask=(offs_k < K_DIM)[None, :],
                   other=0.0)  # fmt: skip


@triton.jit
def _gate_row(GC, qk, row, offs_k, L, K_DIM: tl.constexpr, RS):
    """One row of b (clamped to the sequence's tokens), the cumulative gate at a boundary."""
    r = tl.maximum(tl.minimum(row, L - 1), 0)
    return tl.load(GC + qk + r * RS + offs_k, mask=offs_k < K_DIM, other=0.0)


@triton.jit
def _beta(GC, qk, t0, offs_k, L, K_DIM: tl.constexpr, RS, C: tl.constexpr):
    """beta, the chunk's b at its last valid token (the chunk's total log-decay)."""
    return _gate_row(GC, qk, t0 + C - 1, offs_k, L, K_DIM, RS)


@triton.jit
def _diag_ref(b, offs_c, BC: tl.constexpr):
    """For a diagonal sub-block with in-block cumulative gates b [BC, BLOCK_K]: its middle
    row b_m, the reference of the split e^(b_i - b_j) = e^(b_i - b_m) e^(b_m - b_j), and the
    largest |b_i - b_m| over rows and channels, which bounds both factors."""
    b_m = tl.sum(tl.where(offs_c[:, None] == BC // 2, b, 0.0), 0)
    return b_m, tl.max(tl.max(tl.abs(b - b_m[None, :]), 1), 0)


@triton.jit
def _fwd_A_block(
    Q, K, GC, a_base, qk, qq, t0, i_I, L, scale, RS, RQ, RA, offs_k, K_DIM: tl.constexpr,
    BC: tl.constexpr, GDOT: tl.constexpr,
):  # fmt: skip
    """Rows [i_I * BC, +BC) of a chunk's A (first token t0), in sub-chunk blocks. q and k
    at offset qq with row stride RQ, the gates at qk with RS."""
    offs_c = tl.arange(0, BC)
    r0 = t0 + i_I * BC
    rows_I = r0 + offs_c
    q_I = _tile(Q + qq, rows_I, offs_k, L, K_DIM, RQ).to(tl.float32)
    b_I = _gate_tile(GC, qk, rows_I, offs_k, L, K_DIM, RS)
    # r: b at the boundary before block I (0 at the chunk's start). Off-diagonal blocks
    # J < I: (q_I e^(b_I - r)) (k_J e^(r - b_J))^T, both exponents <= 0.
    r = tl.where(i_I > 0, _gate_row(GC, qk, r0 - 1, offs_k, L, K_DIM, RS), 0.0)
    qg = q_I * tl.exp(tl.minimum(b_I - r[None, :], 0.0)) * scale
    for J in range(0, i_I):
        rows_J = t0 + J * BC + offs_c
        k_J = _tile(K + qq, rows_J, offs_k, L, K_DIM, RQ).to(tl.float32)
        b_J = _gate_tile(GC, qk, rows_J, offs_k, L, K_DIM, RS)
        kg = k_J * tl.exp(tl.minimum(r[None, :] - b_J, 0.0))
        a = tl.dot(qg, tl.trans(kg), input_precision=GDOT)
        tl.store(
            a_base + rows_I[:, None] * RA + (J * BC + offs_c)[None, :],
            a,
            mask=(rows_I < L)[:, None],
        )
    # The diagonal block: column j is sum_k q_ik k_jk e^(b_ik - b_jk). One product of
    # q e^(b - b_m) and k e^(b_m - b) while both factors stay within e^SAFE_SPAN, else
    # exactly, column by column.
    b_m, span = _diag_ref(b_I, offs_c, BC)
    if span < SAFE_SPAN:
        k_I = _tile(K + qq, rows_I, offs_k, L, K_DIM, RQ).to(tl.float32)
        qt = q_I * tl.exp(b_I - b_m[None, :])
        kt = k_I * tl.exp(b_m[None, :] - b_I)
        a = tl.dot(qt, tl.trans(kt), input_precision=GDOT)
    else:
        a = tl.zeros([BC, BC], tl.float32)
        for j in range(0, BC):
            k_j = _row(K + qq, r0 + j, offs_k, L, K_DIM, RQ)
            b_j = _gate_row(GC, qk, r0 + j, offs_k, L, K_DIM, RS)
            col = tl.sum(q_I * k_j[None, :] * tl.exp(tl.minimum(b_I - b_j[None, :], 0.0)), 1)
            a = tl.where(offs_c[None, :] == j, col[:, None], a)
    a = tl.where(offs_c[:, None] >= offs_c[None, :], a * scale, 0.0)
    tl.store(
        a_base + rows_I[:, None] * RA + (i_I * BC + offs_c)[None, :],
        a,
        mask=(rows_I < L)[:, None],
    )


@triton.jit
def _fwd_A_whole(Q, K, a_base, qq, rows, offs_t, offs_k, b, b_m, L, scale, RQ, RA,
                 K_DIM: tl.constexpr, GDOT: tl.constexpr):  # fmt: skip
    """A chunk's A as one product (its gates b span less than SAFE_SPAN from the middle row
    b_m): (q e^(b - b_m)) (k e^(b_m - b))^T scale, 0 above the diagonal."""
    q = _tile(Q + qq, rows, offs_k, L, K_DIM, RQ).to(tl.float32)
    k = _tile(K + qq, rows, offs_k, L, K_DIM, RQ).to(tl.float32)
    qt = q * tl.exp(b - b_m[None, :])
    kt = k * tl.exp(b_m[None, :] - b)
    a = tl.dot(qt, tl.trans(kt), input_precision=GDOT)
    a = tl.where(offs_t[:, None] >= offs_t[None, :], a * scale, 0.0)
    tl.store(a_base + rows[:, None] * RA + offs_t[None, :], a, mask=(rows < L)[:, None])


@triton.jit
def _fwd_A(
    Q, K, GC, A, CU, T, H, scale,
    K_DIM: tl.constexpr, BLOCK_K: tl.constexpr, C: tl.constexpr, BC: tl.constexpr,
    VARLEN: tl.constexpr, GDOT: tl.constexpr, WHOLE: tl.constexpr, GROUP: tl.constexpr,
):  # fmt: skip
    """One chunk's A_ij = scale sum_k q_ik k_jk e^(b_ik - b_jk), j <= i, with b the in-chunk
    cumulative gates (GC, written by _gate_prep): as one block where the gates span less than
    SAFE_SPAN from the chunk's middle row (and WHOLE), else in sub-chunk row blocks."""
    NC: tl.constexpr = C // BC
    i_h, L, bos, t0 = _chunk_program(CU, T, H, C, VARLEN)
    if t0 < L:
        offs_k = tl.arange(0, BLOCK_K)
        offs_t = tl.arange(0, C)
        rows = t0 + offs_t
        RS = H * K_DIM
        qk = (bos * H + i_h) * K_DIM
        qq, RQ = _qk_rows(bos, i_h, H, K_DIM, GROUP)
        RA = H * C
        a_base = A + (bos * H + i_h) * C
        b = _gate_tile(GC, qk, rows, offs_k, L, K_DIM, RS)
        b_m, span = _diag_ref(b, offs_t, C)
        if WHOLE and span < SAFE_SPAN:
            _fwd_A_whole(Q, K, a_base, qq, rows, offs_t, offs_k, b, b_m, L, scale, RQ, RA, K_DIM,
                         GDOT)  # fmt: skip
        else:
            for i_I in tl.static_range(NC):
                if t0 + i_I * BC < L:
                    _fwd_A_block(Q, K, GC, a_base, qk, qq, t0, i_I, L, scale, RS, RQ, RA, offs_k,
                                 K_DIM, BC, GDOT)  # fmt: skip


@triton.jit
def _fwd_walk(
    QG, KD, V, GC, A, O, S0, ST, CU, T, H,
    K_DIM: tl.constexpr, V_DIM: tl.constexpr, BLOCK_K: tl.constexpr, C: tl.constexpr,
    USE_S0: tl.constexpr, STORE_ST: tl.constexpr, VARLEN: tl.constexpr, DOT: tl.constexpr,
    BLOCK_V: tl.constexpr,
):  # fmt: skip
    """Value columns [i_v * BLOCK_V, +BLOCK_V) of S walked over the chunks: o = QG S + A v,
    S <- e^beta S + KD^T v, with QG = q e^b scale and KD = k e^(beta - b) from _gate_prep."""
    i_v = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    L, bos = _sequence(CU, T, i_n, VARLEN)
    offs_t = tl.arange(0, C)
    offs_k = tl.arange(0, BLOCK_K)
    offs_v = i_v * BLOCK_V + tl.arange(0, BLOCK_V)
    RS = H * K_DIM
    RV = H * V_DIM
    RA = H * C
    qk = (bos * H + i_h) * K_DIM
    vo = (bos * H + i_h) * V_DIM
    ab = (bos * H + i_h) * C
    s_ptrs = i_nh.to(tl.int64) * K_DIM * V_DIM + offs_k[:, None] * V_DIM + offs_v[None, :]
    s_mask = (offs_k < K_DIM)[:, None] & (offs_v < V_DIM)[None, :]
    if USE_S0:
        S = tl.load(S0 + s_ptrs, mask=s_mask, other=0.0).to(tl.float32)
    else:
        S = tl.zeros([BLOCK_K, BLOCK_V], tl.float32)
    causal = offs_t[:, None] >= offs_t[None, :]
    for t0 in range(0, L, C):
        rows = t0 + offs_t
        qg = _tile(QG + qk, rows, offs_k, L, K_DIM, RS)
        kd = _tile(KD + qk, rows, offs_k, L, K_DIM, RS)
        v = _tile(V + vo, rows, offs_v, L, V_DIM, RV)
        a = tl.where(causal, _tile(A + ab, rows, offs_t, L, C, RA), 0.0)
        beta = _beta(GC, qk, t0, offs_k, L, K_DIM, RS, C)
        o = tl.dot(qg, S.to(v.dtype), input_precision=DOT)
        o = tl.dot(a.to(v.dtype), v, o, input_precision=DOT)
        tl.store(
            O + vo + rows[:, None] * RV + offs_v[None, :],
            o.to(O.dtype.element_ty),
            mask=(rows < L)[:, None] & (offs_v < V_DIM)[None, :],
        )
        S = tl.dot(tl.trans(kd), v, S * tl.exp(beta)[:, None], input_precision=DOT)
    if STORE_ST:
        tl.store(ST + s_ptrs, S, mask=s_mask)


@triton.jit
def _bwd_states(
    KD, V, GC, DO, DQ32, S0, HB, CU, T, H,
    K_DIM: tl.constexpr, V_DIM: tl.constexpr, BLOCK_VF: tl.constexpr, C: tl.constexpr,
    USE_S0: tl.constexpr, VARLEN: tl.constexpr, DOT: tl.constexpr, BLOCK_KS: tl.constexpr,
):  # fmt: skip
    """Key rows [i_k * BLOCK_KS, +BLOCK_KS) of S scanned forward (S <- e^beta S + KD^T v):
    dO S^T into DQ32 (dq's inter-chunk part before its factor scale e^b, which _bwd_intra
    applies), and S after each chunk into HB."""
    i_k = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    L, bos = _sequence(CU, T, i_n, VARLEN)
    slot0 = chunk_slot0(bos, i_n, T, C, VARLEN)
    offs_t = tl.arange(0, C)
    offs_k = i_k * BLOCK_KS + tl.arange(0, BLOCK_KS)
    offs_v = tl.arange(0, BLOCK_VF)
    RS = H * K_DIM
    RV = H * V_DIM
    qk = (bos * H + i_h) * K_DIM
    vo = (bos * H + i_h) * V_DIM
    kv = offs_k[:, None] * V_DIM + offs_v[None, :]
    s_mask = (offs_k < K_DIM)[:, None] & (offs_v < V_DIM)[None, :]
    if USE_S0:
        S = tl.load(S0 + i_nh.to(tl.int64) * K_DIM * V_DIM + kv, mask=s_mask, other=0.0)
    else:
        S = tl.zeros([BLOCK_KS, BLOCK_VF], tl.float32)
    for t0 in range(0, L, C):
        rows = t0 + offs_t
        kd = _tile(KD + qk, rows, offs_k, L, K_DIM, RS)
        v = _tile(V + vo, rows, offs_v, L, V_DIM, RV)
        do = _tile(DO + vo, rows, offs_v, L, V_DIM, RV)
        beta = _beta(GC, qk, t0, offs_k, L, K_DIM, RS, C)
        dq = tl.dot(do, tl.trans(S.to(do.dtype)), input_precision=DOT)
        tl.store(
            DQ32 + qk + rows[:, None] * RS + offs_k[None, :],
            dq,
            mask=(rows < L)[:, None] & (offs_k < K_DIM)[None, :],
        )
        S = tl.dot(tl.trans(kd), v, S * tl.exp(beta)[:, None], input_precision=DOT)
        slot = slot0 + t0 // C
        tl.store(HB + (slot * H + i_h) * K_DIM * V_DIM + kv, S, mask=s_mask)


@triton.jit
def _bwd_dk(
    QG, GC, V, DO, DK32, W, HB, DST, DS0, L, bos, slot0, i_nh, i_h, i_k, H,
    K_DIM: tl.constexpr, V_DIM: tl.constexpr, BLOCK_KS: tl.constexpr, BLOCK_VF: tl.constexpr,
    C: tl.constexpr, USE_DST: tl.constexpr, STORE_DS0: tl.constexpr, DOT: tl.constexpr,
):  # fmt: skip
    """Key rows of the state gradient U (= dL/dS after the chunk) scanned backward,
    U <- e^beta U + QG^T dO: v U^T into DK32 (dk's inter-chunk part before its factor
    e^(beta - b), which _bwd_intra applies), dg's chunk term w = sum_v S * U, d initial_state."""
    offs_t = tl.arange(0, C)
    offs_k = i_k * BLOCK_KS + tl.arange(0, BLOCK_KS)
    offs_v = tl.arange(0, BLOCK_VF)
    RS = H * K_DIM
    RV = H * V_DIM
    qk = (bos * H + i_h) * K_DIM
    vo = (bos * H + i_h) * V_DIM
    kv = offs_k[:, None] * V_DIM + offs_v[None, :]
    k_ok = offs_k < K_DIM
    s_mask = k_ok[:, None] & (offs_v < V_DIM)[None, :]
    if USE_DST:
        U = tl.load(DST + i_nh.to(tl.int64) * K_DIM * V_DIM + kv, mask=s_mask, other=0.0)
    else:
        U = tl.zeros([BLOCK_KS, BLOCK_VF], tl.float32)
    n_chunks = tl.cdiv(L, C)
    for i in range(0, n_chunks):
        c = n_chunks - 1 - i
        rows = c * C + offs_t
        qg = _tile(QG + qk, rows, offs_k, L, K_DIM, RS)
        v = _tile(V + vo, rows, offs_v, L, V_DIM, RV)
        do = _tile(DO + vo, rows, offs_v, L, V_DIM, RV)
        beta = _beta(GC, qk, c * C, offs_k, L, K_DIM, RS, C)
        slot = slot0 + c
        S = tl.load(HB + (slot * H + i_h) * K_DIM * V_DIM + kv, mask=s_mask, other=0.0)
        u16 = U.to(v.dtype)
        # with a final-state gradient w takes U as rounded for dk's v U^T, so that the two
        # cancel in dg (README, "dg"); without one, U itself (the rounding cost the scan 12 %)
        uw = u16.to(tl.float32) if USE_DST else U
        tl.store(W + (slot * H + i_h) * K_DIM + offs_k, tl.sum(S * uw, 1), mask=k_ok)
        dk = tl.dot(v, tl.trans(u16), input_precision=DOT)
        tl.store(
            DK32 + qk + rows[:, None] * RS + offs_k[None, :],
            dk,
            mask=(rows < L)[:, None] & k_ok[None, :],
        )
        U = tl.dot(tl.trans(qg), do, U * tl.exp(beta)[:, None], input_precision=DOT)
    if STORE_DS0:
        tl.store(DS0 + i_nh.to(tl.int64) * K_DIM * V_DIM + kv, U, mask=s_mask)


@triton.jit
def _bwd_dv(
    QG, KD, GC, DO, A, DV, DST, L, bos, i_nh, i_h, i_v, H,
    K_DIM: tl.constexpr, V_DIM: tl.constexpr, BLOCK_KF: tl.constexpr, BLOCK_VS: tl.constexpr,
    C: tl.constexpr, USE_DST: tl.constexpr, DOT: tl.constexpr,
):  # fmt: skip
    """Value columns of the state gradient U scanned backward, U <- e^beta U + QG^T dO:
    dv = A^T dO + KD U, KD = k e^(beta - b)."""
    offs_t = tl.arange(0, C)
    offs_k = tl.arange(0, BLOCK_KF)
    offs_v = i_v * BLOCK_VS + tl.arange(0, BLOCK_VS)
    RS = H * K_DIM
    RV = H * V_DIM
    RA = H * C
    qk = (bos * H + i_h) * K_DIM
    vo = (bos * H + i_h) * V_DIM
    ab = (bos * H + i_h) * C
    kv = offs_k[:, None] * V_DIM + offs_v[None, :]
    v_ok = offs_v < V_DIM
    if USE_DST:
        U = tl.load(
            DST + i_nh.to(tl.int64) * K_DIM * V_DIM + kv,
            mask=(offs_k < K_DIM)[:, None] & v_ok[None, :],
            other=0.0,
        )
    else:
        U = tl.zeros([BLOCK_KF, BLOCK_VS], tl.float32)
    causal = offs_t[:, None] >= offs_t[None, :]
    n_chunks = tl.cdiv(L, C)
    for i in range(0, n_chunks):
        c = n_chunks - 1 - i
        rows = c * C + offs_t
        qg = _tile(QG + qk, rows, offs_k, L, K_DIM, RS)
        kd = _tile(KD + qk, rows, offs_k, L, K_DIM, RS)
        do = _tile(DO + vo, rows, offs_v, L, V_DIM, RV)
        a = tl.where(causal, _tile(A + ab, rows, offs_t, L, C, RA), 0.0)
        beta = _beta(GC, qk, c * C, offs_k, L, K_DIM, RS, C)
        dv = tl.dot(kd, U.to(do.dtype), input_precision=DOT)
        dv = tl.dot(tl.trans(a.to(do.dtype)), do, dv, input_precision=DOT)
        tl.store(
            DV + vo + rows[:, None] * RV + offs_v[None, :],
            dv.to(DV.dtype.element_ty),
            mask=(rows < L)[:, None] & v_ok[None, :],
        )
        U = tl.dot(tl.trans(qg), do, U * tl.exp(beta)[:, None], input_precision=DOT)


@triton.jit
def _bwd_scan(
    QG, KD, V, GC, DO, A, DK32, DV, W, HB, DST, DS0, CU, T, H,
    K_DIM: tl.constexpr, V_DIM: tl.constexpr, BLOCK_KF: tl.constexpr, BLOCK_VF: tl.constexpr,
    C: tl.constexpr, USE_DST: tl.constexpr, STORE_DS0: tl.constexpr, VARLEN: tl.constexpr,
    DOT: tl.constexpr, BLOCK_KS: tl.constexpr, BLOCK_VS: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    L, bos = _sequence(CU, T, i_n, VARLEN)
    nk = tl.cdiv(K_DIM, BLOCK_KS)
    if pid < nk:
        slot0 = chunk_slot0(bos, i_n, T, C, VARLEN)
        _bwd_dk(
            QG, GC, V, DO, DK32, W, HB, DST, DS0, L, bos, slot0, i_nh, i_h, pid, H,
            K_DIM, V_DIM, BLOCK_KS, BLOCK_VF, C, USE_DST, STORE_DS0, DOT,
        )  # fmt: skip
    else:
        _bwd_dv(
            QG, KD, GC, DO, A, DV, DST, L, bos, i_nh, i_h, pid - nk, H,
            K_DIM, V_DIM, BLOCK_KF, BLOCK_VS, C, USE_DST, DOT,
        )  # fmt: skip


@triton.jit
def _bwd_dA(
    V, DO, DA, CU, T, H, scale,
    V_DIM: tl.constexpr, BLOCK_V: tl.constexpr, C: tl.constexpr, VARLEN: tl.constexpr,
    DOT: tl.constexpr,
):  # fmt: skip
    """One chunk's dA_ij = scale dO_i . v_j for j <= i (0 above the diagonal), float32, in
    A's layout: every key-channel block of _bwd_intra reads it instead of forming it again
    (scale folded in here, so _bwd_intra's products need none)."""
    i_h, L, bos, t0 = _chunk_program(CU, T, H, C, VARLEN)
    if t0 < L:
        offs_c = tl.arange(0, C)
        rows = t0 + offs_c
        RV = H * V_DIM
        vo = (bos * H + i_h) * V_DIM
        da = tl.zeros([C, C], tl.float32)
        for v0 in range(0, V_DIM, BLOCK_V):
            offs_v = v0 + tl.arange(0, BLOCK_V)
            do = _tile(DO + vo, rows, offs_v, L, V_DIM, RV)
            v = _tile(V + vo, rows, offs_v, L, V_DIM, RV)
            da = tl.dot(do, tl.trans(v), da, input_precision=DOT)
        da = tl.where(offs_c[:, None] >= offs_c[None, :], da * scale, 0.0)
        a_base = DA + (bos * H + i_h) * C
        tl.store(a_base + rows[:, None] * (H * C) + offs_c[None, :], da, mask=(rows < L)[:, None])


@triton.jit
def _intra_whole(
    Q, K, KD, DA, DQ32, DK32, DQ, DK, DG, qk, qq, a_base, rows, offs_t, offs_k, k_ok, b, b_m,
    beta, carry, scale, L, K_DIM: tl.constexpr, RS, RQ, RA, GDOT: tl.constexpr,
    ROUNDED: tl.constexpr,
):  # fmt: skip
    """_bwd_intra's chunk as one block (rows: its tokens, b [C, BLOCK_K] its gates, b_m their
    middle row, every |b - b_m| < SAFE_SPAN): dq = (dA (k e^(b_m - b))) e^(b - b_m) + scale e^b
    DQ32, dk = (dA^T (q e^(b - b_m))) e^(b_m - b) + e^(beta - b) DK32, dg = (reverse cumsum of
    q dq - k dk) + carry."""
    mask = (rows < L)[:, None] & k_ok[None, :]
    ptrs = qk + rows[:, None] * RS + offs_k[None, :]
    da = tl.load(a_base + rows[:, None] * RA + offs_t[None, :], mask=(rows < L)[:, None],
                 other=0.0)  # fmt: skip
    k = _tile(K + qq, rows, offs_k, L, K_DIM, RQ).to(tl.float32)
    kt = k * tl.exp(b_m[None, :] - b)
    dq = tl.dot(da, kt, input_precision=GDOT) * tl.exp(b - b_m[None, :])
    dq += tl.load(DQ32 + ptrs, mask=mask, other=0.0) * (scale * tl.exp(b))
    tl.store(DQ + ptrs, dq.to(DQ.dtype.element_ty), mask=mask)
    q = _tile(Q + qq, rows, offs_k, L, K_DIM, RQ).to(tl.float32)
    x = q * dq
    qt = q * tl.exp(b - b_m[None, :])
    dk = tl.dot(tl.trans(da), qt, input_precision=GDOT) * tl.exp(b_m[None, :] - b)
    dk32 = tl.load(DK32 + ptrs, mask=mask, other=0.0)
    f = tl.exp(tl.minimum(beta[None, :] - b, 0.0))
    dk += dk32 * f
    tl.store(DK + ptrs, dk.to(DK.dtype.element_ty), mask=mask)
    x -= k * dk
    if ROUNDED:  # the inter-chunk part of k dk from the gated keys as the state was built
        x += dk32 * (k * f - _tile(KD + qk, rows, offs_k, L, K_DIM, RS).to(tl.float32))
    dg = tl.cumsum(x, 0, reverse=True) + carry[None, :]
    tl.store(DG + ptrs, dg.to(DG.dtype.element_ty), mask=mask)


@triton.jit
def _bwd_intra(
    Q, K, KD, GC, DA, DQ32, DK32, W, DQ, DK, DG, CU, T, H, scale,
    K_DIM: tl.constexpr, BLOCK_K: tl.constexpr, C: tl.constexpr, BC: tl.constexpr,
    VARLEN: tl.constexpr, GDOT: tl.constexpr, WHOLE: tl.constexpr, GROUP: tl.constexpr,
    ROUNDED: tl.constexpr,
):  # fmt: skip
    """One chunk, key channels [i_k * BLOCK_K, +BLOCK_K): dq_i += sum_{j<=i} dA_ij k_j
    e^(b_i-b_j) and dk_j += sum_{i>=j} dA_ij q_i e^(b_i-b_j) with dA_ij = scale dO_i . v_j
    (read from DA, written by _bwd_dA) and b the in-chunk cumulative gates (GC), in sub-chunk
    blocks as the forward's A, then dg = (reverse cumsum within the chunk of q dq - k dk) + w,
    the inter-chunk part of k dk taken, with a final-state gradient (ROUNDED), from the gated
    keys KD the state was built from (rounded to the input dtype), so that it cancels
    against w = <S, U> (README, "dg").
    The inter-chunk parts come from the scans without their gate factors: dq's scale e^b
    and dk's e^(beta - b) are applied here, folded into the blocks' own factors.
    The sub-chunks are walked last to first so that each one's dq, dk and dg come out
    together: every quantity is per key channel, so channel blocks are independent programs.
    Off-diagonal pairs take their reference at a sub-chunk boundary (every exponent <= 0);
    diagonal blocks are split at their middle row where safe, else exact. Reads the
    inter-chunk parts in DQ32 / DK32 and writes DQ, DK and DG only (per value head; with
    grouped heads q and k are read at the head each value head reads, and DQ, DK may be DQ32,
    DK32 themselves: each program reads its own entries there before writing them)."""
    NC: tl.constexpr = C // BC
    i_k = tl.program_id(0)
    i_c = tl.program_id(1)
    i_nh = tl.program_id(2)
    i_n = i_nh // H
    i_h = i_nh % H
    L, bos = _sequence(CU, T, i_n, VARLEN)
    t0 = i_c * C
    if t0 < L:
        slot = chunk_slot0(bos, i_n, T, C, VARLEN) + i_c
        offs_c = tl.arange(0, BC)
        offs_k = i_k * BLOCK_K + tl.arange(0, BLOCK_K)
        RS = H * K_DIM
        RA = H * C
        qk = (bos * H + i_h) * K_DIM
        qq, RQ = _qk_rows(bos, i_h, H, K_DIM, GROUP)
        a_base = DA + (bos * H + i_h) * C
        k_ok = offs_k < K_DIM
        lower = offs_c[:, None] >= offs_c[None, :]
        carry = tl.load(W + (slot * H + i_h) * K_DIM + offs_k, mask=k_ok, other=0.0)
        beta = _beta(GC, qk, t0, offs_k, L, K_DIM, RS, C)
        # The whole chunk as one block where its gates allow: e^(b_i - b_j) split at the
        # chunk's middle row b_m when no |b - b_m| reaches SAFE_SPAN, so that dq and dk are one
        # C-row product each; else the sub-chunk blocks below.
        offs_t = tl.arange(0, C)
        rows = t0 + offs_t
        b = _gate_tile(GC, qk, rows, offs_k, L, K_DIM, RS)
        b_m, span = _diag_ref(b, offs_t, C)
        if WHOLE and span < SAFE_SPAN:
            _intra_whole(
                Q, K, KD, DA, DQ32, DK32, DQ, DK, DG, qk, qq, a_base, rows, offs_t, offs_k, k_ok,
                b, b_m, beta, carry, scale, L, K_DIM, RS, RQ, RA, GDOT, ROUNDED,
            )  # fmt: skip
        else:
            for J in tl.static_range(NC - 1, -1, -1):
                rows_J = t0 + J * BC + offs_c
                b_J = _gate_tile(GC, qk, rows_J, offs_k, L, K_DIM, RS)
                q_J = _tile(Q + qq, rows_J, offs_k, L, K_DIM, RQ).to(tl.float32)
                k_J = _tile(K + qq, rows_J, offs_k, L, K_DIM, RQ).to(tl.float32)
                mask = (rows_J < L)[:, None] & k_ok[None, :]
                ptrs = qk + rows_J[:, None] * RS + offs_k[None, :]
                # dq of block J, the inter-chunk part scale e^(b_J) DQ32_J and blocks I < J,
                # referred to r, b at the boundary before J (0 before the first block):
                # dq_J = e^(b_J - r) (scale e^r DQ32_J + sum_I dA_JI (k_I e^(r - b_I))).
                if J > 0:
                    r = _gate_row(GC, qk, t0 + J * BC - 1, offs_k, L, K_DIM, RS)
                else:
                    r = tl.zeros([BLOCK_K], tl.float32)
                acc = tl.load(DQ32 + ptrs, mask=mask, other=0.0) * (scale * tl.exp(r))[None, :]
                if J > 0:
                    for I in tl.static_range(J - 1, -1, -1):
                        rows_I = t0 + I * BC + offs_c
                        k_I = _tile(K + qq, rows_I, offs_k, L, K_DIM, RQ).to(tl.float32)
                        b_I = _gate_tile(GC, qk, rows_I, offs_k, L, K_DIM, RS)
                        kg = k_I * tl.exp(tl.minimum(r[None, :] - b_I, 0.0))
                        da = tl.load(a_base + rows_J[:, None] * RA + (I * BC + offs_c)[None, :],
                                     mask=(rows_J < L)[:, None], other=0.0)  # fmt: skip
                        acc = tl.dot(da, kg, acc, input_precision=GDOT)
                dq = acc * tl.exp(tl.minimum(b_J - r[None, :], 0.0))
                da = tl.load(a_base + rows_J[:, None] * RA + (J * BC + offs_c)[None, :],
                             mask=(rows_J < L)[:, None] & lower, other=0.0)  # fmt: skip
                # The diagonal block as _fwd_A's: split at the middle row where safe, else exactly,
                # one column of dA at a time, e^(b_i - b_j) clamped so that masked entries stay
                # finite.
                b_m, span = _diag_ref(b_J, offs_c, BC)
                if span < SAFE_SPAN:
                    kt = k_J * tl.exp(b_m[None, :] - b_J)
                    dq += tl.dot(da, kt, input_precision=GDOT) * tl.exp(b_J - b_m[None, :])
                else:
                    for j in range(0, BC):  # column j of dA against key row j
                        r_j = t0 + J * BC + j
                        da_j = tl.load(a_base + rows_J * RA + J * BC + j,
                                       mask=(rows_J < L) & (offs_c >= j), other=0.0)  # fmt: skip
                        k_j = _row(K + qq, r_j, offs_k, L, K_DIM, RQ)
                        b_j = _gate_row(GC, qk, r_j, offs_k, L, K_DIM, RS)
                        e = tl.exp(tl.minimum(b_J - b_j[None, :], 0.0))
                        dq += da_j[:, None] * k_j[None, :] * e
                tl.store(DQ + ptrs, dq.to(DQ.dtype.element_ty), mask=mask)
                # dk of block J, the inter-chunk part e^(beta - b_J) DK32_J and blocks I > J,
                # referred to e, b at J's last row (beta for the last block):
                # dk_J = e^(e - b_J) (e^(beta - e) DK32_J + sum_I dA_IJ^T (q_I e^(b_I - e))).
                acc = tl.load(DK32 + ptrs, mask=mask, other=0.0)
                if J < NC - 1:
                    e_J = _gate_row(GC, qk, t0 + J * BC + BC - 1, offs_k, L, K_DIM, RS)
                    acc = acc * tl.exp(tl.minimum(beta - e_J, 0.0))[None, :]
                    for I in tl.static_range(J + 1, NC):
                        rows_I = t0 + I * BC + offs_c
                        q_I = _tile(Q + qq, rows_I, offs_k, L, K_DIM, RQ).to(tl.float32)
                        b_I = _gate_tile(GC, qk, rows_I, offs_k, L, K_DIM, RS)
                        qg = q_I * tl.exp(tl.minimum(b_I - e_J[None, :], 0.0))
                        dat = tl.load(
                            a_base + rows_I[None, :] * RA + (J * BC + offs_c)[:, None],
                            mask=(rows_I < L)[None, :],
                            other=0.0,
                        )  # (j, i) = dA_ij
                        acc = tl.dot(dat, qg, acc, input_precision=GDOT)
                else:
                    e_J = beta
                dk = acc * tl.exp(tl.minimum(e_J[None, :] - b_J, 0.0))
                # The diagonal's dA (i, j) summed over i: dk_j += sum_i dA_ij q_i e^(b_i - b_j)
                # (the factors computed again rather than kept live across the loop above; the
                # exact form one row of dA at a time).
                if span < SAFE_SPAN:
                    qt = q_J * tl.exp(b_J - b_m[None, :])
                    dk += tl.dot(tl.trans(da), qt, input_precision=GDOT) * tl.exp(
                        b_m[None, :] - b_J
                    )
                else:
                    for i in range(0, BC):  # row i of dA against query row i
                        r_i = t0 + J * BC + i
                        ok_i = (offs_c <= i) & (r_i + 0 * offs_c < L)
                        da_i = tl.load(a_base + r_i * RA + J * BC + offs_c, mask=ok_i, other=0.0)
                        q_i = _row(Q + qq, r_i, offs_k, L, K_DIM, RQ)
                        b_i = _gate_row(GC, qk, r_i, offs_k, L, K_DIM, RS)
                        e = tl.exp(tl.minimum(b_i[None, :] - b_J, 0.0))
                        dk += da_i[:, None] * q_i[None, :] * e
                tl.store(DK + ptrs, dk.to(DK.dtype.element_ty), mask=mask)
                x = q_J * dq - k_J * dk
                if ROUNDED:  # the inter-chunk part of k dk from the gated keys as built
                    kb = k_J * tl.exp(tl.minimum(beta[None, :] - b_J, 0.0))
                    kd = _tile(KD + qk, rows_J, offs_k, L, K_DIM, RS).to(tl.float32)
                    x += tl.load(DK32 + ptrs, mask=mask, other=0.0) * (kb - kd)
                dg = tl.cumsum(x, 0, reverse=True) + carry[None, :]
                carry += tl.sum(x, 0)
                tl.store(DG + ptrs, dg.to(DG.dtype.element_ty), mask=mask)


# Retuning on the GPU: the chunk and sub-chunk lengths are fixed constants (the forward's A
# and the backward must agree on them); the value / key blocks and warps of the scans are
# tuned per shape from these lists on the first call. Under the interpreter the chunk is 32
# (two sub-chunks, so the off-diagonal blocks are exercised at test sizes).
CHUNK, SUB = (32, 16) if interpreting() else (64, 16)
# The diagonal sub-blocks are one tile product when the gates within a block span at most
# this much (natural log) from its middle row: no factor exceeds e^SAFE_SPAN, and no entry of
# the product, masked ones included, exceeds e^(2 SAFE_SPAN) < float32's largest (e^88).
SAFE_SPAN: tl.constexpr = tl.constexpr(40.0)
# _fwd_A and _bwd_intra take a chunk as one block where its gates span less than SAFE_SPAN
# from its middle row (else, and with False always, the sub-chunk blocks).
WHOLE_CHUNK = True
A_CONFIGS = [
    triton.Config({}, num_warps=4, num_stages=2),
    triton.Config({}, num_warps=8, num_stages=2),
]
# The pre-pass holds a chunk's g, b, q and k tiles; the whole head width at 4 warps takes
# every register (README.md), so key blocks are tried.
PREP_CONFIGS = [
    triton.Config({"BLOCK_K": 64}, num_warps=4, num_stages=1),
    triton.Config({"BLOCK_K": 32}, num_warps=4, num_stages=1),
    triton.Config({"BLOCK_K": 128}, num_warps=8, num_stages=1),
]
# The scans read the gated operands from _gate_prep, so none spills at 4 warps either
# (README.md, "Compiled for sm_90"). The two-stage entries take at most 112 KiB of shared
# memory and 32K registers per program, so two programs share an SM: at B H = 64 all the
# scan's programs (2 * 128 at 64-wide blocks) run at once instead of in two waves.
WALK_CONFIGS = [
    triton.Config({"BLOCK_V": 64}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_V": 32}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_V": 32}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_V": 64}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_V": 32}, num_warps=8, num_stages=3),
]
STATES_CONFIGS = [
    triton.Config({"BLOCK_KS": 64}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_KS": 64}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_KS": 32}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_KS": 32}, num_warps=4, num_stages=3),
]
SCAN_CONFIGS = [
    triton.Config({"BLOCK_KS": 64, "BLOCK_VS": 64}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_KS": 32, "BLOCK_VS": 32}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_KS": 64, "BLOCK_VS": 64}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_KS": 32, "BLOCK_VS": 32}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_KS": 64, "BLOCK_VS": 64}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_KS": 32, "BLOCK_VS": 32}, num_warps=4, num_stages=2),
]
# Compiled for sm_90 none of these spills (README.md); tiles of 16 rows give each thread few
# elements, so fewer warps or wider channel blocks per program are tried beside the first two.
INTRA_CONFIGS = [
    triton.Config({"BLOCK_K": 32}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_K": 64}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_K": 64}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_K": 128}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_K": 32}, num_warps=2, num_stages=2),
    triton.Config({"BLOCK_K": 16}, num_warps=1, num_stages=2),
]
DA_CONFIGS = [
    triton.Config({"BLOCK_V": 64}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_V": 32}, num_warps=4, num_stages=2),
]
INTERPRET_INTRA = {"BLOCK_K": 16}
INTERPRET_PREP = {"BLOCK_K": 16}
INTERPRET_DA = {"BLOCK_V": 16}
INTERPRET_WALK = {"BLOCK_V": 16}
INTERPRET_STATES = {"BLOCK_KS": 16}
INTERPRET_SCAN = {"BLOCK_KS": 16, "BLOCK_VS": 16}
KEY = ["T", "H", "K_DIM", "V_DIM", "VARLEN"]


def _launch(kernel, configs, interpret, grid, *args, **meta):
    launch(
        kernel, configs, grid, args, meta, interpret, key=[k for k in KEY if k in kernel.arg_names]
    )


def _precision(x: torch.Tensor) -> tuple[str, str]:
    """(DOT, GDOT): the precision of products of input-dtype operands, and of the gated
    float32 operands of the sub-chunk blocks. float32 inputs: three tf32 products (about
    float32's accuracy); 16-bit inputs: their own products, and tf32 for the gated ones."""
    if x.dtype == torch.float32:
        return "tf32x3", "tf32x3"
    return "tf32", "tf32"


def _layout(q, cu_seqlens):
    """(N sequences, T, cu pointer or a dummy, number of per-chunk slots)."""
    B, T = q.shape[:2]
    if cu_seqlens is None:
        return B, T, q, B * cdiv(T, CHUNK)
    N = cu_seqlens.numel() - 1
    return N, T, cu_seqlens, cdiv(T, CHUNK) + N


def _gates_prep(g, q, k, scale, N, T_arg, cu, varlen):
    """(b, q e^b scale, k e^(beta - b)), all ``[B, T, H, K]`` (per value head, q and k of
    G heads read in place): b, the in-chunk cumulative sums of g, in float32, the gated
    operands in q's dtype. One launch."""
    B, T, H, K = g.shape
    gc = torch.empty(B, T, H, K, device=g.device, dtype=torch.float32)
    qg, kd = (torch.empty(B, T, H, K, device=q.device, dtype=x.dtype) for x in (q, k))
    _launch(
        _gate_prep, PREP_CONFIGS, INTERPRET_PREP,
        lambda m: (cdiv(T, CHUNK), N * H, cdiv(K, m["BLOCK_K"])), g, q, k, gc, qg, kd, cu, T_arg,
        H, scale, K_DIM=K, C=CHUNK, VARLEN=varlen, GROUP=H // q.shape[2],
    )  # fmt: skip
    return gc, qg, kd


def _forward(q, k, v, g, scale, s0, want_state, cu_seqlens):
    B, T, G, K = q.shape
    H, V = v.shape[2:]
    N, T_arg, cu, _ = _layout(q, cu_seqlens)
    varlen = cu_seqlens is not None
    dot, gdot = _precision(q)
    A = torch.empty(B, T, H, CHUNK, device=q.device, dtype=torch.float32)
    gc, qg, kd = _gates_prep(g, q, k, scale, N, T_arg, cu, varlen)
    _launch(
        _fwd_A, A_CONFIGS, {}, lambda m: (cdiv(T, CHUNK), N * H), q, k, gc, A,
        cu, T_arg, H, scale, K_DIM=K, BLOCK_K=pow2(K), C=CHUNK, BC=SUB, VARLEN=varlen,
        GDOT=gdot, WHOLE=WHOLE_CHUNK, GROUP=H // G,
    )  # fmt: skip
    o = torch.empty_like(v)
    s_t = torch.empty(N, H, K, V, device=q.device, dtype=torch.float32) if want_state else None
    _launch(
        _fwd_walk, WALK_CONFIGS, INTERPRET_WALK, lambda m: (cdiv(V, m["BLOCK_V"]), N * H), qg,
        kd, v, gc, A, o, o if s0 is None else s0, o if s_t is None else s_t, cu, T_arg, H,
        K_DIM=K, V_DIM=V, BLOCK_K=pow2(K), C=CHUNK, USE_S0=s0 is not None, STORE_ST=want_state,
        VARLEN=varlen, DOT=dot,
    )  # fmt: skip
    return o, s_t, A


def _backward(q, k, v, g, A, do, scale, s0, d_st, want_ds0, cu_seqlens):
    B, T, G, K = q.shape
    H, V = v.shape[2:]
    N, T_arg, cu, slots = _layout(q, cu_seqlens)
    varlen = cu_seqlens is not None
    dot, gdot = _precision(q)
    f32 = dict(device=q.device, dtype=torch.float32)
    dq32 = torch.empty(B, T, H, K, **f32)
    dk32 = torch.empty(B, T, H, K, **f32)
    hb = torch.empty(slots, H, K, V, **f32)
    w = torch.empty(slots, H, K, **f32)
    gc, qg, kd = _gates_prep(g, q, k, scale, N, T_arg, cu, varlen)
    _launch(
        _bwd_states, STATES_CONFIGS, INTERPRET_STATES,
        lambda m: (cdiv(K, m["BLOCK_KS"]), N * H), kd, v, gc, do, dq32,
        hb if s0 is None else s0, hb, cu, T_arg, H, K_DIM=K, V_DIM=V,
        BLOCK_VF=pow2(V), C=CHUNK, USE_S0=s0 is not None, VARLEN=varlen, DOT=dot,
    )  # fmt: skip
    dv = torch.empty_like(v)
    ds0 = torch.empty(N, H, K, V, **f32) if want_ds0 else None
    _launch(
        _bwd_scan, SCAN_CONFIGS, INTERPRET_SCAN,
        lambda m: (cdiv(K, m["BLOCK_KS"]) + cdiv(V, m["BLOCK_VS"]), N * H), qg, kd, v, gc, do,
        A, dk32, dv, w, hb, hb if d_st is None else d_st, hb if ds0 is None else ds0, cu, T_arg,
        H, K_DIM=K, V_DIM=V, BLOCK_KF=pow2(K), BLOCK_VF=pow2(V), C=CHUNK,
        USE_DST=d_st is not None, STORE_DS0=want_ds0, VARLEN=varlen, DOT=dot,
    )  # fmt: skip
    del hb, qg
    rounded = d_st is not None  # (README, "dg": only a final-state gradient needs KD here)
    if not rounded:
        kd = k  # (not read)
    dA = torch.empty(B, T, H, CHUNK, **f32)
    _launch(
        _bwd_dA, DA_CONFIGS, INTERPRET_DA, lambda m: (cdiv(T, CHUNK), N * H), v, do, dA, cu,
        T_arg, H, scale, V_DIM=V, C=CHUNK, VARLEN=varlen, DOT=dot,
    )  # fmt: skip
    if G == H:
        dq, dk = torch.empty_like(q), torch.empty_like(k)
    else:  # grouped heads: dq and dk per value head over dq32 and dk32, summed per group
        dq, dk = dq32, dk32
    dg = torch.empty_like(g)
    args = (q, k, kd, gc, dA, dq32, dk32, w, dq, dk, dg, cu, T_arg, H, scale)
    meta = dict(K_DIM=K, C=CHUNK, BC=SUB, VARLEN=varlen, GDOT=gdot, WHOLE=WHOLE_CHUNK,
                GROUP=H // G, ROUNDED=rounded)  # fmt: skip
    launch(
        _bwd_intra, INTRA_CONFIGS, lambda m: (cdiv(K, m["BLOCK_K"]), cdiv(T, CHUNK), N * H),
        args, meta, INTERPRET_INTRA, key=[k_ for k_ in KEY if k_ in _bwd_intra.arg_names],
        restore=None if G == H else ("DQ32", "DK32"),  # (written over in place: each tuning
    )  # fmt: skip                                     # trial reads them as they were)
    if G != H:  # value head h = G r + i read q/k head h // (H / G): the sums over r
        dq = dq.unflatten(2, (G, H // G)).sum(3).to(q.dtype)
        dk = dk.unflatten(2, (G, H // G)).sum(3).to(k.dtype)
    return dq, dk, dv, dg, ds0


class GLAFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, g, scale, s0, want_state, cu_seqlens):
        o, s_t, A = _forward(q, k, v, g, scale, s0, want_state, cu_seqlens)
        ctx.save_for_backward(q, k, v, g, A, s0, cu_seqlens)
        ctx.scale = scale
        ctx.want_ds0 = s0 is not None and ctx.needs_input_grad[5]
        return o, s_t

    @staticmethod
    def backward(ctx, do, d_st):
        q, k, v, g, A, s0, cu_seqlens = ctx.saved_tensors
        out = _bwd_op(q, k, v, g, A, do, d_st, s0, cu_seqlens, ctx.scale, ctx.want_ds0)
        return *out[:4], None, out[4] if ctx.want_ds0 else None, None, None


def _fwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
            s0: torch.Tensor | None, cu_seqlens: torch.Tensor | None, scale: float,
            want_state: bool) -> list[torch.Tensor]:  # fmt: skip
    """[o, A] (+ [final state] when want_state): the forward as a traced graph sees it."""
    o, s_t, A = _forward(q, k, v, g, scale, s0, want_state, cu_seqlens)
    return [o, A] if s_t is None else [o, A, s_t]


def _bwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
            A: torch.Tensor, do: torch.Tensor, d_st: torch.Tensor | None,
            s0: torch.Tensor | None, cu_seqlens: torch.Tensor | None, scale: float,
            want_ds0: bool) -> list[torch.Tensor]:  # fmt: skip
    """[dq, dk, dv, dg] (+ [ds0] when want_ds0): GLAFunction.backward's computation."""
    dq, dk, dv, dg, ds0 = _backward(
        q, k, v, g, A, do.contiguous(), scale, s0,
        None if d_st is None else d_st.float().contiguous(), want_ds0, cu_seqlens,
    )  # fmt: skip
    return [dq, dk, dv, dg] if ds0 is None else [dq, dk, dv, dg, ds0]


_traced_fwd = opaque("gla_fwd", _fwd_op)
_traced_bwd = opaque("gla_bwd", _bwd_op)


def _traced_setup(ctx, inputs, output):
    q, k, v, g, s0, cu_seqlens, scale, _ = inputs
    ctx.save_for_backward(q, k, v, g, output[1], s0, cu_seqlens)
    ctx.scale = scale


def _traced_grad(ctx, grads):
    q, k, v, g, A, s0, cu_seqlens = ctx.saved_tensors
    want_ds0 = s0 is not None and ctx.needs_input_grad[4]
    d_st = grads[2] if len(grads) > 2 else None
    out = _traced_bwd(q, k, v, g, A, grads[0], d_st, s0, cu_seqlens, ctx.scale, want_ds0)
    return out[0], out[1], out[2], out[3], (out[4] if want_ds0 else None), None, None, None


_traced_fwd.register_autograd(_traced_grad, setup_context=_traced_setup)


OP = "gla"


def _check_args(q, k, v, g, scale, initial_state, cu_seqlens):
    B, T, H, K, V, N = check_sequences(OP, q, k, v, scale, cu_seqlens, groups=True)
    check_gate(OP, "g", g, ((B, T, H, K),), f"({B}, {T}, {H}, {K}) = [B, T, H, K] (per value head)",
               q)  # fmt: skip
    if initial_state is not None:
        check_state(OP, initial_state, N, H, K, V)


@autocast_inputs
def gla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    backend: str = "auto",
):
    """Gated linear attention (GLA, Yang et al. 2024), chunked with secondary chunking.

    ``S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t``, ``o_t = scale * q_t S_t``: per key channel a
    data-dependent decay. The signature of fla's ``chunk_gla``.

    Args:
        q, k: ``[B, T, G, K]``.
        v: ``[B, T, H, V]``, H a multiple of G: value head h reads q/k head h // (H / G)
            (grouped heads, as Gated DeltaNet's or fla's ``num_v_heads > num_heads``; G = H:
            one each). q and k are read in place, not repeated to the H heads; their
            gradients are formed per value head and summed over each group's heads.
        g: ``[B, T, H, K]`` log-space gates per value head (``<= 0``; such as ``logsigmoid``
            of a projection), any float dtype (float32 gates with bfloat16 q, k, v are
            fine). Differentiable.
        scale: multiplies ``q``; None means ``K ** -0.5``.
        initial_state: ``[N, H, K, V]`` (N = B, or the number of packed sequences).
            Differentiable.
        output_final_state: also return the state after the last token, float32
            ``[N, H, K, V]``.
        cu_seqlens: ``[N + 1]`` integer offsets of N sequences packed along T (then B = 1);
            every sequence starts from its own state. (Values are checked when it is a CPU
            tensor; CUDA ones are trusted, so that a call never waits for the GPU.)
        backend: ``"auto"`` (Triton on CUDA tensors, the chunked PyTorch form on CPU),
            ``"triton"`` (also on CPU under ``TRITON_INTERPRET=1``) or ``"reference"`` (the
            chunked PyTorch form).

    Returns:
        ``(o, final_state)``: ``o`` is ``[B, T, H, V]`` in the dtype of ``v``; ``final_state``
        is None unless ``output_final_state``.

    dtypes float16, bfloat16, float32 (float64 runs the PyTorch form); K, V up to 128 on the
    Triton path.

    >>> q = k = torch.randn(2, 63, 4, 32); v = torch.randn(2, 63, 4, 16)
    >>> g = torch.nn.functional.logsigmoid(torch.randn(2, 63, 4, 32))
    >>> o, s = gla(q, k, v, g, output_final_state=True)
    >>> o.shape, s.shape
    (torch.Size([2, 63, 4, 16]), torch.Size([2, 4, 32, 16]))
    """
    _check_args(q, k, v, g, scale, initial_state, cu_seqlens)
    scale = float(default_scale(scale, q.shape[-1]))
    if not use_triton(q, backend, OP) or q.dtype == torch.float64:
        o, s_t = gla_chunked(
            q, k, v, g, scale=scale, initial_state=initial_state,
            output_final_state=output_final_state, cu_seqlens=cu_seqlens,
        )  # fmt: skip
        return o, (None if s_t is None else s_t.float() if q.dtype != torch.float64 else s_t)
    check(q.shape[-1] <= 128 and v.shape[-1] <= 128, OP, "head widths K, V for the Triton kernels",
          "at most 128 (else backend='reference')", (q.shape[-1], v.shape[-1]))  # fmt: skip
    q, k, v, g = q.contiguous(), k.contiguous(), v.contiguous(), g.contiguous()
    s0 = None if initial_state is None else initial_state.float().contiguous()
    cu = None if cu_seqlens is None else cu_seqlens.to(torch.int32).contiguous()
    if tracing():  # torch.compile, torch.export: the opaque operators
        out = _traced_fwd(q, k, v, g, s0, cu, scale, output_final_state)
        return out[0], (out[2] if output_final_state else None)
    return GLAFunction.apply(q, k, v, g, scale, s0, output_final_state, cu)
