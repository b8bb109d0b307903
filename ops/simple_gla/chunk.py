"""Chunked scalar-gate linear attention: kernels, wrappers, autograd Function, public function.

The scheduling of ops/linear_attention/chunk.py with a data-dependent decay: one program walks
its sequence chunk by chunk holding the state in registers; per chunk it loads the in-chunk
cumulative sums G of the log-gates (float32, base 2; a pre-pass, _chunk_cumsum, writes them
once per forward and the backward reuses them) and uses exp(G_i - G_j) for the intra-chunk
decay matrix, exp(G_i) for the read of the entering state, exp(G_last - G_j) to weight the
keys of the state update and exp(G_last) to decay the state.

Forward: one program per (value block, sequence x head); writes o (and the final state).
Backward: one launch, three roles side by side: dq (forward scan of S, one program per key
block), dk and dv (backward scans of dS, one program per key block and per value block).
When g needs a gradient, every program also writes a float32 row of per-token terms of
dL/dG (dq, dk: the inter-chunk reads of the state and its gradient; dv: the chunk's pairs),
and one more launch, _dg_kernel, sums them and reverse-cumsums them over each sequence in
float64 (README.md, "Gradient of g").
Grouped heads (q, k of G heads, each read by GROUP = H / G value heads) as in
ops/linear_attention: q and k read at the value head's group, dq and dk written per value head
and summed per group by the op.
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
    dot_precision,
    empty_as,
    group_sum,
    interpreting,
    launch,
    launch_compiled,
    per_head_grad,
    pow2,
    readable,
    replica_stride,
    sequences,
    stages_at_most,
    token_strides,
    use_triton,
)
from .._kernels import FACTOR_BOUND_LOG2, GATE_FLOOR, all_chunks_within, dot_rhs32
from .._traced import opaque, tracing
from .._triton import tl, triton
from .reference import expand_gates, simple_gla_chunked

LOG2E: tl.constexpr = tl.constexpr(1.4426950408889634)


@triton.jit
def _sequence(CU, T, i_n, SQB, SQT, SVB, SVT, VARLEN: tl.constexpr):
    """Sequence i_n: its length L, the offsets of its first token in the q/k layout (strides
    SQ*) and the v/o layout (SV*), and its first token's index c0 among the B * T tokens (the
    head-major [H, B * T] layout of the cumulative gates and dg's rows).
    Packed sequences lie along T between offsets in CU; otherwise sequence i_n is batch row
    i_n."""
    if VARLEN:
        bos = tl.load(CU + i_n).to(tl.int64)
        L = (tl.load(CU + i_n + 1).to(tl.int64) - bos).to(tl.int32)
        qk0 = bos * SQT
        v0 = bos * SVT
        c0 = bos
    else:
        L = T
        qk0 = i_n.to(tl.int64) * SQB
        v0 = i_n.to(tl.int64) * SVB
        c0 = i_n.to(tl.int64) * T
    return L, qk0, v0, c0


@triton.jit
def _chunk_cumsum(
    GATE, GC, CU, T, TT, H, SGB, SGT, SGH, VARLEN: tl.constexpr, BLOCK_T: tl.constexpr,
    NB: tl.constexpr,
):  # fmt: skip
    """GC [H, B * T]: the log-gates' (g [B, T, H] of any float dtype, read in place through its
    strides SGB, SGT, SGH, 0 where broadcast) cumulative sums within each chunk (tokens
    [c * BLOCK_T, +BLOCK_T) of a sequence), base 2, float32, head-major so that a chunk's
    values are contiguous. One program per NB chunks of one sequence and head."""
    i_b = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    if VARLEN:
        bos = tl.load(CU + i_n).to(tl.int64)
        L = (tl.load(CU + i_n + 1).to(tl.int64) - bos).to(tl.int32)
        g0 = bos * SGT
        c0 = bos
    else:
        L = T
        g0 = i_n.to(tl.int64) * SGB
        c0 = i_n.to(tl.int64) * T
    t = (i_b * NB + tl.arange(0, NB))[:, None] * BLOCK_T + tl.arange(0, BLOCK_T)[None, :]
    ok = t < L
    g_ptrs = GATE + g0 + i_h * SGH + t.to(tl.int64) * SGT
    b = tl.load(g_ptrs, mask=ok, other=0.0).to(tl.float32)
    b = tl.maximum(b, GATE_FLOOR)
    tl.store(GC + i_h.to(tl.int64) * TT + c0 + t, tl.cumsum(b * LOG2E, 1), mask=ok)


@triton.jit
def _log2_gates(GC, g_base, t0, L, rows):
    """The chunk's in-chunk cumulative log2-gates G (one per row of `rows`) and G_last, the
    value at the chunk's last valid row. Rows past the sequence's end read G at its last
    token, which is G_last (only the last chunk has such rows), so no load is masked."""
    b_last = tl.load(GC + g_base + tl.minimum(t0 + rows.shape[0], L) - 1)
    return tl.load(GC + g_base + tl.minimum(rows, L - 1)), b_last


@triton.jit
def _log2_gates_cols(GC, g_base, L, rows):
    """G once more, for the columns j of the exact decay matrix exp2(G_i - G_j): a second load
    of 64 floats instead of a conversion between the two layouts."""
    return tl.load(GC + g_base + tl.minimum(rows, L - 1))


@triton.jit
def _fwd_chunk(
    q_base, k_base, v_base, o_base, GC, g_base, S, t0, L, SQT, SVT, scale, offs_k, offs_v,
    k_ok, v_ok, BLOCK_T: tl.constexpr, DOT: tl.constexpr, EXACT: tl.constexpr,
):  # fmt: skip
    """One chunk of the forward: writes its o rows and returns the state after it. Factored
    (exp(G_i - G_j) = exp(G_i - G_last) exp(G_last - G_j): the rows of q S + (q k^T) v scaled
    by exp(G_i - G_last), the columns through the state update's exp(G_last - G_j) v and
    exp(G_last) S), or with EXACT the decay matrix itself."""
    offs_t = tl.arange(0, BLOCK_T)
    causal = offs_t[:, None] >= offs_t[None, :]
    rows = t0 + offs_t
    r_ok = rows < L
    kmask = r_ok[:, None] & k_ok[None, :]
    vmask = r_ok[:, None] & v_ok[None, :]
    q = tl.load(q_base + rows[:, None] * SQT + offs_k[None, :], mask=kmask, other=0.0)
    k = tl.load(k_base + rows[:, None] * SQT + offs_k[None, :], mask=kmask, other=0.0)
    v = tl.load(v_base + rows[:, None] * SVT + offs_v[None, :], mask=vmask, other=0.0)
    b, b_last = _log2_gates(GC, g_base, t0, L, rows)
    # k^T diag(exp(G_last - G)) v with the weights on v's rows: a BLOCK_V-wide tile, not K
    vd = (v * tl.math.exp2(b_last - b)[:, None]).to(v.dtype)
    if EXACT:
        b_j = _log2_gates_cols(GC, g_base, L, rows)
        decay = tl.math.exp2(tl.where(causal, b[:, None] - b_j[None, :], float("-inf")))
        a = tl.dot(q, tl.trans(k), input_precision=DOT) * scale * decay  # (BT, BT)
        o = tl.dot(q, S.to(q.dtype), input_precision=DOT)  # (BT, BV): the chunks before
        o = tl.dot(a.to(v.dtype), v, o * (tl.math.exp2(b) * scale)[:, None], input_precision=DOT)
        Sd = S * tl.math.exp2(b_last)
    else:
        Sd = S * tl.math.exp2(b_last)
        o = tl.dot(q, Sd.to(q.dtype), input_precision=DOT)  # (BT, BV): the chunks before
        a = tl.where(causal, tl.dot(q, tl.trans(k), input_precision=DOT), 0.0)
        o = tl.dot(a.to(v.dtype), vd, o, input_precision=DOT)
        o = o * (tl.math.exp2(b - b_last) * scale)[:, None]
    tl.store(o_base + rows[:, None] * SVT + offs_v[None, :], o.to(o_base.dtype.element_ty),
             mask=vmask)  # fmt: skip
    return tl.dot(tl.trans(k), vd, Sd, input_precision=DOT)


@triton.jit
def _fwd_kernel(
    Q, K, V, GATE, O, S0, ST, CU, T, TT, H, SQB, SQT, SQH, SVB, SVT, SVH, scale,
    K_DIM: tl.constexpr, V_DIM: tl.constexpr, BLOCK_K: tl.constexpr, USE_S0: tl.constexpr,
    STORE_ST: tl.constexpr, VARLEN: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_V: tl.constexpr,
    DOT: tl.constexpr, BOUND: tl.constexpr, GROUP: tl.constexpr,
):  # fmt: skip
    i_v = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    L, qk0, v0, c0 = _sequence(CU, T, i_n, SQB, SQT, SVB, SVT, VARLEN)
    i_qk = i_h
    if GROUP > 1:  # grouped heads: GROUP value heads read one head of q and k
        i_qk = i_h // GROUP
    offs_k = tl.arange(0, BLOCK_K)
    offs_v = i_v * BLOCK_V + tl.arange(0, BLOCK_V)
    k_ok = offs_k < K_DIM
    v_ok = offs_v < V_DIM
    q_base = Q + qk0 + i_qk.to(tl.int64) * SQH
    k_base = K + qk0 + i_qk.to(tl.int64) * SQH
    v_base = V + v0 + i_h.to(tl.int64) * SVH
    o_base = O + v0 + i_h.to(tl.int64) * SVH
    g_base = i_h.to(tl.int64) * TT + c0
    s_ptrs = i_nh.to(tl.int64) * K_DIM * V_DIM + offs_k[:, None] * V_DIM + offs_v[None, :]
    s_mask = k_ok[:, None] & v_ok[None, :]
    if USE_S0:
        S = tl.load(S0 + s_ptrs, mask=s_mask, other=0.0).to(tl.float32)
    else:
        S = tl.zeros([BLOCK_K, BLOCK_V], tl.float32)
    # Every chunk factored when all are within the bound, else every chunk exact: no branch
    # per chunk inside the loop (Triton 3.6's sm_90 pipeliner miscompiled one, README.md).
    if all_chunks_within(GATE, g_base, L, BOUND, BLOCK_T):
        for t0 in range(0, L, BLOCK_T):
            S = _fwd_chunk(
                q_base, k_base, v_base, o_base, GATE, g_base, S, t0, L, SQT, SVT, scale, offs_k,
                offs_v, k_ok, v_ok, BLOCK_T, DOT, False,
            )  # fmt: skip
    else:
        for t0 in range(0, L, BLOCK_T):
            S = _fwd_chunk(
                q_base, k_base, v_base, o_base, GATE, g_base, S, t0, L, SQT, SVT, scale, offs_k,
                offs_v, k_ok, v_ok, BLOCK_T, DOT, True,
            )  # fmt: skip
    if STORE_ST:
        tl.store(ST + s_ptrs, S, mask=s_mask)


@triton.jit
def _dq_chunk(
    Q, K, V, DO, DQ, GC, DG, S, t0, kq_base, v_base, g_base, SQT, SVT, L, scale, offs_k, offs_v,
    k_ok, v_ok, PRECISE: tl.constexpr, BLOCK_T: tl.constexpr, DOT: tl.constexpr,
    EXACT: tl.constexpr, DG_TERMS: tl.constexpr,
):  # fmt: skip
    """One chunk of a dq program: writes its dq rows and returns S after it. Factored (dq_i =
    c exp(G_i - G_last) (do_i (exp(G_last) S)^T + sum_j (do_i . v_j) exp(G_last - G_j) k_j),
    the weighted k of the S update), or with EXACT the decay matrix itself. DG_TERMS: the read
    of S as a float32-accurate product (hi + lo with PRECISE), and dg's inter-chunk query
    term (c exp(G_i) q_i, rounded as the dS scan accumulates it) . (do_i S^T) to DG."""
    offs_t = tl.arange(0, BLOCK_T)
    causal = offs_t[:, None] >= offs_t[None, :]
    rows = t0 + offs_t
    r_ok = rows < L
    kmask = r_ok[:, None] & k_ok[None, :]
    vmask = r_ok[:, None] & v_ok[None, :]
    k = tl.load(K + kq_base + rows[:, None] * SQT + offs_k[None, :], mask=kmask, other=0.0)
    v = tl.load(V + v_base + rows[:, None] * SVT + offs_v[None, :], mask=vmask, other=0.0)
    do = tl.load(DO + v_base + rows[:, None] * SVT + offs_v[None, :], mask=vmask, other=0.0)
    b, b_last = _log2_gates(GC, g_base, t0, L, rows)
    kd = (k * tl.math.exp2(b_last - b)[:, None]).to(v.dtype)
    Sd = S * tl.math.exp2(b_last)
    if DG_TERMS:
        dss = dot_rhs32(do, tl.trans(S), PRECISE, DOT)  # (BT, BKB): do_i S^T
        q = tl.load(Q + kq_base + rows[:, None] * SQT + offs_k[None, :], mask=kmask, other=0.0)
        qd = (q * (tl.math.exp2(b) * scale)[:, None]).to(q.dtype)
        tl.store(DG + g_base + rows, tl.sum(dss * qd.to(tl.float32), 1), mask=r_ok)
    if EXACT:
        if not DG_TERMS:
            dss = tl.dot(do, tl.trans(S).to(do.dtype), input_precision=DOT)
        b_j = _log2_gates_cols(GC, g_base, L, rows)
        decay = tl.math.exp2(tl.where(causal, b[:, None] - b_j[None, :], float("-inf")))
        da = tl.dot(do, tl.trans(v), input_precision=DOT) * scale * decay  # (i, j)
        dq = tl.dot(da.to(k.dtype), k, dss * (tl.math.exp2(b) * scale)[:, None],
                    input_precision=DOT)  # fmt: skip
    else:
        if DG_TERMS:
            dq = dss * tl.math.exp2(b_last)
        else:
            dq = tl.dot(do, tl.trans(Sd).to(do.dtype), input_precision=DOT)
        da = tl.where(causal, tl.dot(do, tl.trans(v), input_precision=DOT), 0.0)
        dq = tl.dot(da.to(kd.dtype), kd, dq, input_precision=DOT)
        dq = dq * (tl.math.exp2(b - b_last) * scale)[:, None]
    tl.store(DQ + kq_base + rows[:, None] * SQT + offs_k[None, :], dq.to(DQ.dtype.element_ty),
             mask=kmask)  # fmt: skip
    return tl.dot(tl.trans(kd), v, Sd, input_precision=DOT)


@triton.jit
def _bwd_dq(
    Q, K, V, DO, DQ, GATE, DG, S0, DST, FIN, qk0, v0, g_base, SQT, SQH, SVT, SVH, H, L, i_nh,
    i_h, i_qk, i_k, scale, K_DIM: tl.constexpr, V_DIM: tl.constexpr, USE_S0: tl.constexpr,
    USE_DST: tl.constexpr, WANT_DG: tl.constexpr,
    PRECISE: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_KB: tl.constexpr,
    BLOCK_VF: tl.constexpr, DOT: tl.constexpr, BOUND: tl.constexpr,
):  # fmt: skip
    """dq_i = c sum_{j<=i} exp(G_i - G_j) (do_i . v_j) k_j + c exp(G_i) do_i S^T, S scanned
    forward. With WANT_DG it writes, per token, dg's inter-chunk query term over this key
    block (c exp(G_i) q_i . do_i S^T, against the rounded c exp(G_i) q_i the dS scan
    accumulates), and with USE_DST the final state's term <S_T, dS_T> over the key block to
    FIN [key blocks, N * H], from the S_T of this scan (the forward's S_T rounds its update
    differently: the term must belong to the same rounded system as the per-token terms it
    cancels against, README.md)."""
    offs_k = i_k * BLOCK_KB + tl.arange(0, BLOCK_KB)
    offs_v = tl.arange(0, BLOCK_VF)
    k_ok = offs_k < K_DIM
    v_ok = offs_v < V_DIM
    kq_base = qk0 + i_qk.to(tl.int64) * SQH
    v_base = v0 + i_h.to(tl.int64) * SVH
    if USE_S0:
        S = tl.load(
            S0 + i_nh.to(tl.int64) * K_DIM * V_DIM + offs_k[:, None] * V_DIM + offs_v[None, :],
            mask=k_ok[:, None] & v_ok[None, :],
            other=0.0,
        )
    else:
        S = tl.zeros([BLOCK_KB, BLOCK_VF], tl.float32)
    # Every chunk factored when all are within the bound, else every chunk exact (no branch
    # per chunk inside the loop, README.md).
    if all_chunks_within(GATE, g_base, L, BOUND, BLOCK_T):
        for t0 in range(0, L, BLOCK_T):
            S = _dq_chunk(
                Q, K, V, DO, DQ, GATE, DG, S, t0, kq_base, v_base, g_base, SQT, SVT, L, scale,
                offs_k, offs_v, k_ok, v_ok, PRECISE, BLOCK_T, DOT, False, WANT_DG,
            )  # fmt: skip
    else:
        for t0 in range(0, L, BLOCK_T):
            S = _dq_chunk(
                Q, K, V, DO, DQ, GATE, DG, S, t0, kq_base, v_base, g_base, SQT, SVT, L, scale,
                offs_k, offs_v, k_ok, v_ok, PRECISE, BLOCK_T, DOT, True, WANT_DG,
            )  # fmt: skip
    if WANT_DG and USE_DST:  # <S_T, dS_T> over this key block, S_T as this scan rounded it
        s_ptrs = offs_k[:, None] * V_DIM + offs_v[None, :]
        d_st = tl.load(DST + i_nh.to(tl.int64) * K_DIM * V_DIM + s_ptrs,
                       mask=k_ok[:, None] & v_ok[None, :], other=0.0)  # fmt: skip
        tl.store(FIN + i_k * tl.num_programs(1) + i_nh, tl.sum(tl.sum(S * d_st, 1), 0))


@triton.jit
def _dkdv_chunk(
    Q, K, V, DO, DX, GC, DG, G, t0, kq_base, v_base, g_base, SQT, SVT, L, scale, offs_k, offs_v,
    k_ok, v_ok, PRECISE: tl.constexpr, BLOCK_T: tl.constexpr, FOR_DK: tl.constexpr,
    DOT: tl.constexpr, EXACT: tl.constexpr, DG_TERMS: tl.constexpr,
):  # fmt: skip
    """One chunk of a dk or dv program (_bwd_dkdv): writes its dk or dv rows and returns dS
    before it. Factored (dx_j = exp(-G_j) (x_j (exp(G_last) dS) + sum_i at_ji c exp(G_i)
    rhs_i), the weighted rows of the dS update), or with EXACT the decay matrix itself.
    DG_TERMS, FOR_DK: the read of dS as a float32-accurate product (hi + lo with PRECISE) and
    minus dg's inter-chunk key term (exp(G_last - G_j) k_j, rounded as the S scan accumulates
    it) . (v_j dS^T) to DG; else the chunk's pair terms of dg over this value block (README.md,
    "Gradient of g") to DG."""
    offs_t = tl.arange(0, BLOCK_T)
    # (j, i) layout: key position j down, query position i across.
    causal_t = offs_t[None, :] >= offs_t[:, None]
    rows = t0 + offs_t
    r_ok = rows < L
    kmask = r_ok[:, None] & k_ok[None, :]
    vmask = r_ok[:, None] & v_ok[None, :]
    q = tl.load(Q + kq_base + rows[:, None] * SQT + offs_k[None, :], mask=kmask, other=0.0)
    do = tl.load(DO + v_base + rows[:, None] * SVT + offs_v[None, :], mask=vmask, other=0.0)
    b, b_last = _log2_gates(GC, g_base, t0, L, rows)
    if FOR_DK:
        x = tl.load(V + v_base + rows[:, None] * SVT + offs_v[None, :], mask=vmask, other=0.0)
        y = do  # at = x y^T: v_j . do_i
        rhs = q
    else:
        x = tl.load(K + kq_base + rows[:, None] * SQT + offs_k[None, :], mask=kmask, other=0.0)
        y = q  # at = x y^T: k_j . q_i
        rhs = do
    # c exp(G_i) rhs_i, rounded: the rows the dS update accumulates (FOR_DK: q's, which dg's
    # inter-chunk query terms are taken against; else dO's, a BLOCK_VS-wide tile, not K)
    rhs_d = (rhs * (tl.math.exp2(b) * scale)[:, None]).to(do.dtype)
    Gd = G * tl.math.exp2(b_last)
    if FOR_DK and DG_TERMS:
        dxs = dot_rhs32(x, tl.trans(G), PRECISE, DOT)  # (BT, BKS): v_j dS^T
        k = tl.load(K + kq_base + rows[:, None] * SQT + offs_k[None, :], mask=kmask, other=0.0)
        kd = (k * tl.math.exp2(b_last - b)[:, None]).to(k.dtype)
        tl.store(DG + g_base + rows, -tl.sum(dxs * kd.to(tl.float32), 1), mask=r_ok)
    if EXACT:
        b_i = _log2_gates_cols(GC, g_base, L, rows)
        decay_t = tl.math.exp2(tl.where(causal_t, b_i[None, :] - b[:, None], float("-inf")))
        at = tl.dot(x, tl.trans(y), input_precision=DOT) * scale * decay_t
        if FOR_DK:
            if not DG_TERMS:
                dxs = tl.dot(x, tl.trans(G).to(x.dtype), input_precision=DOT)  # (BT, BKS)
        else:
            dxs = tl.dot(x, G.to(x.dtype), input_precision=DOT)  # (BT, BVS)
        dx = tl.dot(at.to(rhs.dtype), rhs, dxs * tl.math.exp2(b_last - b)[:, None],
                    input_precision=DOT)  # fmt: skip
    else:
        if FOR_DK:
            if DG_TERMS:
                dx = dxs * tl.math.exp2(b_last)
            else:
                dx = tl.dot(x, tl.trans(Gd).to(x.dtype), input_precision=DOT)  # (BT, BKS)
        else:
            dx = tl.dot(x, Gd.to(x.dtype), input_precision=DOT)  # (BT, BVS)
        at = tl.where(causal_t, tl.dot(x, tl.trans(y), input_precision=DOT), 0.0)
        dx = tl.dot(at.to(rhs_d.dtype), rhs_d, dx, input_precision=DOT)
        dx = dx * tl.math.exp2(-b)[:, None]
    if not FOR_DK and DG_TERMS:
        # P_ji = c exp(G_i - G_j) (k_j . q_i) (v_j . do_i) over this value block: + its sum over
        # j for query i, - its sum over i for key j, from the one float32 matrix.
        vb = tl.load(V + v_base + rows[:, None] * SVT + offs_v[None, :], mask=vmask, other=0.0)
        w = at * tl.dot(vb, tl.trans(do), input_precision=DOT)
        if EXACT:
            d_q = tl.sum(w, 0)
            d_k = tl.sum(w, 1)
        else:  # exp(G_i - G_j) = exp(G_i - G_last) exp(G_last - G_j), both in float32 range
            r = tl.math.exp2(_log2_gates_cols(GC, g_base, L, rows) - b_last) * scale
            s = tl.math.exp2(b_last - b)
            d_q = tl.sum(w * s[:, None], 0) * r
            d_k = tl.sum(w * r[None, :], 1) * s
        tl.store(DG + g_base + rows, d_q - d_k, mask=r_ok)
    if FOR_DK:
        tl.store(DX + kq_base + rows[:, None] * SQT + offs_k[None, :],
                 dx.to(DX.dtype.element_ty), mask=kmask)  # fmt: skip
        G = tl.dot(tl.trans(rhs_d), do, Gd, input_precision=DOT)
    else:
        tl.store(DX + v_base + rows[:, None] * SVT + offs_v[None, :],
                 dx.to(DX.dtype.element_ty), mask=vmask)  # fmt: skip
        G = tl.dot(tl.trans(q), rhs_d, Gd, input_precision=DOT)
    return G


@triton.jit
def _bwd_dkdv(
    Q, K, V, DO, DX, GATE, DG, DST, DS0, qk0, v0, g_base, SQT, SQH, SVT, SVH, H, L, i_nh, i_h,
    i_qk, i_blk, scale, K_DIM: tl.constexpr, V_DIM: tl.constexpr, USE_DST: tl.constexpr,
    STORE_DS0: tl.constexpr, WANT_DG: tl.constexpr, PRECISE: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_KS: tl.constexpr, BLOCK_VS: tl.constexpr,
    BLOCK_KF: tl.constexpr, BLOCK_VF: tl.constexpr, FOR_DK: tl.constexpr, DOT: tl.constexpr,
    BOUND: tl.constexpr,
):  # fmt: skip
    """Scans dS = sum_i c exp(G_i) q_i^T do_i (decayed by exp(G_last) per chunk) backwards.

    FOR_DK: this program owns key rows [i_blk * BLOCK_KS, +BLOCK_KS) of dS and writes dk;
        dk_j = c sum_{i>=j} exp(G_i - G_j) (do_i . v_j) q_i + exp(G_last - G_j) v_j dS^T,
        and with WANT_DG minus dg's inter-chunk key term over its key rows (exp(G_last - G_j)
        k_j . v_j dS^T, against the rounded exp(G_last - G_j) k_j the S scan accumulates).
    else: it owns value columns [i_blk * BLOCK_VS, +BLOCK_VS) and writes dv;
        dv_j = c sum_{i>=j} exp(G_i - G_j) (q_i . k_j) do_i + exp(G_last - G_j) k_j dS,
        and with WANT_DG dg's intra-chunk pair terms over its value columns.
    """
    if FOR_DK:
        offs_k = i_blk * BLOCK_KS + tl.arange(0, BLOCK_KS)
        offs_v = tl.arange(0, BLOCK_VF)
    else:
        offs_k = tl.arange(0, BLOCK_KF)
        offs_v = i_blk * BLOCK_VS + tl.arange(0, BLOCK_VS)
    k_ok = offs_k < K_DIM
    v_ok = offs_v < V_DIM
    kq_base = qk0 + i_qk.to(tl.int64) * SQH
    v_base = v0 + i_h.to(tl.int64) * SVH
    s_ptrs = i_nh.to(tl.int64) * K_DIM * V_DIM + offs_k[:, None] * V_DIM + offs_v[None, :]
    s_mask = k_ok[:, None] & v_ok[None, :]
    if USE_DST:
        G = tl.load(DST + s_ptrs, mask=s_mask, other=0.0).to(tl.float32)
    else:
        G = tl.zeros([offs_k.shape[0], offs_v.shape[0]], tl.float32)
    n_chunks = tl.cdiv(L, BLOCK_T)
    if all_chunks_within(GATE, g_base, L, BOUND, BLOCK_T):
        for i in range(0, n_chunks):
            G = _dkdv_chunk(
                Q, K, V, DO, DX, GATE, DG, G, (n_chunks - 1 - i) * BLOCK_T, kq_base, v_base,
                g_base, SQT, SVT, L, scale, offs_k, offs_v, k_ok, v_ok, PRECISE, BLOCK_T, FOR_DK,
                DOT, False, WANT_DG,
            )  # fmt: skip
    else:
        for i in range(0, n_chunks):
            G = _dkdv_chunk(
                Q, K, V, DO, DX, GATE, DG, G, (n_chunks - 1 - i) * BLOCK_T, kq_base, v_base,
                g_base, SQT, SVT, L, scale, offs_k, offs_v, k_ok, v_ok, PRECISE, BLOCK_T, FOR_DK,
                DOT, True, WANT_DG,
            )  # fmt: skip
    if STORE_DS0:
        tl.store(DS0 + s_ptrs, G, mask=s_mask)


@triton.jit
def _bwd_kernel(
    Q, K, V, GATE, DO, DQ, DK, DV, DG, FIN, S0, DST, DS0, CU, T, H, SQB, SQT, SQH, SVB, SVT, SVH,
    TT, SGS, scale, SDR, K_DIM: tl.constexpr, V_DIM: tl.constexpr, USE_S0: tl.constexpr,
    USE_DST: tl.constexpr, STORE_DS0: tl.constexpr, VARLEN: tl.constexpr, WANT_DG: tl.constexpr,
    PRECISE: tl.constexpr, BLOCK_KF: tl.constexpr, BLOCK_VF: tl.constexpr, BLOCK_T: tl.constexpr,
    BLOCK_KS: tl.constexpr, BLOCK_VS: tl.constexpr, DOT: tl.constexpr, BOUND: tl.constexpr,
    GROUP: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    L, qk0, v0, c0 = _sequence(CU, T, i_n, SQB, SQT, SVB, SVT, VARLEN)
    i_qk = i_h
    if GROUP > 1:  # grouped heads: GROUP value heads read one head of q and k, and each
        i_qk = i_h // GROUP  # writes its own copy of dq and dk (SDR apart), summed afterwards
        DQ += (i_h % GROUP).to(tl.int64) * SDR
        DK += (i_h % GROUP).to(tl.int64) * SDR
    g_base = i_h.to(tl.int64) * TT + c0
    nk = tl.cdiv(K_DIM, BLOCK_KS)
    if pid < nk:
        _bwd_dq(
            Q, K, V, DO, DQ, GATE, DG + pid.to(tl.int64) * SGS, S0, DST, FIN, qk0, v0, g_base,
            SQT, SQH, SVT, SVH, H, L, i_nh, i_h, i_qk, pid, scale, K_DIM, V_DIM, USE_S0, USE_DST,
            WANT_DG, PRECISE, BLOCK_T, BLOCK_KS, BLOCK_VF, DOT, BOUND,
        )  # fmt: skip
    elif pid < 2 * nk:
        _bwd_dkdv(
            Q, K, V, DO, DK, GATE, DG + pid.to(tl.int64) * SGS, DST, DS0, qk0, v0, g_base, SQT,
            SQH, SVT, SVH, H, L, i_nh, i_h, i_qk, pid - nk, scale, K_DIM, V_DIM, USE_DST, STORE_DS0,
            WANT_DG, PRECISE, BLOCK_T, BLOCK_KS, BLOCK_VS, BLOCK_KF, BLOCK_VF, True, DOT, BOUND,
        )  # fmt: skip
    else:
        _bwd_dkdv(
            Q, K, V, DO, DV, GATE, DG + pid.to(tl.int64) * SGS, DST, DS0, qk0, v0, g_base, SQT,
            SQH, SVT, SVH, H, L, i_nh, i_h, i_qk, pid - 2 * nk, scale, K_DIM, V_DIM, USE_DST, False,
            WANT_DG, False, BLOCK_T, BLOCK_KS, BLOCK_VS, BLOCK_KF, BLOCK_VF, False, DOT, BOUND,
        )  # fmt: skip


@triton.jit
def _dg_kernel(
    DGS, FIN, DG, CU, T, TT, H, ROWS: tl.constexpr, NFIN: tl.constexpr, VARLEN: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    """dg [B, T, H] (contiguous, in g's dtype) of one sequence and head: the reverse
    cumulative sum (float64) over the sequence of the ROWS per-token rows of DGS ([ROWS, H,
    TT = B * T]) and of the final state's term on its last token (FIN [NFIN key blocks,
    N * H]; NFIN = 0: none). Walks the sequence from its end, BLOCK tokens at a time."""
    i_nh = tl.program_id(0)
    i_n = i_nh // H
    i_h = i_nh % H
    L, _, _, c0 = _sequence(CU, T, i_n, 0, 0, 0, 0, VARLEN)  # (no q/k or v/o layout here)
    carry = tl.zeros([1], tl.float64)
    for j in tl.static_range(NFIN):  # the last token's term: part of every token's sum
        carry += tl.load(FIN + j * tl.num_programs(0) + i_nh).to(tl.float64)
    row0 = DGS + i_h.to(tl.int64) * TT + c0
    n = tl.cdiv(L, BLOCK)
    for i in range(0, n):
        t = (n - 1 - i) * BLOCK + tl.arange(0, BLOCK)
        ok = t < L
        x = tl.zeros([BLOCK], tl.float64)
        for r in tl.static_range(ROWS):
            x += tl.load(row0 + r * H * TT + t, mask=ok, other=0.0).to(tl.float64)
        rc = tl.cumsum(x, 0, reverse=True) + carry
        tl.store(DG + (c0 + t) * H + i_h, rc.to(tl.float32).to(DG.dtype.element_ty), mask=ok)
        carry += tl.sum(x, 0)


# ---- configurations (retune on the GPU here) ----------------------------------------------
# The configurations of ops/linear_attention, not yet tuned for this family. A program's work
# per chunk does not depend on T, so one fixed choice serves every length. CHUNK is the chunk
# length of every kernel of a call (the forward's in-chunk cumulative gates serve the backward).
CHUNK = 16 if interpreting() else 64
CUMSUM_CHUNKS = 4 if interpreting() else 16  # chunks per program of _chunk_cumsum
DG_BLOCK = 32 if interpreting() else 1024  # tokens per step of _dg_kernel's walk
# Each program's chunk loop is a chain of dependent products, so what hides its latency is a
# second program on the SM: 32-wide value blocks (twice the programs, each small enough in
# registers and shared memory for two per SM) beside one 64-wide program per SM (README.md).
FWD_CONFIGS = [
    triton.Config({"BLOCK_V": 64}, num_warps=4, num_stages=4),
    triton.Config({"BLOCK_V": 32}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_V": 32}, num_warps=4, num_stages=3),
]
# The backward's three roles in one kernel are register-bound at 4 warps (255 registers and
# some spilling with dg, README.md): 8 warps halve each thread's share of the tiles, one
# program per SM; 4 warps at 1 or 2 stages fit two programs per SM (registers, shared memory).
BWD_CONFIGS = [
    triton.Config({"BLOCK_KS": 64, "BLOCK_VS": 64}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_KS": 64, "BLOCK_VS": 64}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_KS": 64, "BLOCK_VS": 64}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_KS": 64, "BLOCK_VS": 64}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_KS": 64, "BLOCK_VS": 64}, num_warps=4, num_stages=1),
]
F32_STAGES = 2  # float32 tiles take twice the shared memory
INTERPRET_FWD = {"BLOCK_V": 16}
INTERPRET_BWD = {"BLOCK_KS": 16, "BLOCK_VS": 16}
KEY = ["T", "H", "K_DIM", "V_DIM", "VARLEN"]
# The dq and dk programs read the state as a hi + lo pair when dg is wanted (16-bit inputs):
# the per-token terms of dg are summed over the whole sequence, and one rounding of the state
# per chunk left dg's error growing with the number of chunks (README.md). False trades that
# accuracy for one product fewer per chunk in those two roles.
PRECISE_DG = True
# A chunk whose gates sum to more than -BOUND (log2) takes the factored form (_kernels.py).
BOUND = FACTOR_BOUND_LOG2


def _launch(kernel, configs, fixed, grid, *args, **kwargs):
    if args[0].dtype == torch.float32:
        configs = stages_at_most(configs, F32_STAGES)
    launch(kernel, configs, grid, args, kwargs, fixed, key=KEY)


def _chunk_gates(g, N, T_arg, cu, varlen):
    """The in-chunk cumulative log2-gates of g ([B, T, H], any float dtype and strides),
    head-major [H, B * T] float32: one launch."""
    B, T, H = g.shape
    gc = torch.empty(H, B * T, device=g.device, dtype=torch.float32)
    grid = (cdiv(T, CHUNK * CUMSUM_CHUNKS), N * H)
    launch_compiled(
        _chunk_cumsum, grid, (g, gc, cu, T_arg, B * T, H, *g.stride()),
        dict(VARLEN=varlen, BLOCK_T=CHUNK, NB=CUMSUM_CHUNKS, num_warps=4),
    )  # fmt: skip
    return gc


def _forward(q, k, v, g, scale, s0, want_state, cu_seqlens):
    """(o, final state or None, the in-chunk cumulative log2-gates for the backward)."""
    B, T, G, K = q.shape
    H, V = v.shape[2:]
    N, T_arg, cu = sequences(q, cu_seqlens)
    gc = _chunk_gates(g, N, T_arg, cu, cu_seqlens is not None)
    o = empty_as(v)
    s_t = torch.empty(N, H, K, V, device=q.device, dtype=torch.float32) if want_state else None
    dummy = o
    _launch(
        _fwd_kernel, FWD_CONFIGS, INTERPRET_FWD, lambda m: (cdiv(V, m["BLOCK_V"]), N * H), q,
        k, v, gc, o, dummy if s0 is None else s0, dummy if s_t is None else s_t, cu, T_arg,
        B * T, H, *token_strides(q, v), scale, K_DIM=K, V_DIM=V, BLOCK_K=pow2(K),
        USE_S0=s0 is not None, STORE_ST=want_state, VARLEN=cu_seqlens is not None,
        DOT=dot_precision(q), BLOCK_T=CHUNK, BOUND=BOUND[q.dtype], GROUP=H // G,
    )  # fmt: skip
    return o, s_t, gc


def _backward(q, k, v, gc, do, scale, s0, d_st, want_ds0, dg_dtype, cu_seqlens):
    """(dq, dk, dv, dg, d initial state): dg in dg_dtype (g's; None: no dg), the state's
    gradient float32 when want_ds0, else None."""
    want_dg = dg_dtype is not None
    B, T, G, K = q.shape
    H, V = v.shape[2:]
    N, T_arg, cu = sequences(q, cu_seqlens)
    dq, dk = (per_head_grad(x, H // G) for x in (q, k))
    dv = empty_as(v)
    if do.stride() != v.stride():  # the kernels read do in v's layout
        do = empty_as(v, do.dtype).copy_(do)
    ds0 = torch.empty(N, H, K, V, device=q.device, dtype=torch.float32) if want_ds0 else None
    dummy = dq
    precise = want_dg and PRECISE_DG and q.dtype != torch.float32
    dgs, fin, nk = None, None, 0
    if want_dg:  # one row per program: the dq, dk and dv programs' terms of dL/dΓ (README.md)
        blocks = [INTERPRET_BWD] if interpreting() else [c.kwargs for c in BWD_CONFIGS]
        widths = {(m["BLOCK_KS"], m["BLOCK_VS"]) for m in blocks}
        nk = cdiv(K, min(w[0] for w in widths))
        rows = 2 * nk + cdiv(V, min(w[1] for w in widths))
        alloc = torch.empty if len(widths) == 1 else torch.zeros  # rows a wider block leaves
        dgs = alloc(rows, H, B * T, device=q.device, dtype=torch.float32)
        if d_st is not None:  # the final state's term per key block, sequence and head
            fin = alloc(nk, N * H, device=q.device, dtype=torch.float32)

    def grid(m):
        return (2 * cdiv(K, m["BLOCK_KS"]) + cdiv(V, m["BLOCK_VS"]), N * H)

    _launch(
        _bwd_kernel, BWD_CONFIGS, INTERPRET_BWD, grid, q, k, v, gc, do, dq, dk, dv,
        dummy if dgs is None else dgs, dummy if fin is None else fin, dummy if s0 is None else s0,
        dummy if d_st is None else d_st, dummy if ds0 is None else ds0, cu, T_arg, H,
        *token_strides(q, v), B * T, H * B * T, scale, replica_stride(q, H // G), K_DIM=K, V_DIM=V,
        USE_S0=s0 is not None, USE_DST=d_st is not None, STORE_DS0=want_ds0,
        VARLEN=cu_seqlens is not None, WANT_DG=want_dg, PRECISE=precise, BLOCK_KF=pow2(K),
        BLOCK_VF=pow2(V), DOT=dot_precision(q), BLOCK_T=CHUNK, BOUND=BOUND[q.dtype], GROUP=H // G,
    )  # fmt: skip
    dq, dk = group_sum(dq, q), group_sum(dk, k)
    dg = None
    if want_dg:  # one launch: the rows summed, reverse-cumsummed per sequence (float64)
        dg = torch.empty(B, T, H, device=q.device, dtype=dg_dtype)
        launch_compiled(
            _dg_kernel, (N * H,), (dgs, dummy if fin is None else fin, dg, cu, T_arg, B * T, H),
            dict(ROWS=dgs.shape[0], NFIN=0 if fin is None else nk,
                 VARLEN=cu_seqlens is not None, BLOCK=DG_BLOCK, num_warps=4),
        )  # fmt: skip
    return dq, dk, dv, dg, ds0


class SimpleGLAFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, g, scale, s0, want_state, cu_seqlens):
        o, s_t, gc = _forward(q, k, v, g, scale, s0, want_state, cu_seqlens)
        ctx.save_for_backward(q, k, v, gc, s0, cu_seqlens)
        ctx.scale, ctx.g_dtype = scale, g.dtype
        ctx.want_ds0 = s0 is not None and ctx.needs_input_grad[5]
        return o, s_t

    @staticmethod
    def backward(ctx, do, d_st):
        q, k, v, gc, s0, cu_seqlens = ctx.saved_tensors
        want_dg = ctx.needs_input_grad[3]
        out = _bwd_op(q, k, v, gc, do, d_st, s0, cu_seqlens, ctx.scale, ctx.want_ds0, want_dg,
                      ctx.g_dtype)  # fmt: skip
        dg = out[3] if want_dg else None
        return out[0], out[1], out[2], dg, None, out[-1] if ctx.want_ds0 else None, None, None


def _fwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
            s0: torch.Tensor | None, cu_seqlens: torch.Tensor | None, scale: float,
            want_state: bool) -> list[torch.Tensor]:  # fmt: skip
    """[o, gc] (+ [final state] when want_state): the forward as a traced graph sees it."""
    o, s_t, gc = _forward(q, k, v, g, scale, s0, want_state, cu_seqlens)
    return [o, gc] if s_t is None else [o, gc, s_t]


def _bwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gc: torch.Tensor,
            do: torch.Tensor, d_st: torch.Tensor | None, s0: torch.Tensor | None,
            cu_seqlens: torch.Tensor | None, scale: float, want_ds0: bool, want_dg: bool,
            g_dtype: torch.dtype) -> list[torch.Tensor]:  # fmt: skip
    """[dq, dk, dv] (+ [dg] when want_dg, + [ds0] when want_ds0)."""
    dq, dk, dv, dg, ds0 = _backward(
        q, k, v, gc, do, scale, s0, None if d_st is None else d_st.contiguous(), want_ds0,
        g_dtype if want_dg else None, cu_seqlens,
    )  # fmt: skip
    return [dq, dk, dv, *([dg] if want_dg else []), *([ds0] if want_ds0 else [])]


_traced_fwd = opaque("simple_gla_fwd", _fwd_op)
_traced_bwd = opaque("simple_gla_bwd", _bwd_op)


def _traced_setup(ctx, inputs, output):
    q, k, v, g, s0, cu_seqlens, scale, _ = inputs
    ctx.save_for_backward(q, k, v, output[1], s0, cu_seqlens)
    ctx.scale, ctx.g_dtype = scale, g.dtype


def _traced_grad(ctx, grads):
    q, k, v, gc, s0, cu_seqlens = ctx.saved_tensors
    want_dg = ctx.needs_input_grad[3]
    want_ds0 = s0 is not None and ctx.needs_input_grad[4]
    d_st = grads[2] if len(grads) > 2 else None
    out = _traced_bwd(q, k, v, gc, grads[0], d_st, s0, cu_seqlens, ctx.scale, want_ds0, want_dg,
                      ctx.g_dtype)  # fmt: skip
    dg = out[3] if want_dg else None
    ds0 = out[-1] if want_ds0 else None
    return out[0], out[1], out[2], dg, ds0, None, None, None


_traced_fwd.register_autograd(_traced_grad, setup_context=_traced_setup)


OP = "simple_gla"


def _check_args(q, k, v, g, scale, initial_state, cu_seqlens):
    B, T, H, K, V, N = check_sequences(OP, q, k, v, scale, cu_seqlens, groups=True)
    check_gate(OP, "g", g, ((B, T, H), (H,)),
               f"({B}, {T}, {H}) = [B, T, H] (one log-decay per token and head) or ({H},) = [H]",
               q)  # fmt: skip
    if initial_state is not None:
        check_state(OP, initial_state, N, H, K, V)


@autocast_inputs
def simple_gla(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
    scale: float | None = None, initial_state: torch.Tensor | None = None,
    output_final_state: bool = False, cu_seqlens: torch.Tensor | None = None,
    backend: str = "auto",
):  # fmt: skip
    """Linear attention with a scalar data-dependent decay per head and token (RetNet,
    Lightning Attention, Mamba-2 style; fla's ``chunk_simple_gla``), chunked.

    ``S_t = exp(g_t) S_{t-1} + k_t^T v_t``, ``o_t = scale q_t S_t``; that is
    ``o_t = scale sum_{s<=t} exp(g_{s+1} + .. + g_t) (q_t . k_s) v_s`` (+ the initial state's
    read ``scale exp(g_0 + .. + g_t) q_t S0``).

    Args:
        q, k: ``[B, T, G, K]``.
        v: ``[B, T, H, V]``, H a multiple of G: value head h reads q/k head h // (H / G)
            (grouped heads, as Mamba-2's B and C with ngroups = G; G = H: one each). q and k
            are read in place, not repeated to the H heads; their gradients are formed per
            value head and summed over each group's heads.
        g: ``[B, T, H]`` log-decays (``<= 0``; e.g. ``logsigmoid`` of a projection), or
            ``[H]``: one constant log-decay per head (RetNet / TransNormerLLM), broadcast over
            B and T (its gradient is the sum over them). Any float dtype; differentiable.
        scale: multiplies ``q . k``; None means ``K ** -0.5``.
        initial_state: ``[N, H, K, V]`` (N = B, or the number of packed sequences).
            Differentiable.
        output_final_state: also return the state after the last token (float32).
        cu_seqlens: ``[N + 1]`` integer offsets of N sequences packed along T (then B = 1);
            every sequence starts from its own state. (Checked when on the CPU; CUDA values
            are trusted, so that a call never waits for the GPU.)
        backend: ``"auto"`` (Triton on CUDA tensors, the chunked PyTorch form on CPU),
            ``"triton"`` (also on CPU under ``TRITON_INTERPRET=1``) or ``"reference"`` (the
            chunked PyTorch form).

    Returns:
        ``(o, final_state)``: ``o`` is ``[B, T, H, V]`` in the dtype of ``v``; ``final_state``
        is ``[N, H, K, V]`` float32, or None unless ``output_final_state``.

    dtypes float16, bfloat16, float32; K, V up to 128 on the Triton path.

    >>> q = k = torch.randn(2, 63, 4, 32); v = torch.randn(2, 63, 4, 16)
    >>> g = torch.nn.functional.logsigmoid(torch.randn(2, 63, 4))
    >>> o, s = simple_gla(q, k, v, g, output_final_state=True)
    >>> o.shape, s.shape
    (torch.Size([2, 63, 4, 16]), torch.Size([2, 4, 32, 16]))
    """
    _check_args(q, k, v, g, scale, initial_state, cu_seqlens)
    if not use_triton(q, backend, OP) or q.dtype == torch.float64:
        o, s_t = simple_gla_chunked(
            q, k, v, g, scale=scale, initial_state=initial_state,
            output_final_state=output_final_state, cu_seqlens=cu_seqlens,
        )  # fmt: skip
        return o, (None if s_t is None else s_t.float() if q.dtype != torch.float64 else s_t)
    check(q.shape[-1] <= 128 and v.shape[-1] <= 128, OP, "head widths K, V for the Triton kernels",
          "at most 128 (else backend='reference')", (q.shape[-1], v.shape[-1]))  # fmt: skip
    B, T, _, K = q.shape
    H = v.shape[2]
    scale = float(default_scale(scale, K))
    q, k, v = readable(q, k, v)
    g = expand_gates(g, B, T, H)  # read in place, in its own dtype; dg returned in it
    s0 = None if initial_state is None else initial_state.float().contiguous()
    cu = None if cu_seqlens is None else cu_seqlens.to(torch.int32).contiguous()
    if tracing():  # torch.compile, torch.export: the opaque operators
        out = _traced_fwd(q, k, v, g, s0, cu, scale, output_final_state)
        return out[0], (out[2] if output_final_state else None)
    o, s_t = SimpleGLAFunction.apply(q, k, v, g, scale, s0, output_final_state, cu)
    return o, (s_t if output_final_state else None)
