"""The delta rule's backward chunk kernel on Hopper (sm_90) in Gluon, warp-specialized.

The same arithmetic as chunk.py's `_bwd_chunk_kernel` (README.md, "Backward"), ungated: per
chunk, with S entering and dS' leaving it, V' and dV' from the scans,

    dq   = scale dO S^T + dps K,                  dps = scale (dO V'^T * causal)
    dB_u = T^T dV' (dv = diag(beta) dB_u),        dB_w = dB_u S^T
    dk   = V' dS'^T - diag(beta) dB_w + dps^T Q + (dab + dab^T) K,
                                                  dab = diag(beta) strictly_lower(-dB_u V'^T)
    dbeta = rowsum(dB_u * v) - rowsum(dB_w * k) + rowsum(strictly_lower(-dB_u V'^T) * K K^T)

What changes is the schedule. The Triton kernel runs one program a multiprocessor (its five
float32 accumulators fill the registers), so nothing overlaps one chunk's loads with its
products. Here a persistent program walks chunks, and a one-warp producer partition copies
the next chunk's tiles into shared memory (TMA) while the 8-warp consumer computes: T, then
the value blocks (dO, V', dV', v and the BV columns of S and dS') through a ring of
`NUM_STAGES` stages, then q and k; each buffer has a ready and an empty barrier.

Inputs it takes (`supports`): a Hopper GPU, bf16 or fp16, no packed sequences, T a multiple
of the chunk (64), K = V = 128 or 64, and at least MIN_CHUNKS chunk programs; the ungated
rule (the gated rule's tail does not fit beside this kernel's accumulators: `gluon_gated.py`
splits the chunk's work between two warpgroups instead).
"""

from __future__ import annotations

import torch

from .. import _gluon as common
from .._backend import launch_compiled
from .._gluon import (
    TensorDescriptor,
    fence_async_shared,
    gl,
    gluon,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)

BT = 64  # chunk length (chunk.py's CHUNK)
BV = 64  # value columns a ring stage holds
NUM_STAGES = 2
PRODUCER_REGS = 24  # registers a thread of the one-warp TMA producer (setmaxnreg)
# Fewer chunk programs (B T H / BT) take the Triton kernel: the host's time to issue the
# Gluon launch then exceeds the GPU time it saves in a host-bound step (README.md).
MIN_CHUNKS = 4096
OP = "delta_rule backward chunk"


if common.GLUON:

    @gluon.jit
    def _tile(tile, NC, NT, T, BTC: gl.constexpr):
        """Chunk program `tile` (head-major: a head's chunks in order): its chunk's first
        row over B * T, its head, and the chunk's index c over B * NT."""
        h = tile // NC
        c = tile % NC
        row0 = (c // NT) * T + (c % NT) * BTC
        return row0, h, c

    @gluon.jit
    def _producer(ai_desc, q_desc, k_desc, do_desc, vn_desc, dvn_desc, v_desc, hs_desc,
                  dhs_desc, t_s, q_s, k_s, do_s, vn_s, dvn_s, v_s, hs_s, dhs_s, t_ready,
                  t_empty, qk_ready, qk_empty, ready, empty, T, NT, H, NC,
                  K_DIM: gl.constexpr, V_DIM: gl.constexpr, NUM_STAGES: gl.constexpr):  # fmt: skip
        """For each of the program's chunks: T once the consumer is done with the previous
        one's, the value blocks into the ring, then q and k once the previous tail is done."""
        BVC: gl.constexpr = do_desc.block_type.shape[1]
        NV: gl.constexpr = V_DIM // BVC
        BTC: gl.constexpr = ai_desc.block_type.shape[1]
        v_bytes: gl.constexpr = 4 * do_desc.block_type.nbytes + 2 * hs_desc.block_type.nbytes
        for tile in range(gl.program_id(0), NC * H, gl.num_programs(0)):
            it = (tile - gl.program_id(0)) // gl.num_programs(0)  # this program's chunk count
            row0, h, c = _tile(tile, NC, NT, T, BTC)
            ph = it & 1
            # A fresh barrier counts as having completed the phase before phase 0: the first
            # wait on an empty barrier (parity 1) passes at once.
            mbarrier.wait(t_empty, ph ^ 1)
            mbarrier.expect(t_ready, ai_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(ai_desc, [row0, h * BTC], t_ready, t_s)
            srow = (c * H + h) * K_DIM
            for j in gl.static_range(NV):
                n = it * NV + j
                s = n % NUM_STAGES
                mbarrier.wait(empty.index(s), ((n // NUM_STAGES) & 1) ^ 1)
                bar = ready.index(s)
                mbarrier.expect(bar, v_bytes)
                col = h * V_DIM + j * BVC
                tma.async_copy_global_to_shared(do_desc, [row0, col], bar, do_s.index(s))
                tma.async_copy_global_to_shared(vn_desc, [row0, col], bar, vn_s.index(s))
                tma.async_copy_global_to_shared(dvn_desc, [row0, col], bar, dvn_s.index(s))
                tma.async_copy_global_to_shared(v_desc, [row0, col], bar, v_s.index(s))
                tma.async_copy_global_to_shared(hs_desc, [srow, j * BVC], bar, hs_s.index(s))
                tma.async_copy_global_to_shared(dhs_desc, [srow, j * BVC], bar, dhs_s.index(s))
            mbarrier.wait(qk_empty, ph ^ 1)
            mbarrier.expect(qk_ready, q_desc.block_type.nbytes + k_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(q_desc, [row0, h * K_DIM], qk_ready, q_s)
            tma.async_copy_global_to_shared(k_desc, [row0, h * K_DIM], qk_ready, k_s)

    @gluon.jit
    def _consumer(t_s, q_s, k_s, do_s, vn_s, dvn_s, v_s, hs_s, dhs_s, scr, t_ready, t_empty,
                  qk_ready, qk_empty, ready, empty, BETA, DQ, DK, DV, DBETA, T, NT, H, NC,
                  scale, K_DIM: gl.constexpr, V_DIM: gl.constexpr,
                  NUM_STAGES: gl.constexpr):  # fmt: skip
        """The chunks' arithmetic (module docstring), 8 warps: two warpgroups side by side
        along each product's columns."""
        BTC: gl.constexpr = t_s.shape[0]
        BVC: gl.constexpr = do_s.shape[2]
        NV: gl.constexpr = V_DIM // BVC
        dtype: gl.constexpr = t_s.dtype
        lk: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 2], instr_shape=[16, K_DIM // 2, 16]
        )
        lt: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 2], instr_shape=[16, BTC // 2, 16]
        )
        ak: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=lk, k_width=2)
        at: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=lt, k_width=2)
        rows_t = gl.arange(0, BTC, layout=gl.SliceLayout(1, lt))
        cols_t = gl.arange(0, BTC, layout=gl.SliceLayout(0, lt))
        rows_k = gl.arange(0, BTC, layout=gl.SliceLayout(1, lk))
        cols_k = gl.arange(0, K_DIM, layout=gl.SliceLayout(0, lk))
        causal = gl.expand_dims(rows_t, 1) >= gl.expand_dims(cols_t, 0)
        strict = gl.expand_dims(rows_t, 1) > gl.expand_dims(cols_t, 0)
        for tile in range(gl.program_id(0), NC * H, gl.num_programs(0)):
            it = (tile - gl.program_id(0)) // gl.num_programs(0)  # this program's chunk count
            row0, h, c = _tile(tile, NC, NT, T, BTC)
            ph = it & 1
            tok_t = (row0 + rows_t).to(gl.int64) * H + h  # [BT] token x head, lt rows
            tok_k = (row0 + rows_k).to(gl.int64) * H + h
            beta = gl.load(BETA + tok_t).to(gl.float32)
            dq = gl.zeros([BTC, K_DIM], gl.float32, lk)  # dO S^T
            dks = gl.zeros([BTC, K_DIM], gl.float32, lk)  # V' dS'^T
            db_w = gl.zeros([BTC, K_DIM], gl.float32, lk)  # dB_u S^T
            dp = gl.zeros([BTC, BTC], gl.float32, lt)  # dO V'^T
            da = gl.zeros([BTC, BTC], gl.float32, lt)  # dB_u V'^T
            dbeta = gl.zeros([BTC], gl.float32, gl.SliceLayout(1, lt))
            mbarrier.wait(t_ready, ph)
            for j in gl.static_range(NV):
                n = it * NV + j
                s = n % NUM_STAGES
                mbarrier.wait(ready.index(s), (n // NUM_STAGES) & 1)
                do_b = do_s.index(s)
                vn_b = vn_s.index(s)
                st_b = hs_s.index(s).permute((1, 0))  # S^T: [BV, K]
                zero = gl.zeros([BTC, BVC], gl.float32, lt)
                # dB_u first; the three products that do not need it run on while dB_u's own
                # work (dv, dbeta) runs on the other units.
                db_u = warpgroup_mma(t_s.permute((1, 0)), dvn_s.index(s), zero, use_acc=False,
                                     is_async=True)  # fmt: skip
                dq = warpgroup_mma(do_b, st_b, dq, is_async=True)
                dp = warpgroup_mma(do_b, vn_b.permute((1, 0)), dp, is_async=True)
                dks = warpgroup_mma(vn_b, dhs_s.index(s).permute((1, 0)), dks, is_async=True)
                db_u = warpgroup_mma_wait(num_outstanding=3, deps=(db_u,))
                db_u16 = db_u.to(dtype)
                db_w = warpgroup_mma(gl.convert_layout(db_u16, ak), st_b, db_w, is_async=True)
                da = warpgroup_mma(gl.convert_layout(db_u16, at), vn_b.permute((1, 0)), da,
                                   is_async=True)  # fmt: skip
                v = v_s.index(s).load(lt).to(gl.float32)
                dbeta += gl.sum(db_u * v, 1)
                dv_ptr = DV + gl.expand_dims(tok_t * V_DIM + j * BVC, 1) + gl.expand_dims(cols_t, 0)
                gl.store(dv_ptr, (db_u * gl.expand_dims(beta, 1)).to(dtype))
                dq, dp, dks, db_w, da = warpgroup_mma_wait(
                    num_outstanding=0, deps=(dq, dp, dks, db_w, da)
                )
                gl.thread_barrier()  # every warp done with stage s
                mbarrier.arrive(empty.index(s), count=1)
            gl.thread_barrier()
            mbarrier.arrive(t_empty, count=1)
            mbarrier.wait(qk_ready, ph)
            beta_k = gl.convert_layout(beta, gl.SliceLayout(1, lk))
            k = k_s.load(lk).to(gl.float32)
            t_w = -gl.sum(db_w * k, 1)
            dbeta += gl.convert_layout(t_w, gl.SliceLayout(1, lt))
            dk = dks - db_w * gl.expand_dims(beta_k, 1)
            dps = gl.where(causal, dp * scale, 0.0).to(dtype)
            dq = warpgroup_mma(gl.convert_layout(dps, ak), k_s, dq * scale)
            q_ptr = gl.expand_dims(tok_k * K_DIM, 1) + gl.expand_dims(cols_k, 0)
            gl.store(DQ + q_ptr, dq.to(dtype))
            scr.store(dps)  # dps^T as the left operand: through shared memory
            fence_async_shared()
            gl.thread_barrier()
            dk = warpgroup_mma(scr.permute((1, 0)), q_s, dk)
            gl.thread_barrier()  # both warpgroups' products done reading scr
            da = gl.where(strict, -da, 0.0)
            dab = da * gl.expand_dims(beta, 1)
            scr.store(dab.to(dtype))
            gl.thread_barrier()
            dab_t = scr.permute((1, 0)).load(lt).to(gl.float32)
            # (dab + dab^T) K in one product: dab is strictly lower, no entry has two terms
            dk = warpgroup_mma(gl.convert_layout((dab + dab_t).to(dtype), ak), k_s, dk)
            gl.store(DK + q_ptr, dk.to(dtype))
            kk = warpgroup_mma(k_s, k_s.permute((1, 0)), gl.zeros([BTC, BTC], gl.float32, lt),
                               use_acc=False)  # fmt: skip
            dbeta += gl.sum(da * kk, 1)
            gl.store(DBETA + tok_t, dbeta.to(DBETA.dtype.element_ty))
            gl.thread_barrier()  # every warp done with q, k and scr
            mbarrier.arrive(qk_empty, count=1)

    @gluon.jit
    def _producer_buffers(ai_desc, q_desc, k_desc, do_desc, vn_desc, dvn_desc, v_desc, hs_desc,
                          dhs_desc, K_DIM: gl.constexpr, NUM_STAGES: gl.constexpr):  # fmt: skip
        """The shared-memory tiles `_producer` fills: T, q, k and the value ring's stages."""
        BTC: gl.constexpr = ai_desc.block_type.shape[0]
        BVC: gl.constexpr = do_desc.block_type.shape[1]
        dtype: gl.constexpr = q_desc.dtype
        t_s = gl.allocate_shared_memory(dtype, [BTC, BTC], ai_desc.layout)
        q_s = gl.allocate_shared_memory(dtype, [BTC, K_DIM], q_desc.layout)
        k_s = gl.allocate_shared_memory(dtype, [BTC, K_DIM], k_desc.layout)
        do_s = gl.allocate_shared_memory(dtype, [NUM_STAGES, BTC, BVC], do_desc.layout)
        vn_s = gl.allocate_shared_memory(dtype, [NUM_STAGES, BTC, BVC], vn_desc.layout)
        dvn_s = gl.allocate_shared_memory(dtype, [NUM_STAGES, BTC, BVC], dvn_desc.layout)
        v_s = gl.allocate_shared_memory(dtype, [NUM_STAGES, BTC, BVC], v_desc.layout)
        hs_s = gl.allocate_shared_memory(dtype, [NUM_STAGES, K_DIM, BVC], hs_desc.layout)
        dhs_s = gl.allocate_shared_memory(dtype, [NUM_STAGES, K_DIM, BVC], dhs_desc.layout)
        return t_s, q_s, k_s, do_s, vn_s, dvn_s, v_s, hs_s, dhs_s

    @gluon.jit
    def _producer_barriers(NUM_STAGES: gl.constexpr, READERS: gl.constexpr):
        """Ready and empty barriers of T, of q and k and of each ring stage, initialised: READERS
        consumer partitions each release q, k and the stages (T: one)."""
        bar_layout: gl.constexpr = mbarrier.MBarrierLayout()
        t_ready = gl.allocate_shared_memory(gl.int64, [1], bar_layout)
        t_empty = gl.allocate_shared_memory(gl.int64, [1], bar_layout)
        qk_ready = gl.allocate_shared_memory(gl.int64, [1], bar_layout)
        qk_empty = gl.allocate_shared_memory(gl.int64, [1], bar_layout)
        ready = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], bar_layout)
        empty = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], bar_layout)
        mbarrier.init(t_ready, count=1)
        mbarrier.init(t_empty, count=1)
        mbarrier.init(qk_ready, count=1)
        mbarrier.init(qk_empty, count=READERS)
        for st in gl.static_range(NUM_STAGES):
            mbarrier.init(ready.index(st), count=1)
            mbarrier.init(empty.index(st), count=READERS)
        return t_ready, t_empty, qk_ready, qk_empty, ready, empty

    @gluon.jit
    def _bwd_chunk_ws_kernel(ai_desc, q_desc, k_desc, do_desc, vn_desc, dvn_desc, v_desc,
                             hs_desc, dhs_desc, BETA, DQ, DK, DV, DBETA, T, NT, H, NC, scale,
                             K_DIM: gl.constexpr, V_DIM: gl.constexpr,
                             NUM_STAGES: gl.constexpr,
                             PRODUCER_REGS: gl.constexpr):  # fmt: skip
        """Persistent: program p takes chunk programs p, p + grid, ... (`_tile`)."""
        t_s, q_s, k_s, do_s, vn_s, dvn_s, v_s, hs_s, dhs_s = _producer_buffers(
            ai_desc, q_desc, k_desc, do_desc, vn_desc, dvn_desc, v_desc, hs_desc, dhs_desc,
            K_DIM, NUM_STAGES)  # fmt: skip
        scr = gl.allocate_shared_memory(q_desc.dtype, [t_s.shape[0], t_s.shape[0]], ai_desc.layout)
        t_ready, t_empty, qk_ready, qk_empty, ready, empty = _producer_barriers(NUM_STAGES, 1)
        fence_async_shared()
        gl.warp_specialize(
            [
                (_consumer, (t_s, q_s, k_s, do_s, vn_s, dvn_s, v_s, hs_s, dhs_s, scr, t_ready,
                             t_empty, qk_ready, qk_empty, ready, empty, BETA, DQ, DK, DV,
                             DBETA, T, NT, H, NC, scale, K_DIM, V_DIM, NUM_STAGES)),
                (_producer, (ai_desc, q_desc, k_desc, do_desc, vn_desc, dvn_desc, v_desc,
                             hs_desc, dhs_desc, t_s, q_s, k_s, do_s, vn_s, dvn_s, v_s, hs_s,
                             dhs_s, t_ready, t_empty, qk_ready, qk_empty, ready, empty, T, NT,
                             H, NC, K_DIM, V_DIM, NUM_STAGES)),
            ],
            [1],
            [PRODUCER_REGS],
        )  # fmt: skip


def available() -> bool:
    """Gluon of Triton 3.6 can run here (see `common.available`)."""
    return common.available()


def supports(q, v, varlen: bool, chunk: int, tensors=()) -> tuple[bool, str]:
    """Whether `run` (and `gluon_gated.run`) take these inputs (chunks of `chunk` tokens; q,
    v and every one of `tensors`, which the copy engine reads or the kernel writes), and if
    not why."""
    if not common.on_hopper(q):
        return False, f"needs a Hopper GPU (sm_90), found {q.device}"
    if varlen:
        return False, "packed sequences take the Triton kernel"
    if q.dtype not in common.GL_DTYPES:
        return False, f"needs bfloat16 or float16, found {q.dtype}"
    B, T, H, K = q.shape
    V = v.shape[-1]
    if K != V or K not in (64, 128):
        return False, f"needs K = V = 64 or 128, found K={K}, V={V}"
    if chunk != BT or T % BT:
        return False, f"needs chunks of {BT} and T a multiple of them, found {chunk} and {T}"
    if B * T // BT * H < MIN_CHUNKS:
        return False, f"needs {MIN_CHUNKS} chunk programs or more, found {B * T // BT * H}"
    if any(not x.is_contiguous() or x.data_ptr() % 16 for x in tensors):
        return False, "needs contiguous tensors on 16-byte boundaries"
    return True, ""


def _d2(x: torch.Tensor, rows: int, cols: int) -> TensorDescriptor:
    """``[..., C]`` x (contiguous) viewed as ``[numel / C', C']`` with C' its last two
    dimensions' product for 4-d token tensors, tiles of rows x cols."""
    width = x.shape[-1] * (x.shape[-2] if x.dim() == 4 else 1)
    lay = common.tile_layout(rows, cols, x.dtype)
    return TensorDescriptor(x, [x.numel() // width, width], [width, 1], [rows, cols], lay)


def producer_descs(q, k, v, ai, do, vn, dvn, hs, dhs, op: str):
    """The nine tensor descriptors `_producer` copies from (chunk states hs, dhs ``[NC, H, K,
    V]`` seen as rows of V) and the sizes the kernels take: (descs, T, NT, NC, H, K, V)."""
    if not common.GLUON:
        raise RuntimeError(f"ncd.ops.delta_rule: the Gluon kernel of {op} needs Triton 3.6's Gluon")
    B, T, H, K = q.shape
    V = v.shape[-1]
    NT = T // BT
    NC = B * NT
    hs2 = hs.view(NC * H * K, V)
    dhs2 = dhs.view(NC * H * K, V)
    descs = (_d2(ai, BT, BT), _d2(q, BT, K), _d2(k, BT, K), _d2(do, BT, BV), _d2(vn, BT, BV),
             _d2(dvn, BT, BV), _d2(v, BT, BV), _d2(hs2, K, BV), _d2(dhs2, K, BV))  # fmt: skip
    return descs, T, NT, NC, H, K, V


def run(q, k, v, ai, beta, do, vn, dvn, hs, dhs, dq, dk, dv, dbeta, scale, programs):
    """dq, dk, dv, dbeta (written into the given tensors) of the ungated delta rule from the
    scans' V', dV', chunk states hs and their gradients dhs ``[NC, H, K, V]`` and the kept T
    (``ai`` ``[B, T, H, BT]``); inputs that `supports` takes, all contiguous."""
    descs, T, NT, NC, H, K, V = producer_descs(q, k, v, ai, do, vn, dvn, hs, dhs, OP)
    launch_compiled(
        _bwd_chunk_ws_kernel, (min(programs, NC * H),),
        (*descs, beta, dq, dk, dv, dbeta, T, NT, H, NC, scale),
        dict(K_DIM=K, V_DIM=V, NUM_STAGES=NUM_STAGES, PRODUCER_REGS=PRODUCER_REGS, num_warps=8),
    )  # fmt: skip
    return True
