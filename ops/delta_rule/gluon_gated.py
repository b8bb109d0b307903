"""The gated delta rule's backward chunk kernel on Hopper (sm_90) in Gluon, the chunk's work
split between two consumer warpgroups.

The arithmetic of chunk.py's `_bwd_chunk_kernel` with decays (README.md, "Backward"). The
ungated rule's Gluon kernel (`gluon.py`) runs one 8-warp consumer whose warpgroups each hold
half the columns of every accumulator; the gated tail (the decay tile, the row sums of
dP * P and dA * A, dg's sums) does not fit beside them there (about 500 bytes spilled, and
1.47x slower than the Triton kernel). Here each accumulator lives whole in one warpgroup:

- the query side (the default partition, 4 warps) forms dB_u = T^T dV' and hands it to the
  key side through shared memory, and holds dq (`dO S^T`), dp (`dO V'^T`) and da
  (`dB_u V'^T`): dv, dq, the decayed `dps` and `dab + dab^T` (both handed on through shared
  memory), dbeta and dg;
- the key side (4 warps) holds dks (`V' dS'^T`) and db_w (`dB_u S^T`) and sums `<S, dS'>`:
  the row terms t_w, ks and the pairs of dP * P as keys (handed over as rows in shared
  memory), and dk, with `dps^T Q` and `(dab + dab^T) K` from the query side's tiles;
- the producer (one warp, `gluon._producer`) copies each chunk's tiles in by TMA as in
  gluon.py; both consumers release the value ring and q, k, the query side T.

dG's pair terms of dP * P are taken from the products both sides run anyway:
rowsum(dP * P) = rowsum(Q * (dps K)) (with the output's read of the state, as q . dq) and
colsum(dP * P) = rowsum(K * (dps^T Q)) (as k . dk after that product less k . dk before), both
from the same rounded dps, where the Triton kernel multiplies the float32 dps with a `Q K^T`
product: one product and two 64 x 64 tiles fewer here, dg rounded as dq and dk are.

Inputs it takes: those of `gluon.supports`, gated.
"""

from __future__ import annotations

from .. import _gluon as common
from .._backend import launch_compiled
from .._gluon import fence_async_shared, gl, gluon, mbarrier, warpgroup_mma, warpgroup_mma_wait
from .gluon import NUM_STAGES, PRODUCER_REGS, producer_descs

CONSUMER_REGS = 240  # registers a thread of each consumer warpgroup (setmaxnreg)
OP = "gated_delta_rule backward chunk"

if common.GLUON:
    from .gluon import _producer, _producer_barriers, _producer_buffers, _tile

    @gluon.jit
    def _query_side(t_s, q_s, k_s, do_s, vn_s, dvn_s, v_s, hs_s, dbu_s, dps_s, dab_s, vec_s,
                    t_ready, t_empty, qk_ready, qk_empty, ready, empty, dbu_ready, dbu_empty,
                    dps_ready, dab_ready, scr_empty, vec_ready, vec_empty, BETA, GATE, DQ, DV,
                    DBETA, DG, T, NT, H, NC, scale, K_DIM: gl.constexpr, V_DIM: gl.constexpr,
                    NUM_STAGES: gl.constexpr):  # fmt: skip
        """dB_u, dv, dq, dbeta and dg of each chunk (module docstring); one warpgroup."""
        BTC: gl.constexpr = t_s.shape[0]
        BVC: gl.constexpr = do_s.shape[2]
        NV: gl.constexpr = V_DIM // BVC
        dtype: gl.constexpr = t_s.dtype
        lk: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, K_DIM, 16]
        )
        lt: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BTC, 16]
        )
        ak: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=lk, k_width=2)
        row_t: gl.constexpr = gl.SliceLayout(1, lt)
        col_t: gl.constexpr = gl.SliceLayout(0, lt)
        rows_t = gl.arange(0, BTC, layout=row_t)
        cols_t = gl.arange(0, BTC, layout=col_t)
        rows_k = gl.arange(0, BTC, layout=gl.SliceLayout(1, lk))
        cols_k = gl.arange(0, K_DIM, layout=gl.SliceLayout(0, lk))
        causal = gl.expand_dims(rows_t, 1) >= gl.expand_dims(cols_t, 0)
        strict = gl.expand_dims(rows_t, 1) > gl.expand_dims(cols_t, 0)
        for tile in range(gl.program_id(0), NC * H, gl.num_programs(0)):
            it = (tile - gl.program_id(0)) // gl.num_programs(0)  # this program's chunk count
            row0, h, c = _tile(tile, NC, NT, T, BTC)
            ph = it & 1
            tok_t = (row0 + rows_t).to(gl.int64) * H + h  # [BT] token x head, lt rows
            beta = gl.load(BETA + tok_t).to(gl.float32)
            dq = gl.zeros([BTC, K_DIM], gl.float32, lk)  # dO S^T
            dp = gl.zeros([BTC, BTC], gl.float32, lt)  # dO V'^T
            da = gl.zeros([BTC, BTC], gl.float32, lt)  # dB_u V'^T
            dbeta = gl.zeros([BTC], gl.float32, row_t)
            mbarrier.wait(t_ready, ph)
            for j in gl.static_range(NV):
                n = it * NV + j
                s = n % NUM_STAGES
                mbarrier.wait(ready.index(s), (n // NUM_STAGES) & 1)
                do_b = do_s.index(s)
                vn_b = vn_s.index(s)
                zero = gl.zeros([BTC, BVC], gl.float32, lt)
                db_u = warpgroup_mma(t_s.permute((1, 0)), dvn_s.index(s), zero, use_acc=False,
                                     is_async=True)  # fmt: skip
                dq = warpgroup_mma(do_b, hs_s.index(s).permute((1, 0)), dq, is_async=True)
                dp = warpgroup_mma(do_b, vn_b.permute((1, 0)), dp, is_async=True)
                db_u = warpgroup_mma_wait(num_outstanding=2, deps=(db_u,))
                db_u16 = db_u.to(dtype)
                mbarrier.wait(dbu_empty, (n & 1) ^ 1)  # the key side is done with the last
                dbu_s.store(db_u16)
                fence_async_shared()
                gl.thread_barrier()
                mbarrier.arrive(dbu_ready, count=1)
                da = warpgroup_mma(dbu_s, vn_b.permute((1, 0)), da, is_async=True)
                v = v_s.index(s).load(lt).to(gl.float32)
                dbeta += gl.sum(db_u * v, 1)
                dv_ptr = DV + gl.expand_dims(tok_t * V_DIM + j * BVC, 1) + gl.expand_dims(cols_t, 0)
                gl.store(dv_ptr, (db_u * gl.expand_dims(beta, 1)).to(dtype))
                dq, dp, da = warpgroup_mma_wait(num_outstanding=0, deps=(dq, dp, da))
                gl.thread_barrier()  # every warp done with stage s
                mbarrier.arrive(empty.index(s), count=1)
            gl.thread_barrier()
            mbarrier.arrive(t_empty, count=1)
            mbarrier.wait(qk_ready, ph)
            # the in-chunk cumulative log decays (head-major [H, B * T])
            g_base = GATE + h.to(gl.int64) * NC * BTC + row0
            G = gl.load(g_base + rows_t)
            Gc = gl.load(g_base + cols_t)
            e = gl.exp(gl.where(causal, gl.expand_dims(G, 1) - gl.expand_dims(Gc, 0), 0.0))
            # the cotangent of Q K^T, and dA * E (E's diagonal is 1, left out by strict)
            dps = gl.where(causal, dp * e * scale, 0.0).to(dtype)
            da = gl.where(strict, -da * e, 0.0)
            gamma = gl.exp(gl.load(g_base + rows_k))
            dq = dq * gl.expand_dims(gamma * scale, 1)
            mbarrier.wait(scr_empty, ph ^ 1)  # the key side is done with the last chunk's tiles
            dps_s.store(dps)
            fence_async_shared()
            gl.thread_barrier()
            mbarrier.arrive(dps_ready, count=1)
            dq = warpgroup_mma(gl.convert_layout(dps, ak), k_s, dq)
            # dG's terms by rows: the output's read of the state, diag(gamma) Q S, and the
            # pairs of dP * P as queries (module docstring)
            q = q_s.load(lk).to(gl.float32)
            d_g = gl.convert_layout(gl.sum(q * dq, 1), row_t)
            tok_k = (row0 + rows_k).to(gl.int64) * H + h
            q_ptr = gl.expand_dims(tok_k * K_DIM, 1) + gl.expand_dims(cols_k, 0)
            gl.store(DQ + q_ptr, dq.to(dtype))
            dab = da * gl.expand_dims(beta, 1)
            dab_s.store(dab.to(dtype))
            gl.thread_barrier()
            dab_t = dab_s.permute((1, 0)).load(lt).to(gl.float32)
            gl.thread_barrier()  # every warp has read dab^T
            # dab + dab^T for the key side's one product: dab is strictly lower
            dab_s.store((dab + dab_t).to(dtype))
            fence_async_shared()
            gl.thread_barrier()
            mbarrier.arrive(dab_ready, count=1)
            kk = warpgroup_mma(k_s, k_s.permute((1, 0)), gl.zeros([BTC, BTC], gl.float32, lt),
                               use_acc=False)  # fmt: skip
            dakk = da * kk
            dbeta += gl.sum(dakk, 1)
            m = dakk * gl.expand_dims(beta, 1)  # dA * A
            d_g += gl.sum(m, 1)
            d_gc = -gl.sum(m, 0)  # by columns
            gl.thread_barrier()  # every warp done with q and k
            mbarrier.arrive(qk_empty, count=1)
            mbarrier.wait(vec_ready, ph)  # the key side's row terms
            dbeta += vec_s.slice(0 * BTC, BTC).load(row_t)
            gl.store(DBETA + tok_t, dbeta.to(DBETA.dtype.element_ty))
            # dg_i = sum_{j >= i} dG_j + sum_{j < i} ks_j (-ks at each token and their total
            # at the chunk's last, summed from the end), as one masked row sum
            d_gc += gl.convert_layout(d_g, col_t) + vec_s.slice(1 * BTC, BTC).load(col_t)
            ks = vec_s.slice(2 * BTC, BTC).load(col_t)
            after = gl.expand_dims(cols_t, 0) >= gl.expand_dims(rows_t, 1)
            terms = gl.where(after, gl.expand_dims(d_gc, 0), gl.expand_dims(ks, 0))
            gl.store(DG + tok_t, gl.sum(terms, 1))
            gl.thread_barrier()  # every warp has read the rows
            mbarrier.arrive(vec_empty, count=1)

    @gluon.jit
    def _key_side(q_s, k_s, vn_s, dhs_s, hs_s, dbu_s, dps_s, dab_s, vec_s, qk_ready, qk_empty,
                  ready, empty, dbu_ready, dbu_empty, dps_ready, dab_ready, scr_empty,
                  vec_ready, vec_empty, BETA, GATE, DK, T, NT, H, NC, K_DIM: gl.constexpr,
                  V_DIM: gl.constexpr, NUM_STAGES: gl.constexpr):  # fmt: skip
        """dk and the row terms of each chunk (module docstring); one warpgroup."""
        BTC: gl.constexpr = q_s.shape[0]
        BVC: gl.constexpr = vn_s.shape[2]
        NV: gl.constexpr = V_DIM // BVC
        dtype: gl.constexpr = q_s.dtype
        lk: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, K_DIM, 16]
        )
        ls: gl.constexpr = gl.BlockedLayout([1, 4], [2, 16], [4, 1], [1, 0])  # [16, BV] tiles
        row_k: gl.constexpr = gl.SliceLayout(1, lk)
        rows_k = gl.arange(0, BTC, layout=row_k)
        cols_k = gl.arange(0, K_DIM, layout=gl.SliceLayout(0, lk))
        for tile in range(gl.program_id(0), NC * H, gl.num_programs(0)):
            it = (tile - gl.program_id(0)) // gl.num_programs(0)
            row0, h, c = _tile(tile, NC, NT, T, BTC)
            ph = it & 1
            tok_k = (row0 + rows_k).to(gl.int64) * H + h
            dks = gl.zeros([BTC, K_DIM], gl.float32, lk)  # V' dS'^T
            db_w = gl.zeros([BTC, K_DIM], gl.float32, lk)  # dB_u S^T
            sd = gl.zeros([16, BVC], gl.float32, ls)  # <S, dS'> by elements, summed after
            for j in gl.static_range(NV):
                n = it * NV + j
                s = n % NUM_STAGES
                mbarrier.wait(ready.index(s), (n // NUM_STAGES) & 1)
                st_b = hs_s.index(s).permute((1, 0))  # S^T: [BV, K]
                dks = warpgroup_mma(vn_s.index(s), dhs_s.index(s).permute((1, 0)), dks,
                                    is_async=True)  # fmt: skip
                for r in gl.static_range(0, K_DIM, 16):  # slices of 16 key rows: few registers
                    a = hs_s.index(s).slice(r, 16).load(ls).to(gl.float32)
                    b = dhs_s.index(s).slice(r, 16).load(ls).to(gl.float32)
                    sd += a * b
                mbarrier.wait(dbu_ready, n & 1)
                db_w = warpgroup_mma(dbu_s, st_b, db_w, is_async=True)
                dks, db_w = warpgroup_mma_wait(num_outstanding=0, deps=(dks, db_w))
                gl.thread_barrier()  # every warp done with dB_u and stage s
                mbarrier.arrive(dbu_empty, count=1)
                mbarrier.arrive(empty.index(s), count=1)
            mbarrier.wait(qk_ready, ph)
            beta = gl.load(BETA + tok_k).to(gl.float32)
            k = k_s.load(lk).to(gl.float32)
            t_w = -gl.sum(db_w * k, 1)
            g_base = GATE + h.to(gl.int64) * NC * BTC + row0
            G = gl.load(g_base + rows_k)
            g_last = gl.load(g_base + BTC - 1)
            gamma = gl.exp(G)
            dks = dks * gl.expand_dims(gl.exp(g_last - G), 1)
            ks = gl.sum(k * dks, 1)  # keys decayed to the chunk's end
            bw = beta * gamma
            dbeta = t_w * gamma
            # W's gamma, and the state's decay over the chunk on its last token
            sd_all = gl.sum(gl.sum(sd, 1), 0)
            d_g = t_w * bw + gl.where(rows_k == BTC - 1, gl.exp(g_last) * sd_all, 0.0)
            dk = dks - db_w * gl.expand_dims(bw, 1)
            mbarrier.wait(dps_ready, ph)
            # the pairs of dP * P as keys: k . (dps^T Q), as k . dk after less before
            k = k_s.load(lk).to(gl.float32)
            d_g += gl.sum(k * dk, 1)
            dk = warpgroup_mma(dps_s.permute((1, 0)), q_s, dk)
            d_g -= gl.sum(k * dk, 1)
            mbarrier.wait(vec_empty, ph ^ 1)  # the query side has read the last chunk's rows
            vec_s.slice(0 * BTC, BTC).store(dbeta)
            vec_s.slice(1 * BTC, BTC).store(d_g)
            vec_s.slice(2 * BTC, BTC).store(ks)
            gl.thread_barrier()
            mbarrier.arrive(vec_ready, count=1)
            mbarrier.wait(dab_ready, ph)
            dk = warpgroup_mma(dab_s, k_s, dk)
            gl.thread_barrier()  # every warp done with the query side's tiles, q and k
            mbarrier.arrive(scr_empty, count=1)
            mbarrier.arrive(qk_empty, count=1)
            k_ptr = gl.expand_dims(tok_k * K_DIM, 1) + gl.expand_dims(cols_k, 0)
            gl.store(DK + k_ptr, dk.to(dtype))

    @gluon.jit
    def _bwd_chunk_gated_kernel(ai_desc, q_desc, k_desc, do_desc, vn_desc, dvn_desc, v_desc,
                                hs_desc, dhs_desc, BETA, GATE, DQ, DK, DV, DBETA, DG, T, NT, H,
                                NC, scale, K_DIM: gl.constexpr, V_DIM: gl.constexpr,
                                NUM_STAGES: gl.constexpr,
                                CONSUMER_REGS: gl.constexpr,
                                PRODUCER_REGS: gl.constexpr):  # fmt: skip
        """Persistent: program p takes chunk programs p, p + grid, ... (`gluon._tile`)."""
        BTC: gl.constexpr = ai_desc.block_type.shape[0]
        BVC: gl.constexpr = do_desc.block_type.shape[1]
        dtype: gl.constexpr = q_desc.dtype
        t_s, q_s, k_s, do_s, vn_s, dvn_s, v_s, hs_s, dhs_s = _producer_buffers(
            ai_desc, q_desc, k_desc, do_desc, vn_desc, dvn_desc, v_desc, hs_desc, dhs_desc,
            K_DIM, NUM_STAGES)  # fmt: skip
        # the tiles one consumer hands the other: dB_u (per value block), dps and dab + dab^T
        dbu_s = gl.allocate_shared_memory(dtype, [BTC, BVC], do_desc.layout)
        dps_s = gl.allocate_shared_memory(dtype, [BTC, BTC], ai_desc.layout)
        dab_s = gl.allocate_shared_memory(dtype, [BTC, BTC], ai_desc.layout)
        vec_layout: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [0])
        vec_s = gl.allocate_shared_memory(gl.float32, [4 * BTC], vec_layout)  # t_w terms, ks
        # both consumers release q, k and the ring's stages; only the query side reads T
        t_ready, t_empty, qk_ready, qk_empty, ready, empty = _producer_barriers(NUM_STAGES, 2)
        hand = gl.allocate_shared_memory(gl.int64, [7, 1], mbarrier.MBarrierLayout())
        for i in gl.static_range(7):  # between the consumers
            mbarrier.init(hand.index(i), count=1)
        fence_async_shared()
        dbu_ready, dbu_empty = hand.index(0), hand.index(1)
        dps_ready, dab_ready, scr_empty = hand.index(2), hand.index(3), hand.index(4)
        vec_ready, vec_empty = hand.index(5), hand.index(6)
        gl.warp_specialize(
            [
                (_query_side, (t_s, q_s, k_s, do_s, vn_s, dvn_s, v_s, hs_s, dbu_s, dps_s, dab_s,
                               vec_s, t_ready, t_empty, qk_ready, qk_empty, ready, empty,
                               dbu_ready, dbu_empty, dps_ready, dab_ready, scr_empty, vec_ready,
                               vec_empty, BETA, GATE, DQ, DV, DBETA, DG, T, NT, H, NC, scale,
                               K_DIM, V_DIM, NUM_STAGES)),
                (_key_side, (q_s, k_s, vn_s, dhs_s, hs_s, dbu_s, dps_s, dab_s, vec_s, qk_ready,
                             qk_empty, ready, empty, dbu_ready, dbu_empty, dps_ready, dab_ready,
                             scr_empty, vec_ready, vec_empty, BETA, GATE, DK, T, NT, H, NC,
                             K_DIM, V_DIM, NUM_STAGES)),
                (_producer, (ai_desc, q_desc, k_desc, do_desc, vn_desc, dvn_desc, v_desc,
                             hs_desc, dhs_desc, t_s, q_s, k_s, do_s, vn_s, dvn_s, v_s, hs_s,
                             dhs_s, t_ready, t_empty, qk_ready, qk_empty, ready, empty, T, NT,
                             H, NC, K_DIM, V_DIM, NUM_STAGES)),
            ],
            [4, 1],
            [CONSUMER_REGS, PRODUCER_REGS],
        )  # fmt: skip


def run(q, k, v, ai, beta, do, vn, dvn, hs, dhs, dq, dk, dv, dbeta, g, dg, scale, programs):
    """dq, dk, dv, dbeta and dg of the gated delta rule written into the given tensors, from
    what `gluon.run` takes and g, the in-chunk cumulative log decays (float32, head-major
    ``[H, B * T]``)."""
    descs, T, NT, NC, H, K, V = producer_descs(q, k, v, ai, do, vn, dvn, hs, dhs, OP)
    launch_compiled(
        _bwd_chunk_gated_kernel, (min(programs, NC * H),),
        (*descs, beta, g, dq, dk, dv, dbeta, dg, T, NT, H, NC, scale),
        dict(K_DIM=K, V_DIM=V, NUM_STAGES=NUM_STAGES,
             CONSUMER_REGS=CONSUMER_REGS, PRODUCER_REGS=PRODUCER_REGS, num_warps=4),
    )  # fmt: skip
    return True
