"""Forward pass of softmax attention on Hopper (sm_90) in Gluon: FlashAttention-3's forward.

One program per (block of BLOCK_M = 128 query rows, batch x head), causal programs with the
most work first (reverse program order). Warp-specialized (`gl.warp_specialize`):

- a 1-warp producer (`PRODUCER_REGS` registers by setmaxnreg) loads the program's Q tile once
  (two halves of 64 rows) and streams the key blocks (BLOCK_N keys) of K and V by TMA through
  a ring of `NUM_STAGES` shared-memory stages; K and V of a stage have their own ready
  barriers (the scores start before V has landed) and their own empty barriers: K_j's slot
  is free again once both consumers have their scores S_j, V_j's once both have done P_j V_j;
- two consumer warpgroups, each its own partition (4 warps, `CONSUMER_REGS` registers), each
  owning 64 of the 128 query rows.

Per key block j in a consumer: issue S_j = Q K_j^T (async wgmma, Q and K^T from shared
memory), issue O += P_{j-1} V_{j-1} (async wgmma, P from registers as the left operand), wait
for S_j only, do the online softmax of block j (row max, exp2 with the scale folded into one
multiply-add) while P V runs, then wait for P V, release V_{j-1} and rescale O by alpha_j.
Causal: key blocks left of the diagonal are unmasked, those crossing it masked, those right
of it never loaded (loop bound). Epilogue: O / l through shared memory (the consumer's half
of Q) and a TMA store; lse = m + log2(l) by gl.store.

Results as `fused._forward` returns them: o ``[B, T, H, D]`` in q's dtype, lse float32
``[B, H, T]``, the base-2 log-sum-exp of the scores times ``qk_scale = scale * log2(e)``.
Inputs it takes: `supports`.
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
BLOCK_M = 128  # query rows per program (64 per consumer warpgroup)
BLOCK_N = 128  # keys per step
NUM_STAGES = 2  # K / V ring depth
CONSUMER_REGS = 240  # registers per thread of the consumer warpgroups (setmaxnreg)
PRODUCER_REGS = 24  # of the 1-warp TMA producer


if common.GLUON:

    @gluon.jit
    def _fwd_producer(q_desc, k_desc, v_desc, q_smem, k_smem, v_smem, q_bar, k_ready, v_ready,
                      k_empty, v_empty, n_blocks, row_q, row_kv, col, col_kv,
                      NUM_STAGES: gl.constexpr):  # fmt: skip
        BH: gl.constexpr = q_desc.block_type.shape[0]
        BN: gl.constexpr = k_desc.block_type.shape[0]
        mbarrier.expect(q_bar, 2 * q_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(q_desc, [row_q, col], q_bar, q_smem.index(0))
        tma.async_copy_global_to_shared(q_desc, [row_q + BH, col], q_bar, q_smem.index(1))
        for j in range(n_blocks):
            s = j % NUM_STAGES
            # A fresh barrier counts as having completed the phase before phase 0: the first
            # NUM_STAGES waits (parity 1) pass at once.
            ph = ((j // NUM_STAGES) & 1) ^ 1
            r = row_kv + j * BN
            mbarrier.wait(k_empty.index(s), ph)
            kb = k_ready.index(s)
            mbarrier.expect(kb, k_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(k_desc, [r, col_kv], kb, k_smem.index(s))
            mbarrier.wait(v_empty.index(s), ph)
            vb = v_ready.index(s)
            mbarrier.expect(vb, v_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(v_desc, [r, col_kv], vb, v_smem.index(s))

    @gluon.jit
    def _softmax(sc, m_i, l_i, rows, j, qk_scale, MASK: gl.constexpr):
        """Online softmax of the raw scores sc (BH, BN) of key block j: the probabilities
        (float32), the new row max and row sum, and alpha, the factor for what came before."""
        BN: gl.constexpr = sc.type.shape[1]
        if MASK:  # causal: row i sees key n only if n <= i
            offs_n = j * BN + gl.arange(0, BN, layout=gl.SliceLayout(0, sc.type.layout))
            keep = gl.expand_dims(offs_n, 0) <= gl.expand_dims(rows, 1)
            sc = gl.where(keep, sc, float("-inf"))
        m_new = gl.maximum(m_i, gl.max(sc, 1) * qk_scale)
        p = gl.exp2(sc * qk_scale - gl.expand_dims(m_new, 1))
        alpha = gl.exp2(m_i - m_new)
        l_i = l_i * alpha + gl.sum(p, 1)
        return p, m_new, l_i, alpha

    @gluon.jit
    def _rescale(acc, alpha):
        alpha = gl.convert_layout(alpha, gl.SliceLayout(1, acc.type.layout))
        return acc * gl.expand_dims(alpha, 1)

    @gluon.jit
    def _step_ahead(acc, m_i, l_i, p_a, q_s, k_smem, v_smem, k_ready, v_ready, k_empty, v_empty,
                    j, rows, qk_scale, MASK: gl.constexpr,
                    NUM_STAGES: gl.constexpr):  # fmt: skip
        """Scores of key block j (j >= 1) while P V of block j - 1 (p_a) runs."""
        BH: gl.constexpr = q_s.shape[0]
        BN: gl.constexpr = k_smem.shape[1]
        dtype: gl.constexpr = q_s.dtype
        acc_layout: gl.constexpr = acc.type.layout
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BN, 16]
        )
        a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=acc_layout, k_width=2)
        s = j % NUM_STAGES
        sp = (j - 1) % NUM_STAGES
        mbarrier.wait(k_ready.index(s), (j // NUM_STAGES) & 1)
        zero = gl.zeros([BH, BN], gl.float32, s_layout)
        s_tok = warpgroup_mma(q_s, k_smem.index(s).permute((1, 0)), zero, use_acc=False,
                              is_async=True)  # fmt: skip
        mbarrier.wait(v_ready.index(sp), ((j - 1) // NUM_STAGES) & 1)
        o_tok = warpgroup_mma(p_a, v_smem.index(sp), acc, is_async=True)
        sc = warpgroup_mma_wait(num_outstanding=1, deps=(s_tok,))
        mbarrier.arrive(k_empty.index(s), count=1)  # this consumer is done with K_j
        p, m_i, l_i, alpha = _softmax(sc, m_i, l_i, rows, j, qk_scale, MASK)
        acc, p_a = warpgroup_mma_wait(num_outstanding=0, deps=(o_tok, p_a))
        mbarrier.arrive(v_empty.index(sp), count=1)  # and with V_{j-1}
        acc = _rescale(acc, alpha)
        p_a = gl.convert_layout(p.to(dtype), a_layout)
        return acc, m_i, l_i, p_a

    @gluon.jit
    def _fwd_consumer(q_smem, k_smem, v_smem, q_bar, k_ready, v_ready, k_empty, v_empty, o_desc,
                      lse_ptr,
                      n_full, n_blocks, m0, row_q, col, qk_scale, HALF: gl.constexpr,
                      CAUSAL: gl.constexpr, NUM_STAGES: gl.constexpr):  # fmt: skip
        """Query rows [m0 + HALF * BH, m0 + (HALF + 1) * BH) (BH = 64), one warpgroup.
        Key blocks [0, n_full) need no mask, [n_full, n_blocks) cross the diagonal."""
        BH: gl.constexpr = q_smem.shape[1]
        D: gl.constexpr = q_smem.shape[2]
        BN: gl.constexpr = k_smem.shape[1]
        dtype: gl.constexpr = q_smem.dtype
        acc_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, D, 16]
        )
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BN, 16]
        )
        a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=acc_layout, k_width=2)
        row_layout: gl.constexpr = gl.SliceLayout(1, s_layout)

        q_s = q_smem.index(HALF)
        rows = m0 + HALF * BH + gl.arange(0, BH, layout=row_layout)
        acc = gl.zeros([BH, D], gl.float32, acc_layout)
        m_i = gl.full([BH], float("-inf"), gl.float32, row_layout)
        l_i = gl.zeros([BH], gl.float32, row_layout)
        mbarrier.wait(q_bar, 0)

        # Block 0 alone (masked if causal: a no-op left of the diagonal); n_blocks >= 1.
        mbarrier.wait(k_ready.index(0), 0)
        zero = gl.zeros([BH, BN], gl.float32, s_layout)
        s_tok = warpgroup_mma(q_s, k_smem.index(0).permute((1, 0)), zero, use_acc=False,
                              is_async=True)  # fmt: skip
        sc = warpgroup_mma_wait(num_outstanding=0, deps=(s_tok,))
        mbarrier.arrive(k_empty.index(0), count=1)
        p, m_i, l_i, alpha = _softmax(sc, m_i, l_i, rows, 0, qk_scale, CAUSAL)
        p_a = gl.convert_layout(p.to(dtype), a_layout)
        for j in range(1, n_full):
            acc, m_i, l_i, p_a = _step_ahead(acc, m_i, l_i, p_a, q_s, k_smem, v_smem,
                                             k_ready, v_ready, k_empty, v_empty, j, rows,
                                             qk_scale, False, NUM_STAGES)  # fmt: skip
        if CAUSAL:
            for j in range(gl.maximum(n_full, 1), n_blocks):
                acc, m_i, l_i, p_a = _step_ahead(acc, m_i, l_i, p_a, q_s, k_smem, v_smem,
                                                 k_ready, v_ready, k_empty, v_empty, j, rows,
                                                 qk_scale, True, NUM_STAGES)  # fmt: skip
        # P V of the last block
        jl = n_blocks - 1
        sl = jl % NUM_STAGES
        mbarrier.wait(v_ready.index(sl), (jl // NUM_STAGES) & 1)
        o_tok = warpgroup_mma(p_a, v_smem.index(sl), acc, is_async=True)
        acc, p_a = warpgroup_mma_wait(num_outstanding=0, deps=(o_tok, p_a))
        mbarrier.arrive(v_empty.index(sl), count=1)

        # Epilogue: lse per row, O / l staged in this warpgroup's half of Q (no longer read).
        gl.store(lse_ptr + rows, m_i + gl.log2(l_i))
        l_o = gl.convert_layout(l_i, gl.SliceLayout(1, acc_layout))
        o = acc / gl.expand_dims(l_o, 1)
        q_s.store(o.to(dtype))
        fence_async_shared()
        gl.thread_barrier()
        tma.async_copy_shared_to_global(o_desc, [row_q + HALF * BH, col], q_s)
        tma.store_wait(pendings=0)

    @gluon.jit
    def _fwd_ws_kernel(q_desc, k_desc, v_desc, o_desc, LSE, T, S, H, HKV, qk_scale,
                       CAUSAL: gl.constexpr, NUM_STAGES: gl.constexpr,
                       PRODUCER_REGS: gl.constexpr,
                       CONSUMER_REGS: gl.constexpr):  # fmt: skip
        """q_desc, o_desc: tiles of BH = 64 query rows (a program has 2 * BH); k_desc, v_desc:
        tiles of BN keys; all over the 2-d views ``[B * N, H * D]``."""
        BH: gl.constexpr = q_desc.block_type.shape[0]
        D: gl.constexpr = q_desc.block_type.shape[1]
        BN: gl.constexpr = k_desc.block_type.shape[0]
        BM: gl.constexpr = 2 * BH
        dtype: gl.constexpr = q_desc.dtype

        # Causal rows near the end do the most work: start them first.
        pid_m = gl.num_programs(0) - 1 - gl.program_id(0)
        pid_bh = gl.program_id(1)
        b = pid_bh // H
        h = pid_bh % H
        m0 = pid_m * BM
        col = h * D
        col_kv = (h // (H // HKV)) * D  # grouped heads: query head h reads key head h // G
        lse_ptr = LSE + pid_bh.to(gl.int64) * T
        if CAUSAL:  # T == S; m0 is a multiple of BM, hence of BN
            n_full = m0 // BN
            n_blocks = (m0 + BM) // BN
        else:
            n_full = S // BN
            n_blocks = n_full

        q_smem = gl.allocate_shared_memory(dtype, [2, BH, D], q_desc.layout)
        k_smem = gl.allocate_shared_memory(dtype, [NUM_STAGES, BN, D], k_desc.layout)
        v_smem = gl.allocate_shared_memory(dtype, [NUM_STAGES, BN, D], v_desc.layout)
        q_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
        k_ready = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        v_ready = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        k_empty = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        v_empty = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        mbarrier.init(q_bar, count=1)
        for st in gl.static_range(NUM_STAGES):
            mbarrier.init(k_ready.index(st), count=1)
            mbarrier.init(v_ready.index(st), count=1)
            mbarrier.init(k_empty.index(st), count=2)  # one arrive per consumer warpgroup
            mbarrier.init(v_empty.index(st), count=2)
        fence_async_shared()

        row_q = b * T + m0
        row_kv = b * S
        gl.warp_specialize(
            [
                (_fwd_consumer, (q_smem, k_smem, v_smem, q_bar, k_ready, v_ready, k_empty,
                                 v_empty, o_desc, lse_ptr, n_full, n_blocks, m0, row_q, col,
                                 qk_scale, 0, CAUSAL, NUM_STAGES)),
                (_fwd_consumer, (q_smem, k_smem, v_smem, q_bar, k_ready, v_ready, k_empty,
                                 v_empty, o_desc, lse_ptr, n_full, n_blocks, m0, row_q, col,
                                 qk_scale, 1, CAUSAL, NUM_STAGES)),
                (_fwd_producer, (q_desc, k_desc, v_desc, q_smem, k_smem, v_smem, q_bar, k_ready,
                                 v_ready, k_empty, v_empty, n_blocks, row_q, row_kv, col, col_kv,
                                 NUM_STAGES)),
            ],
            [4, 1],
            [CONSUMER_REGS, PRODUCER_REGS],
        )  # fmt: skip


def available() -> bool:
    """Gluon of Triton 3.6 can run here (see `common.available`)."""
    return common.available()


def supports(q, k, v, causal: bool) -> tuple[bool, str]:
    """Whether `run` takes these inputs, and if not why: a Hopper GPU, bf16 or fp16,
    contiguous ``[B, T, H, D]`` q and ``[B, S, Hkv, D]`` k, v (H a multiple of Hkv), D 64 or
    128, T and S whole numbers of 128-row blocks, causal only with T == S."""
    if not common.on_hopper(q):
        return False, f"needs a Hopper GPU (sm_90), found {q.device}"
    if q.dim() != 4 or k.dim() != 4 or k.shape != v.shape:
        return False, "needs k and v of one shape (Dv == D)"
    B, T, H, D = q.shape
    S = k.shape[1]
    if q.dtype not in common.GL_DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        return False, f"needs bfloat16 or float16, found {q.dtype}"
    if not (q.is_contiguous() and k.is_contiguous() and v.is_contiguous()):
        return False, "needs contiguous q, k, v"
    if k.shape[0] != B or k.shape[3] != D or k.shape[2] == 0 or H % k.shape[2]:
        return False, f"needs k, v [B, S, Hkv, D] with H a multiple of Hkv, found {tuple(k.shape)}"
    if D not in (64, 128):
        return False, f"needs head width 64 or 128, found {D}"
    if T == 0 or S == 0 or T % BLOCK_M or S % BLOCK_N:
        return False, f"needs T and S multiples of 128, found T={T}, S={S}"
    if causal and T != S:
        return False, f"causal needs T == S, found T={T}, S={S}"
    return True, ""


def _descs(q, k, v, o):
    """2-d descriptors: Q, O tiles of BLOCK_M / 2 rows (one per consumer warpgroup); K, V
    tiles of BLOCK_N rows."""
    D = q.shape[-1]
    bh = BLOCK_M // 2
    lay_m = common.tile_layout(bh, D, q.dtype)
    lay_n = common.tile_layout(BLOCK_N, D, q.dtype)

    def d2(x, rows, lay):  # [B, N, H, D] viewed as [B * N, H * D]
        B, N, H, C = x.shape
        return TensorDescriptor(x, [B * N, H * C], [H * C, 1], [rows, C], lay)

    return d2(q, bh, lay_m), d2(k, BLOCK_N, lay_n), d2(v, BLOCK_N, lay_n), d2(o, bh, lay_m)


def run(q, k, v, causal: bool, scale: float):
    """o ``[B, T, H, D]`` (q's dtype) and lse float32 ``[B, H, T]`` of softmax attention; q
    ``[B, T, H, D]``, k, v ``[B, S, Hkv, D]``, inputs that `supports` takes."""
    if not common.GLUON:
        raise RuntimeError("ncd.ops.attention.gluon.forward: needs Triton 3.6's Gluon")
    B, T, H, D = q.shape
    S = k.shape[1]
    o = torch.empty_like(q)
    lse = torch.empty(B, H, T, device=q.device, dtype=torch.float32)
    launch_compiled(
        _fwd_ws_kernel, (T // BLOCK_M, B * H),
        (*_descs(q, k, v, o), lse, T, S, H, k.shape[2], scale * LOG2E),
        dict(CAUSAL=bool(causal), NUM_STAGES=NUM_STAGES, PRODUCER_REGS=PRODUCER_REGS,
             CONSUMER_REGS=CONSUMER_REGS, num_warps=4),
    )  # fmt: skip
    return o, lse
