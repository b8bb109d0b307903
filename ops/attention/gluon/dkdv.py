"""dK and dV of softmax attention on Hopper (sm_90) in Gluon: FlashAttention-3's backward
without its dQ part (`fused` computes dQ in its own pass).

One program per (block of BLOCK_N = 128 keys, batch x key/value head) keeps K and V in shared
memory (loaded once by TMA) and streams the query blocks (BLOCK_M = 64 rows of Q and dO, with
their rows of lse and delta) through a ring of `NUM_STAGES` shared-memory stages. Everything
is computed in the transposed (key, query) form, so that the tensor cores' left operands are
K and V (from shared memory) and P^T, dS^T (from registers):

    S^T = K Q^T,  P^T = exp2(S^T * qk_scale - lse),  dV += P^T dO,
    dP^T = V dO^T,  dS^T = P^T (dP^T - delta),        dK += dS^T Q,   dK *= sm_scale at the end.

Warp-specialized (`gl.warp_specialize`): two consumer warpgroups, each its own partition
(4 warps, `CONSUMER_REGS` registers by setmaxnreg), each owning 64 of the 128 keys; S^T and
dP^T are issued back to back as asynchronous wgmma and the exponentials run while dP^T is
still being computed. A 1-warp producer (`PRODUCER_REGS` registers) issues the TMA loads of
Q, dO, lse and delta into the ring, with ready / empty mbarriers; stage s is free again once
both consumers arrived on empty[s].

Grouped heads (GROUP = H / Hkv > 1): the program's key/value head is read by GROUP query
heads; the producer streams the query blocks of each of them in turn through the same ring
and the consumers sum dK and dV over them.

``lse`` is the base-2 log-sum-exp of the scaled scores, ``delta`` is rowsum(dO * O), both
float32 ``[B, H, T]``. Inputs it takes: `supports`.
"""

from __future__ import annotations

import torch

from ... import _gluon as common
from ..._backend import launch_compiled
from ..._gluon import (
    TensorDescriptor,
    fence_async_shared,
    gl,
    gluon,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)

LOG2E = 1.4426950408889634
BLOCK_M = 64  # query rows per step
BLOCK_N = 128  # keys per program (64 per consumer warpgroup)
NUM_STAGES = 2  # Q / dO ring depth
CONSUMER_REGS = 240  # registers per thread of the consumer warpgroups (setmaxnreg)
PRODUCER_REGS = 24  # of the 1-warp TMA producer


if common.GLUON:

    @gluon.jit
    def _producer(q_desc, do_desc, q_smem, do_smem, ready, empty, n_iter, row0, col,
                  lse_desc, delta_desc, lse_src, delta_src, row_lse, T,
                  BM: gl.constexpr, NUM_STAGES: gl.constexpr,
                  GROUP: gl.constexpr):  # fmt: skip
        """Fills the ring with the query blocks of Q, dO, lse and delta from row row0, column
        col (lse row row_lse). GROUP > 1: the blocks of the GROUP query heads that read this
        program's key/value head, one head after the other (ring counter j = g * n_iter + i);
        col and row_lse are then the first head's."""
        if GROUP == 1:
            for j in range(n_iter):
                s = j % NUM_STAGES
                # A fresh barrier counts as having completed the phase before phase 0: the
                # first NUM_STAGES waits (parity 1) pass at once.
                mbarrier.wait(empty.index(s), ((j // NUM_STAGES) & 1) ^ 1)
                bar = ready.index(s)
                mbarrier.expect(bar, q_desc.block_type.nbytes + do_desc.block_type.nbytes
                                + 2 * BM * 4)  # fmt: skip
                tma.async_copy_global_to_shared(lse_desc, [row_lse + j * BM], bar,
                                                lse_src.index(s))  # fmt: skip
                tma.async_copy_global_to_shared(delta_desc, [row_lse + j * BM], bar,
                                                delta_src.index(s))  # fmt: skip
                tma.async_copy_global_to_shared(q_desc, [row0 + j * BM, col], bar,
                                                q_smem.index(s))  # fmt: skip
                tma.async_copy_global_to_shared(do_desc, [row0 + j * BM, col], bar,
                                                do_smem.index(s))  # fmt: skip
        else:
            D: gl.constexpr = q_desc.block_type.shape[1]
            for j in range(GROUP * n_iter):
                g = j // n_iter
                i = j - g * n_iter
                s = j % NUM_STAGES
                mbarrier.wait(empty.index(s), ((j // NUM_STAGES) & 1) ^ 1)
                bar = ready.index(s)
                mbarrier.expect(bar, q_desc.block_type.nbytes + do_desc.block_type.nbytes
                                + 2 * BM * 4)  # fmt: skip
                rl = row_lse + g * T + i * BM
                tma.async_copy_global_to_shared(lse_desc, [rl], bar, lse_src.index(s))
                tma.async_copy_global_to_shared(delta_desc, [rl], bar, delta_src.index(s))
                cg = col + g * D
                tma.async_copy_global_to_shared(q_desc, [row0 + i * BM, cg], bar,
                                                q_smem.index(s))  # fmt: skip
                tma.async_copy_global_to_shared(do_desc, [row0 + i * BM, cg], bar,
                                                do_smem.index(s))  # fmt: skip

    @gluon.jit
    def _step(dk, dv, k_s, v_s, q_smem, do_smem, ready, empty, i, j, m_lo, n_lo, lse_src,
              delta_src, qk_scale, MASK: gl.constexpr, BM: gl.constexpr,
              NUM_STAGES: gl.constexpr):  # fmt: skip
        """Query block i (rows m_lo + i * BM) from ring slot j (j = i but with grouped heads);
        lse_src, delta_src: the shared-memory rings the producer fills along with Q and dO."""
        BN: gl.constexpr = dk.type.shape[0]
        dtype: gl.constexpr = q_smem.dtype
        acc_layout: gl.constexpr = dk.type.layout
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=acc_layout.warps_per_cta, instr_shape=[16, BM, 16]
        )
        a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=acc_layout, k_width=2)

        m0 = m_lo + i * BM
        offs_m = m0 + gl.arange(0, BM, layout=gl.SliceLayout(0, s_layout))
        s = j % NUM_STAGES
        mbarrier.wait(ready.index(s), (j // NUM_STAGES) & 1)
        lse = lse_src.index(s).load(gl.SliceLayout(0, s_layout))
        q_s = q_smem.index(s)
        do_s = do_smem.index(s)

        zero = gl.zeros([BN, BM], gl.float32, s_layout)
        sT = warpgroup_mma(k_s, q_s.permute((1, 0)), zero, use_acc=False, is_async=True)
        dpT = warpgroup_mma(v_s, do_s.permute((1, 0)), zero, use_acc=False, is_async=True)
        sT = warpgroup_mma_wait(num_outstanding=1, deps=(sT,))
        pT = gl.exp2(sT * qk_scale - gl.expand_dims(lse, 0))
        if MASK:  # causal, block crossing the diagonal: query m sees key n only if m >= n
            offs_n = n_lo + gl.arange(0, BN, layout=gl.SliceLayout(1, s_layout))
            pT = gl.where(gl.expand_dims(offs_m, 0) >= gl.expand_dims(offs_n, 1), pT, 0.0)
        pa = gl.convert_layout(pT.to(dtype), a_layout)
        dv = warpgroup_mma(pa, do_s, dv, is_async=True)
        delta = delta_src.index(s).load(gl.SliceLayout(0, s_layout))
        dpT = warpgroup_mma_wait(num_outstanding=1, deps=(dpT,))
        dsT = pT * (dpT - gl.expand_dims(delta, 0))
        dsa = gl.convert_layout(dsT.to(dtype), a_layout)
        dk = warpgroup_mma(dsa, q_s, dk, is_async=True)
        dk, dv, pa, dsa = warpgroup_mma_wait(num_outstanding=0, deps=(dk, dv, pa, dsa))
        mbarrier.arrive(empty.index(s), count=1)  # this consumer is done with stage s
        return dk, dv

    @gluon.jit
    def _consumer(k_smem, v_smem, q_smem, do_smem, ready, empty, kv_bar, dk_desc, dv_desc,
                  lse_src, delta_src, n_iter, m_lo, n0, row_out, col, qk_scale, sm_scale,
                  HALF: gl.constexpr, CAUSAL: gl.constexpr, BM: gl.constexpr,
                  NUM_STAGES: gl.constexpr, GROUP: gl.constexpr):  # fmt: skip
        """Keys [n0 + HALF * BH, n0 + (HALF + 1) * BH) (BH = 64), one warpgroup."""
        BH: gl.constexpr = k_smem.shape[1]
        D: gl.constexpr = k_smem.shape[2]
        dtype: gl.constexpr = k_smem.dtype
        acc_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, D, 16]
        )
        k_s = k_smem.index(HALF)
        v_s = v_smem.index(HALF)
        n_lo = n0 + HALF * BH
        dk = gl.zeros([BH, D], gl.float32, acc_layout)
        dv = gl.zeros([BH, D], gl.float32, acc_layout)
        mbarrier.wait(kv_bar, 0)
        if GROUP == 1:
            if CAUSAL:
                # The first 2 * BH // BM query blocks cross the diagonal of the program's keys.
                for i in range(0, 2 * BH // BM):
                    dk, dv = _step(dk, dv, k_s, v_s, q_smem, do_smem, ready, empty, i, i, m_lo,
                                   n_lo, lse_src, delta_src, qk_scale, True, BM,
                                   NUM_STAGES)  # fmt: skip
                for i in range(2 * BH // BM, n_iter):
                    dk, dv = _step(dk, dv, k_s, v_s, q_smem, do_smem, ready, empty, i, i, m_lo,
                                   n_lo, lse_src, delta_src, qk_scale, False, BM,
                                   NUM_STAGES)  # fmt: skip
            else:
                for i in range(0, n_iter):
                    dk, dv = _step(dk, dv, k_s, v_s, q_smem, do_smem, ready, empty, i, i, m_lo,
                                   n_lo, lse_src, delta_src, qk_scale, False, BM,
                                   NUM_STAGES)  # fmt: skip
        else:  # the group's query heads in turn, in the producer's order
            for g in range(GROUP):
                j0 = g * n_iter
                if CAUSAL:
                    for i in range(0, 2 * BH // BM):
                        dk, dv = _step(dk, dv, k_s, v_s, q_smem, do_smem, ready, empty, i,
                                       j0 + i, m_lo, n_lo, lse_src, delta_src, qk_scale, True,
                                       BM, NUM_STAGES)  # fmt: skip
                    for i in range(2 * BH // BM, n_iter):
                        dk, dv = _step(dk, dv, k_s, v_s, q_smem, do_smem, ready, empty, i,
                                       j0 + i, m_lo, n_lo, lse_src, delta_src, qk_scale, False,
                                       BM, NUM_STAGES)  # fmt: skip
                else:
                    for i in range(0, n_iter):
                        dk, dv = _step(dk, dv, k_s, v_s, q_smem, do_smem, ready, empty, i,
                                       j0 + i, m_lo, n_lo, lse_src, delta_src, qk_scale, False,
                                       BM, NUM_STAGES)  # fmt: skip
        # Only this warpgroup reads its halves of K and V: they stage its dK and dV.
        k_s.store((dk * sm_scale).to(dtype))
        v_s.store(dv.to(dtype))
        fence_async_shared()
        gl.thread_barrier()
        tma.async_copy_shared_to_global(dk_desc, [row_out + HALF * BH, col], k_s)
        tma.async_copy_shared_to_global(dv_desc, [row_out + HALF * BH, col], v_s)
        tma.store_wait(pendings=0)

    @gluon.jit
    def _dkdv_kernel(q_desc, k_desc, v_desc, do_desc, dk_desc, dv_desc, lse_desc, delta_desc,
                     T, S, H, qk_scale, sm_scale, CAUSAL: gl.constexpr,
                     NUM_STAGES: gl.constexpr, PRODUCER_REGS: gl.constexpr,
                     CONSUMER_REGS: gl.constexpr, GROUP: gl.constexpr = 1):  # fmt: skip
        """k_desc, v_desc, dk_desc, dv_desc: tiles of BH = 64 keys; a program has 2 * BH.
        lse_desc, delta_desc: 1-d over ``[B * H * T]``, tiles of BM rows. Programs run over
        (key block, batch x key/value head), with H // GROUP key/value heads."""
        BM: gl.constexpr = q_desc.block_type.shape[0]
        D: gl.constexpr = q_desc.block_type.shape[1]
        BH: gl.constexpr = k_desc.block_type.shape[0]
        dtype: gl.constexpr = q_desc.dtype

        pid_n = gl.program_id(0)
        pid_bh = gl.program_id(1)
        if GROUP == 1:
            b = pid_bh // H
            h = pid_bh % H
        else:
            b = pid_bh // (H // GROUP)
            h = pid_bh % (H // GROUP)  # the key/value head
        n0 = pid_n * (2 * BH)
        col = h * D

        k_smem = gl.allocate_shared_memory(dtype, [2, BH, D], k_desc.layout)
        v_smem = gl.allocate_shared_memory(dtype, [2, BH, D], v_desc.layout)
        q_smem = gl.allocate_shared_memory(dtype, [NUM_STAGES, BM, D], q_desc.layout)
        do_smem = gl.allocate_shared_memory(dtype, [NUM_STAGES, BM, D], do_desc.layout)
        kv_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
        ready = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        empty = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        mbarrier.init(kv_bar, count=1)
        for st in gl.static_range(NUM_STAGES):
            mbarrier.init(ready.index(st), count=1)
            mbarrier.init(empty.index(st), count=2)  # one arrive per consumer warpgroup
        fence_async_shared()

        row_kv = b * S + n0
        mbarrier.expect(kv_bar, 2 * k_desc.block_type.nbytes + 2 * v_desc.block_type.nbytes)
        for hf in gl.static_range(2):
            r = row_kv + hf * BH
            tma.async_copy_global_to_shared(k_desc, [r, col], kv_bar, k_smem.index(hf))
            tma.async_copy_global_to_shared(v_desc, [r, col], kv_bar, v_smem.index(hf))

        # Causal: query blocks before the one holding query n0 see none of these keys.
        if CAUSAL:
            m_lo = n0
        else:
            m_lo = n0 * 0
        n_iter = (T - m_lo) // BM
        row0 = b * T + m_lo
        lse_src = gl.allocate_shared_memory(gl.float32, [NUM_STAGES, BM], lse_desc.layout)
        delta_src = gl.allocate_shared_memory(gl.float32, [NUM_STAGES, BM], delta_desc.layout)
        if GROUP == 1:
            col_q = col
            row_lse = pid_bh * T + m_lo
        else:  # the group's first query head: its column and lse row
            col_q = h * GROUP * D
            row_lse = (b * H + h * GROUP) * T + m_lo
        gl.warp_specialize(
            [
                (_consumer, (k_smem, v_smem, q_smem, do_smem, ready, empty, kv_bar, dk_desc,
                             dv_desc, lse_src, delta_src, n_iter, m_lo, n0, row_kv, col,
                             qk_scale, sm_scale, 0, CAUSAL, BM, NUM_STAGES, GROUP)),
                (_consumer, (k_smem, v_smem, q_smem, do_smem, ready, empty, kv_bar, dk_desc,
                             dv_desc, lse_src, delta_src, n_iter, m_lo, n0, row_kv, col,
                             qk_scale, sm_scale, 1, CAUSAL, BM, NUM_STAGES, GROUP)),
                (_producer, (q_desc, do_desc, q_smem, do_smem, ready, empty, n_iter, row0,
                             col_q, lse_desc, delta_desc, lse_src, delta_src, row_lse, T, BM,
                             NUM_STAGES, GROUP)),
            ],
            [4, 1],
            [CONSUMER_REGS, PRODUCER_REGS],
        )  # fmt: skip


def available() -> bool:
    """Gluon of Triton 3.6 can run here (see `common.available`)."""
    return common.available()


def supports(q, k, v, causal: bool, grouped: bool = False) -> tuple[bool, str]:
    """Whether `run` takes these inputs, and if not why: a Hopper GPU, bf16 or fp16,
    contiguous ``[B, T, H, D]`` q and ``[B, S, Hkv, D]`` k, v with Hkv == H (or, with
    `grouped`, H a multiple of Hkv), D 64 or 128, T and S whole numbers of 128-row blocks,
    causal only with T == S. dO is taken to be contiguous and of q's shape."""
    if not common.on_hopper(q):
        return False, f"needs a Hopper GPU (sm_90), found {q.device}"
    if q.dim() != 4 or k.dim() != 4 or k.shape != v.shape:
        return False, "needs k and v of one shape (Dv == D)"
    B, T, H, D = q.shape
    S, HKV = k.shape[1], k.shape[2]
    if q.dtype not in common.GL_DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        return False, f"needs bfloat16 or float16, found {q.dtype}"
    if not (q.is_contiguous() and k.is_contiguous() and v.is_contiguous()):
        return False, "needs contiguous q, k, v"
    if k.shape[0] != B or k.shape[3] != D or HKV == 0 or H % HKV:
        return False, f"needs k, v [B, S, Hkv, D] with H a multiple of Hkv, found {tuple(k.shape)}"
    if HKV != H and not grouped:
        return False, f"grouped heads (H={H}, Hkv={HKV}) need config gluon_dkdv_grouped"
    if D not in (64, 128):
        return False, f"needs head width 64 or 128, found {D}"
    if T % BLOCK_N or S % BLOCK_N:
        return False, f"needs T and S multiples of 128, found T={T}, S={S}"
    if causal and T != S:
        return False, f"causal needs T == S, found T={T}, S={S}"
    return True, ""


def _descs(q, k, v, do, dk, dv):
    """2-d descriptors: Q, dO tiles of BLOCK_M rows; K, V, dK, dV of BLOCK_N / 2 rows (one per
    consumer warpgroup)."""
    D = q.shape[-1]
    bn = BLOCK_N // 2
    lay_m = common.tile_layout(BLOCK_M, D, q.dtype)
    lay_n = common.tile_layout(bn, D, q.dtype)

    def d2(x, rows, lay):  # [B, N, H, D] viewed as [B * N, H * D]
        B, N, H, C = x.shape
        return TensorDescriptor(x, [B * N, H * C], [H * C, 1], [rows, C], lay)

    return (d2(q, BLOCK_M, lay_m), d2(k, bn, lay_n), d2(v, bn, lay_n),
            d2(do, BLOCK_M, lay_m), d2(dk, bn, lay_n), d2(dv, bn, lay_n))  # fmt: skip


def _row_descs(lse, delta):
    """1-d descriptors over lse and delta ``[B * H * T]``, tiles of BLOCK_M rows."""
    lay = gl.NVMMASharedLayout(swizzle_byte_width=0, element_bitwidth=32, rank=1)
    return tuple(TensorDescriptor(x, [x.numel()], [1], [BLOCK_M], lay) for x in (lse, delta))


def run(q, k, v, do, lse, delta, causal: bool, scale: float):
    """dK, dV of softmax attention; q, do ``[B, T, H, D]``, k, v ``[B, S, Hkv, D]``, lse and
    delta float32 ``[B, H, T]``, inputs that `supports` takes (grouped heads included)."""
    if not common.GLUON:
        raise RuntimeError("ncd.ops.attention.gluon.dkdv: needs Triton 3.6's Gluon")
    B, T, H, D = q.shape
    S, HKV = k.shape[1], k.shape[2]
    group = {} if HKV == H else {"GROUP": H // HKV}
    lse = lse.contiguous().float()
    delta = delta.contiguous().float()
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    launch_compiled(
        _dkdv_kernel, (S // BLOCK_N, B * HKV),
        (*_descs(q, k, v, do, dk, dv), *_row_descs(lse, delta), T, S, H, scale * LOG2E, scale),
        dict(CAUSAL=bool(causal), NUM_STAGES=NUM_STAGES, PRODUCER_REGS=PRODUCER_REGS,
             CONSUMER_REGS=CONSUMER_REGS, num_warps=4, **group),
    )  # fmt: skip
    return dk, dv
