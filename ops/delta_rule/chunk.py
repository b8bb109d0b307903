"""Chunked delta rule and gated delta rule (WY / UT-transform form): kernels, wrappers,
autograd Function and the public functions.

One kernel set serves both rules: ``HAS_G`` is a compile-time switch, so the ungated rule
carries no decay arithmetic. Chunks of ``BT`` tokens (README.md has the maths):

Gated, a pre-pass first: _chunk_cumsum writes the gates' in-chunk cumulative sums (float32,
head-major), which every kernel loads and the backward keeps in the gates' place.
Forward (two launches):
    _prep_kernel      chunk-parallel: A = strictly_lower(diag(beta) (K K^T * E)), its unit
                      lower-triangular inverse T by tile products in registers, T written,
                      -W = -T diag(beta gamma) K and U = T diag(beta) V written.
    _scan_fwd_kernel  one program per (value block, sequence x head) walks its chunks holding
                      the state S (K x BV, float32) in registers: V' = U - W S, the output
                      O = scale diag(gamma) Q S + (scale Q K^T * E * causal) V', S updated.
Backward (three launches, kept from the forward: its inputs, T and -W, or V' in place of -W
under config delta_keep_values / gated_delta_keep_values):
    _scan_fwd_kernel  in STATES mode, U formed from T: writes the state entering each chunk
                      and V' (once). With config delta_keep_states the forward's scan writes them
                      beside the output and the backward skips this launch; with
                      delta_keep_values it writes V', kept in place of -W, and this launch
                      reads it (LOAD_VN): one product a chunk, the state update.
    _scan_bwd_kernel  the reverse scan of dS = dL/dS: writes dS leaving each chunk and dV'
                      (with delta_keep_values W^T dV' formed from T: W_FROM_T).
    _bwd_chunk_kernel chunk-parallel: dq, dk, dv, dbeta, dg through the WY representation.
With config delta_prepared_qk the prepare kernel also writes each chunk's scale (Q K^T * E *
causal) and, gated, the decayed keys, which the forward's scan reads (PREPARED) instead of
forming them per value block; the backward writes them again in one more chunk-parallel
launch (_qk_kernel) for its two scans.
"""

import math

import torch

from .. import _backend
from .. import _gluon as gluon_common
from .._backend import (
    autocast_inputs,
    cdiv,
    check,
    check_gate,
    check_sequences,
    check_state,
    default_scale,
    dot_precision,
    group_sum,
    interpreting,
    launch,
    per_head_grad,
    pow2,
    replica_stride,
    sm_count,
    use_triton,
)
from .._kernels import FACTOR_BOUND_LOG2, GATE_FLOOR, all_chunks_within
from .._traced import opaque, tracing
from .._triton import tl, triton
from ..config import settings as _settings
from . import gluon as gluon_chunk
from . import gluon_gated
from .chunked import gated_delta_rule_chunked
from .cost import MIN_GPU_WIDTH  # narrower heads: the chunked form on CUDA
from .reference import l2norm

# ---------------------------------------------------------------------------------------------
# Configurations (retune on the GPU here). CHUNK is the chunk length of every kernel of a call;
# BV the value-block width of each launch (the prepare kernel's: the column blocks in which it
# reads keys and values for K K^T, W and U).
CHUNK = 64
# The prepare kernel at 168 registers too (maxnreg), three programs an SM instead of two, for
# some spilled bytes outside its products (README.md); the tuner chooses.
PREP_CONFIGS = [
    triton.Config({"BV": 64}, num_warps=4, num_stages=2),
    triton.Config({"BV": 64}, num_warps=4, num_stages=1, maxnreg=168),
    triton.Config({"BV": 64}, num_warps=4, num_stages=2, maxnreg=168),
]
FWD_CONFIGS = [
    triton.Config({"BV": 64}, num_warps=4, num_stages=2),
    triton.Config({"BV": 32}, num_warps=4, num_stages=2),
]
# The products of the prepare kernel's inverse of I + A, as split operands (_dot3): bfloat16
# halves for bfloat16 inputs (T is rounded to bfloat16 after; twice tf32's product rate),
# tf32 halves otherwise (float32 keeps T in float32; float16 halves would overflow on nearly
# parallel keys, whose inverse's series has large terms).
INVERSE_SPLIT = {torch.bfloat16: "bf16", torch.float16: "tf32", torch.float32: "tf32"}
# The forward's scan forms U = T diag(beta) V itself (True) or reads U written by the prepare
# kernel (False); the backward's scan always forms it (U is not kept).
FWD_FORM_U = False
# The scan's configurations when it reads the prepare kernel's Q K^T (config
# delta_prepared_qk): its loop then needs fewer registers. Two stages only: at one stage
# (BV = 32 and 16) the backward's states scan gave wrong states on the H200 (dq, dk wrong)
# and, tuned, an illegal memory access, where the interpreter finds every access in bounds.
FWD_PREPARED_CONFIGS = [
    triton.Config({"BV": 32}, num_warps=4, num_stages=2),
    triton.Config({"BV": 64}, num_warps=4, num_stages=2),
    triton.Config({"BV": 64}, num_warps=8, num_stages=2),
]
# _qk_kernel (config delta_prepared_qk): chunk-parallel and light, BV the key columns a step.
QK_CONFIGS = [
    triton.Config({"BV": 64}, num_warps=4, num_stages=2),
    triton.Config({"BV": 32}, num_warps=4, num_stages=2),
]
BWD_SCAN_CONFIGS = [
    triton.Config({"BV": 64}, num_warps=4, num_stages=2),
    triton.Config({"BV": 32}, num_warps=4, num_stages=2),
    triton.Config({"BV": 64}, num_warps=8, num_stages=2),
    triton.Config({"BV": 32}, num_warps=8, num_stages=2),
]
# The reverse scan reading the prepared products: 8 warps only (of the 4-warp entries, which
# ran beside the faulty one-stage forward entries, only BV = 64 has been checked alone).
BWD_SCAN_PREPARED_CONFIGS = BWD_SCAN_CONFIGS[2:]
BWD_CHUNK_CONFIGS = [
    triton.Config({"BV": 64}, num_warps=8, num_stages=2),
    triton.Config({"BV": 32}, num_warps=8, num_stages=2),
    triton.Config({"BV": 64}, num_warps=8, num_stages=1),
]
# BV = 32 at one stage is not offered: the code Triton 3.6 compiles for sm_90 from it makes an
# illegal memory access on the H200 for the ungated rule, where the interpreter (the kernel's
# source, checked access by access against its buffers) and the other three configurations
# are right (README.md, "Backward").
# Config delta_checkpoint_states: the forward keeps the state entering every CHECKPOINT_CHUNKS-th
# chunk (float32), and the backward's states scan runs those segments in parallel.
CHECKPOINT_CHUNKS = 16
# Under the interpreter: small chunks and blocks (the interpreter's cost is per operation).
INTERPRET_CHUNK = 16
INTERPRET_CHECKPOINT = 2
INTERPRET_CONFIG = {"BV": 16}
KEY = ["H", "K_DIM", "V_DIM", "HAS_G", "VARLEN"]


@triton.jit
def _sequence(CU, COFF, i_n, T, NT, VARLEN: tl.constexpr):
    """Sequence i_n: its first token's flat index (over B*T), its length, its first chunk."""
    if VARLEN:
        bos = tl.load(CU + i_n).to(tl.int64)
        L = (tl.load(CU + i_n + 1).to(tl.int64) - bos).to(tl.int32)
        c0 = tl.load(COFF + i_n)
    else:
        bos = i_n.to(tl.int64) * T
        L = T
        c0 = i_n * NT
    return bos, L, c0


@triton.jit
def _chunk(CU, COFF, CHUNKS, c, T, NT, VARLEN: tl.constexpr):
    """Chunk c (sequence-major order): its sequence's first token and length, its index there."""
    if VARLEN:
        i_n = tl.load(CHUNKS + 2 * c)
        i_t = tl.load(CHUNKS + 2 * c + 1)
    else:
        i_n = c // NT
        i_t = c % NT
    bos, L, _ = _sequence(CU, COFF, i_n, T, NT, VARLEN)
    return bos, L, i_t


@triton.jit
def _qk_rows(tok, i_h, H, GROUP: tl.constexpr):
    """The rows of q and k (over the flat [B * T] tokens times their heads) that value head
    i_h reads at tokens tok: head i_h // GROUP of q and k's H // GROUP heads (grouped heads:
    GROUP value heads read one head of q and k), its own head when GROUP is 1."""
    rows = tok * H + i_h
    if GROUP > 1:
        rows = tok * (H // GROUP) + i_h // GROUP
    return rows


@triton.jit
def _chunk_cumsum(
    GATE, GC, CU, COFF, CHUNKS, T, NT, H, TT, BT: tl.constexpr, VARLEN: tl.constexpr
):  # fmt: skip
    """GC [H, B * T] float32, head-major so that a chunk's values are contiguous: the log
    decays' (GATE [B, T, H]) cumulative sums within each chunk. One program per (chunk, head).
    """
    c = tl.program_id(0)
    i_h = tl.program_id(1)
    bos, L, i_t = _chunk(CU, COFF, CHUNKS, c, T, NT, VARLEN)
    rows = i_t * BT + tl.arange(0, BT)
    r_ok = rows < L
    g = tl.load(GATE + (bos + rows) * H + i_h, mask=r_ok, other=0.0).to(tl.float32)
    g = tl.maximum(g, GATE_FLOOR)
    tl.store(GC + i_h.to(tl.int64) * TT + bos + rows, tl.cumsum(g, 0), mask=r_ok)


@triton.jit
def _decays(GC, bos, i_h, TT, L, i_t, BT: tl.constexpr):
    """Chunk i_t's cumulative log decays G from the pre-pass twice (once for the rows i of
    G_i - G_j, once for its columns j: two loads instead of a conversion between the two
    layouts), exp(G), and G at the chunk's last valid token. Rows past the sequence's end read
    G at its last token (only the last chunk has such rows), so no load is masked."""
    rows = i_t * BT + tl.arange(0, BT)
    base = GC + i_h.to(tl.int64) * TT + bos
    ptrs = base + tl.minimum(rows, L - 1)
    G = tl.load(ptrs)
    g_last = tl.load(base + tl.minimum(i_t * BT + BT, L) - 1)
    return G, tl.load(ptrs), tl.exp(G), g_last


@triton.jit
def _tf32_split(x):
    """x = hi + lo with hi x rounded to tf32 (10 mantissa bits, to nearest, ties away from
    zero as cvt.rna) by integer arithmetic, lo the exact rest."""
    hi = ((x.to(tl.int32, bitcast=True) + 0x1000) & -8192).to(tl.float32, bitcast=True)
    return hi, x - hi


@triton.jit
def _dot3(x, y, acc, SPLIT: tl.constexpr):
    """acc + x y for float32 (BT, BT) tiles as three products of split operands (lo hi + hi lo
    + hi hi). SPLIT "tf32": tf32 halves, about float32's accuracy ("tf32x3" written out, so
    that the split operands are formed once per tile and no NaN guard is added); "bf16":
    bfloat16 halves, about 16 mantissa bits at twice tf32's product rate, for a result that is
    rounded to bfloat16 after (README.md, "Prepare")."""
    if SPLIT == "bf16":
        xh = x.to(tl.bfloat16)
        xl = (x - xh.to(tl.float32)).to(tl.bfloat16)
        yh = y.to(tl.bfloat16)
        yl = (y - yh.to(tl.float32)).to(tl.bfloat16)
        acc = tl.dot(xl, yh, acc)
        acc = tl.dot(xh, yl, acc)
        return tl.dot(xh, yh, acc)
    else:
        xh, xl = _tf32_split(x)
        yh, yl = _tf32_split(y)
        acc = tl.dot(xl, yh, acc, input_precision="tf32")
        acc = tl.dot(xh, yl, acc, input_precision="tf32")
        return tl.dot(xh, yh, acc, input_precision="tf32")


@triton.jit
def _unit_lower_inverse(a, BT: tl.constexpr, SPLIT: tl.constexpr):
    """(I + a)^{-1} for a strictly lower triangular (BT, BT) float32 tile, by products only,
    as the prepare kernel computes it. The 8 x 8 diagonal blocks a_d are nilpotent of order 8,
    so (I + a_d)^{-1} = (I - a_d)(I + a_d^2)(I + a_d^4) (four products, all blocks at once as
    one block-diagonal tile); with D that block-diagonal inverse and N = D (the blocks of a
    below the block diagonal), N is nilpotent of order BT / 8 and
    (I + a)^{-1} = (I + N)^{-1} D = prod_j (I + (-N)^(2^j)) D (six more products at BT = 64).
    Blocks of 8 keep the series' terms small (at most C(7, 3) times the entries' size) when
    keys are nearly parallel. Products as three products of split operands (_dot3)."""
    offs = tl.arange(0, BT)
    blk_r = offs[:, None] // 8
    blk_c = offs[None, :] // 8
    d = _block_diag_inverse(tl.where(blk_r == blk_c, a, 0.0), BT, SPLIT)
    return _below_inverse(d, tl.where(blk_r > blk_c, a, 0.0), BT, SPLIT)


@triton.jit
def _block_diag_inverse(a_d, BT: tl.constexpr, SPLIT: tl.constexpr):
    """D = (I + a_d)^{-1} = (I - a_d)(I + a_d^2)(I + a_d^4) for a_d the strictly lower 8 x 8
    diagonal blocks of a (BT, BT) tile (zero elsewhere): four products."""
    offs = tl.arange(0, BT)
    zero = tl.zeros([BT, BT], tl.float32)
    x = -a_d
    d = tl.where(offs[:, None] == offs[None, :], 1.0, 0.0) + x
    for _ in tl.static_range(2):
        x = _dot3(x, x, zero, SPLIT)
        d = _dot3(x, d, d, SPLIT)  # x d = d x (both polynomials in a_d)
    return d


@triton.jit
def _below_inverse(d, a_b, BT: tl.constexpr, SPLIT: tl.constexpr):
    """(I + a)^{-1} = (I + N)^{-1} D with D = _block_diag_inverse(a's diagonal blocks),
    a_b the blocks of a below them and N = D a_b (nilpotent of order BT / 8):
    prod_j (I + (-N)^(2^j)) D, products while (-N)^(2^j) is not zero."""
    offs = tl.arange(0, BT)
    zero = tl.zeros([BT, BT], tl.float32)
    x = -_dot3(d, a_b, zero, SPLIT)  # -N
    r = tl.where(offs[:, None] == offs[None, :], 1.0, 0.0) + x
    for j in tl.static_range(1, BT // 16 + 1):
        if (1 << j) < BT // 8:
            x = _dot3(x, x, zero, SPLIT)
            r = _dot3(x, r, r, SPLIT)  # x r = r x (both polynomials in N)
    return _dot3(r, d, zero, SPLIT)


@triton.jit
def _kkt(K, tok, i_h, H, r_ok, beta, G, Gc, keep, K_DIM: tl.constexpr, BK: tl.constexpr,
         BT: tl.constexpr, BV: tl.constexpr, HAS_G: tl.constexpr, DOT: tl.constexpr,
         GROUP: tl.constexpr):  # fmt: skip
    """A = diag(beta) (K K^T * E) where `keep` (a strictly lower (BT, BT) mask), else 0; the
    chunk's keys read BV columns at a time."""
    a = tl.zeros([BT, BT], tl.float32)
    for k0 in tl.static_range(0, BK, BV):
        offs_k = k0 + tl.arange(0, BV)
        kmask = r_ok[:, None] & (offs_k < K_DIM)[None, :]
        qp = _qk_rows(tok, i_h, H, GROUP)[:, None] * K_DIM + offs_k[None, :]
        k = tl.load(K + qp, mask=kmask, other=0.0)
        a = tl.dot(k, tl.trans(k), a, input_precision=DOT)
    if HAS_G:
        a = a * tl.exp(tl.where(keep, G[:, None] - Gc[None, :], 0.0))
    return tl.where(keep, a * beta[:, None], 0.0)


@triton.jit
def _store_qk(Q, K, AQK, KD, tok, i_h, H, r_ok, G, Gc, g_last, scale, K_DIM: tl.constexpr,
              BK: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr, HAS_G: tl.constexpr,
              DOT: tl.constexpr, GROUP: tl.constexpr):  # fmt: skip
    """One chunk's scale (Q K^T * E * causal) to AQK (one row of BT per token, in the inputs'
    dtype) and, gated, the decayed keys K * exp(g_last - G) to KD; keys and queries read BV
    columns at a time."""
    qk = tl.zeros([BT, BT], tl.float32)
    for k0 in tl.static_range(0, BK, BV):
        offs_k = k0 + tl.arange(0, BV)
        kmask = r_ok[:, None] & (offs_k < K_DIM)[None, :]
        kp = (tok * H + i_h)[:, None] * K_DIM + offs_k[None, :]
        qp = _qk_rows(tok, i_h, H, GROUP)[:, None] * K_DIM + offs_k[None, :]
        k = tl.load(K + qp, mask=kmask, other=0.0)
        q = tl.load(Q + qp, mask=kmask, other=0.0)
        qk = tl.dot(q, tl.trans(k), qk, input_precision=DOT)
        if HAS_G:
            kd = k * tl.exp(g_last - G)[:, None]
            tl.store(KD + kp, kd.to(KD.dtype.element_ty), mask=kmask)
    offs_t = tl.arange(0, BT)
    causal = offs_t[:, None] >= offs_t[None, :]
    qk = qk * scale
    if HAS_G:
        qk = qk * tl.exp(tl.where(causal, G[:, None] - Gc[None, :], 0.0))
    qk = tl.where(causal, qk, 0.0)
    tl.store(AQK + (tok * H + i_h)[:, None] * BT + offs_t[None, :], qk.to(AQK.dtype.element_ty),
             mask=r_ok[:, None])  # fmt: skip


@triton.jit
def _qk_kernel(
    Q, K, GATE, AQK, KD, CU, COFF, CHUNKS, T, NT, H, TT, scale,
    K_DIM: tl.constexpr, BK: tl.constexpr, BT: tl.constexpr, HAS_G: tl.constexpr,
    VARLEN: tl.constexpr, DOT: tl.constexpr, BV: tl.constexpr, GROUP: tl.constexpr,
):  # fmt: skip
    """The backward's chunk-parallel pass for the scans (config delta_prepared_qk): per chunk
    and head scale (Q K^T * E * causal) and, gated, the decayed keys, as the prepare kernel's
    STORE_QK writes them in the forward."""
    c = tl.program_id(0)
    i_h = tl.program_id(1)
    bos, L, i_t = _chunk(CU, COFF, CHUNKS, c, T, NT, VARLEN)
    rows = i_t * BT + tl.arange(0, BT)
    r_ok = rows < L
    tok = bos + rows
    G, Gc, g_last = r_ok, r_ok, 0.0  # not read when ungated
    if HAS_G:
        G, Gc, _, g_last = _decays(GATE, bos, i_h, TT, L, i_t, BT)
    _store_qk(Q, K, AQK, KD, tok, i_h, H, r_ok, G, Gc, g_last, scale, K_DIM, BK, BT, BV, HAS_G,
              DOT, GROUP)  # fmt: skip


@triton.jit
def _prep_kernel(
    Q, K, V, BETA, GATE, WN, U, AI, AQK, KD, CU, COFF, CHUNKS, T, NT, H, TT, scale,
    K_DIM: tl.constexpr, V_DIM: tl.constexpr, BK: tl.constexpr, BT: tl.constexpr,
    HAS_G: tl.constexpr, STORE_U: tl.constexpr, STORE_QK: tl.constexpr, VARLEN: tl.constexpr,
    DOT: tl.constexpr, SPLIT: tl.constexpr, BV: tl.constexpr, GROUP: tl.constexpr,
):  # fmt: skip
    """T = (I + A)^{-1} (written to AI, one row of the chunk's tile per token),
    WN = -W = -T diag(beta gamma) K and, with STORE_U, U = T diag(beta) V of one chunk and
    head. STORE_QK: also scale (Q K^T * E * causal) to AQK (rows as AI) and, gated, the
    decayed keys K * exp(g_last - G) to KD."""
    c = tl.program_id(0)
    i_h = tl.program_id(1)
    bos, L, i_t = _chunk(CU, COFF, CHUNKS, c, T, NT, VARLEN)
    offs_t = tl.arange(0, BT)
    rows = i_t * BT + offs_t
    r_ok = rows < L
    tok = bos + rows
    beta = tl.load(BETA + tok * H + i_h, mask=r_ok, other=0.0).to(tl.float32)
    bw = beta
    G, Gc, g_last = beta, beta, 0.0  # not read when ungated
    if HAS_G:
        G, Gc, gamma, g_last = _decays(GATE, bos, i_h, TT, L, i_t, BT)
        bw = beta * gamma
    # A twice (the 8 x 8 diagonal blocks, then the blocks below them) rather than held in
    # registers through the diagonal blocks' inverse
    blk_r = offs_t[:, None] // 8
    blk_c = offs_t[None, :] // 8
    diag = (blk_r == blk_c) & (offs_t[:, None] > offs_t[None, :])
    a_d = _kkt(K, tok, i_h, H, r_ok, beta, G, Gc, diag, K_DIM, BK, BT, BV, HAS_G, DOT, GROUP)
    d = _block_diag_inverse(a_d, BT, SPLIT)
    a_b = _kkt(K, tok, i_h, H, r_ok, beta, G, Gc, blk_r > blk_c, K_DIM, BK, BT, BV, HAS_G, DOT,
               GROUP)  # fmt: skip
    ai = _below_inverse(d, a_b, BT, SPLIT)
    ai_ptrs = AI + (tok * H + i_h)[:, None] * BT + offs_t[None, :]
    tl.store(ai_ptrs, ai.to(AI.dtype.element_ty), mask=r_ok[:, None])
    # Ungated, the products' left operands are T diag(-beta) and T diag(beta): T's columns
    # scaled in float32 and rounded once, k and v taken as read (one rounding fewer than
    # scaling k's or v's rows). Gated, T is rounded and the rows of k and v scaled.
    if HAS_G:
        aw = ai.to(K.dtype.element_ty)
        au = aw
    else:
        aw = (ai * -bw[None, :]).to(K.dtype.element_ty)
        if STORE_U:
            au = (ai * beta[None, :]).to(V.dtype.element_ty)
    # -W = T diag(-beta gamma) K, BV columns at a time (keys read again)
    for k0 in tl.static_range(0, BK, BV):
        offs_k = k0 + tl.arange(0, BV)
        kmask = r_ok[:, None] & (offs_k < K_DIM)[None, :]
        kp = (tok * H + i_h)[:, None] * K_DIM + offs_k[None, :]
        qp = _qk_rows(tok, i_h, H, GROUP)[:, None] * K_DIM + offs_k[None, :]
        k = tl.load(K + qp, mask=kmask, other=0.0)
        if HAS_G:
            k = (k * -bw[:, None]).to(k.dtype)
        w = tl.dot(aw, k, input_precision=DOT)
        tl.store(WN + kp, w.to(WN.dtype.element_ty), mask=kmask)
    if STORE_QK:
        _store_qk(Q, K, AQK, KD, tok, i_h, H, r_ok, G, Gc, g_last, scale, K_DIM, BK, BT, BV,
                  HAS_G, DOT, GROUP)  # fmt: skip
    if STORE_U:
        for v0 in range(0, V_DIM, BV):
            offs_v = v0 + tl.arange(0, BV)
            vmask = r_ok[:, None] & (offs_v < V_DIM)[None, :]
            vp = (tok * H + i_h)[:, None] * V_DIM + offs_v[None, :]
            v = tl.load(V + vp, mask=vmask, other=0.0)
            if HAS_G:
                v = (v * beta[:, None]).to(v.dtype)
            u = tl.dot(au, v, input_precision=DOT)
            tl.store(U + vp, u.to(U.dtype.element_ty), mask=vmask)


@triton.jit
def _scan_tiles(
    CU, COFF, T, NT, H, K_DIM: tl.constexpr, V_DIM: tl.constexpr, BK: tl.constexpr,
    BT: tl.constexpr, BV: tl.constexpr, VARLEN: tl.constexpr,
):  # fmt: skip
    """A scan program's (value block, sequence x head) and its tiles: (i_nh, i_h, bos, L, c0,
    the offsets of a chunk's tokens, key and value columns, the column masks, the state tile's
    offsets and mask)."""
    i_v = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_h = i_nh % H
    bos, L, c0 = _sequence(CU, COFF, i_nh // H, T, NT, VARLEN)
    offs_t = tl.arange(0, BT)
    offs_k = tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    k_ok = offs_k < K_DIM
    v_ok = offs_v < V_DIM
    s_off = offs_k[:, None] * V_DIM + offs_v[None, :]
    s_mask = k_ok[:, None] & v_ok[None, :]
    return i_nh, i_h, bos, L, c0, offs_t, offs_k, offs_v, k_ok, v_ok, s_off, s_mask


@triton.jit
def _scan_fwd_chunk(
    Q, K, V, WN, U, AI, BETA, GATE, O, HS, VN, AQK, KD, S, i, bos, L, c0, i_h, H, TT, scale,
    offs_t, offs_k, offs_v, k_ok, v_ok, s_off, s_mask, causal,
    K_DIM: tl.constexpr, V_DIM: tl.constexpr, BT: tl.constexpr, HAS_G: tl.constexpr,
    STATES: tl.constexpr, STORE_VN: tl.constexpr, LOAD_VN: tl.constexpr, OUTPUT: tl.constexpr,
    FORM_U: tl.constexpr, PREPARED: tl.constexpr, DOT: tl.constexpr, FACTORED: tl.constexpr,
    GROUP: tl.constexpr,
):  # fmt: skip
    """Chunk i of the state scan (_scan_fwd_kernel): returns S after it. FACTORED (gated):
    scale E_ij = a_i b_j (a = scale exp(G - G_last), b = exp(G_last - G)), so O =
    diag(a) (Q (gamma_C S) + (Q K^T * causal) diag(b) V') and S <- gamma_C S + K^T diag(b) V':
    no decay matrix, q and k as read."""
    rows = i * BT + offs_t
    r_ok = rows < L
    tok = bos + rows
    kmask = r_ok[:, None] & k_ok[None, :]
    vmask = r_ok[:, None] & v_ok[None, :]
    kp = (tok * H + i_h)[:, None] * K_DIM + offs_k[None, :]
    qp = _qk_rows(tok, i_h, H, GROUP)[:, None] * K_DIM + offs_k[None, :]
    vp = (tok * H + i_h)[:, None] * V_DIM + offs_v[None, :]
    if PREPARED and HAS_G:  # the decayed keys: all the scan needs of K
        k = tl.load(KD + kp, mask=kmask, other=0.0)
    else:
        k = tl.load(K + qp, mask=kmask, other=0.0)
    if LOAD_VN:
        v_in = tl.load(VN + vp, mask=vmask, other=0.0)
    else:
        wn = tl.load(WN + kp, mask=kmask, other=0.0)
        if FORM_U:
            ai = tl.load(
                AI + (tok * H + i_h)[:, None] * BT + offs_t[None, :], mask=r_ok[:, None],
                other=0.0,
            )  # fmt: skip
            beta = tl.load(BETA + tok * H + i_h, mask=r_ok, other=0.0)
            v = tl.load(V + vp, mask=vmask, other=0.0)
        else:
            u = tl.load(U + vp, mask=vmask, other=0.0)
    if STATES:
        hp = ((c0 + i).to(tl.int64) * H + i_h) * K_DIM * V_DIM
        tl.store(HS + hp + s_off, S.to(HS.dtype.element_ty), mask=s_mask)
    if not LOAD_VN:
        if FORM_U:  # V' = U - W S, both products into one accumulator
            if HAS_G:  # U = T (diag(beta) V)
                v_new = tl.dot(ai, (v * beta[:, None]).to(v.dtype), input_precision=DOT)
            else:  # U = (T diag(beta)) V, v as read
                aib = (ai.to(tl.float32) * beta[None, :]).to(ai.dtype)
                v_new = tl.dot(aib, v, input_precision=DOT)
            v_new = tl.dot(wn, S.to(wn.dtype), v_new, input_precision=DOT)
        else:
            v_new = tl.dot(wn, S.to(wn.dtype), u.to(tl.float32), input_precision=DOT)
        v_in = v_new.to(k.dtype)
        if STORE_VN:
            tl.store(VN + vp, v_in, mask=vmask)
    if HAS_G:
        G, Gc, gamma, g_last = _decays(GATE, bos, i_h, TT, L, i, BT)
    if FACTORED:  # scale E_ij = a_i b_j: a = scale exp(G - G_last), b = exp(G_last - G)
        if LOAD_VN:
            v_new = v_in.to(tl.float32)
        vb = (v_new * tl.exp(g_last - G)[:, None]).to(k.dtype)  # diag(b) V'
        S = S * tl.exp(g_last)
        if OUTPUT:
            q = tl.load(Q + qp, mask=kmask, other=0.0)
            qk = tl.where(causal, tl.dot(q, tl.trans(k), input_precision=DOT), 0.0).to(k.dtype)
            o = tl.dot(q, S.to(q.dtype), input_precision=DOT)
            o = tl.dot(qk, vb, o, input_precision=DOT)
            o = o * (tl.exp(G - g_last) * scale)[:, None]
            tl.store(O + vp, o.to(O.dtype.element_ty), mask=vmask)
        S = tl.dot(tl.trans(k), vb, S, input_precision=DOT)
    else:
        if OUTPUT:
            q = tl.load(Q + qp, mask=kmask, other=0.0)
            qs = tl.dot(q, S.to(q.dtype), input_precision=DOT)
            if HAS_G:
                qs = qs * (gamma * scale)[:, None]
            else:
                qs = qs * scale
            if PREPARED:
                qk = tl.load(
                    AQK + (tok * H + i_h)[:, None] * BT + offs_t[None, :], mask=r_ok[:, None],
                    other=0.0,
                )  # fmt: skip
            else:
                qk = tl.dot(q, tl.trans(k), input_precision=DOT) * scale
                if HAS_G:
                    qk = qk * tl.exp(tl.where(causal, G[:, None] - Gc[None, :], 0.0))
                qk = tl.where(causal, qk, 0.0).to(k.dtype)
            o = tl.dot(qk, v_in, qs, input_precision=DOT)
            tl.store(O + vp, o.to(O.dtype.element_ty), mask=vmask)
        if HAS_G:
            if PREPARED:
                kd = k
            else:
                kd = (k * tl.exp(g_last - G)[:, None]).to(k.dtype)
            S = tl.dot(tl.trans(kd), v_in, S * tl.exp(g_last), input_precision=DOT)
        else:
            S = tl.dot(tl.trans(k), v_in, S, input_precision=DOT)
    return S


@triton.jit
def _checkpoint_base(SOFF, i_n, i_h, NT, H, CKPT, K_DIM: tl.constexpr, V_DIM: tl.constexpr,
                     VARLEN: tl.constexpr):  # fmt: skip
    """Offset in CK ([segments, H, K, V]) of sequence i_n's first checkpoint of head i_h:
    packed sequences' first segments are in SOFF, else sequence n has cdiv(NT, CKPT)."""
    if VARLEN:
        seg0 = tl.load(SOFF + i_n).to(tl.int64)
    else:
        seg0 = i_n.to(tl.int64) * tl.cdiv(NT, CKPT)
    return (seg0 * H + i_h) * K_DIM * V_DIM


@triton.jit
def _scan_fwd_chunks(
    Q, K, V, WN, U, AI, BETA, GATE, O, HS, VN, AQK, KD, CK, ck_base, CKPT, S, i_first, i_end,
    bos, L, c0, i_h, H, TT, scale, offs_t, offs_k, offs_v, k_ok, v_ok, s_off, s_mask, causal,
    K_DIM: tl.constexpr, V_DIM: tl.constexpr, BT: tl.constexpr, HAS_G: tl.constexpr,
    STATES: tl.constexpr, STORE_VN: tl.constexpr, LOAD_VN: tl.constexpr, OUTPUT: tl.constexpr,
    FORM_U: tl.constexpr, PREPARED: tl.constexpr, DOT: tl.constexpr, FACTORED: tl.constexpr,
    STORE_CK: tl.constexpr, GROUP: tl.constexpr,
):  # fmt: skip
    """Chunks i_first .. i_end - 1 of the state scan: returns S after them. STORE_CK: in
    segments of CKPT chunks, each state entering one written to CK first (outside the loop
    over its chunks, which the compiler pipelines)."""
    if STORE_CK:
        ck = CK + ck_base
        seg_stride = (ck_base * 0 + H) * (K_DIM * V_DIM)  # int64, as ck_base
        for i_s in range(0, tl.cdiv(i_end, CKPT)):
            tl.store(ck + s_off, S, mask=s_mask)
            ck += seg_stride
            for i in range(i_s * CKPT, tl.minimum(i_s * CKPT + CKPT, i_end)):
                S = _scan_fwd_chunk(
                    Q, K, V, WN, U, AI, BETA, GATE, O, HS, VN, AQK, KD, S, i, bos, L, c0, i_h, H,
                    TT, scale, offs_t, offs_k, offs_v, k_ok, v_ok, s_off, s_mask, causal, K_DIM,
                    V_DIM, BT, HAS_G, STATES, STORE_VN, LOAD_VN, OUTPUT, FORM_U, PREPARED, DOT,
                    FACTORED, GROUP,
                )  # fmt: skip
    else:
        for i in range(i_first, i_end):
            S = _scan_fwd_chunk(
                Q, K, V, WN, U, AI, BETA, GATE, O, HS, VN, AQK, KD, S, i, bos, L, c0, i_h, H, TT,
                scale, offs_t, offs_k, offs_v, k_ok, v_ok, s_off, s_mask, causal, K_DIM, V_DIM,
                BT, HAS_G, STATES, STORE_VN, LOAD_VN, OUTPUT, FORM_U, PREPARED, DOT, FACTORED,
                GROUP,
            )  # fmt: skip
    return S


@triton.jit
def _scan_fwd_kernel(
    Q, K, V, WN, U, AI, BETA, GATE, O, S0, ST, HS, VN, AQK, KD, CK, SOFF, CU, COFF, T, NT, H, TT,
    scale, CKPT,
    K_DIM: tl.constexpr, V_DIM: tl.constexpr, BK: tl.constexpr, BT: tl.constexpr,
    HAS_G: tl.constexpr, USE_S0: tl.constexpr, STORE_ST: tl.constexpr, STATES: tl.constexpr,
    STORE_VN: tl.constexpr, LOAD_VN: tl.constexpr, OUTPUT: tl.constexpr, FORM_U: tl.constexpr,
    PREPARED: tl.constexpr, VARLEN: tl.constexpr, DOT: tl.constexpr, FACTOR: tl.constexpr,
    BOUND: tl.constexpr, STORE_CK: tl.constexpr, SEGMENTED: tl.constexpr, BV: tl.constexpr,
    GROUP: tl.constexpr,
):  # fmt: skip
    """The state scan: per chunk V' = U - W S (WN = -W), the output, S updated. FORM_U: U =
    T diag(beta) V formed here from T (AI), else read (U). LOAD_VN: V' read from VN (kept by
    the forward) instead, so a chunk costs only the state update. STATES: write the state
    entering each chunk (HS); STORE_VN: write V' (VN); OUTPUT: the output (and with STORE_ST
    the final state).
    PREPARED: scale (Q K^T * E * causal) read from AQK and, gated, the decayed keys from KD
    (the prepare kernel's STORE_QK) rather than formed here. FACTOR (gated): the factored decay
    (_scan_fwd_chunk); with OUTPUT in every chunk when every chunk's log decays sum to more
    than -BOUND, else the decay matrix in every chunk (one loop each: no branch per chunk).
    Checkpoints (config delta_checkpoint_states): STORE_CK writes the state entering every
    CKPT-th chunk (float32, CK [segments, H, K, V], SOFF the first segment of each packed
    sequence); SEGMENTED scans only the CKPT chunks of segment program_id(2), starting from
    its checkpoint, so that the backward's states scan runs segments in parallel."""
    i_nh, i_h, bos, L, c0, offs_t, offs_k, offs_v, k_ok, v_ok, s_off, s_mask = _scan_tiles(
        CU, COFF, T, NT, H, K_DIM, V_DIM, BK, BT, BV, VARLEN
    )
    n_chunks = tl.cdiv(L, BT)
    i_first = 0
    i_end = n_chunks
    ck_base = 0
    if STORE_CK or SEGMENTED:
        ck_base = _checkpoint_base(SOFF, i_nh // H, i_h, NT, H, CKPT, K_DIM, V_DIM, VARLEN)
    if SEGMENTED:
        i_s = tl.program_id(2)
        i_first = i_s * CKPT
        i_end = tl.minimum(i_first + CKPT, n_chunks)
        seg_ok = s_mask & (s_off * 0 + i_first < n_chunks)  # a sequence of fewer segments
        S = tl.load(CK + ck_base + i_s.to(tl.int64) * H * K_DIM * V_DIM + s_off, mask=seg_ok,
                    other=0.0)  # fmt: skip
    elif USE_S0:
        S = tl.load(S0 + i_nh.to(tl.int64) * K_DIM * V_DIM + s_off, mask=s_mask, other=0.0)
    else:
        S = tl.zeros([BK, BV], tl.float32)
    causal = offs_t[:, None] >= offs_t[None, :]
    if FACTOR:
        # b <= 1 scales V' for the state update in any chunk; the output's a >= 1 needs the
        # bound (a runtime true without an output: its loop alone runs)
        if OUTPUT:
            factored = all_chunks_within(GATE, i_h.to(tl.int64) * TT + bos, L, BOUND, BT)
        else:
            factored = n_chunks >= 0
        if factored:
            S = _scan_fwd_chunks(
                Q, K, V, WN, U, AI, BETA, GATE, O, HS, VN, AQK, KD, CK, ck_base, CKPT, S, i_first,
                i_end, bos, L, c0, i_h, H, TT, scale, offs_t, offs_k, offs_v, k_ok, v_ok, s_off,
                s_mask, causal, K_DIM, V_DIM, BT, HAS_G, STATES, STORE_VN, LOAD_VN, OUTPUT,
                FORM_U, PREPARED, DOT, True, STORE_CK, GROUP,
            )  # fmt: skip
        else:
            S = _scan_fwd_chunks(
                Q, K, V, WN, U, AI, BETA, GATE, O, HS, VN, AQK, KD, CK, ck_base, CKPT, S, i_first,
                i_end, bos, L, c0, i_h, H, TT, scale, offs_t, offs_k, offs_v, k_ok, v_ok, s_off,
                s_mask, causal, K_DIM, V_DIM, BT, HAS_G, STATES, STORE_VN, LOAD_VN, OUTPUT,
                FORM_U, PREPARED, DOT, False, STORE_CK, GROUP,
            )  # fmt: skip
    else:  # a loop of its own: a flag merged into the branch above becomes a runtime value,
        # which would compile the factored loop into the ungated kernel too
        S = _scan_fwd_chunks(
            Q, K, V, WN, U, AI, BETA, GATE, O, HS, VN, AQK, KD, CK, ck_base, CKPT, S, i_first,
            i_end, bos, L, c0, i_h, H, TT, scale, offs_t, offs_k, offs_v, k_ok, v_ok, s_off,
            s_mask, causal, K_DIM, V_DIM, BT, HAS_G, STATES, STORE_VN, LOAD_VN, OUTPUT,
            FORM_U, PREPARED, DOT, False, STORE_CK, GROUP,
        )  # fmt: skip
    if STORE_ST:
        tl.store(ST + i_nh.to(tl.int64) * K_DIM * V_DIM + s_off, S, mask=s_mask)


@triton.jit
def _scan_bwd_chunk(
    Q, K, WN, AI, BETA, GATE, DO, DVN, DHS, AQK, KD, dS, i, bos, L, c0, i_h, H, TT, scale,
    offs_t, offs_k, offs_v, k_ok, v_ok, s_off, s_mask, causal_t,
    K_DIM: tl.constexpr, V_DIM: tl.constexpr, BT: tl.constexpr, HAS_G: tl.constexpr,
    PREPARED: tl.constexpr, W_FROM_T: tl.constexpr, DOT: tl.constexpr, FACTORED: tl.constexpr,
    UNSCALED: tl.constexpr, GROUP: tl.constexpr,
):  # fmt: skip
    """Chunk i of the reverse scan (_scan_bwd_kernel): returns dS entering it. UNSCALED
    (ungated): dS and dV' are carried divided by scale, so Q K^T and Q^T dO take q as read;
    what is stored is multiplied back in float32 before its one rounding. FACTORED
    (gated): scale E_ij = a_i b_j (a = scale exp(G - G_last), b = exp(G_last - G)), so dV' =
    diag(b) ((K Q^T * causal^T) diag(a) dO + K dS) and dS <- gamma_C (dS + Q^T diag(a) dO)
    - W^T dV': no decay matrix, q and k as read."""
    rows = i * BT + offs_t
    r_ok = rows < L
    tok = bos + rows
    kmask = r_ok[:, None] & k_ok[None, :]
    vmask = r_ok[:, None] & v_ok[None, :]
    kp = (tok * H + i_h)[:, None] * K_DIM + offs_k[None, :]
    qp = _qk_rows(tok, i_h, H, GROUP)[:, None] * K_DIM + offs_k[None, :]
    vp = (tok * H + i_h)[:, None] * V_DIM + offs_v[None, :]
    hp = ((c0 + i).to(tl.int64) * H + i_h) * K_DIM * V_DIM
    if UNSCALED:
        tl.store(DHS + hp + s_off, (dS * scale).to(DHS.dtype.element_ty), mask=s_mask)
    else:
        tl.store(DHS + hp + s_off, dS.to(DHS.dtype.element_ty), mask=s_mask)
    q = tl.load(Q + qp, mask=kmask, other=0.0)
    if PREPARED and HAS_G:  # the decayed keys: all this scan needs of K but W's
        k = tl.load(KD + kp, mask=kmask, other=0.0)
    else:
        k = tl.load(K + qp, mask=kmask, other=0.0)
    if W_FROM_T:
        ai = tl.load(
            AI + (tok * H + i_h)[:, None] * BT + offs_t[None, :], mask=r_ok[:, None], other=0.0
        )
        beta = tl.load(BETA + tok * H + i_h, mask=r_ok, other=0.0)
        if PREPARED and HAS_G:
            k_raw = tl.load(K + qp, mask=kmask, other=0.0)
        else:
            k_raw = k
    else:
        wn = tl.load(WN + kp, mask=kmask, other=0.0)
    do = tl.load(DO + vp, mask=vmask, other=0.0)
    if PREPARED:
        a = tl.load(
            AQK + (tok * H + i_h)[:, None] * BT + offs_t[None, :], mask=r_ok[:, None], other=0.0
        )
        pt = tl.trans(a)  # (j, i)
        kd = k
        if HAS_G:
            G, Gc, gamma, g_last = _decays(GATE, bos, i_h, TT, L, i, BT)
            qd = (q * (gamma * scale)[:, None]).to(q.dtype)
        else:
            qd = (q * scale).to(q.dtype)
    elif not FACTORED:
        pt = tl.dot(k, tl.trans(q), input_precision=DOT)  # (j, i) = k_j . q_i
        if HAS_G:
            G, Gc, gamma, g_last = _decays(GATE, bos, i_h, TT, L, i, BT)
            pt = pt * scale * tl.exp(tl.where(causal_t, Gc[None, :] - G[:, None], 0.0))
            kd = (k * tl.exp(g_last - G)[:, None]).to(k.dtype)
            qd = (q * (gamma * scale)[:, None]).to(q.dtype)
        else:
            kd = k
            if UNSCALED:
                qd = q
            else:
                pt = pt * scale
                qd = (q * scale).to(q.dtype)
        pt = tl.where(causal_t, pt, 0.0).to(do.dtype)
    if FACTORED:  # scale E_ij = a_i b_j: a = scale exp(G - G_last), b = exp(G_last - G)
        G, Gc, gamma, g_last = _decays(GATE, bos, i_h, TT, L, i, BT)
        da = (do * (tl.exp(G - g_last) * scale)[:, None]).to(do.dtype)  # diag(a) dO
        pt = tl.where(causal_t, tl.dot(k, tl.trans(q), input_precision=DOT), 0.0).to(do.dtype)
        dv_new = tl.dot(pt, da, input_precision=DOT)
        dv_new = tl.dot(k, dS.to(k.dtype), dv_new, input_precision=DOT)
        dv_in = (dv_new * tl.exp(g_last - G)[:, None]).to(do.dtype)  # rows times b
        tl.store(DVN + vp, dv_in, mask=vmask)
        dS = tl.dot(tl.trans(q), da, dS, input_precision=DOT) * tl.exp(g_last)
    else:
        dv_new = tl.dot(pt, do, input_precision=DOT)
        dv_new = tl.dot(kd, dS.to(k.dtype), dv_new, input_precision=DOT)
        dv_in = dv_new.to(do.dtype)
        if UNSCALED:  # dV' = scale dv_new, stored; the scan goes on with dv_new
            tl.store(DVN + vp, (dv_new * scale).to(do.dtype), mask=vmask)
        else:
            tl.store(DVN + vp, dv_in, mask=vmask)
        if HAS_G:
            dS = dS * tl.exp(g_last)
        dS = tl.dot(tl.trans(qd), do, dS, input_precision=DOT)
    if W_FROM_T:  # -W^T dV' = -K^T (diag(beta gamma) T^T dV'): one rounding, as W's
        tdv = tl.dot(tl.trans(ai), dv_in, input_precision=DOT)
        if HAS_G:
            tdv = tdv * (-beta * gamma)[:, None]
        else:
            tdv = tdv * -beta[:, None]
        dS = tl.dot(tl.trans(k_raw), tdv.to(do.dtype), dS, input_precision=DOT)
    else:
        dS = tl.dot(tl.trans(wn), dv_in, dS, input_precision=DOT)
    return dS


@triton.jit
def _scan_bwd_kernel(
    Q, K, WN, AI, BETA, GATE, DO, VN, DVN, DHS, DST, DS0, AQK, KD, CU, COFF, T, NT, H, TT, scale,
    K_DIM: tl.constexpr, V_DIM: tl.constexpr, BK: tl.constexpr, BT: tl.constexpr,
    HAS_G: tl.constexpr, USE_DST: tl.constexpr, STORE_DS0: tl.constexpr, PREPARED: tl.constexpr,
    W_FROM_T: tl.constexpr, VARLEN: tl.constexpr, DOT: tl.constexpr, FACTOR: tl.constexpr,
    BOUND: tl.constexpr, UNSCALED: tl.constexpr, BV: tl.constexpr, GROUP: tl.constexpr,
):  # fmt: skip
    """The reverse scan of dS (the gradient of the state leaving a chunk), from the end:
    dV' = (scale Q K^T * E * causal)^T dO + diag(gamma_C / gamma) K dS,
    dS <- gamma_C dS + scale (diag(gamma) Q)^T dO - W^T dV' (WN = -W).
    W_FROM_T: W^T dV' = K^T (diag(beta gamma) T^T dV') from T (AI), beta and k, -W not
    read (not kept). PREPARED: scale (Q K^T * E * causal) read from AQK and, gated, the
    decayed keys from KD (_qk_kernel) rather than formed here. FACTOR (gated): every chunk
    takes the factored decay (_scan_bwd_chunk) when every chunk's log decays sum to more than
    -BOUND, else every chunk the decay matrix (one loop each: no branch per chunk). UNSCALED
    (ungated, not PREPARED): dS and dV' are scanned divided by scale (_scan_bwd_chunk)."""
    i_nh, i_h, bos, L, c0, offs_t, offs_k, offs_v, k_ok, v_ok, s_off, s_mask = _scan_tiles(
        CU, COFF, T, NT, H, K_DIM, V_DIM, BK, BT, BV, VARLEN
    )
    if USE_DST:
        dS = tl.load(DST + i_nh.to(tl.int64) * K_DIM * V_DIM + s_off, mask=s_mask, other=0.0)
        if UNSCALED:
            dS = dS / scale
    else:
        dS = tl.zeros([BK, BV], tl.float32)
    causal_t = offs_t[None, :] >= offs_t[:, None]  # (j, i): i >= j
    n_chunks = tl.cdiv(L, BT)
    if FACTOR:
        if all_chunks_within(GATE, i_h.to(tl.int64) * TT + bos, L, BOUND, BT):
            for ii in range(0, n_chunks):
                dS = _scan_bwd_chunk(
                    Q, K, WN, AI, BETA, GATE, DO, DVN, DHS, AQK, KD, dS, n_chunks - 1 - ii, bos,
                    L, c0, i_h, H, TT, scale, offs_t, offs_k, offs_v, k_ok, v_ok, s_off, s_mask,
                    causal_t, K_DIM, V_DIM, BT, HAS_G, PREPARED, W_FROM_T, DOT, True, False,
                    GROUP,
                )  # fmt: skip
        else:
            for ii in range(0, n_chunks):
                dS = _scan_bwd_chunk(
                    Q, K, WN, AI, BETA, GATE, DO, DVN, DHS, AQK, KD, dS, n_chunks - 1 - ii, bos,
                    L, c0, i_h, H, TT, scale, offs_t, offs_k, offs_v, k_ok, v_ok, s_off, s_mask,
                    causal_t, K_DIM, V_DIM, BT, HAS_G, PREPARED, W_FROM_T, DOT, False, False,
                    GROUP,
                )  # fmt: skip
    else:  # a loop of its own, as in _scan_fwd_kernel
        for ii in range(0, n_chunks):
            dS = _scan_bwd_chunk(
                Q, K, WN, AI, BETA, GATE, DO, DVN, DHS, AQK, KD, dS, n_chunks - 1 - ii, bos, L,
                c0, i_h, H, TT, scale, offs_t, offs_k, offs_v, k_ok, v_ok, s_off, s_mask, causal_t,
                K_DIM, V_DIM, BT, HAS_G, PREPARED, W_FROM_T, DOT, False, UNSCALED, GROUP,
            )  # fmt: skip
    if STORE_DS0:
        if UNSCALED:
            dS = dS * scale
        tl.store(DS0 + i_nh.to(tl.int64) * K_DIM * V_DIM + s_off, dS, mask=s_mask)


@triton.jit
def _bwd_chunk_kernel(
    Q, K, V, AI, BETA, GATE, DO, VN, DVN, HS, DHS, DQ, DK, DV, DBETA, DG,
    CU, COFF, CHUNKS, T, NT, H, TT, scale, SDR,
    K_DIM: tl.constexpr, V_DIM: tl.constexpr, BK: tl.constexpr, BT: tl.constexpr,
    HAS_G: tl.constexpr, VARLEN: tl.constexpr, DOT: tl.constexpr, BV: tl.constexpr,
    GROUP: tl.constexpr,
):  # fmt: skip
    """Per chunk, with S entering and dS leaving it (from the scans), V' and dV':
    dq, dk through the output and the state update, dW = -dV' S^T, then the WY backward
    (dB = T^T dX for X = T B; dA = -(dB_w W^T + dB_u U^T) = -dB_u V'^T on the strict lower
    triangle, since dB_w = -dB_u S^T and W S = U - V') for dk, dv, dbeta, and dg as the
    reverse cumulative sum of dG."""
    c = tl.program_id(0)
    i_h = tl.program_id(1)
    bos, L, i_t = _chunk(CU, COFF, CHUNKS, c, T, NT, VARLEN)
    offs_t = tl.arange(0, BT)
    offs_k = tl.arange(0, BK)
    rows = i_t * BT + offs_t
    r_ok = rows < L
    tok = bos + rows
    k_ok = offs_k < K_DIM
    kmask = r_ok[:, None] & k_ok[None, :]
    qp = _qk_rows(tok, i_h, H, GROUP)[:, None] * K_DIM + offs_k[None, :]
    hp = (c.to(tl.int64) * H + i_h) * K_DIM * V_DIM
    if GROUP > 1:  # grouped heads: each value head writes its own copy of dq and dk (SDR
        DQ += (i_h % GROUP).to(tl.int64) * SDR  # apart, in q's layout), summed afterwards
        DK += (i_h % GROUP).to(tl.int64) * SDR
    ai = tl.load(
        AI + (tok * H + i_h)[:, None] * BT + offs_t[None, :], mask=r_ok[:, None], other=0.0
    )
    beta = tl.load(BETA + tok * H + i_h, mask=r_ok, other=0.0).to(tl.float32)
    dq = tl.zeros([BT, BK], tl.float32)  # dO S^T
    dks = tl.zeros([BT, BK], tl.float32)  # V' dS^T
    db_w = tl.zeros([BT, BK], tl.float32)  # -T^T dW = T^T dV' S^T
    dp = tl.zeros([BT, BT], tl.float32)  # dO V'^T
    da = tl.zeros([BT, BT], tl.float32)  # dB_u V'^T = -dA
    dbeta = tl.zeros([BT], tl.float32)
    ds_dot = tl.zeros([BK], tl.float32)  # <S, dS> by key row
    for v0 in range(0, V_DIM, BV):
        offs_v = v0 + tl.arange(0, BV)
        v_ok = offs_v < V_DIM
        vmask = r_ok[:, None] & v_ok[None, :]
        vp = (tok * H + i_h)[:, None] * V_DIM + offs_v[None, :]
        s_off = offs_k[:, None] * V_DIM + offs_v[None, :]
        s_mask = k_ok[:, None] & v_ok[None, :]
        do = tl.load(DO + vp, mask=vmask, other=0.0)
        v_new = tl.load(VN + vp, mask=vmask, other=0.0)
        dv_new = tl.load(DVN + vp, mask=vmask, other=0.0)
        S = tl.load(HS + hp + s_off, mask=s_mask, other=0.0)
        dS = tl.load(DHS + hp + s_off, mask=s_mask, other=0.0)
        dq = tl.dot(do, tl.trans(S), dq, input_precision=DOT)
        dp = tl.dot(do, tl.trans(v_new), dp, input_precision=DOT)
        dks = tl.dot(v_new, tl.trans(dS), dks, input_precision=DOT)
        ds_dot += tl.sum(S.to(tl.float32) * dS.to(tl.float32), 1)
        db_u = tl.dot(tl.trans(ai), dv_new, input_precision=DOT)  # T^T dU, dU = dV'
        db_w = tl.dot(db_u.to(S.dtype), tl.trans(S), db_w, input_precision=DOT)
        v = tl.load(V + vp, mask=vmask, other=0.0)
        tl.store(DV + vp, (db_u * beta[:, None]).to(DV.dtype.element_ty), mask=vmask)
        dbeta += tl.sum(db_u * v.to(tl.float32), 1)
        da = tl.dot(db_u.to(v_new.dtype), tl.trans(v_new), da, input_precision=DOT)
    # The key-side accumulators first, merged into dk's: dks and db_w free before Q K^T.
    # dW = -dV' S^T, so dB_w = T^T dW = -db_w; W = T diag(beta gamma) K
    k = tl.load(K + qp, mask=kmask, other=0.0)
    t_w = -tl.sum(db_w * k.to(tl.float32), 1)
    if HAS_G:
        G, Gc, gamma, g_last = _decays(GATE, bos, i_h, TT, L, i_t, BT)
        dks = dks * tl.exp(g_last - G)[:, None]
        bw = beta * gamma
        ks = tl.sum(k.to(tl.float32) * dks, 1)  # keys decayed to the chunk's end
        dbeta += t_w * gamma
        d_g = t_w * bw
        d_g += tl.where(offs_t == BT - 1, tl.exp(g_last) * tl.sum(ds_dot, 0), 0.0)
    else:
        bw = beta
        dbeta += t_w
    dk = dks - db_w * bw[:, None]
    q = tl.load(Q + qp, mask=kmask, other=0.0)
    causal = offs_t[:, None] >= offs_t[None, :]
    if HAS_G:
        e = tl.exp(tl.where(causal, G[:, None] - Gc[None, :], 0.0))
        dq = dq * (gamma * scale)[:, None]
        d_g += tl.sum(q.to(tl.float32) * dq, 1)  # the output's diag(gamma) Q S
        dps = tl.where(causal, dp * e * scale, 0.0)  # the cotangent of Q K^T
        m = dps * tl.dot(q, tl.trans(k), input_precision=DOT)  # dP * P
        d_g += tl.sum(m, 1) - tl.sum(m, 0)
    else:
        e = 1.0
        dq = dq * scale
        dps = tl.where(causal, dp * scale, 0.0)
    dq = tl.dot(dps.to(k.dtype), k, dq, input_precision=DOT)
    tl.store(DQ + qp, dq.to(DQ.dtype.element_ty), mask=kmask)
    dk = tl.dot(tl.trans(dps.to(q.dtype)), q, dk, input_precision=DOT)
    strict = offs_t[:, None] > offs_t[None, :]
    if HAS_G:  # E again rather than held in registers through the products above
        e = tl.exp(tl.where(strict, G[:, None] - Gc[None, :], 0.0))
    da = tl.where(strict, -da * e, 0.0)  # dA * E
    dab = da * beta[:, None]
    # (dab + dab^T) K in one product: dab is strictly lower, so no entry has two terms
    dk = tl.dot((dab + tl.trans(dab)).to(k.dtype), k, dk, input_precision=DOT)
    tl.store(DK + qp, dk.to(DK.dtype.element_ty), mask=kmask)
    dakk = da * tl.dot(k, tl.trans(k), input_precision=DOT)
    dbeta += tl.sum(dakk, 1)
    tl.store(DBETA + tok * H + i_h, dbeta, mask=r_ok)
    if HAS_G:
        m = dakk * beta[:, None]  # dA * A
        d_g += tl.sum(m, 1) - tl.sum(m, 0)
        # The keys' terms: -ks_t at each token and their total at the chunk's last, summed
        # from the end, leave sum_{j < r} ks_j at token r: an exclusive cumsum of ks. (Its
        # total as tl.sum(ks, 0) does not compile for sm_100 under Triton 3.6.)
        dg = tl.cumsum(d_g, 0, reverse=True) + (tl.cumsum(ks, 0) - ks)
        tl.store(DG + tok * H + i_h, dg, mask=r_ok)


class _Layout:
    """How a call's tokens fall into sequences and chunks of BT: N sequences; non-packed,
    sequence n is batch row n (T tokens, NT chunks); packed, cu (int32 [N + 1]), coff (first
    chunk of each sequence, int32 [N + 1]) and chunks ((sequence, chunk in it) per chunk,
    int32 [NC, 2]). NC chunks in all, in sequence-major order. group: the value heads that
    read each head of q and k (H / G; 1 ungrouped), the kernels' GROUP."""

    __slots__ = ("N", "T", "NT", "NC", "BT", "cu", "coff", "chunks", "varlen", "ckpt", "soff",
                 "NS", "NS_MAX", "group")  # fmt: skip

    def __init__(self, q, cu_seqlens, BT, ckpt, group=1):
        B, T = q.shape[:2]
        self.BT, self.varlen, self.ckpt, self.group = BT, cu_seqlens is not None, ckpt, group
        if cu_seqlens is None:
            self.N, self.T, self.NT = B, T, cdiv(T, BT)
            self.NC = B * self.NT
            self.NS_MAX = cdiv(self.NT, ckpt)
            self.NS = B * self.NS_MAX
            self.cu = self.coff = self.chunks = self.soff = q  # not read
            return
        cu = cu_seqlens.to(device=q.device, dtype=torch.int64)
        counts = (cu[1:] - cu[:-1] + BT - 1) // BT
        coff = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        segs = (counts + ckpt - 1) // ckpt  # checkpoint segments of each sequence
        soff = torch.cat([segs.new_zeros(1), segs.cumsum(0)])
        self.N, self.T, self.NT = cu.numel() - 1, 0, 0
        if _backend.skip_launches:  # fake tensors (a traced op's fake run): no values to read;
            self.NC = self.NS = self.NS_MAX = 0  # the op gives its outputs their own sizes
        else:  # the launch grids need these on the host: one synchronisation
            self.NC, self.NS, self.NS_MAX = torch.stack([coff[-1], soff[-1], segs.max()]).tolist()
        self.soff = soff.to(torch.int32)
        seq = torch.repeat_interleave(
            torch.arange(self.N, device=q.device), counts, output_size=self.NC
        )
        idx = torch.arange(self.NC, device=q.device) - coff[seq]
        self.cu, self.coff = cu.to(torch.int32), coff.to(torch.int32)
        self.chunks = torch.stack([seq, idx], 1).to(torch.int32).contiguous()


def _factored(g, aqk) -> bool:
    """Whether the gated scans take the factored decay where every chunk is within the bound
    (config gated_delta_factored, on by default; not with the prepared products, which carry
    the decay)."""
    return g is not None and aqk is None and _settings.gated_delta_factored


def _unscaled(g, aqk, scale: float) -> bool:
    """Whether the ungated reverse scan carries dS and dV' divided by scale (q then enters its
    products unrounded). Only for scales within 2^-4..2^4: the division shifts the carried
    values by log2(1 / scale) binades, which float16's range (largest 65504) must still hold
    where the scaled form held them."""
    return g is None and aqk is None and 2.0**-4 <= abs(scale) <= 2.0**4


def _bound(q) -> float:
    """The factored decay's bound on a chunk's summed log decays for q's dtype, in nats (the
    gates' cumulative sums are natural logarithms)."""
    return FACTOR_BOUND_LOG2[q.dtype] * math.log(2.0)


def _launch(kernel, configs, grid, args, lay, **meta):
    meta = dict(meta, BT=lay.BT, VARLEN=lay.varlen, GROUP=lay.group)
    launch(kernel, configs, grid, args, meta, INTERPRET_CONFIG, key=KEY)


def _chunk_gates(g, lay):
    """The in-chunk cumulative sums of the log decays g (float32 ``[B, T, H]``), head-major
    float32 ``[H, B * T]``: one launch."""
    B, T, H = g.shape
    gc = torch.empty(H, B * T, device=g.device, dtype=torch.float32)
    launch(
        _chunk_cumsum, [triton.Config({}, num_warps=1)], lambda m: (lay.NC, H),
        (g, gc, lay.cu, lay.coff, lay.chunks, lay.T, lay.NT, H, B * T),
        dict(BT=lay.BT, VARLEN=lay.varlen), {}, key=KEY[:1],
    )  # fmt: skip
    return gc


def _prepare(k, v, g, beta, lay, store_u, q=None, scale=1.0):
    """T (per token its row of the chunk's inverse, ``[B, T, H, BT]``), -W and (store_u) U
    of every chunk, in the inputs' dtype; u None without store_u. With q (delta_prepared_qk):
    also scale (Q K^T * E * causal) (rows as T) and, gated, the decayed keys (as k), else
    those two are None. q and k may have G heads, v H (lay.group = H / G); all of these are
    per value head."""
    B, T, H, K = *k.shape[:2], v.shape[2], k.shape[3]
    wn = torch.empty(B, T, H, K, device=k.device, dtype=k.dtype)
    u = torch.empty_like(v) if store_u else None
    ai = torch.empty(B, T, H, lay.BT, device=k.device, dtype=k.dtype)
    aqk = torch.empty_like(ai) if q is not None else None
    kd = torch.empty_like(wn) if q is not None and g is not None else None
    _launch(
        _prep_kernel, PREP_CONFIGS, lambda m: (lay.NC, H),
        (k if q is None else q, k, v, beta, beta if g is None else g, wn, wn if u is None else u,
         ai, ai if aqk is None else aqk, wn if kd is None else kd, lay.cu, lay.coff, lay.chunks,
         lay.T, lay.NT, H, B * T, scale), lay,
        K_DIM=K, V_DIM=v.shape[-1], BK=pow2(K), HAS_G=g is not None, STORE_U=store_u,
        STORE_QK=q is not None, DOT=dot_precision(k), SPLIT=INVERSE_SPLIT[k.dtype],
    )  # fmt: skip
    return wn, u, ai, aqk, kd


def _qk(q, k, g, scale, lay):
    """The backward's scale (Q K^T * E * causal) (rows as T) and, gated, decayed keys (per
    value head, H = lay.group G; None ungated): one launch of _qk_kernel."""
    B, T, G, K = q.shape
    H = G * lay.group
    aqk = torch.empty(B, T, H, lay.BT, device=q.device, dtype=q.dtype)
    kd = torch.empty(B, T, H, K, device=q.device, dtype=k.dtype) if g is not None else None
    _launch(
        _qk_kernel, QK_CONFIGS, lambda m: (lay.NC, H),
        (q, k, aqk if g is None else g, aqk, aqk if kd is None else kd, lay.cu, lay.coff,
         lay.chunks, lay.T, lay.NT, H, B * T, scale), lay,
        K_DIM=K, BK=pow2(K), HAS_G=g is not None, DOT=dot_precision(q),
    )  # fmt: skip
    return aqk, kd


def _scan_forward(q, k, v, g, beta, wn, u, ai, scale, s0, want_state, lay, states, output,
                  aqk=None, kd=None, values=False, vn=None, ck=None, segmented=False):  # fmt: skip
    """(o, final state, entering states, V'), each None where not asked for: output, the
    output and (want_state) the final state (float32 [N, H, K, V]); states, the state entering
    each chunk ([NC, H, K, V] in the input dtype); values (or states), V' (as v). u None: U
    formed in the scan from T (ai), v and beta. vn: V' kept by the forward, read instead of
    formed (the states alone then cost one product a chunk; returned as given). aqk (and kd,
    gated): the prepare kernel's Q K^T and decayed keys, read rather than formed. ck (float32
    [lay.NS, H, K, V]): the output scan writes there the state entering every lay.ckpt-th
    chunk; with segmented, the states scan starts each segment of lay.ckpt chunks from it,
    the segments in parallel."""
    B, T, _, K = q.shape
    H, V = v.shape[2:]
    hs = o = s_t = None
    load_vn = vn is not None
    if (states or values) and not load_vn:
        vn = torch.empty_like(v)
    if states:
        hs = torch.empty(lay.NC, H, K, V, device=q.device, dtype=q.dtype)
    if output:
        assert not load_vn, "the output scan forms V' itself"
        o = torch.empty_like(v)
        if want_state:
            s_t = torch.empty(lay.N, H, K, V, device=q.device, dtype=torch.float32)
    assert not segmented or (ck is not None and not output), "segments scan the states only"
    dummy = v
    _launch(
        _scan_fwd_kernel, FWD_CONFIGS if aqk is None else FWD_PREPARED_CONFIGS,
        lambda m: (cdiv(V, m["BV"]), lay.N * H, lay.NS_MAX if segmented else 1),
        (q, k, v, wn, dummy if u is None else u, ai, beta, dummy if g is None else g,
         dummy if o is None else o, dummy if s0 is None else s0, dummy if s_t is None else s_t,
         dummy if hs is None else hs, dummy if vn is None else vn,
         dummy if aqk is None else aqk, dummy if kd is None else kd,
         dummy if ck is None else ck, lay.soff, lay.cu, lay.coff, lay.T, lay.NT, H, B * T, scale,
         lay.ckpt), lay,
        K_DIM=K, V_DIM=V, BK=pow2(K), HAS_G=g is not None, USE_S0=s0 is not None,
        STORE_ST=s_t is not None, STATES=states, STORE_VN=vn is not None and not load_vn,
        LOAD_VN=load_vn, OUTPUT=output, FORM_U=u is None, PREPARED=aqk is not None,
        DOT=dot_precision(q),
        FACTOR=_factored(g, aqk), BOUND=_bound(q), STORE_CK=ck is not None and not segmented,
        SEGMENTED=segmented,
    )  # fmt: skip
    return o, s_t, hs, vn


def _decisions(training: bool, gated: bool) -> tuple[bool, bool, bool, bool]:
    """(keep, values, prepared, checkpoint): what the forward keeps for the backward, from the
    config switches read at call time. training: some input needs a gradient.
    keep: the scan also writes the entering states and V' (config delta_keep_states), forming
    U itself as the backward's scan would (V' of the same rounding).
    values: the scan also writes V', kept in place of -W (config delta_keep_values,
    gated_delta_keep_values): the backward's scan of the states reads it instead of forming
    it, and its reverse scan forms W^T dV' from T.
    prepared: the prepare kernel also forms Q K^T and the decayed keys (config
    delta_prepared_qk).
    checkpoint: the scan also writes a checkpoint of the state every lay.ckpt chunks (config
    delta_checkpoint_states), from which the backward rescans in parallel."""
    keep = _settings.delta_keep_states and training
    values = training and (
        _settings.gated_delta_keep_values if gated else _settings.delta_keep_values
    )
    prepared = _settings.delta_prepared_qk
    checkpoint = training and not keep and _settings.delta_checkpoint_states
    return keep, values, prepared, checkpoint


def _forward(q, k, v, g, beta, scale, s0, want_state, lay, keep, values, prepared, checkpoint):
    """(o, final state or None, (gc, ai, wn, hs, vn, ck)): the output and what the backward
    reads, None where not kept (_decisions). gc: g's in-chunk cumulative sums (None ungated)."""
    g = None if g is None else _chunk_gates(g, lay)
    # T (BT values per token and head) and -W (K) are kept for the backward, which then
    # neither inverts a chunk nor forms W again
    wn, u, ai, aqk, kd = _prepare(k, v, g, beta, lay, store_u=not (FWD_FORM_U or keep),
                                  q=q if prepared else None, scale=scale)  # fmt: skip
    ck = None
    if checkpoint:
        H, K, V = v.shape[2], q.shape[3], v.shape[3]
        ck = torch.empty(lay.NS, H, K, V, device=q.device, dtype=torch.float32)
    o, s_t, hs, vn = _scan_forward(
        q, k, v, g, beta, wn, u, ai, scale, s0, want_state, lay, keep, True, aqk, kd, values,
        ck=ck,
    )  # fmt: skip
    del aqk, kd
    if values:
        wn = None
    return o, s_t, (g, ai, wn, hs, vn, ck)


def _backward(q, k, v, g, beta, s0, ai, wn, hs, vn, ck, do, d_st, scale, lay, prepared, want_ds0):
    """(dq, dk, dv, dg, dbeta, ds0) from the forward's inputs and what it kept (_forward; g
    the in-chunk cumulative sums); dg None ungated, ds0 None unless want_ds0."""
    B, T, _, K = q.shape
    H, V = v.shape[2:]
    do = do.contiguous()
    aqk = kd = None
    if prepared:  # the scans read Q K^T and the decayed keys: one chunk-parallel pass
        aqk, kd = _qk(q, k, g, scale, lay)
    if hs is None:  # the states again: from the kept V', else U (not kept) formed from T
        _, _, hs, vn = _scan_forward(
            q, k, v, g, beta, wn, None, ai, scale, s0, False, lay, True, False, aqk, kd,
            vn=vn, ck=ck, segmented=ck is not None,
        )  # fmt: skip
    del ck
    dhs = torch.empty_like(hs)
    dvn = torch.empty_like(v)
    ds0 = torch.empty(lay.N, H, K, V, device=q.device, dtype=torch.float32) if want_ds0 else None
    dummy = dvn
    _launch(
        _scan_bwd_kernel, BWD_SCAN_CONFIGS if aqk is None else BWD_SCAN_PREPARED_CONFIGS,
        lambda m: (cdiv(V, m["BV"]), lay.N * H),
        (q, k, dummy if wn is None else wn, ai, beta, dummy if g is None else g, do, vn, dvn,
         dhs, dummy if d_st is None else d_st.contiguous(), dummy if ds0 is None else ds0,
         dummy if aqk is None else aqk, dummy if kd is None else kd, lay.cu, lay.coff, lay.T,
         lay.NT, H, B * T, scale), lay,
        K_DIM=K, V_DIM=V, BK=pow2(K), HAS_G=g is not None, USE_DST=d_st is not None,
        STORE_DS0=want_ds0, PREPARED=aqk is not None, W_FROM_T=wn is None, DOT=dot_precision(q),
        FACTOR=_factored(g, aqk), BOUND=_bound(q),
        UNSCALED=_unscaled(g, aqk, scale),
    )  # fmt: skip
    del aqk, kd
    # grouped heads: dq and dk per value head, one copy of q's layout for each of a
    # group's heads, summed afterwards (per_head_grad, group_sum)
    dq, dk = (per_head_grad(x, lay.group) for x in (q, k))
    dv = torch.empty_like(v)
    dbeta = torch.empty_like(beta)
    dg = None if g is None else torch.empty_like(beta)  # [B, T, H] float32
    if not _chunk_backward_gluon(q, k, v, g, ai, beta, do, vn, dvn, hs, dhs, dq, dk, dv,
                                 dbeta, dg, scale, lay):  # fmt: skip
        args = (q, k, v, ai, beta, dbeta if g is None else g, do, vn, dvn, hs, dhs, dq, dk,
                dv, dbeta, dbeta if dg is None else dg, lay.cu, lay.coff, lay.chunks, lay.T,
                lay.NT, H, B * T, scale, replica_stride(q, lay.group))  # fmt: skip
        _launch(_bwd_chunk_kernel, BWD_CHUNK_CONFIGS, lambda m: (lay.NC, H), args, lay,
                K_DIM=K, V_DIM=V, BK=pow2(K), HAS_G=g is not None,
                DOT=dot_precision(q))  # fmt: skip
    dq, dk = group_sum(dq, q), group_sum(dk, k)
    return dq, dk, dv, dg, dbeta, ds0


class GatedDeltaRuleFunction(torch.autograd.Function):
    """g None: the ungated rule. q, k, v contiguous ``[B, T, H, .]``; g, beta float32
    contiguous ``[B, T, H]``; s0 float32 ``[N, H, K, V]`` or None. The kernels read g's
    in-chunk cumulative sums (a pre-pass), which the backward keeps in g's place."""

    @staticmethod
    def forward(ctx, q, k, v, g, beta, scale, s0, want_state, lay):
        keep, values, prepared, checkpoint = _decisions(any(ctx.needs_input_grad), g is not None)
        o, s_t, kept = _forward(
            q, k, v, g, beta, scale, s0, want_state, lay, keep, values, prepared, checkpoint
        )
        gc, ai, wn, hs, vn, ck = kept
        ctx.save_for_backward(q, k, v, gc, beta, s0, ai, wn, hs, vn, ck)
        ctx.scale, ctx.lay, ctx.prepared = scale, lay, prepared
        return o, s_t

    @staticmethod
    def backward(ctx, do, d_st):
        saved = ctx.saved_tensors  # q, k, v, gc, beta, s0, ai, wn, hs, vn, ck
        want_ds0 = saved[5] is not None and ctx.needs_input_grad[6]
        dq, dk, dv, dg, dbeta, ds0 = _backward(
            *saved, do, d_st, ctx.scale, ctx.lay, ctx.prepared, want_ds0
        )
        return dq, dk, dv, dg, dbeta, None, ds0, None, None


def _fwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor | None,
            beta: torch.Tensor, s0: torch.Tensor | None, cu_seqlens: torch.Tensor | None,
            scale: float, want_state: bool, chunk: int, ckpt: int, keep: bool, values: bool,
            prepared: bool, checkpoint: bool) -> list[torch.Tensor]:  # fmt: skip
    """[o, gc (gated only), ai, wn (unless values), hs (with keep), vn (with keep or values),
    ck (with checkpoint), final state (with want_state)]: the forward as a traced graph sees
    it (_decisions gives the four flags), its layout made from cu_seqlens, chunk and ckpt."""
    lay = _Layout(q, cu_seqlens, chunk, ckpt, group=v.shape[2] // q.shape[2])
    o, s_t, (gc, ai, wn, hs, vn, ck) = _forward(
        q, k, v, g, beta, scale, s0, want_state, lay, keep, values, prepared, checkpoint
    )
    if _backend.skip_launches and lay.varlen:  # fake: rows per chunk or segment, from values
        hs, ck = (None if x is None else _data_rows(x) for x in (hs, ck))
    kept = (gc, ai, wn, hs, vn, ck)
    return [o, *(x for x in kept if x is not None), *([s_t] if want_state else [])]


def _data_rows(x: torch.Tensor) -> torch.Tensor:
    """x's fake tensor with an unbacked (data-dependent) number of rows."""
    return x.new_empty(torch.library.get_ctx().new_dynamic_size(), *x.shape[1:])


def _bwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gc: torch.Tensor | None,
            beta: torch.Tensor, s0: torch.Tensor | None, ai: torch.Tensor,
            wn: torch.Tensor | None, hs: torch.Tensor | None, vn: torch.Tensor | None,
            ck: torch.Tensor | None, do: torch.Tensor, d_st: torch.Tensor | None,
            cu_seqlens: torch.Tensor | None, scale: float, chunk: int, ckpt: int,
            prepared: bool, want_ds0: bool) -> list[torch.Tensor]:  # fmt: skip
    """[dq, dk, dv, dbeta] (+ [dg] gated, + [ds0] with want_ds0): the Function's backward."""
    lay = _Layout(q, cu_seqlens, chunk, ckpt, group=v.shape[2] // q.shape[2])
    dq, dk, dv, dg, dbeta, ds0 = _backward(
        q, k, v, gc, beta, s0, ai, wn, hs, vn, ck, do, d_st, scale, lay, prepared, want_ds0
    )
    return [dq, dk, dv, dbeta, *([] if dg is None else [dg]), *([] if ds0 is None else [ds0])]


_traced_fwd = opaque("delta_rule_fwd", _fwd_op)
_traced_bwd = opaque("delta_rule_bwd", _bwd_op)


def _traced_setup(ctx, inputs, output):
    q, k, v, g, beta, s0, cu, scale, want_state, chunk, ckpt, keep, values, prepared, checkpoint = (
        inputs
    )
    kept = iter(output[1:])
    gc = None if g is None else next(kept)
    ai = next(kept)
    wn = None if values else next(kept)
    hs = next(kept) if keep else None
    vn = next(kept) if keep or values else None
    ck = next(kept) if checkpoint else None
    ctx.save_for_backward(q, k, v, gc, beta, s0, ai, wn, hs, vn, ck, cu)
    ctx.scale, ctx.chunk, ctx.ckpt, ctx.prepared = scale, chunk, ckpt, prepared
    ctx.want_state = want_state


def _traced_grad(ctx, grads):
    q, k, v, gc, beta, s0, ai, wn, hs, vn, ck, cu = ctx.saved_tensors
    want_ds0 = s0 is not None and ctx.needs_input_grad[5]
    out = _traced_bwd(
        q, k, v, gc, beta, s0, ai, wn, hs, vn, ck, grads[0], grads[-1] if ctx.want_state else None,
        cu, ctx.scale, ctx.chunk, ctx.ckpt, ctx.prepared, want_ds0,
    )  # fmt: skip
    dg = out[4] if gc is not None else None
    ds0 = out[-1] if want_ds0 else None
    return out[0], out[1], out[2], dg, out[3], ds0, *([None] * 9)


_traced_fwd.register_autograd(_traced_grad, setup_context=_traced_setup)


def _chunk_backward_gluon(q, k, v, g, ai, beta, do, vn, dvn, hs, dhs, dq, dk, dv, dbeta, dg,
                          scale, lay) -> bool:  # fmt: skip
    """The backward's chunk pass in a warp-specialized Gluon kernel where its config is on
    and the kernel takes these inputs: the ungated rule's (gluon.py, config delta_gluon), the
    gated rule's (gluon_gated.py, config gated_delta_gluon); False: the Triton kernel's to do,
    as for grouped heads (the Gluon kernels address q and k as v's heads)."""
    if _backend.skip_launches:  # fake tensors: nothing runs (the Triton launch is skipped too)
        return False
    gated = g is not None
    kernel = gluon_gated if gated else gluon_chunk
    if not (_settings.gated_delta_gluon if gated else _settings.delta_gluon):
        return False
    if lay.group > 1:  # grouped heads: the Gluon kernels read q and k per value head
        return False
    if not gluon_chunk.available() or kernel.OP in gluon_common.FAILED:
        return False
    tensors = (q, k, v, ai, beta, do, vn, dvn, hs, dhs, dq, dk, dv, dbeta)
    if not gluon_chunk.supports(q, v, lay.varlen, lay.BT, tensors + ((g, dg) if gated else ()))[0]:
        return False
    args = (*tensors, g, dg) if gated else tensors
    done = gluon_common.attempt(kernel.OP, kernel.run, *args, scale, sm_count(q.device))
    return done is not None


def _check_args(op, q, k, v, g, beta, scale, initial_state, cu_seqlens, gated):
    B, T, H, K, V, N = check_sequences(op, q, k, v, scale, cu_seqlens, groups=True)
    for name, x in (("g", g), ("beta", beta)) if gated else (("beta", beta),):
        check_gate(op, name, x, ((B, T, H),), f"({B}, {T}, {H}) = [B, T, H]", q)
    if initial_state is not None:
        check_state(op, initial_state, N, H, K, V)


def _run(op, q, k, v, g, beta, scale, initial_state, output_final_state, cu_seqlens,
         use_qk_l2norm, backend):  # fmt: skip
    _check_args(op, q, k, v, g, beta, scale, initial_state, cu_seqlens, op == "gated_delta_rule")
    scale = float(default_scale(scale, q.shape[-1]))
    if use_qk_l2norm:
        q, k = l2norm(q), l2norm(k)
    K, V = q.shape[-1], v.shape[-1]
    narrow = q.is_cuda and not interpreting() and min(K, V) < MIN_GPU_WIDTH
    if not use_triton(q, backend, op) or q.dtype == torch.float64 or (narrow and backend == "auto"):
        return gated_delta_rule_chunked(
            q, k, v, g, beta, scale=scale, initial_state=initial_state,
            output_final_state=output_final_state, cu_seqlens=cu_seqlens,
        )  # fmt: skip
    check(K <= 128, op, "key width K for the Triton kernels",
          "at most 128 (else backend='reference')", K)  # fmt: skip
    check(not narrow, op, "key and value widths (K, V) for the Triton kernels on CUDA",
          f"at least {MIN_GPU_WIDTH} each (else backend 'auto' or 'reference')",
          (K, V))  # fmt: skip
    chunk, ckpt = (INTERPRET_CHUNK, INTERPRET_CHECKPOINT) if interpreting() else (
        CHUNK, CHECKPOINT_CHUNKS)  # fmt: skip
    q, k, v, beta = q.contiguous(), k.contiguous(), v.contiguous(), beta.float().contiguous()
    g = None if g is None else g.float().contiguous()
    s0 = None if initial_state is None else initial_state.float().contiguous()
    if tracing():  # torch.compile, torch.export: the opaque operators, deciding as the Function
        training = any(x is not None and x.requires_grad for x in (q, k, v, g, beta, s0))
        out = _traced_fwd(q, k, v, g, beta, s0, cu_seqlens, scale, output_final_state, chunk,
                          ckpt, *_decisions(training, g is not None))  # fmt: skip
        return out[0], (out[-1] if output_final_state else None)
    lay = _Layout(q, cu_seqlens, chunk, ckpt, group=v.shape[2] // q.shape[2])
    o, s_t = GatedDeltaRuleFunction.apply(q, k, v, g, beta, scale, s0, output_final_state, lay)
    return o, (s_t if output_final_state else None)


_DOC_ARGS = """
    Args:
        q, k: ``[B, T, G, K]`` (keys L2-normalised, or pass ``use_qk_l2norm=True``).
        v: ``[B, T, H, V]``, H a multiple of G: value head h reads q/k head h // (H / G)
            (grouped heads, as Gated DeltaNet's or fla's ``num_v_heads > num_heads``; G = H:
            one each). q and k are read in place, not repeated to the H heads; their
            gradients are formed per value head and summed over each group's heads.
        {gates}
        scale: multiplies the output; None means ``K ** -0.5``.
        initial_state: ``[N, H, K, V]`` (N = B, or the number of packed sequences).
            Differentiable.
        output_final_state: also return the state after the last token, float32
            ``[N, H, K, V]``.
        cu_seqlens: ``[N + 1]`` integer offsets of N sequences packed along T (then B = 1);
            every sequence starts from its own state. (Checked when a CPU tensor; on the
            Triton path its chunk table is built on the host, one synchronisation.)
        use_qk_l2norm: normalise q and k (``x / sqrt(sum x^2 + 1e-6)``) inside the op, with
            its gradient (fla's ``use_qk_l2norm_in_kernel``).
        backend: ``"auto"`` (Triton on CUDA tensors, the chunked PyTorch form on CPU),
            ``"triton"`` (also on CPU under ``TRITON_INTERPRET=1``) or ``"reference"`` (the
            chunked PyTorch form, differentiable through autograd).

    Returns:
        ``(o, final_state)``: o ``[B, T, H, V]`` in the dtype of v; final_state float32 or
        None.

    dtypes float16, bfloat16, float32 (float64 takes the PyTorch form); gates of any float
    dtype. K up to 128 on the Triton path, any V.
"""


@autocast_inputs
def delta_rule(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
    scale: float | None = None, initial_state: torch.Tensor | None = None,
    output_final_state: bool = False, cu_seqlens: torch.Tensor | None = None,
    use_qk_l2norm: bool = False, backend: str = "auto",
):  # fmt: skip
    """The delta rule (DeltaNet), chunked in the WY representation.

    ``S_t = S_{t-1} + beta_t k_t^T (v_t - k_t S_{t-1})``, ``o_t = scale q_t S_t`` per head,
    S a K x V state (``S_{-1}`` = initial_state, else 0).
    {args}
    >>> q = torch.randn(2, 63, 4, 32); v = torch.randn(2, 63, 4, 16)
    >>> k = torch.nn.functional.normalize(torch.randn(2, 63, 4, 32), dim=-1)
    >>> beta = torch.rand(2, 63, 4)
    >>> o, s = delta_rule(q, k, v, beta, output_final_state=True)
    >>> o.shape, s.shape
    (torch.Size([2, 63, 4, 16]), torch.Size([2, 4, 32, 16]))
    """
    return _run(
        "delta_rule", q, k, v, None, beta, scale, initial_state, output_final_state, cu_seqlens,
        use_qk_l2norm, backend,
    )  # fmt: skip


@autocast_inputs
def gated_delta_rule(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
    scale: float | None = None, initial_state: torch.Tensor | None = None,
    output_final_state: bool = False, cu_seqlens: torch.Tensor | None = None,
    use_qk_l2norm: bool = False, backend: str = "auto",
):  # fmt: skip
    """The gated delta rule (Gated DeltaNet), chunked in the WY representation.

    With ``a_t = exp(g_t)``: ``S_t = a_t S_{t-1} + beta_t k_t^T (v_t - a_t k_t S_{t-1})``,
    ``o_t = scale q_t S_t`` per head, S a K x V state.
    {args}
    >>> q = torch.randn(2, 63, 4, 32); v = torch.randn(2, 63, 4, 16)
    >>> k = torch.nn.functional.normalize(torch.randn(2, 63, 4, 32), dim=-1)
    >>> g = -torch.rand(2, 63, 4); beta = torch.rand(2, 63, 4)
    >>> o, s = gated_delta_rule(q, k, v, g, beta, output_final_state=True)
    >>> o.shape, s.shape
    (torch.Size([2, 63, 4, 16]), torch.Size([2, 4, 32, 16]))
    """
    return _run(
        "gated_delta_rule", q, k, v, g, beta, scale, initial_state, output_final_state,
        cu_seqlens, use_qk_l2norm, backend,
    )  # fmt: skip


delta_rule.__doc__ = delta_rule.__doc__.replace(
    "{args}", _DOC_ARGS.format(gates="beta: ``[B, T, H]`` writing strengths in (0, 1).")
)
gated_delta_rule.__doc__ = gated_delta_rule.__doc__.replace(
    "{args}",
    _DOC_ARGS.format(gates="g: ``[B, T, H]`` log decay (<= 0); beta: ``[B, T, H]`` in (0, 1)."),
)
