"""Chunked causal linear attention (Lightning Attention-2 form): kernels, wrappers, autograd.

The sequence is cut into chunks of BLOCK_T tokens. Within a chunk the quadratic masked form
runs on tensor cores; across chunks one running state ``S = sum lam^(..) k^T v`` is carried
in registers by a program that walks its sequence chunk by chunk. No per-chunk or per-token
state is ever written to memory: the forward reads q, k, v once and writes o.

Forward: one program per (value block, sequence x head).
Backward: one launch whose programs take one of three roles, so that the three scans run
side by side: dq (forward scan of S, one program per key block), dk and dv (backward scans
of dS = sum lam^(..) q^T do, one program per key block and per value block).
normalize=True runs the scan twice (values, then all-ones values for the denominator) inside
one autograd Function, in float32 where the two parts' gradients cancel.
Grouped heads (q, k of G heads, each read by GROUP = H / G value heads): every program reads
q and k at its value head's group, and the dq and dk programs write per value head into
copies of q's layout that the op sums per group (README.md).
"""

import math

import torch

from .. import config
from .._backend import (
    autocast_inputs,
    cdiv,
    check,
    check_qkv,
    check_sequences,
    check_state,
    dot_precision,
    empty_as,
    finite,
    group_sum,
    launch,
    per_head_grad,
    pow2,
    readable,
    replica_stride,
    sequences,
    stages_at_most,
    token_strides,
    use_triton,
)
from .._kernels import dot_lhs32, dot_rhs32
from .._traced import opaque, tracing
from .._triton import tl, triton
from .reference import EPS, check_decay, linear_attention_chunked


# The kernels keep S (and the backward's G) in float32 but multiply in the input dtype. Rounding
# a float32 operand to bf16/fp16 costs a relative 2^-9 / 2^-12 per element, which is harmless
# unless the product is later cancelled against another large one: with normalize=True the
# gradients of the numerator and denominator cancel (o = num / den does not change when q is
# scaled), so that path (PRECISE) multiplies a float32 operand as a hi + lo pair of the input
# dtype (_kernels.dot_rhs32 / dot_lhs32): two products instead of one, about 16 mantissa
# bits for bf16.
@triton.jit
def _sequence(CU, T, i_n, SQB, SQT, SVB, SVT, VARLEN: tl.constexpr):
    """Sequence i_n: its length L, and the offsets of its first token in the q/k/dq/dk layout
    (strides SQ*) and in the v/o/do/dv layout (SV*). Packed sequences lie along T between
    offsets in CU; otherwise sequence i_n is batch row i_n."""
    if VARLEN:
        bos = tl.load(CU + i_n).to(tl.int64)
        L = (tl.load(CU + i_n + 1).to(tl.int64) - bos).to(tl.int32)
        qk0 = bos * SQT
        v0 = bos * SVT
    else:
        L = T
        qk0 = i_n.to(tl.int64) * SQB
        v0 = i_n.to(tl.int64) * SVB
    return L, qk0, v0


@triton.jit
def _fwd_kernel(
    Q, K, V, O, S0, ST, LOG2_DECAY, CU, T, H, SQB, SQT, SQH, SVB, SVT, SVH, scale,
    K_DIM: tl.constexpr, V_DIM: tl.constexpr,
    BLOCK_K: tl.constexpr, HAS_DECAY: tl.constexpr, USE_S0: tl.constexpr, STORE_ST: tl.constexpr,
    VARLEN: tl.constexpr, PRECISE: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_V: tl.constexpr,
    DOT: tl.constexpr, GROUP: tl.constexpr,
):  # fmt: skip
    i_v = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    L, qk0, v0 = _sequence(CU, T, i_n, SQB, SQT, SVB, SVT, VARLEN)
    i_qk = i_h
    if GROUP > 1:  # grouped heads: GROUP value heads read one head of q and k
        i_qk = i_h // GROUP
    offs_t = tl.arange(0, BLOCK_T)
    offs_k = tl.arange(0, BLOCK_K)
    offs_v = i_v * BLOCK_V + tl.arange(0, BLOCK_V)
    k_ok = offs_k < K_DIM
    v_ok = offs_v < V_DIM
    q_base = Q + qk0 + i_qk.to(tl.int64) * SQH
    k_base = K + qk0 + i_qk.to(tl.int64) * SQH
    v_base = V + v0 + i_h.to(tl.int64) * SVH
    o_base = O + v0 + i_h.to(tl.int64) * SVH
    s_ptrs = i_nh.to(tl.int64) * K_DIM * V_DIM + offs_k[:, None] * V_DIM + offs_v[None, :]
    s_mask = k_ok[:, None] & v_ok[None, :]
    if USE_S0:
        S = tl.load(S0 + s_ptrs, mask=s_mask, other=0.0).to(tl.float32)
    else:
        S = tl.zeros([BLOCK_K, BLOCK_V], tl.float32)
    causal = offs_t[:, None] >= offs_t[None, :]
    if HAS_DECAY:
        b = tl.load(LOG2_DECAY + i_h)
        lag = tl.where(causal, offs_t[:, None] - offs_t[None, :], 0).to(tl.float32)
        decay_tt = tl.where(causal, tl.math.exp2(lag * b), 0.0)
        q_decay = tl.math.exp2((offs_t + 1).to(tl.float32) * b) * scale
    for t0 in range(0, L, BLOCK_T):
        rows = t0 + offs_t
        r_ok = rows < L
        q = tl.load(
            q_base + rows[:, None] * SQT + offs_k[None, :],
            mask=r_ok[:, None] & k_ok[None, :],
            other=0.0,
        )
        k = tl.load(
            k_base + rows[:, None] * SQT + offs_k[None, :],
            mask=r_ok[:, None] & k_ok[None, :],
            other=0.0,
        )
        v = tl.load(
            v_base + rows[:, None] * SVT + offs_v[None, :],
            mask=r_ok[:, None] & v_ok[None, :],
            other=0.0,
        )
        a = tl.dot(q, tl.trans(k), input_precision=DOT) * scale  # (BT, BT)
        qs = dot_rhs32(q, S, PRECISE, DOT)  # (BT, BV): the chunks before this one
        if HAS_DECAY:
            a = a * decay_tt
            o = qs * q_decay[:, None]
        else:
            a = tl.where(causal, a, 0.0)
            o = qs * scale
        o = dot_lhs32(a, v, o, PRECISE, DOT)
        tl.store(
            o_base + rows[:, None] * SVT + offs_v[None, :],
            o.to(O.dtype.element_ty),
            mask=r_ok[:, None] & v_ok[None, :],
        )
        if HAS_DECAY:
            n = tl.minimum(L - t0, BLOCK_T)
            k_decay = tl.where(r_ok, tl.math.exp2((n - 1 - offs_t).to(tl.float32) * b), 0.0)
            kd = (k * k_decay[:, None]).to(v.dtype)
            S = tl.dot(tl.trans(kd), v, S * tl.math.exp2(n.to(tl.float32) * b), input_precision=DOT)
        else:
            S = tl.dot(tl.trans(k), v, S, input_precision=DOT)
    if STORE_ST:
        tl.store(ST + s_ptrs, S, mask=s_mask)


@triton.jit
def _bwd_dq(
    K, V, DO, DQ, S0, qk0, v0, SQT, SQH, SVT, SVH, L, i_nh, i_h, i_qk, i_k, scale, b,
    K_DIM: tl.constexpr, V_DIM: tl.constexpr,
    HAS_DECAY: tl.constexpr, USE_S0: tl.constexpr, PRECISE: tl.constexpr, BLOCK_T: tl.constexpr,
    BLOCK_KB: tl.constexpr, BLOCK_VF: tl.constexpr, DOT: tl.constexpr,
):  # fmt: skip
    """dq_i = c sum_{j<=i} lam^(i-j) (do_i . v_j) k_j + c lam^(i+1) do_i S^T, S scanned forward."""
    offs_t = tl.arange(0, BLOCK_T)
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
    causal = offs_t[:, None] >= offs_t[None, :]
    if HAS_DECAY:
        lag = tl.where(causal, offs_t[:, None] - offs_t[None, :], 0).to(tl.float32)
        decay_tt = tl.where(causal, tl.math.exp2(lag * b), 0.0)
        q_decay = tl.math.exp2((offs_t + 1).to(tl.float32) * b) * scale
    for t0 in range(0, L, BLOCK_T):
        rows = t0 + offs_t
        r_ok = rows < L
        kmask = r_ok[:, None] & k_ok[None, :]
        vmask = r_ok[:, None] & v_ok[None, :]
        k = tl.load(K + kq_base + rows[:, None] * SQT + offs_k[None, :], mask=kmask, other=0.0)
        v = tl.load(V + v_base + rows[:, None] * SVT + offs_v[None, :], mask=vmask, other=0.0)
        do = tl.load(DO + v_base + rows[:, None] * SVT + offs_v[None, :], mask=vmask, other=0.0)
        da = tl.dot(do, tl.trans(v), input_precision=DOT) * scale
        dss = dot_rhs32(do, tl.trans(S), PRECISE, DOT)  # (BT, BKB)
        if HAS_DECAY:
            da = da * decay_tt
            dq = dss * q_decay[:, None]
        else:
            da = tl.where(causal, da, 0.0)
            dq = dss * scale
        dq = dot_lhs32(da, k, dq, PRECISE, DOT)
        tl.store(
            DQ + kq_base + rows[:, None] * SQT + offs_k[None, :],
            dq.to(DQ.dtype.element_ty),
            mask=kmask,
        )
        if HAS_DECAY:
            n = tl.minimum(L - t0, BLOCK_T)
            k_decay = tl.where(r_ok, tl.math.exp2((n - 1 - offs_t).to(tl.float32) * b), 0.0)
            kd = (k * k_decay[:, None]).to(v.dtype)
            S = tl.dot(tl.trans(kd), v, S * tl.math.exp2(n.to(tl.float32) * b), input_precision=DOT)
        else:
            S = tl.dot(tl.trans(k), v, S, input_precision=DOT)


@triton.jit
def _bwd_dkdv(
    Q, K, V, DO, DX, DST, DS0, qk0, v0, SQT, SQH, SVT, SVH, L, i_nh, i_h, i_qk, i_blk, scale, b,
    K_DIM: tl.constexpr,
    V_DIM: tl.constexpr, HAS_DECAY: tl.constexpr, USE_DST: tl.constexpr, STORE_DS0: tl.constexpr,
    PRECISE: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_KS: tl.constexpr, BLOCK_VS: tl.constexpr,
    BLOCK_KF: tl.constexpr, BLOCK_VF: tl.constexpr, FOR_DK: tl.constexpr, DOT: tl.constexpr,
):  # fmt: skip
    """Scans dS = sum_i c lam^(..) q_i^T do_i backwards over the chunks.

    FOR_DK: this program owns key rows [i_blk * BLOCK_KS, +BLOCK_KS) of dS and writes dk;
        dk_j = c sum_{i>=j} lam^(i-j) (do_i . v_j) q_i + lam^(n-1-j) v_j dS^T.
    else: it owns value columns [i_blk * BLOCK_VS, +BLOCK_VS) and writes dv;
        dv_j = c sum_{i>=j} lam^(i-j) (q_i . k_j) do_i + lam^(n-1-j) k_j dS.
    """
    offs_t = tl.arange(0, BLOCK_T)
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
    # (j, i) layout: key position j down, query position i across.
    causal_t = offs_t[None, :] >= offs_t[:, None]
    if HAS_DECAY:
        lag = tl.where(causal_t, offs_t[None, :] - offs_t[:, None], 0).to(tl.float32)
        decay_t = tl.where(causal_t, tl.math.exp2(lag * b), 0.0)
        q_decay = tl.math.exp2((offs_t + 1).to(tl.float32) * b) * scale
    n_chunks = tl.cdiv(L, BLOCK_T)
    for i in range(0, n_chunks):
        t0 = (n_chunks - 1 - i) * BLOCK_T
        rows = t0 + offs_t
        r_ok = rows < L
        kmask = r_ok[:, None] & k_ok[None, :]
        vmask = r_ok[:, None] & v_ok[None, :]
        q = tl.load(Q + kq_base + rows[:, None] * SQT + offs_k[None, :], mask=kmask, other=0.0)
        do = tl.load(DO + v_base + rows[:, None] * SVT + offs_v[None, :], mask=vmask, other=0.0)
        if FOR_DK:
            x = tl.load(V + v_base + rows[:, None] * SVT + offs_v[None, :], mask=vmask, other=0.0)
            at = tl.dot(x, tl.trans(do), input_precision=DOT) * scale  # (j, i) = v_j . do_i
            dx_inter = dot_rhs32(x, tl.trans(G), PRECISE, DOT)  # (BT, BKS)
            rhs = q
        else:
            x = tl.load(K + kq_base + rows[:, None] * SQT + offs_k[None, :], mask=kmask, other=0.0)
            at = tl.dot(x, tl.trans(q), input_precision=DOT) * scale  # (j, i) = k_j . q_i
            dx_inter = dot_rhs32(x, G, PRECISE, DOT)  # (BT, BVS)
            rhs = do
        n = tl.minimum(L - t0, BLOCK_T)
        if HAS_DECAY:
            at = at * decay_t
            k_decay = tl.where(r_ok, tl.math.exp2((n - 1 - offs_t).to(tl.float32) * b), 0.0)
            dx = dx_inter * k_decay[:, None]
            qd = (q * q_decay[:, None]).to(do.dtype)
            G = G * tl.math.exp2(n.to(tl.float32) * b)
        else:
            at = tl.where(causal_t, at, 0.0)
            dx = dx_inter
            qd = (q * scale).to(do.dtype)
        dx = tl.dot(at.to(rhs.dtype), rhs, dx, input_precision=DOT)
        if FOR_DK:
            tl.store(
                DX + kq_base + rows[:, None] * SQT + offs_k[None, :],
                dx.to(DX.dtype.element_ty),
                mask=kmask,
            )
        else:
            tl.store(
                DX + v_base + rows[:, None] * SVT + offs_v[None, :],
                dx.to(DX.dtype.element_ty),
                mask=vmask,
            )
        G = tl.dot(tl.trans(qd), do, G, input_precision=DOT)
    if STORE_DS0:
        tl.store(DS0 + s_ptrs, G, mask=s_mask)


@triton.jit
def _bwd_kernel(
    Q, K, V, DO, DQ, DK, DV, S0, DST, DS0, LOG2_DECAY, CU, T, H, SQB, SQT, SQH, SVB, SVT, SVH,
    scale, SDR, K_DIM: tl.constexpr,
    V_DIM: tl.constexpr, HAS_DECAY: tl.constexpr, USE_S0: tl.constexpr, USE_DST: tl.constexpr,
    STORE_DS0: tl.constexpr, VARLEN: tl.constexpr, PRECISE: tl.constexpr, BLOCK_KF: tl.constexpr,
    BLOCK_VF: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_KS: tl.constexpr, BLOCK_VS: tl.constexpr,
    DOT: tl.constexpr, GROUP: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    L, qk0, v0 = _sequence(CU, T, i_n, SQB, SQT, SVB, SVT, VARLEN)
    i_qk = i_h
    if GROUP > 1:  # grouped heads: GROUP value heads read one head of q and k, and each
        i_qk = i_h // GROUP  # writes its own copy of dq and dk (SDR apart), summed afterwards
        DQ += (i_h % GROUP).to(tl.int64) * SDR
        DK += (i_h % GROUP).to(tl.int64) * SDR
    if HAS_DECAY:
        b = tl.load(LOG2_DECAY + i_h)
    else:
        b = 0.0
    nk = tl.cdiv(K_DIM, BLOCK_KS)
    if pid < nk:
        _bwd_dq(
            K, V, DO, DQ, S0, qk0, v0, SQT, SQH, SVT, SVH, L, i_nh, i_h, i_qk, pid, scale, b, K_DIM,
            V_DIM, HAS_DECAY, USE_S0, PRECISE, BLOCK_T, BLOCK_KS, BLOCK_VF, DOT,
        )  # fmt: skip
    elif pid < 2 * nk:
        _bwd_dkdv(
            Q, K, V, DO, DK, DST, DS0, qk0, v0, SQT, SQH, SVT, SVH, L, i_nh, i_h, i_qk, pid - nk,
            scale, b, K_DIM, V_DIM,
            HAS_DECAY, USE_DST, STORE_DS0, PRECISE, BLOCK_T, BLOCK_KS, BLOCK_VS, BLOCK_KF, BLOCK_VF,
            True, DOT,
        )  # fmt: skip
    else:
        _bwd_dkdv(
            Q, K, V, DO, DV, DST, DS0, qk0, v0, SQT, SQH, SVT, SVH, L, i_nh, i_h, i_qk,
            pid - 2 * nk, scale, b, K_DIM, V_DIM,
            HAS_DECAY, USE_DST, False, PRECISE, BLOCK_T, BLOCK_KS, BLOCK_VS, BLOCK_KF, BLOCK_VF,
            False, DOT,
        )  # fmt: skip


# One configuration per kernel, not a list to autotune (README.md says why).
FWD_CONFIGS = [triton.Config({"BLOCK_T": 64, "BLOCK_V": 64}, num_warps=4, num_stages=4)]
BWD_CONFIGS = [
    triton.Config({"BLOCK_T": 64, "BLOCK_KS": 64, "BLOCK_VS": 64}, num_warps=4, num_stages=3)
]
# float32 tiles take twice the shared memory, more than the H200 has at those pipeline depths:
# float32 runs at most this many stages.
F32_STAGES = 2
INTERPRET_FWD = {"BLOCK_T": 16, "BLOCK_V": 16}
INTERPRET_BWD = {"BLOCK_T": 16, "BLOCK_KS": 16, "BLOCK_VS": 16}
KEY = ["T", "H", "K_DIM", "V_DIM", "HAS_DECAY", "VARLEN", "PRECISE"]


def _launch(kernel, configs, fixed, grid, *args, **kwargs):
    if args[0].dtype == torch.float32:
        configs = stages_at_most(configs, F32_STAGES)
    launch(kernel, configs, grid, args, kwargs, fixed, key=KEY)


def _forward(q, k, v, log2_decay, scale, s0, want_state, cu_seqlens, out_dtype=None, precise=False):
    B, T, G, K = q.shape
    H, V = v.shape[2:]
    N, T_arg, cu = sequences(q, cu_seqlens)
    o = empty_as(v, out_dtype)
    s_t = torch.empty(N, H, K, V, device=q.device, dtype=torch.float32) if want_state else None
    dummy = o
    _launch(
        _fwd_kernel, FWD_CONFIGS, INTERPRET_FWD, lambda m: (cdiv(V, m["BLOCK_V"]), N * H), q,
        k, v, o, dummy if s0 is None else s0, dummy if s_t is None else s_t,
        dummy if log2_decay is None else log2_decay, cu, T_arg, H, *token_strides(q, v), scale,
        K_DIM=K, V_DIM=V, BLOCK_K=pow2(K), HAS_DECAY=log2_decay is not None, USE_S0=s0 is not None,
        STORE_ST=want_state, VARLEN=cu_seqlens is not None, PRECISE=precise, DOT=dot_precision(q),
        GROUP=H // G,
    )  # fmt: skip
    return o, s_t


def _backward(
    q, k, v, do, log2_decay, scale, s0, d_st, want_ds0, cu_seqlens, grad_dtype=None, precise=False
):
    B, T, G, K = q.shape
    H, V = v.shape[2:]
    N, T_arg, cu = sequences(q, cu_seqlens)
    dq, dk = (per_head_grad(x, H // G, grad_dtype) for x in (q, k))
    dv = empty_as(v, grad_dtype)
    if do.stride() != v.stride():  # the kernels read do in v's layout
        do = empty_as(v, do.dtype).copy_(do)
    ds0 = torch.empty(N, H, K, V, device=q.device, dtype=torch.float32) if want_ds0 else None
    dummy = dq

    def grid(m):
        return (2 * cdiv(K, m["BLOCK_KS"]) + cdiv(V, m["BLOCK_VS"]), N * H)

    _launch(
        _bwd_kernel, BWD_CONFIGS, INTERPRET_BWD, grid, q, k, v, do, dq, dk, dv,
        dummy if s0 is None else s0, dummy if d_st is None else d_st, dummy if ds0 is None else ds0,
        dummy if log2_decay is None else log2_decay, cu, T_arg, H, *token_strides(q, v), scale,
        replica_stride(q, H // G), K_DIM=K, V_DIM=V, HAS_DECAY=log2_decay is not None,
        USE_S0=s0 is not None, USE_DST=d_st is not None, STORE_DS0=want_ds0,
        VARLEN=cu_seqlens is not None, PRECISE=precise, BLOCK_KF=pow2(K), BLOCK_VF=pow2(V),
        DOT=dot_precision(q), GROUP=H // G,
    )  # fmt: skip
    return group_sum(dq, q), group_sum(dk, k), dv, ds0


class LinearAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, log2_decay, scale, s0, want_state, cu_seqlens):
        o, s_t = _forward(q, k, v, log2_decay, scale, s0, want_state, cu_seqlens)
        ctx.save_for_backward(q, k, v, log2_decay, s0, cu_seqlens)
        ctx.scale = scale
        ctx.want_ds0 = s0 is not None and ctx.needs_input_grad[5]
        if want_state:
            return o, s_t
        return o, None

    @staticmethod
    def backward(ctx, do, d_st):
        q, k, v, log2_decay, s0, cu_seqlens = ctx.saved_tensors
        out = _bwd_op(q, k, v, do, d_st, log2_decay, s0, cu_seqlens, ctx.scale, ctx.want_ds0)
        return *out[:3], None, None, out[3] if ctx.want_ds0 else None, None, None


def _widen(z0):
    """z0 ``[N, H, K]`` as the state of the all-ones values' scan: ``[N, H, K, 16]``."""
    return None if z0 is None else z0[..., None].expand(*z0.shape, 16).contiguous()


def _normalized_forward(q, k, v, log2_decay, scale, s0, z0, want_state, cu_seqlens):
    """(o32, den, s_t, z_t): ``o = num / den`` in float32, den ``[B, T, H, 1]`` (EPS added, inf
    where it was 0), the final states or None; z0 widened (`_widen`)."""
    precise = q.dtype != torch.float32  # float32 operands need no split
    ones = torch.ones(*v.shape[:3], 16, device=v.device, dtype=v.dtype)
    f32 = torch.float32
    num, s_t = _forward(q, k, v, log2_decay, scale, s0, want_state, cu_seqlens, f32, precise)
    den, z_t = _forward(q, k, ones, log2_decay, scale, z0, want_state, cu_seqlens, f32, precise)
    den = den[..., :1]  # (B, T, H, 1)
    # A row with den == 0 reads 0 and passes no gradient (reference.normalized says why):
    # dividing by inf there gives o = 0 here and dnum = do / den = 0 in the backward,
    # where do / 1e-10 overflowed float16 and its inf * 0 filled dk and dv with NaN.
    den = torch.where(den == 0, math.inf, den + EPS)
    o32 = num / den
    z_t = None if z_t is None else z_t[..., 0].contiguous()
    return o32, den, s_t, z_t


def _normalized_backward(q, k, v, log2_decay, scale, s0, z0, cu, o32, den, do, d_st, d_zt,
                         want_ds0, want_dz0):  # fmt: skip
    """(dq, dk, dv, ds0, dz0) of `_normalized_forward` (z0 widened) from the cotangents of o
    (any float dtype), the final S and z (or None); ds0, dz0 None unless wanted."""
    precise = q.dtype != torch.float32
    dt, f32 = v.dtype, torch.float32
    dnum = (do.float() / den).to(dt)
    # From the rounded dnum, so that the two parts cancel as the exact ones do.
    dden = -(dnum.float() * o32).sum(-1, keepdim=True)
    hi = dden.to(dt)
    d_den = torch.cat([hi, (dden - hi.float()).to(dt), hi.new_zeros(*hi.shape[:3], 14)], -1)
    dz_t = None
    if d_zt is not None:
        dz_t = d_zt.new_zeros(*d_zt.shape, 16)
        dz_t[..., 0] = d_zt
    ones = torch.ones(*v.shape[:3], 16, device=v.device, dtype=dt)
    dq, dk, dv, ds0 = _backward(
        q, k, v, dnum, log2_decay, scale, s0, None if d_st is None else d_st.contiguous(),
        want_ds0, cu, f32, precise,
    )  # fmt: skip
    dq2, dk2, _, dz0 = _backward(
        q, k, ones, d_den.contiguous(), log2_decay, scale, z0, dz_t, want_dz0, cu, f32, precise,
    )  # fmt: skip
    dz0 = None if dz0 is None else dz0.sum(-1)  # z0 was expanded over the 16 columns
    return (dq + dq2).to(dt), (dk + dk2).to(dt), dv.to(dt), ds0, dz0


class NormalizedLinearAttentionFunction(torch.autograd.Function):
    """``o = num / (den + EPS)`` (0 where den == 0): num is the scan of v, den the same scan of
    all-ones values (16 columns, the narrowest tile) from z0, in one autograd node.

    The gradients of num and den cancel (o does not change when q is scaled, so q . dq = 0),
    so they must meet in float32: both scans write float32 (num, den, dq, dk), multiply their
    float32 operands in PRECISE mode, and den's cotangent is formed from the rounded
    cotangent of num (-(dnum . o), float32, passed as a hi + lo pair of columns); README.md
    says what rounding each part separately cost.
    """

    @staticmethod
    def forward(ctx, q, k, v, log2_decay, scale, s0, z0, want_state, cu_seqlens):
        z0 = _widen(z0)
        o32, den, s_t, z_t = _normalized_forward(
            q, k, v, log2_decay, scale, s0, z0, want_state, cu_seqlens
        )
        ctx.save_for_backward(q, k, v, log2_decay, s0, z0, cu_seqlens, o32, den)
        ctx.scale = scale
        return o32.to(v.dtype), s_t, z_t

    @staticmethod
    def backward(ctx, do, d_st, d_zt):
        q, k, v, log2_decay, s0, z0, cu, o32, den = ctx.saved_tensors
        want_ds0 = s0 is not None and ctx.needs_input_grad[5]
        want_dz0 = z0 is not None and ctx.needs_input_grad[6]
        dq, dk, dv, ds0, dz0 = _normalized_backward(
            q, k, v, log2_decay, ctx.scale, s0, z0, cu, o32, den, do, d_st, d_zt, want_ds0,
            want_dz0,
        )  # fmt: skip
        return dq, dk, dv, None, None, ds0, dz0, None, None


# The same forwards and backwards as opaque operators, for torch.compile and torch.export
# (_traced.py). The normalized forward returns o in float32 (o32, which its backward reads);
# the public function rounds it to v's dtype in the traced graph, so o32 and o are not two
# outputs of one operator that alias where v is float32.
def _fwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log2_decay: torch.Tensor | None,
            s0: torch.Tensor | None, cu_seqlens: torch.Tensor | None, scale: float,
            want_state: bool) -> list[torch.Tensor]:  # fmt: skip
    """[o] (+ [final state] when want_state)."""
    o, s_t = _forward(q, k, v, log2_decay, scale, s0, want_state, cu_seqlens)
    return [o] if s_t is None else [o, s_t]


def _bwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, do: torch.Tensor,
            d_st: torch.Tensor | None, log2_decay: torch.Tensor | None, s0: torch.Tensor | None,
            cu_seqlens: torch.Tensor | None, scale: float,
            want_ds0: bool) -> list[torch.Tensor]:  # fmt: skip
    """[dq, dk, dv] (+ [ds0] when want_ds0)."""
    dq, dk, dv, ds0 = _backward(
        q, k, v, do, log2_decay, scale, s0, None if d_st is None else d_st.contiguous(),
        want_ds0, cu_seqlens,
    )  # fmt: skip
    return [dq, dk, dv] if ds0 is None else [dq, dk, dv, ds0]


_traced_fwd = opaque("linear_attention_fwd", _fwd_op)
_traced_bwd = opaque("linear_attention_bwd", _bwd_op)


def _traced_setup(ctx, inputs, output):
    q, k, v, log2_decay, s0, cu_seqlens, scale, _ = inputs
    ctx.save_for_backward(q, k, v, log2_decay, s0, cu_seqlens)
    ctx.scale = scale


def _traced_grad(ctx, grads):
    q, k, v, log2_decay, s0, cu_seqlens = ctx.saved_tensors
    want_ds0 = s0 is not None and ctx.needs_input_grad[4]
    d_st = grads[1] if len(grads) > 1 else None
    out = _traced_bwd(q, k, v, grads[0], d_st, log2_decay, s0, cu_seqlens, ctx.scale, want_ds0)
    return out[0], out[1], out[2], None, (out[3] if want_ds0 else None), None, None, None


_traced_fwd.register_autograd(_traced_grad, setup_context=_traced_setup)


def _normalized_fwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       log2_decay: torch.Tensor | None, s0: torch.Tensor | None,
                       z0: torch.Tensor | None, cu_seqlens: torch.Tensor | None, scale: float,
                       want_state: bool) -> list[torch.Tensor]:  # fmt: skip
    """[o32, den] (+ [final S, final z] when want_state); z0 ``[N, H, K]``."""
    o32, den, s_t, z_t = _normalized_forward(
        q, k, v, log2_decay, scale, s0, _widen(z0), want_state, cu_seqlens
    )
    return [o32, den] if s_t is None else [o32, den, s_t, z_t]


def _normalized_bwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       log2_decay: torch.Tensor | None, s0: torch.Tensor | None,
                       z0: torch.Tensor | None, cu_seqlens: torch.Tensor | None,
                       o32: torch.Tensor, den: torch.Tensor, do: torch.Tensor,
                       d_st: torch.Tensor | None, d_zt: torch.Tensor | None, scale: float,
                       want_ds0: bool, want_dz0: bool) -> list[torch.Tensor]:  # fmt: skip
    """[dq, dk, dv] (+ [ds0] when want_ds0, + [dz0] when want_dz0); z0 ``[N, H, K]``."""
    dq, dk, dv, ds0, dz0 = _normalized_backward(
        q, k, v, log2_decay, scale, s0, _widen(z0), cu_seqlens, o32, den, do, d_st, d_zt,
        want_ds0, want_dz0,
    )  # fmt: skip
    return [dq, dk, dv, *([ds0] if want_ds0 else []), *([dz0] if want_dz0 else [])]


_traced_normalized_fwd = opaque("normalized_linear_attention_fwd", _normalized_fwd_op)
_traced_normalized_bwd = opaque("normalized_linear_attention_bwd", _normalized_bwd_op)


def _traced_normalized_setup(ctx, inputs, output):
    q, k, v, log2_decay, s0, z0, cu_seqlens, scale, _ = inputs
    ctx.save_for_backward(q, k, v, log2_decay, s0, z0, cu_seqlens, output[0], output[1])
    ctx.scale = scale


def _traced_normalized_grad(ctx, grads):
    q, k, v, log2_decay, s0, z0, cu_seqlens, o32, den = ctx.saved_tensors
    want_ds0 = s0 is not None and ctx.needs_input_grad[4]
    want_dz0 = z0 is not None and ctx.needs_input_grad[5]
    d_st, d_zt = (grads[2], grads[3]) if len(grads) > 2 else (None, None)
    out = _traced_normalized_bwd(
        q, k, v, log2_decay, s0, z0, cu_seqlens, o32, den, grads[0], d_st, d_zt, ctx.scale,
        want_ds0, want_dz0,
    )  # fmt: skip
    ds0 = out[3] if want_ds0 else None
    dz0 = out[-1] if want_dz0 else None
    return out[0], out[1], out[2], None, ds0, dz0, None, None, None


_traced_normalized_fwd.register_autograd(
    _traced_normalized_grad, setup_context=_traced_normalized_setup
)


OP = "linear_attention"


def _readable(q, k, v):
    """q, k, v as the kernels take them: contiguous copies, or (config linear_in_place) the
    tensors themselves where the kernels can read them (q and k in one layout)."""
    if not config.settings.linear_in_place:
        return q.contiguous(), k.contiguous(), v.contiguous()
    return readable(q, k, v)


def _check_args(q, k, v, decay, scale, initial_state, normalize, cu_seqlens):
    check_qkv(OP, q, k, v, "[B, T, H, K]")
    if (  # the common case, without building any message (this runs on every call)
        decay is None and initial_state is None and cu_seqlens is None
        and (type(scale) is float or type(scale) is int) and finite(scale)
        and k.shape == q.shape and v.shape[:3] == q.shape[:3]
    ):  # fmt: skip
        return
    B, T, H, K, V, N = check_sequences(OP, q, k, v, scale, cu_seqlens, scale_optional=False,
                                       groups=True)  # fmt: skip
    if decay is not None:
        check_decay(OP, decay, H)
    if initial_state is not None:
        s0, z0 = initial_state if isinstance(initial_state, tuple) else (initial_state, None)
        check_state(OP, s0, N, H, K, V)
        check(
            normalize == (z0 is not None),
            OP,
            "initial_state",
            "a tuple (S [N, H, K, V], z [N, H, K]) when normalize=True, else a tensor",
            type(initial_state).__name__,
        )
        if z0 is not None:
            check(
                tuple(z0.shape) == (N, H, K),
                OP,
                "initial z shape",
                f"({N}, {H}, {K})",
                tuple(z0.shape),
            )


@autocast_inputs
def linear_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, decay: torch.Tensor | None = None,
    causal: bool = True, initial_state=None, output_final_state: bool = False,
    normalize: bool = False, cu_seqlens: torch.Tensor | None = None, scale: float = 1.0,
    backend: str = "auto",
):  # fmt: skip
    """Causal linear attention, chunked (Lightning Attention-2 form).

    ``o_t = scale * sum_{s<=t} decay^(t-s) (q_t . k_s) v_s (+ scale * decay^(t+1) q_t S0)``,
    equivalently the recurrence ``S_t = decay * S_{t-1} + k_t^T v_t``, ``o_t = scale q_t S_t``.

    Args:
        q, k: ``[B, T, G, K]``.
        v: ``[B, T, H, V]``, H a multiple of G: value head h reads q/k head h // (H / G)
            (grouped heads, as Mamba-2's B and C with ngroups = G or multi-value attention;
            G = H: one each). q and k are read in place, not repeated to the H heads; their
            gradients are formed per value head and summed over each group's heads.
        decay: optional ``[H]`` per-head factors in ``(0, 1]`` (RetNet / TransNormerLLM);
            a constant, it gets no gradient.
        causal: must be True (the non-causal form is two matrix products, not this kernel).
        initial_state: ``[N, H, K, V]`` (N = B, or the number of packed sequences), or with
            ``normalize=True`` a tuple ``(S [N, H, K, V], z [N, H, K])``. Differentiable.
        output_final_state: also return the state after the last token (float32), in the
            layout of ``initial_state``.
        normalize: divide by ``scale * q_t . z_t + 1e-10`` with ``z_t = decay z_{t-1} + k_t``
            (the denominator of linear attention, as fla's ``normalize=True``); use positive
            feature maps for q and k. A query whose denominator is 0 (all its features zero,
            or no key yet) gives 0 and no gradient (``reference.normalized``). Numerator and
            denominator are kept in float32 and their cancelling gradients meet in float32
            (see NormalizedLinearAttentionFunction).
        cu_seqlens: ``[N + 1]`` integer offsets of N sequences packed along T (then B = 1);
            no chunk crosses a boundary and every sequence starts from its own state. (The values
            of ``cu_seqlens`` and ``decay`` are checked when they are CPU tensors; CUDA ones are
            trusted, so that a call never waits for the GPU.)
        scale: multiplies ``q . k``; default 1.
        backend: ``"auto"`` (Triton on CUDA tensors, the chunked PyTorch form on CPU),
            ``"triton"`` (also on CPU under ``TRITON_INTERPRET=1``) or ``"reference"`` (the
            chunked PyTorch form everywhere; float64 always takes it).

    Returns:
        ``(o, final_state)``: ``o`` is ``[B, T, H, V]`` in the dtype of ``v``; ``final_state``
        is None unless ``output_final_state``.

    dtypes float16, bfloat16, float32 (three tf32 products each: about float32's accuracy); K, V
    up to 128 on the Triton path.

    >>> q = k = torch.rand(2, 63, 4, 32); v = torch.randn(2, 63, 4, 16)
    >>> o, s = linear_attention(q, k, v, output_final_state=True)
    >>> o.shape, s.shape
    (torch.Size([2, 63, 4, 16]), torch.Size([2, 4, 32, 16]))
    """
    if not causal:
        raise ValueError(
            f"{OP}: causal: expected True, found False (non-causal linear attention is "
            "q (k^T v): use two matrix products)"
        )
    _check_args(q, k, v, decay, scale, initial_state, normalize, cu_seqlens)
    if not use_triton(q, backend, OP) or q.dtype == torch.float64:  # the chunked PyTorch form
        return linear_attention_chunked(
            q, k, v, decay=decay, scale=scale, initial_state=initial_state,
            output_final_state=output_final_state, normalize=normalize, cu_seqlens=cu_seqlens,
        )  # fmt: skip
    check(q.shape[-1] <= 128 and v.shape[-1] <= 128, OP, "head widths K, V for the Triton kernels",
          "at most 128 (else backend='reference')", (q.shape[-1], v.shape[-1]))  # fmt: skip
    q, k, v = _readable(q, k, v)
    log2_decay = None if decay is None else decay.float().log2().contiguous()
    s0, z0 = initial_state if isinstance(initial_state, tuple) else (initial_state, None)
    s0 = None if s0 is None else s0.float().contiguous()
    cu = None if cu_seqlens is None else cu_seqlens.to(torch.int32).contiguous()
    if not normalize:
        if tracing():  # torch.compile, torch.export: the opaque operators
            out = _traced_fwd(q, k, v, log2_decay, s0, cu, float(scale), output_final_state)
            return out[0], (out[1] if output_final_state else None)
        return LinearAttentionFunction.apply(
            q, k, v, log2_decay, float(scale), s0, output_final_state, cu
        )
    z0 = None if z0 is None else z0.float().contiguous()
    if tracing():
        out = _traced_normalized_fwd(q, k, v, log2_decay, s0, z0, cu, float(scale),
                                     output_final_state)  # fmt: skip
        return out[0].to(v.dtype), ((out[2], out[3]) if output_final_state else None)
    o, s_t, z_t = NormalizedLinearAttentionFunction.apply(
        q, k, v, log2_decay, float(scale), s0, z0, output_final_state, cu
    )
    return o, ((s_t, z_t) if output_final_state else None)
