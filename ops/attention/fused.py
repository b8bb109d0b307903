"""Fused softmax attention (FlashAttention-2): Triton kernels, launch wrappers, autograd.

Forward: one program per (query block, batch x head) streams the key/value blocks through
on-chip memory with the online softmax, and writes O and the base-2 log-sum-exp per row.
Backward: `delta = rowsum(dO * O)`, then one program per (key block, batch x kv head) that
loops over the query blocks of every query head in its group and accumulates dK and dV, and
one program per (query block, batch x head) that accumulates dQ. Nothing of size T x S is
written to memory and no atomics are used.
"""

import math

import torch
import triton
import triton.language as tl

from .._backend import check, interpreting, launch, use_triton
from .reference import softmax_attention_reference

LOG2E = 1.4426950408889634


@triton.jit
def _load_tile(
    ptrs, rows, n_rows, cols, n_cols: tl.constexpr, BOUNDS: tl.constexpr, FULL_COLS: tl.constexpr
):
    """Load a (rows, cols) tile; masks only where the tile can cross an edge."""
    if BOUNDS:
        if FULL_COLS:
            return tl.load(ptrs, mask=rows[:, None] < n_rows, other=0.0)
        return tl.load(ptrs, mask=(rows[:, None] < n_rows) & (cols[None, :] < n_cols), other=0.0)
    if FULL_COLS:
        return tl.load(ptrs)
    return tl.load(ptrs, mask=cols[None, :] < n_cols, other=0.0)


@triton.jit
def _fwd_tiles(
    acc, l_i, m_i, q, K_base, V_base, stride_kn, stride_vn, lo, hi, offs_m, offs_n, offs_d, offs_dv,
    S, qk_scale, D: tl.constexpr, DV: tl.constexpr, BLOCK_N: tl.constexpr, MASK: tl.constexpr,
    CAUSAL: tl.constexpr, FULL_D: tl.constexpr, FULL_DV: tl.constexpr,
):  # fmt: skip
    for n0 in range(lo, hi, BLOCK_N):
        cols = n0 + offs_n
        k = _load_tile(
            K_base + cols[:, None] * stride_kn + offs_d[None, :], cols, S, offs_d, D, MASK, FULL_D
        )
        qk = tl.dot(q, tl.trans(k))  # (BM, BN), unscaled
        if MASK:
            keep = cols[None, :] < S
            if CAUSAL:
                keep = keep & (cols[None, :] <= offs_m[:, None])
            qk = tl.where(keep, qk, float("-inf"))
        # Scaling inside the max and the exponent lets each element cost one fused multiply-add.
        m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
        p = tl.math.exp2(qk * qk_scale - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = _load_tile(
            V_base + cols[:, None] * stride_vn + offs_dv[None, :], cols, S, offs_dv, DV, MASK,
            FULL_DV,
        )  # fmt: skip
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _fwd_kernel(
    Q, K, V, O, LSE, T, S, H, HKV, qk_scale, D: tl.constexpr, DV: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):  # fmt: skip
    # Causal rows near the end do the most work: start them first so the last wave is light.
    pid_m = tl.num_programs(0) - 1 - tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = pid_bh % H
    hk = h // (H // HKV)
    m0 = pid_m * BLOCK_M
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    row_ok = offs_m < T
    q = _load_tile(
        Q + b * T * H * D + h * D + offs_m[:, None] * (H * D) + offs_d[None, :], offs_m, T, offs_d,
        D, True, D == BLOCK_D,
    )  # fmt: skip
    K_base = K + b * S * HKV * D + hk * D
    V_base = V + b * S * HKV * DV + hk * DV
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)
    # Blocks left of `full_end` need no mask; [full_end, end) holds the diagonal and the tail.
    if CAUSAL:
        full_end = tl.minimum(m0, S) // BLOCK_N * BLOCK_N
        end = tl.minimum(m0 + BLOCK_M, S)
    else:
        full_end = S // BLOCK_N * BLOCK_N
        end = S
    acc, l_i, m_i = _fwd_tiles(
        acc, l_i, m_i, q, K_base, V_base, HKV * D, HKV * DV, 0, full_end, offs_m, offs_n, offs_d,
        offs_dv, S, qk_scale, D, DV, BLOCK_N, False, CAUSAL, D == BLOCK_D, DV == BLOCK_DV,
    )  # fmt: skip
    acc, l_i, m_i = _fwd_tiles(
        acc, l_i, m_i, q, K_base, V_base, HKV * D, HKV * DV, full_end, end, offs_m, offs_n, offs_d,
        offs_dv, S, qk_scale, D, DV, BLOCK_N, True, CAUSAL, D == BLOCK_D, DV == BLOCK_DV,
    )  # fmt: skip
    o = acc / l_i[:, None]
    tl.store(
        O + b * T * H * DV + h * DV + offs_m[:, None] * (H * DV) + offs_dv[None, :],
        o.to(O.dtype.element_ty),
        mask=row_ok[:, None] & (offs_dv[None, :] < DV),
    )
    tl.store(LSE + pid_bh.to(tl.int64) * T + offs_m, m_i + tl.math.log2(l_i), mask=row_ok)


@triton.jit
def _bwd_delta_kernel(
    O, DO, DELTA, T, H, DV: tl.constexpr, BLOCK_DV: tl.constexpr, BLOCK_M: tl.constexpr
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_dv = tl.arange(0, BLOCK_DV)
    mask = (offs_m[:, None] < T) & (offs_dv[None, :] < DV)
    ptrs = b * T * H * DV + h * DV + offs_m[:, None] * (H * DV) + offs_dv[None, :]
    o = tl.load(O + ptrs, mask=mask, other=0.0).to(tl.float32)
    do = tl.load(DO + ptrs, mask=mask, other=0.0).to(tl.float32)
    tl.store(DELTA + pid_bh.to(tl.int64) * T + offs_m, tl.sum(o * do, 1), mask=offs_m < T)


@triton.jit
def _bwd_dkdv_tiles(
    dk, dv, k, v, Q_base, DO_base, LSE_base, DELTA_base, DQ_base, stride_qm, stride_om, lo, hi,
    offs_n, offs_m, offs_d, offs_dv, T, qk_scale, sm_scale, D: tl.constexpr, DV: tl.constexpr,
    BLOCK_M: tl.constexpr, CAUSAL_MASK: tl.constexpr, BOUNDS: tl.constexpr, FULL_D: tl.constexpr,
    FULL_DV: tl.constexpr, ATOMIC_DQ: tl.constexpr, KV_SMEM: tl.constexpr,
):  # fmt: skip
    for m0 in range(lo, hi, BLOCK_M):
        rows = m0 + offs_m
        q = _load_tile(
            Q_base + rows[:, None] * stride_qm + offs_d[None, :], rows, T, offs_d, D, BOUNDS, FULL_D
        )
        do = _load_tile(
            DO_base + rows[:, None] * stride_om + offs_dv[None, :], rows, T, offs_dv, DV, BOUNDS,
            FULL_DV,
        )  # fmt: skip
        if BOUNDS:
            # Rows past T get lse = +inf, so their probabilities are exactly 0.
            lse = tl.load(LSE_base + rows, mask=rows < T, other=float("inf"))
            delta = tl.load(DELTA_base + rows, mask=rows < T, other=0.0)
        else:
            lse = tl.load(LSE_base + rows)
            delta = tl.load(DELTA_base + rows)
        if KV_SMEM:
            # Scores as (BM, BN): k and v are the right-hand operands, which the tensor cores
            # read from shared memory, so they hold no registers across the loop.
            p = tl.math.exp2(tl.dot(q, tl.trans(k)) * qk_scale - lse[:, None])
            if CAUSAL_MASK:
                p = tl.where(rows[:, None] >= offs_n[None, :], p, 0.0)
            dv = tl.dot(tl.trans(p.to(do.dtype)), do, dv)
            dp = tl.dot(do, tl.trans(v))
            ds = p * (dp - delta[:, None])
            dk = tl.dot(tl.trans(ds.to(q.dtype)), q, dk)
            if ATOMIC_DQ:
                dq = tl.dot(ds.to(k.dtype), k) * sm_scale  # (BM, D)
                tl.atomic_add(
                    DQ_base + rows[:, None] * stride_qm + offs_d[None, :],
                    dq,
                    mask=(rows[:, None] < T) & (offs_d[None, :] < D),
                    sem="relaxed",
                )
        else:
            pT = tl.math.exp2(tl.dot(k, tl.trans(q)) * qk_scale - lse[None, :])  # (BN, BM)
            if CAUSAL_MASK:
                pT = tl.where(rows[None, :] >= offs_n[:, None], pT, 0.0)
            dv = tl.dot(pT.to(do.dtype), do, dv)
            dpT = tl.dot(v, tl.trans(do))
            dsT = pT * (dpT - delta[None, :])
            dk = tl.dot(dsT.to(q.dtype), q, dk)
            if ATOMIC_DQ:
                dq = tl.dot(tl.trans(dsT.to(k.dtype)), k) * sm_scale  # (BM, D)
                tl.atomic_add(
                    DQ_base + rows[:, None] * stride_qm + offs_d[None, :],
                    dq,
                    mask=(rows[:, None] < T) & (offs_d[None, :] < D),
                    sem="relaxed",
                )
    return dk, dv


@triton.jit
def _bwd_dkdv_kernel(
    Q, K, V, DO, LSE, DELTA, DK, DV_, DQ, T, S, H, HKV, qk_scale, sm_scale, D: tl.constexpr,
    DV: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, CAUSAL: tl.constexpr,
    ATOMIC_DQ: tl.constexpr, KV_SMEM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // HKV).to(tl.int64)
    hk = pid_bh % HKV
    G = H // HKV
    n0 = pid_n * BLOCK_N
    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    col_ok = offs_n < S
    k_ptrs = b * S * HKV * D + hk * D + offs_n[:, None] * (HKV * D) + offs_d[None, :]
    v_ptrs = b * S * HKV * DV + hk * DV + offs_n[:, None] * (HKV * DV) + offs_dv[None, :]
    k = tl.load(K + k_ptrs, mask=col_ok[:, None] & (offs_d[None, :] < D), other=0.0)
    v = tl.load(V + v_ptrs, mask=col_ok[:, None] & (offs_dv[None, :] < DV), other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], tl.float32)
    # Query blocks in [lo, mid) cross the diagonal; [mid, full_end) are whole and unmasked;
    # [full_end, T) is the ragged tail.
    if CAUSAL:
        lo = n0 // BLOCK_M * BLOCK_M
        mid = tl.minimum(tl.cdiv(n0 + BLOCK_N, BLOCK_M) * BLOCK_M, T)
    else:
        lo = 0
        mid = 0
    full_end = tl.maximum(T // BLOCK_M * BLOCK_M, mid)
    for g in range(G):
        h = hk * G + g
        Q_base = Q + b * T * H * D + h * D
        DQ_base = DQ + b * T * H * D + h * D
        DO_base = DO + b * T * H * DV + h * DV
        LSE_base = LSE + (b * H + h) * T
        DELTA_base = DELTA + (b * H + h) * T
        dk, dv = _bwd_dkdv_tiles(
            dk, dv, k, v, Q_base, DO_base, LSE_base, DELTA_base, DQ_base, H * D, H * DV, lo, mid,
            offs_n, offs_m, offs_d, offs_dv, T, qk_scale, sm_scale, D, DV, BLOCK_M, CAUSAL, True,
            D == BLOCK_D, DV == BLOCK_DV, ATOMIC_DQ, KV_SMEM,
        )  # fmt: skip
        dk, dv = _bwd_dkdv_tiles(
            dk, dv, k, v, Q_base, DO_base, LSE_base, DELTA_base, DQ_base, H * D, H * DV, mid,
            full_end, offs_n, offs_m, offs_d, offs_dv, T, qk_scale, sm_scale, D, DV, BLOCK_M, False,
            False, D == BLOCK_D, DV == BLOCK_DV, ATOMIC_DQ, KV_SMEM,
        )  # fmt: skip
        dk, dv = _bwd_dkdv_tiles(
            dk, dv, k, v, Q_base, DO_base, LSE_base, DELTA_base, DQ_base, H * D, H * DV, full_end,
            T, offs_n, offs_m, offs_d, offs_dv, T, qk_scale, sm_scale, D, DV, BLOCK_M, False, True,
            D == BLOCK_D, DV == BLOCK_DV, ATOMIC_DQ, KV_SMEM,
        )  # fmt: skip
    tl.store(
        DK + k_ptrs,
        (dk * sm_scale).to(DK.dtype.element_ty),
        mask=col_ok[:, None] & (offs_d[None, :] < D),
    )
    tl.store(
        DV_ + v_ptrs, dv.to(DV_.dtype.element_ty), mask=col_ok[:, None] & (offs_dv[None, :] < DV)
    )


@triton.jit
def _bwd_dq_tiles(
    dq, q, do, lse, delta, K_base, V_base, stride_kn, stride_vn, lo, hi, offs_m, offs_n, offs_d,
    offs_dv, S, qk_scale, D: tl.constexpr, DV: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL_MASK: tl.constexpr, BOUNDS: tl.constexpr, FULL_D: tl.constexpr, FULL_DV: tl.constexpr,
):  # fmt: skip
    for n0 in range(lo, hi, BLOCK_N):
        cols = n0 + offs_n
        # Keys past S load as zeros and so add nothing to dQ.
        k = _load_tile(
            K_base + cols[:, None] * stride_kn + offs_d[None, :], cols, S, offs_d, D, BOUNDS, FULL_D
        )
        v = _load_tile(
            V_base + cols[:, None] * stride_vn + offs_dv[None, :], cols, S, offs_dv, DV, BOUNDS,
            FULL_DV,
        )  # fmt: skip
        p = tl.math.exp2(tl.dot(q, tl.trans(k)) * qk_scale - lse[:, None])
        if CAUSAL_MASK:
            p = tl.where(cols[None, :] <= offs_m[:, None], p, 0.0)
        dp = tl.dot(do, tl.trans(v))
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(k.dtype), k, dq)
    return dq


@triton.jit
def _bwd_dq_kernel(
    Q, K, V, DO, LSE, DELTA, DQ, T, S, H, HKV, qk_scale, sm_scale, D: tl.constexpr,
    DV: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, CAUSAL: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid_m = tl.num_programs(0) - 1 - tl.program_id(0)  # heaviest causal rows first
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = pid_bh % H
    hk = h // (H // HKV)
    m0 = pid_m * BLOCK_M
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    row_ok = offs_m < T
    q_ptrs = b * T * H * D + h * D + offs_m[:, None] * (H * D) + offs_d[None, :]
    q = tl.load(Q + q_ptrs, mask=row_ok[:, None] & (offs_d[None, :] < D), other=0.0)
    do = tl.load(
        DO + b * T * H * DV + h * DV + offs_m[:, None] * (H * DV) + offs_dv[None, :],
        mask=row_ok[:, None] & (offs_dv[None, :] < DV),
        other=0.0,
    )
    lse = tl.load(LSE + pid_bh.to(tl.int64) * T + offs_m, mask=row_ok, other=float("inf"))
    delta = tl.load(DELTA + pid_bh.to(tl.int64) * T + offs_m, mask=row_ok, other=0.0)
    K_base = K + b * S * HKV * D + hk * D
    V_base = V + b * S * HKV * DV + hk * DV
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    if CAUSAL:
        full_end = tl.minimum(m0, S) // BLOCK_N * BLOCK_N
        end = tl.minimum(m0 + BLOCK_M, S)
    else:
        full_end = S // BLOCK_N * BLOCK_N
        end = S
    dq = _bwd_dq_tiles(
        dq, q, do, lse, delta, K_base, V_base, HKV * D, HKV * DV, 0, full_end, offs_m, offs_n,
        offs_d, offs_dv, S, qk_scale, D, DV, BLOCK_N, False, False, D == BLOCK_D, DV == BLOCK_DV,
    )  # fmt: skip
    dq = _bwd_dq_tiles(
        dq, q, do, lse, delta, K_base, V_base, HKV * D, HKV * DV, full_end, end, offs_m, offs_n,
        offs_d, offs_dv, S, qk_scale, D, DV, BLOCK_N, CAUSAL, True, D == BLOCK_D, DV == BLOCK_DV,
    )  # fmt: skip
    tl.store(
        DQ + q_ptrs,
        (dq * sm_scale).to(DQ.dtype.element_ty),
        mask=row_ok[:, None] & (offs_d[None, :] < D),
    )


def _configs(rows):
    return [
        triton.Config({"BLOCK_M": m, "BLOCK_N": n, **extra}, num_warps=w, num_stages=s)
        for m, n, w, s, *rest in rows
        for extra in [rest[0] if rest else {}]
    ]


# Small lists of (BLOCK_M, BLOCK_N, warps, stages[, constexprs]) measured on the H200 with
# bench/ops_sweep.py; autotuning picks among them per shape.
FWD_CONFIGS = [(128, 64, 8, 3), (128, 64, 8, 4), (128, 128, 8, 3)]
# KV_SMEM: backward scores as (query, key) tiles, so that k and v are right-hand operands the
# tensor cores read from shared memory; the (key, query) form keeps them in registers and
# spilled at head width 128 (bench/ops_sweep.py, 2026-11-28), yet the autotuner still chose it
# at T = 8k on the H200 (bench/RESULTS.md): both stay candidates.
DKDV_CONFIGS = [
    (64, 128, 8, 2, {"KV_SMEM": True}),
    (64, 128, 8, 3, {"KV_SMEM": True}),
    (32, 128, 8, 3, {"KV_SMEM": True}),
    (64, 64, 4, 3, {"KV_SMEM": True}),
    (128, 64, 8, 2, {"KV_SMEM": True}),
    (32, 64, 4, 3, {"KV_SMEM": False}),
    (64, 128, 8, 3, {"KV_SMEM": False}),
]
DQ_CONFIGS = [(128, 64, 8, 3), (128, 32, 8, 4), (64, 64, 4, 3)]
INTERPRET_CONFIG = {"BLOCK_M": 16, "BLOCK_N": 16}
KEY = ["T", "S", "D", "DV", "CAUSAL"]
# FlashAttention-2's own backward: the dK/dV programs also add their share of dQ into a
# float32 buffer with atomics, saving the dQ pass's two recomputed products (not
# bit-reproducible from run to run). Off: a separate dQ pass. Set from measurement.
ATOMIC_DQ = False
# The backward layout used under the interpreter (on the GPU the autotuner chooses).
INTERPRET_KV_SMEM = True


def _launch(kernel, configs, grid, args, meta, reset=None, interpret_extra=None):
    fixed = dict(INTERPRET_CONFIG, **(interpret_extra or {}))
    launch(kernel, _configs(configs), grid, args, meta, fixed, reset=reset, key=KEY)


def _pow2(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def _forward(q, k, v, causal: bool, scale: float):
    B, T, H, D = q.shape
    S, HKV, DV = k.shape[1], k.shape[2], v.shape[3]
    o = torch.empty(B, T, H, DV, device=q.device, dtype=q.dtype)
    lse = torch.empty(B, H, T, device=q.device, dtype=torch.float32)
    meta = dict(D=D, DV=DV, BLOCK_D=_pow2(D), BLOCK_DV=_pow2(DV), CAUSAL=causal)
    _launch(
        _fwd_kernel,
        FWD_CONFIGS,
        lambda m: (triton.cdiv(T, m["BLOCK_M"]), B * H),
        (q, k, v, o, lse, T, S, H, HKV, scale * LOG2E),
        meta,
    )
    return o, lse


def _backward(q, k, v, o, lse, do, causal: bool, scale: float, atomic_dq: bool | None = None):
    B, T, H, D = q.shape
    S, HKV, DV = k.shape[1], k.shape[2], v.shape[3]
    atomic_dq = ATOMIC_DQ if atomic_dq is None else atomic_dq
    delta = torch.empty_like(lse)
    block = 64 if not interpreting() else 16
    _bwd_delta_kernel[(triton.cdiv(T, block), B * H)](
        o, do, delta, T, H, DV=DV, BLOCK_DV=_pow2(DV), BLOCK_M=block
    )
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    dq = torch.zeros(q.shape, device=q.device, dtype=torch.float32) if atomic_dq else None
    meta = dict(D=D, DV=DV, BLOCK_D=_pow2(D), BLOCK_DV=_pow2(DV), CAUSAL=causal)
    _launch(
        _bwd_dkdv_kernel,
        DKDV_CONFIGS,
        lambda m: (triton.cdiv(S, m["BLOCK_N"]), B * HKV),
        (
            q,
            k,
            v,
            do,
            lse,
            delta,
            dk,
            dv,
            dk if dq is None else dq,
            T,
            S,
            H,
            HKV,
            scale * LOG2E,
            scale,
        ),  # fmt: skip
        dict(meta, ATOMIC_DQ=atomic_dq),
        reset=("DQ",) if atomic_dq else None,
        interpret_extra={"KV_SMEM": INTERPRET_KV_SMEM},
    )
    if atomic_dq:
        return dq.to(q.dtype), dk, dv
    dq = torch.empty_like(q)
    _launch(
        _bwd_dq_kernel,
        DQ_CONFIGS,
        lambda m: (triton.cdiv(T, m["BLOCK_M"]), B * H),
        (q, k, v, do, lse, delta, dq, T, S, H, HKV, scale * LOG2E, scale),
        meta,
    )
    return dq, dk, dv


class SoftmaxAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal: bool, scale: float):
        o, lse = _forward(q, k, v, causal, scale)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.causal, ctx.scale = causal, scale
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = _backward(q, k, v, o, lse, do.contiguous(), ctx.causal, ctx.scale)
        return dq, dk, dv, None, None


def _check_args(q, k, v, scale):
    op = "softmax_attention"
    for name, x in (("q", q), ("k", k), ("v", v)):
        check(isinstance(x, torch.Tensor), op, name, "a torch.Tensor", type(x).__name__)
        check(x.dim() == 4, op, f"{name}.shape", "4 dims [B, T, H, D]", tuple(x.shape))
        check(
            x.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64),
            op,
            f"{name}.dtype",
            "float16, bfloat16 or float32",
            x.dtype,
        )
    check(
        k.dtype == q.dtype and v.dtype == q.dtype,
        op,
        "dtypes",
        f"q, k, v all {q.dtype}",
        (q.dtype, k.dtype, v.dtype),
    )
    check(
        k.device == q.device and v.device == q.device,
        op,
        "devices",
        f"all on {q.device}",
        (q.device, k.device, v.device),
    )
    B, T, H, D = q.shape
    check(
        k.shape[0] == B and v.shape[0] == B,
        op,
        "batch size",
        f"{B} for q, k, v",
        (q.shape[0], k.shape[0], v.shape[0]),
    )
    check(k.shape[3] == D, op, "k.shape[3] (head width)", f"{D} as in q", k.shape[3])
    check(
        v.shape[1:3] == k.shape[1:3],
        op,
        "v.shape[1:3] (S, Hkv)",
        f"{tuple(k.shape[1:3])} as k",
        tuple(v.shape[1:3]),
    )
    check(T > 0 and k.shape[1] > 0, op, "sequence lengths T, S", "at least 1", (T, k.shape[1]))
    check(H % k.shape[2] == 0, op, "heads", f"H={H} a multiple of k's heads", k.shape[2])
    check(
        scale is None or (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0),
        op,
        "scale",
        "None or a positive finite number",
        scale,
    )


def softmax_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
    scale: float | None = None, backend: str = "auto",
) -> torch.Tensor:  # fmt: skip
    """Softmax attention, fused (FlashAttention-2): ``softmax(scale * q k^T [+ mask]) v``.

    Args:
        q: queries ``[B, T, H, D]``.
        k: keys ``[B, S, Hkv, D]``; ``H`` must be a multiple of ``Hkv`` (grouped heads: query
            head ``h`` reads key/value head ``h // (H // Hkv)``).
        v: values ``[B, S, Hkv, Dv]``.
        causal: query ``i`` sees keys ``j <= i`` (top-left aligned, as PyTorch's
            ``scaled_dot_product_attention(is_causal=True)``).
        scale: multiplies the scores; default ``D ** -0.5``.
        backend: ``"auto"`` (Triton on CUDA tensors, the PyTorch reference on CPU),
            ``"triton"`` (also on CPU under ``TRITON_INTERPRET=1``) or ``"reference"``.

    Returns:
        ``o`` of shape ``[B, T, H, Dv]`` and the dtype of ``q``.

    dtypes float16, bfloat16 and float32 (float32 products run as tf32 on tensor cores);
    head widths up to 128 on the Triton path (64 and 128 are the tuned ones). Differentiable
    in q, k and v.

    >>> q = torch.randn(2, 63, 4, 64); k = v = torch.randn(2, 63, 2, 64)
    >>> softmax_attention(q, k, v, causal=True).shape
    torch.Size([2, 63, 4, 64])
    """
    _check_args(q, k, v, scale)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    if not use_triton(q, backend, "softmax_attention") or q.dtype == torch.float64:
        return softmax_attention_reference(q, k, v, causal=causal, scale=scale)
    check(q.shape[-1] <= 128 and v.shape[-1] <= 128, "softmax_attention",
          "head widths D, Dv for the Triton kernels", "at most 128 (else backend='reference')",
          (q.shape[-1], v.shape[-1]))  # fmt: skip
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    return SoftmaxAttentionFunction.apply(q, k, v, bool(causal), scale)
