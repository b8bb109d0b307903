"""dK and dV of softmax attention on Hopper (sm_90), written in Gluon; `fused._backward` calls
it where it applies (`fused.HOPPER_DKDV`).

FlashAttention-3's backward without its dQ part: one program per (block of BN = 128 keys,
batch x head) keeps K and V in shared memory (loaded once by the copy engine, TMA) and streams
the query blocks (BM = 64 rows of Q and dO) through a ring of shared-memory stages, each filled
by TMA and signalled by an mbarrier. Everything is computed in the transposed (key, query) form,
so that the tensor cores' left operands are K and V (from shared memory) and P^T, dS^T (from
registers):

    S^T = K Q^T,  P^T = exp2(S^T * qk_scale - lse),  dV += P^T dO,
    dP^T = V dO^T,  dS^T = P^T (dP^T - delta),        dK += dS^T Q,   dK *= sm_scale at the end.

Two consumer warpgroups each own 64 of the 128 keys. S^T and dP^T are issued back to back as
asynchronous wgmma; the exponentials run while dP^T is still being computed. Two kernels:

- `_dkdv_ws_kernel` (the default, `WS`): warp-specialized. Each consumer warpgroup is its own
  partition (4 warps, 240 registers by setmaxnreg) and a 1-warp producer (24 registers)
  issues the TMA loads of Q, dO and (`ROW_TMA`) lse and delta into a 2-stage ring, with
  ready / empty mbarriers, so the two consumers never wait for each other.
- `_dkdv_kernel`: one 8-warp partition (accumulator layout warps [8, 1] splits the 128 rows
  between the warpgroups), loads one stage ahead; its TMA issue needs CTA-wide barriers that
  keep the two warpgroups in lockstep (slower: 3.95 against 3.29 ms, see `WS`).

Grouped heads (fewer key/value heads than query heads; the warp-specialized kernel with
`ROW_TMA`, constexpr GROUP = H / Hkv): one program per (key block, batch x key/value head)
streams the query blocks of the GROUP query heads of its group one head after the other
through the same ring, summing dK and dV over them (`_ws_producer`'s GROUP branch). Compiled for
sm_90 only (no GPU run yet), so `fused` uses it only with NCD_GLUON_DKDV_GROUPED=1; the
ungrouped build is unchanged by it (same SASS).

Restrictions (the caller falls back otherwise): bf16 or fp16, contiguous ``[B, T, H, D]``
tensors with D in (64, 128), T % 128 == S % 128 == 0, as many key/value heads as query heads
(or H a multiple of them, `supported(..., grouped=True)`), causal only with T == S. ``lse``
is the base-2 log-sum-exp of the scaled scores, ``delta`` is rowsum(dO * O), both float32
``[B, H, T]``.

Written against Triton 3.6's Gluon (the H200 host's version); on other Triton versions or
without a GPU the import still succeeds; ``usable(x)`` says whether the kernels can run on x.
``python -m ncd.ops.attention.hopper`` (with Triton 3.6 first on the path) cross-compiles the
kernels for sm_90 and prints registers, spilled bytes and shared memory (`sm90_resources`).
"""

from __future__ import annotations

import functools

import torch

from .._backend import launch_compiled

LOG2E = 1.4426950408889634
BLOCK_M = 64  # query rows per step
BLOCK_N = 128  # keys per program
NUM_WARPS = 8  # two consumer warpgroups
NUM_STAGES = 2  # Q / dO ring depth
# H200, B=4 H=16 T=S=8192 D=128 causal bf16, one process (bench/gluon_check.py; kept in
# bench/results/gluon_check_2026-11-28_c3de9b9.txt): plain 3.92 ms, warp-specialized 3.42 ms,
# warp-specialized with lse/delta by TMA 3.26 ms (675 TFLOP/s), 3 stages 3.31 ms, against
# 4.02 ms for the best Triton configuration of fused._bwd_dkdv_kernel.
WS = True  # the warp-specialized kernel by default
CONSUMER_REGS = 240  # registers per thread of the second consumer warpgroup (setmaxnreg)
PRODUCER_REGS = 24  # of the 1-warp TMA producer
ROW_TMA = True  # warp-specialized kernel: lse, delta by TMA through shared memory

try:  # Gluon's Hopper API as of Triton 3.6
    import triton
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import (
        fence_async_shared,
        mbarrier,
        tma,
        warpgroup_mma,
        warpgroup_mma_wait,
    )
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    _GLUON = triton.__version__.startswith("3.6")
except Exception:  # pragma: no cover - other Triton versions
    _GLUON = False

# Whether this Triton has the Gluon API the kernels are written against; `usable` also asks
# the tensor's device (not asked at import: that would initialise CUDA in every importer).
AVAILABLE = _GLUON


def usable(x: torch.Tensor) -> bool:
    """The kernels can run on x's device: Gluon of Triton 3.6 and a Hopper GPU (sm_90)."""
    return _GLUON and x.is_cuda and _major(x.device.index) == 9


@functools.cache
def _major(index) -> int:  # asked once per device: `usable` runs on every call
    return torch.cuda.get_device_capability(index)[0]


if _GLUON:

    @gluon.jit
    def _issue_qdo(q_desc, do_desc, q_smem, do_smem, bars, j, n_iter, row0, col,
                   BM: gl.constexpr, NUM_STAGES: gl.constexpr):  # fmt: skip
        """TMA of query block j (rows row0 + j * BM) of Q and dO into stage j % NUM_STAGES."""
        s = j % NUM_STAGES
        pred = j < n_iter
        bar = bars.index(s)
        mbarrier.expect(bar, q_desc.block_type.nbytes + do_desc.block_type.nbytes, pred=pred)
        r = row0 + j * BM
        tma.async_copy_global_to_shared(q_desc, [r, col], bar, q_smem.index(s), pred=pred)
        tma.async_copy_global_to_shared(do_desc, [r, col], bar, do_smem.index(s), pred=pred)

    @gluon.jit
    def _step(dk, dv, k_smem, v_smem, q_desc, do_desc, q_smem, do_smem, bars, i, n_iter, row0, col,
              m_lo, n0, lse_ptr, delta_ptr, qk_scale,
              MASK: gl.constexpr, BM: gl.constexpr, BN: gl.constexpr,
              NUM_STAGES: gl.constexpr, NUM_WARPS: gl.constexpr):  # fmt: skip
        """One query block i (rows m_lo + i * BM): accumulate its share of dK and dV."""
        dtype: gl.constexpr = q_desc.dtype
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[NUM_WARPS, 1], instr_shape=[16, BM, 16]
        )
        acc_layout: gl.constexpr = dk.type.layout
        a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=acc_layout, k_width=2)

        # Every warp is done with the stage about to be refilled (its wgmmas were waited for at
        # the end of the previous step) before one thread issues the copy into it.
        gl.thread_barrier()
        _issue_qdo(q_desc, do_desc, q_smem, do_smem, bars, i + NUM_STAGES - 1, n_iter, row0, col,
                   BM, NUM_STAGES)  # fmt: skip

        m0 = m_lo + i * BM
        offs_m = m0 + gl.arange(0, BM, layout=gl.SliceLayout(0, s_layout))
        lse = gl.load(lse_ptr + offs_m)

        s = i % NUM_STAGES
        mbarrier.wait(bars.index(s), (i // NUM_STAGES) & 1)
        q_s = q_smem.index(s)
        do_s = do_smem.index(s)

        zero = gl.zeros([BN, BM], gl.float32, s_layout)
        sT = warpgroup_mma(k_smem, q_s.permute((1, 0)), zero, use_acc=False, is_async=True)
        dpT = warpgroup_mma(v_smem, do_s.permute((1, 0)), zero, use_acc=False, is_async=True)
        sT = warpgroup_mma_wait(num_outstanding=1, deps=(sT,))

        pT = gl.exp2(sT * qk_scale - gl.expand_dims(lse, 0))
        if MASK:  # causal, block crossing the diagonal: query m sees key n only if m >= n
            offs_n = n0 + gl.arange(0, BN, layout=gl.SliceLayout(1, s_layout))
            pT = gl.where(gl.expand_dims(offs_m, 0) >= gl.expand_dims(offs_n, 1), pT, 0.0)
        delta = gl.load(delta_ptr + offs_m)
        pa = gl.convert_layout(pT.to(dtype), a_layout)
        dv = warpgroup_mma(pa, do_s, dv, is_async=True)

        dpT = warpgroup_mma_wait(num_outstanding=1, deps=(dpT,))
        dsT = pT * (dpT - gl.expand_dims(delta, 0))
        dsa = gl.convert_layout(dsT.to(dtype), a_layout)
        dk = warpgroup_mma(dsa, q_s, dk, is_async=True)
        dk, dv, pa, dsa = warpgroup_mma_wait(num_outstanding=0, deps=(dk, dv, pa, dsa))
        return dk, dv

    @gluon.jit
    def _dkdv_kernel(q_desc, k_desc, v_desc, do_desc, dk_desc, dv_desc, LSE, DELTA, T, S, H,
                     qk_scale, sm_scale, CAUSAL: gl.constexpr, NUM_STAGES: gl.constexpr,
                     NUM_WARPS: gl.constexpr):  # fmt: skip
        BM: gl.constexpr = q_desc.block_type.shape[0]
        D: gl.constexpr = q_desc.block_type.shape[1]
        BN: gl.constexpr = k_desc.block_type.shape[0]
        dtype: gl.constexpr = q_desc.dtype
        acc_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[NUM_WARPS, 1], instr_shape=[16, D, 16]
        )

        pid_n = gl.program_id(0)
        pid_bh = gl.program_id(1)
        b = pid_bh // H
        h = pid_bh % H
        n0 = pid_n * BN
        col = h * D
        lse_ptr = LSE + pid_bh.to(gl.int64) * T
        delta_ptr = DELTA + pid_bh.to(gl.int64) * T

        k_smem = gl.allocate_shared_memory(dtype, [BN, D], k_desc.layout)
        v_smem = gl.allocate_shared_memory(dtype, [BN, D], v_desc.layout)
        q_smem = gl.allocate_shared_memory(dtype, [NUM_STAGES, BM, D], q_desc.layout)
        do_smem = gl.allocate_shared_memory(dtype, [NUM_STAGES, BM, D], do_desc.layout)
        kv_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
        bars = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        mbarrier.init(kv_bar, count=1)
        for st in gl.static_range(NUM_STAGES):
            mbarrier.init(bars.index(st), count=1)
        fence_async_shared()

        mbarrier.expect(kv_bar, k_desc.block_type.nbytes + v_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(k_desc, [b * S + n0, col], kv_bar, k_smem)
        tma.async_copy_global_to_shared(v_desc, [b * S + n0, col], kv_bar, v_smem)

        # Causal: query blocks before the one holding query n0 see none of these keys.
        if CAUSAL:
            m_lo = n0
        else:
            m_lo = n0 * 0
        n_iter = (T - m_lo) // BM
        row0 = b * T + m_lo
        for st in gl.static_range(NUM_STAGES - 1):
            _issue_qdo(q_desc, do_desc, q_smem, do_smem, bars, st, n_iter, row0, col, BM,
                       NUM_STAGES)  # fmt: skip

        dk = gl.zeros([BN, D], gl.float32, acc_layout)
        dv = gl.zeros([BN, D], gl.float32, acc_layout)
        mbarrier.wait(kv_bar, 0)

        if CAUSAL:
            # The first BN // BM query blocks cross the diagonal (T == S, n0 a multiple of BN).
            for i in range(0, BN // BM):
                dk, dv = _step(dk, dv, k_smem, v_smem, q_desc, do_desc, q_smem, do_smem, bars, i,
                               n_iter, row0, col, m_lo, n0, lse_ptr, delta_ptr, qk_scale, True, BM,
                               BN, NUM_STAGES, NUM_WARPS)  # fmt: skip
            for i in range(BN // BM, n_iter):
                dk, dv = _step(dk, dv, k_smem, v_smem, q_desc, do_desc, q_smem, do_smem, bars, i,
                               n_iter, row0, col, m_lo, n0, lse_ptr, delta_ptr, qk_scale, False, BM,
                               BN, NUM_STAGES, NUM_WARPS)  # fmt: skip
        else:
            for i in range(0, n_iter):
                dk, dv = _step(dk, dv, k_smem, v_smem, q_desc, do_desc, q_smem, do_smem, bars, i,
                               n_iter, row0, col, m_lo, n0, lse_ptr, delta_ptr, qk_scale, False, BM,
                               BN, NUM_STAGES, NUM_WARPS)  # fmt: skip

        mbarrier.invalidate(kv_bar)
        for st in gl.static_range(NUM_STAGES):
            mbarrier.invalidate(bars.index(st))

        # K and V are no longer read: their shared memory stages dK and dV for the TMA stores.
        gl.thread_barrier()
        k_smem.store((dk * sm_scale).to(dtype))
        v_smem.store(dv.to(dtype))
        fence_async_shared()
        gl.thread_barrier()
        tma.async_copy_shared_to_global(dk_desc, [b * S + n0, col], k_smem)
        tma.async_copy_shared_to_global(dv_desc, [b * S + n0, col], v_smem)
        tma.store_wait(pendings=0)

    # ---- Warp-specialized form: each consumer warpgroup is its own partition, so the two
    # never wait for each other (the plain kernel's per-step CTA barriers, which its TMA issue
    # needs, keep them in lockstep: both exponentiate while the tensor cores idle). A 1-warp
    # producer fills the ring; stage s is free again once both consumers arrived on empty[s].

    @gluon.jit
    def _ws_producer(q_desc, do_desc, q_smem, do_smem, ready, empty, n_iter, row0, col,
                     lse_desc, delta_desc, lse_src, delta_src, row_lse, T,
                     BM: gl.constexpr, NUM_STAGES: gl.constexpr, ROW_TMA: gl.constexpr,
                     GROUP: gl.constexpr):  # fmt: skip
        """Fills the ring with the query blocks of Q, dO (and lse, delta) from row row0,
        column col (lse row row_lse). GROUP > 1 (grouped heads, ROW_TMA): the blocks of the
        GROUP query heads that read this program's key/value head, one head after the other
        (ring counter j = g * n_iter + i); col and row_lse are then the first head's."""
        if GROUP == 1:
            for j in range(n_iter):
                s = j % NUM_STAGES
                # A fresh barrier counts as having completed the phase before phase 0: the
                # first NUM_STAGES waits (parity 1) pass at once.
                mbarrier.wait(empty.index(s), ((j // NUM_STAGES) & 1) ^ 1)
                bar = ready.index(s)
                if ROW_TMA:
                    mbarrier.expect(bar, q_desc.block_type.nbytes + do_desc.block_type.nbytes
                                    + 2 * BM * 4)  # fmt: skip
                    tma.async_copy_global_to_shared(lse_desc, [row_lse + j * BM], bar,
                                                    lse_src.index(s))  # fmt: skip
                    tma.async_copy_global_to_shared(delta_desc, [row_lse + j * BM], bar,
                                                    delta_src.index(s))  # fmt: skip
                else:
                    mbarrier.expect(bar, q_desc.block_type.nbytes + do_desc.block_type.nbytes)
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
    def _ws_step(dk, dv, k_s, v_s, q_smem, do_smem, ready, empty, i, j, m_lo, n_lo, lse_src,
                 delta_src, qk_scale, MASK: gl.constexpr, BM: gl.constexpr,
                 NUM_STAGES: gl.constexpr, ROW_TMA: gl.constexpr):  # fmt: skip
        """Query block i (rows m_lo + i * BM) from ring slot j (j = i but with grouped heads).
        lse_src, delta_src: pointers to this head's rows, or (ROW_TMA) the shared-memory
        rings the producer fills along with Q and dO."""
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
        if not ROW_TMA:
            lse = gl.load(lse_src + offs_m)
        mbarrier.wait(ready.index(s), (j // NUM_STAGES) & 1)
        if ROW_TMA:
            lse = lse_src.index(s).load(gl.SliceLayout(0, s_layout))
        q_s = q_smem.index(s)
        do_s = do_smem.index(s)

        zero = gl.zeros([BN, BM], gl.float32, s_layout)
        sT = warpgroup_mma(k_s, q_s.permute((1, 0)), zero, use_acc=False, is_async=True)
        dpT = warpgroup_mma(v_s, do_s.permute((1, 0)), zero, use_acc=False, is_async=True)
        sT = warpgroup_mma_wait(num_outstanding=1, deps=(sT,))
        pT = gl.exp2(sT * qk_scale - gl.expand_dims(lse, 0))
        if MASK:
            offs_n = n_lo + gl.arange(0, BN, layout=gl.SliceLayout(1, s_layout))
            pT = gl.where(gl.expand_dims(offs_m, 0) >= gl.expand_dims(offs_n, 1), pT, 0.0)
        pa = gl.convert_layout(pT.to(dtype), a_layout)
        dv = warpgroup_mma(pa, do_s, dv, is_async=True)
        if ROW_TMA:
            delta = delta_src.index(s).load(gl.SliceLayout(0, s_layout))
        else:
            delta = gl.load(delta_src + offs_m)
        dpT = warpgroup_mma_wait(num_outstanding=1, deps=(dpT,))
        dsT = pT * (dpT - gl.expand_dims(delta, 0))
        dsa = gl.convert_layout(dsT.to(dtype), a_layout)
        dk = warpgroup_mma(dsa, q_s, dk, is_async=True)
        dk, dv, pa, dsa = warpgroup_mma_wait(num_outstanding=0, deps=(dk, dv, pa, dsa))
        mbarrier.arrive(empty.index(s), count=1)  # this consumer is done with stage s
        return dk, dv

    @gluon.jit
    def _ws_consumer(k_smem, v_smem, q_smem, do_smem, ready, empty, kv_bar, dk_desc, dv_desc,
                     lse_src, delta_src, n_iter, m_lo, n0, row_out, col, qk_scale, sm_scale,
                     HALF: gl.constexpr, CAUSAL: gl.constexpr, BM: gl.constexpr,
                     NUM_STAGES: gl.constexpr, ROW_TMA: gl.constexpr,
                     GROUP: gl.constexpr):  # fmt: skip
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
                    dk, dv = _ws_step(dk, dv, k_s, v_s, q_smem, do_smem, ready, empty, i, i,
                                      m_lo, n_lo, lse_src, delta_src, qk_scale, True, BM,
                                      NUM_STAGES, ROW_TMA)  # fmt: skip
                for i in range(2 * BH // BM, n_iter):
                    dk, dv = _ws_step(dk, dv, k_s, v_s, q_smem, do_smem, ready, empty, i, i,
                                      m_lo, n_lo, lse_src, delta_src, qk_scale, False, BM,
                                      NUM_STAGES, ROW_TMA)  # fmt: skip
            else:
                for i in range(0, n_iter):
                    dk, dv = _ws_step(dk, dv, k_s, v_s, q_smem, do_smem, ready, empty, i, i,
                                      m_lo, n_lo, lse_src, delta_src, qk_scale, False, BM,
                                      NUM_STAGES, ROW_TMA)  # fmt: skip
        else:  # the group's query heads in turn, in the producer's order
            for g in range(GROUP):
                j0 = g * n_iter
                if CAUSAL:
                    for i in range(0, 2 * BH // BM):
                        dk, dv = _ws_step(dk, dv, k_s, v_s, q_smem, do_smem, ready, empty, i,
                                          j0 + i, m_lo, n_lo, lse_src, delta_src, qk_scale,
                                          True, BM, NUM_STAGES, ROW_TMA)  # fmt: skip
                    for i in range(2 * BH // BM, n_iter):
                        dk, dv = _ws_step(dk, dv, k_s, v_s, q_smem, do_smem, ready, empty, i,
                                          j0 + i, m_lo, n_lo, lse_src, delta_src, qk_scale,
                                          False, BM, NUM_STAGES, ROW_TMA)  # fmt: skip
                else:
                    for i in range(0, n_iter):
                        dk, dv = _ws_step(dk, dv, k_s, v_s, q_smem, do_smem, ready, empty, i,
                                          j0 + i, m_lo, n_lo, lse_src, delta_src, qk_scale,
                                          False, BM, NUM_STAGES, ROW_TMA)  # fmt: skip
        # Only this warpgroup reads its halves of K and V: they stage its dK and dV.
        k_s.store((dk * sm_scale).to(dtype))
        v_s.store(dv.to(dtype))
        fence_async_shared()
        gl.thread_barrier()
        tma.async_copy_shared_to_global(dk_desc, [row_out + HALF * BH, col], k_s)
        tma.async_copy_shared_to_global(dv_desc, [row_out + HALF * BH, col], v_s)
        tma.store_wait(pendings=0)

    @gluon.jit
    def _dkdv_ws_kernel(q_desc, k_desc, v_desc, do_desc, dk_desc, dv_desc, LSE, DELTA, lse_desc,
                        delta_desc, T, S, H, qk_scale, sm_scale, CAUSAL: gl.constexpr,
                        NUM_STAGES: gl.constexpr, PRODUCER_REGS: gl.constexpr,
                        CONSUMER_REGS: gl.constexpr, ROW_TMA: gl.constexpr,
                        GROUP: gl.constexpr = 1):  # fmt: skip
        """k_desc, v_desc, dk_desc, dv_desc: tiles of BH = 64 keys; a program has 2 * BH.
        ROW_TMA: lse and delta come through shared memory (1-d TMA over ``[B * H * T]``,
        lse_desc / delta_desc) with each query block; otherwise by plain loads from LSE,
        DELTA. GROUP > 1 (grouped heads, ROW_TMA only): programs run over (key block,
        batch x key/value head), and each sums over the GROUP query heads of its head."""
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
            gl.static_assert(ROW_TMA, "grouped heads read lse and delta by TMA")
            b = pid_bh // (H // GROUP)
            h = pid_bh % (H // GROUP)  # the key/value head
        n0 = pid_n * (2 * BH)
        col = h * D
        lse_ptr = LSE + pid_bh.to(gl.int64) * T
        delta_ptr = DELTA + pid_bh.to(gl.int64) * T

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

        if CAUSAL:
            m_lo = n0
        else:
            m_lo = n0 * 0
        n_iter = (T - m_lo) // BM
        row0 = b * T + m_lo
        row_lse = pid_bh * T + m_lo
        if ROW_TMA:
            lse_src = gl.allocate_shared_memory(gl.float32, [NUM_STAGES, BM], lse_desc.layout)
            delta_src = gl.allocate_shared_memory(gl.float32, [NUM_STAGES, BM], delta_desc.layout)
        else:
            lse_src = lse_ptr
            delta_src = delta_ptr

        if GROUP == 1:
            col_q = col
        else:  # the group's first query head: its column and lse row
            col_q = h * GROUP * D
            row_lse = (b * H + h * GROUP) * T + m_lo
        gl.warp_specialize(
            [
                (_ws_consumer, (k_smem, v_smem, q_smem, do_smem, ready, empty, kv_bar, dk_desc,
                                dv_desc, lse_src, delta_src, n_iter, m_lo, n0, row_kv, col,
                                qk_scale, sm_scale, 0, CAUSAL, BM, NUM_STAGES, ROW_TMA, GROUP)),
                (_ws_consumer, (k_smem, v_smem, q_smem, do_smem, ready, empty, kv_bar, dk_desc,
                                dv_desc, lse_src, delta_src, n_iter, m_lo, n0, row_kv, col,
                                qk_scale, sm_scale, 1, CAUSAL, BM, NUM_STAGES, ROW_TMA, GROUP)),
                (_ws_producer, (q_desc, do_desc, q_smem, do_smem, ready, empty, n_iter, row0,
                                col_q, lse_desc, delta_desc, lse_src, delta_src, row_lse, T, BM,
                                NUM_STAGES, ROW_TMA, GROUP)),
            ],
            [4, 1],
            [CONSUMER_REGS, PRODUCER_REGS],
        )  # fmt: skip


_GL_DTYPES = {torch.bfloat16: "bfloat16", torch.float16: "float16"}


def supported(q, k, v, do, causal: bool, grouped: bool = False) -> bool:
    """Whether `dkdv_hopper` takes these inputs (the caller falls back otherwise); grouped:
    also fewer key/value heads than query heads (the warp-specialized kernel's GROUP)."""
    if q.dim() != 4 or k.shape != v.shape or q.shape != do.shape:
        return False
    B, T, H, D = q.shape
    S = k.shape[1]
    return (
        q.dtype in _GL_DTYPES
        and all(x.dtype == q.dtype and x.is_contiguous() for x in (k, v, do))
        and q.is_contiguous()
        and k.shape[0] == B
        and k.shape[2] > 0
        and (k.shape[2] == H or (grouped and H % k.shape[2] == 0))
        and D in (64, 128)
        and T % 128 == 0
        and S % 128 == 0
        and (not causal or T == S)
    )


def _descs(q, k, v, do, dk, dv, ws=False):
    """2-d descriptors: Q, dO tiles of BLOCK_M rows; K, V, dK, dV of BLOCK_N rows, or of
    BLOCK_N / 2 (one per consumer warpgroup) for the warp-specialized kernel."""
    gdt = getattr(gl, _GL_DTYPES[q.dtype])
    D = q.shape[-1]
    bn = BLOCK_N // 2 if ws else BLOCK_N
    lay_m = gl.NVMMASharedLayout.get_default_for([BLOCK_M, D], gdt)
    lay_n = gl.NVMMASharedLayout.get_default_for([bn, D], gdt)

    def d2(x, rows, lay):  # [B, N, H, D] viewed as [B * N, H * D]
        B, N, H, C = x.shape
        return TensorDescriptor(x, [B * N, H * C], [H * C, 1], [rows, C], lay)

    return (d2(q, BLOCK_M, lay_m), d2(k, bn, lay_n), d2(v, bn, lay_n),
            d2(do, BLOCK_M, lay_m), d2(dk, bn, lay_n), d2(dv, bn, lay_n))  # fmt: skip


def _row_descs(lse, delta):
    """1-d descriptors over lse and delta ``[B * H * T]``, tiles of BLOCK_M rows."""
    lay = gl.NVMMASharedLayout(swizzle_byte_width=0, element_bitwidth=32, rank=1)
    return tuple(TensorDescriptor(x, [x.numel()], [1], [BLOCK_M], lay) for x in (lse, delta))


def dkdv_hopper(
    q,
    k,
    v,
    do,
    lse,
    delta,
    causal: bool,
    scale: float,
    stages: int = NUM_STAGES,
    ws: bool | None = None,
    row_tma: bool | None = None,
):
    """dK, dV of softmax attention (see the module docstring); q, do ``[B, T, H, D]``, k, v
    ``[B, S, Hkv, D]`` (Hkv < H: grouped heads, the warp-specialized kernel with row_tma).

    ws: the warp-specialized kernel (default `WS`) or the plain pipelined one; row_tma (that
    kernel only, default `ROW_TMA`): lse and delta through shared memory by TMA."""
    ws = WS if ws is None else ws
    if not _GLUON:
        raise RuntimeError("ops.attention.hopper needs Triton 3.6's Gluon")
    if not supported(q, k, v, do, causal, grouped=True):
        raise ValueError("dkdv_hopper: unsupported shapes, dtypes or layout")
    B, T, H, D = q.shape
    S, HKV = k.shape[1], k.shape[2]
    group = {} if HKV == H else {"GROUP": H // HKV}
    if group and not (ws and (ROW_TMA if row_tma is None else row_tma)):
        raise ValueError("dkdv_hopper: grouped heads need the warp-specialized kernel, row_tma")
    lse = lse.contiguous().float()
    delta = delta.contiguous().float()
    assert lse.shape == (B, H, T) and delta.shape == (B, H, T)
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    descs = _descs(q, k, v, do, dk, dv, ws)
    if ws:
        row_tma = ROW_TMA if row_tma is None else row_tma
        rows = _row_descs(lse, delta) if row_tma else (None, None)
        launch_compiled(
            _dkdv_ws_kernel, (S // BLOCK_N, B * HKV),
            (*descs, lse, delta, *rows, T, S, H, scale * LOG2E, scale),
            dict(CAUSAL=bool(causal), NUM_STAGES=stages, PRODUCER_REGS=PRODUCER_REGS,
                 CONSUMER_REGS=CONSUMER_REGS, ROW_TMA=row_tma, num_warps=4, **group),
        )  # fmt: skip
    else:
        launch_compiled(
            _dkdv_kernel, (S // BLOCK_N, B * H),
            (*descs, lse, delta, T, S, H, scale * LOG2E, scale),
            dict(CAUSAL=bool(causal), NUM_STAGES=stages, NUM_WARPS=NUM_WARPS,
                 num_warps=NUM_WARPS),
        )  # fmt: skip
    return dk, dv


def cubin_resources(ck, dump=None) -> dict:
    """Resources of a kernel compiled for sm_90: registers at launch, spilled (stack) bytes,
    shared memory, wgmma count, local-memory accesses in the PTX, the highest register the
    SASS touches (a warp-specialized partition's real use under its setmaxnreg), the
    setmaxnreg values, shared-memory allocations in the TTGIR and the SASS instruction count
    (regs and stack None if cuobjdump reports none). `dump`: a path prefix for the SASS, PTX
    and TTGIR."""
    import os
    import re
    import subprocess
    import tempfile

    tool = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/cuobjdump")
    with tempfile.NamedTemporaryFile("wb", suffix=".cubin", delete=False) as f:
        f.write(ck.asm["cubin"])
    use = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True, text=True)
    sass = subprocess.run([tool, "-sass", f.name], capture_output=True, text=True).stdout
    os.unlink(f.name)
    ptx = ck.asm["ptx"]
    if dump:
        for ext, text in (("sass", sass), ("ptx", ptx), ("ttgir", ck.asm["ttgir"])):
            with open(f"{dump}.{ext}", "w") as g:
                g.write(text)
    m = re.search(r"REG:(\d+) STACK:(\d+)", use.stdout)
    regs, stack = (int(x) for x in m.groups()) if m else (None, None)
    return dict(
        regs=regs, stack=stack, smem=ck.metadata.shared,
        wgmma=len(re.findall(r"wgmma.mma_async", ptx)),
        local=len(re.findall(r"\b(?:ld|st)\.local", ptx)),
        max_reg=1 + max((int(r) for r in re.findall(r"\bR(\d+)\b", sass)), default=-1),
        setmaxnreg=sorted(set(re.findall(r"setmaxnreg\.\w+\.sync\.aligned\.u32\s+(\d+)", ptx)),
                          key=int),
        local_alloc=ck.asm["ttgir"].count("ttg.local_alloc"),
        instrs=len(re.findall(r"^\s+/\*[0-9a-f]{4}\*/", sass, re.M)),
    )  # fmt: skip


def sm90_resources(
    D: int = 128,
    dtype: str = "bfloat16",
    stages: int = NUM_STAGES,
    ws=False,
    consumer_regs=None,
    producer_regs=None,
    row_tma=False,
    verbose=True,
    dump=None,
    group: int = 1,
):
    """Cross-compile the kernel for sm_90 (no GPU needed) and report, per causal / non-causal,
    `cubin_resources`. group: query heads per key/value head (warp-specialized kernel)."""
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource
    from triton.runtime.jit import mangle_type

    tdt = getattr(torch, dtype)
    x = torch.empty(256, 1, 1, D, dtype=tdt)  # only for the descriptors' types
    descs = _descs(x, x, x, x, x, x, ws)
    row_descs = _row_descs(torch.empty(1024), torch.empty(1024))
    fn = _dkdv_ws_kernel if ws else _dkdv_kernel
    warps = 4 if ws else NUM_WARPS
    cregs = consumer_regs or CONSUMER_REGS
    pregs = producer_regs or PRODUCER_REGS
    rows = {}
    for causal in (True, False):
        sig, consts = {}, {}
        vals = dict(zip(["q_desc", "k_desc", "v_desc", "do_desc", "dk_desc", "dv_desc"], descs))
        if row_tma:
            vals.update(lse_desc=row_descs[0], delta_desc=row_descs[1])
        for i, name in enumerate(fn.arg_names):
            if name in vals:
                sig[name] = mangle_type(vals[name])
            elif name in ("LSE", "DELTA"):
                sig[name] = "*fp32"
            elif name in ("qk_scale", "sm_scale"):
                sig[name] = "fp32"
            elif name in ("T", "S", "H"):
                sig[name] = "i32"
            else:
                sig[name] = "constexpr"
                consts[(i,)] = dict(CAUSAL=causal, NUM_STAGES=stages, NUM_WARPS=NUM_WARPS,
                                    CONSUMER_REGS=cregs, PRODUCER_REGS=pregs,
                                    ROW_TMA=row_tma, lse_desc=None, delta_desc=None,
                                    GROUP=group)[name]  # fmt: skip
        src = GluonASTSource(fn, sig, consts)
        ck = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=warps))
        row = cubin_resources(ck, dump and f"{dump}_{'causal' if causal else 'full'}")
        rows[f"causal={causal}"] = row
        if verbose:
            print(f"{'ws' if ws else 'plain'}{' row_tma' if row_tma else ''}"
                  f"{f' group={group}' if group > 1 else ''} D={D} {dtype} "
                  f"stages={stages} causal={causal}: {row}",
                  flush=True)  # fmt: skip
    return rows


if __name__ == "__main__":
    import sys

    if not _GLUON:
        sys.exit("needs Triton 3.6 first on the path: PYTHONPATH=/tmp/t36 ...")
    for D in (128, 64):
        sm90_resources(D=D, ws=True, row_tma=True)  # the default
        sm90_resources(D=D, ws=True, row_tma=False)
        sm90_resources(D=D, ws=False)
        sm90_resources(D=D, ws=True, row_tma=True, group=4)  # grouped heads
