"""Fused softmax attention (FlashAttention-2): Triton kernels, launch wrappers, autograd, and
the choice of backend for each pass.

Every tile moves through a tensor descriptor over the 4-d ``[B, T, H, D]`` tensor: on Hopper
the copies run on the bulk tensor copy engine (TMA) straight into shared memory, and rows past
``T`` (or columns past ``D``) read as zeros and are never written, per batch and per head.
Forward: one program per (query block, batch x head) streams the key/value blocks through
on-chip memory with the online softmax, and writes O and the base-2 log-sum-exp per row.
Backward: `delta = rowsum(dO * O)`, then one program per (key block, batch x kv head) that
loops over the query blocks of every query head in its group and accumulates dK and dV, then
one program per (query block, batch x head) that accumulates dQ. Nothing of size T x S is
written. On Hopper GPUs the forward and dK/dV run the Gluon kernels of `gluon/` where they
apply (`choose`).
"""

import math

import torch
import torch.nn.functional as F

from .. import _backend, config
from .. import _gluon as gluon_common
from .._backend import (
    autocast_inputs,
    cdiv,
    check,
    check_qkv,
    default_scale,
    launch,
    pow2,
    use_triton,
)
from .._kernels import mm
from .._traced import opaque, tracing
from .._triton import TensorDescriptor, tl, triton
from .gluon import dkdv as gluon_dkdv
from .gluon import forward as gluon_forward
from .reference import softmax_attention_reference

LOG2E = 1.4426950408889634


@triton.jit
def _tile(desc, b, r0, h, N, R: tl.constexpr, C: tl.constexpr, FLAT: tl.constexpr):
    """Rows [r0, r0 + R) of head h of batch b, as an (R, C) tile.

    FLAT: `desc` views the tensor as 2-d ``[B * N, H * C]`` (C is the head width), so the copy
    lands in shared memory in the layout the tensor cores read, with no reshape; rows past N
    then belong to the next batch (used only where N is a whole number of tiles). Otherwise
    `desc` is 4-d ``[B, N, H, C']`` and the copy engine fills rows past N with zeros.
    """
    if FLAT:
        x = desc.load([b * N + r0, h * C])
    else:
        x = desc.load([b, r0, h, 0]).reshape(R, C)
    return x


@triton.jit
def _key_range(m0, S, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr):
    """Key blocks of query rows [m0, m0 + BLOCK_M): those left of `full_end` need no mask;
    [full_end, end) holds the diagonal and the ragged tail."""
    if CAUSAL:
        full_end = tl.minimum(m0, S) // BLOCK_N * BLOCK_N
        end = tl.minimum(m0 + BLOCK_M, S)
    else:
        full_end = S // BLOCK_N * BLOCK_N
        end = S
    return full_end, end


@triton.jit
def _fwd_tiles(
    acc, l_i, m_i, q, k_desc, v_desc, b, hk, lo, hi, offs_m, offs_n, S, qk_scale,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, MASK: tl.constexpr,
    CAUSAL: tl.constexpr,
):  # fmt: skip
    for n0 in tl.range(lo, hi, BLOCK_N):
        k = _tile(k_desc, b, n0, hk, S, BLOCK_N, BLOCK_D, False)
        qk = mm(q, tl.trans(k))  # (BM, BN), unscaled
        if MASK:
            cols = n0 + offs_n
            keep = cols[None, :] < S
            if CAUSAL:
                keep = keep & (cols[None, :] <= offs_m[:, None])
            qk = tl.where(keep, qk, float("-inf"))
        acc, l_i, m_i = _softmax_pv(acc, l_i, m_i, qk, v_desc, b, hk, n0, S, qk_scale, BLOCK_N,
                                    BLOCK_DV)  # fmt: skip
    return acc, l_i, m_i


@triton.jit
def _softmax_pv(
    acc, l_i, m_i, qk, v_desc, b, hk, n0, S, qk_scale, BLOCK_N: tl.constexpr,
    BLOCK_DV: tl.constexpr,
):  # fmt: skip
    """One key block of the online softmax, its (masked) scores `qk` given: rescale what came
    before, add its probabilities times its values."""
    # Scaling inside the max and the exponent lets each element cost one fused multiply-add.
    m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
    p = tl.math.exp2(qk * qk_scale - m_new[:, None])
    alpha = tl.math.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, 1)
    v = _tile(v_desc, b, n0, hk, S, BLOCK_N, BLOCK_DV, False)
    acc = mm(p.to(v.dtype), v, acc * alpha[:, None])
    return acc, l_i, m_new


@triton.jit
def _fwd_kernel(
    q_desc, k_desc, v_desc, o_desc, LSE, T, S, H, HKV, qk_scale, BLOCK_D: tl.constexpr,
    BLOCK_DV: tl.constexpr, CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    # Causal rows near the end do the most work: start them first so the last wave is light.
    pid_m = tl.num_programs(0) - 1 - tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    hk = h // (H // HKV)
    m0 = pid_m * BLOCK_M
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    q = _tile(q_desc, b, m0, h, T, BLOCK_M, BLOCK_D, False)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)
    full_end, end = _key_range(m0, S, BLOCK_M, BLOCK_N, CAUSAL)
    acc, l_i, m_i = _fwd_tiles(
        acc, l_i, m_i, q, k_desc, v_desc, b, hk, 0, full_end, offs_m, offs_n, S, qk_scale,
        BLOCK_N, BLOCK_D, BLOCK_DV, False, CAUSAL,
    )  # fmt: skip
    acc, l_i, m_i = _fwd_tiles(
        acc, l_i, m_i, q, k_desc, v_desc, b, hk, full_end, end, offs_m, offs_n, S, qk_scale,
        BLOCK_N, BLOCK_D, BLOCK_DV, True, CAUSAL,
    )  # fmt: skip
    o = acc / l_i[:, None]
    o_desc.store([b, m0, h, 0], o.to(o_desc.dtype).reshape(1, BLOCK_M, 1, BLOCK_DV))
    tl.store(LSE + pid_bh.to(tl.int64) * T + offs_m, m_i + tl.math.log2(l_i), mask=offs_m < T)


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
    dk, dv, k, v, q_desc, do_desc, LSE_base, DELTA_base, b, h, lo, n_end, offs_n, offs_m, T,
    qk_scale, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    CAUSAL: tl.constexpr, KV_SMEM: tl.constexpr, FLAT: tl.constexpr, DIAG: tl.constexpr,
):  # fmt: skip
    """dK and dV of one key block over the query blocks [lo, T), in one loop with the causal
    mask on every block (`DIAG`: only on blocks that cross the diagonal). Rows past T read as
    zeros and get lse = +inf, so they add exactly nothing."""
    for m0 in range(lo, T, BLOCK_M):
        rows = m0 + offs_m
        q = _tile(q_desc, b, m0, h, T, BLOCK_M, BLOCK_D, FLAT)
        do = _tile(do_desc, b, m0, h, T, BLOCK_M, BLOCK_DV, FLAT)
        lse = tl.load(LSE_base + rows, mask=rows < T, other=float("inf"))
        delta = tl.load(DELTA_base + rows, mask=rows < T, other=0.0)
        if KV_SMEM:
            # Scores as (BM, BN): k and v are the right-hand operands, which the tensor cores
            # read from shared memory, so they hold no registers across the loop.
            p = tl.math.exp2(mm(q, tl.trans(k)) * qk_scale - lse[:, None])
            if CAUSAL:
                if DIAG:  # only blocks that cross the diagonal need the mask
                    if m0 < n_end:
                        p = tl.where(rows[:, None] >= offs_n[None, :], p, 0.0)
                else:
                    p = tl.where(rows[:, None] >= offs_n[None, :], p, 0.0)
            dv = mm(tl.trans(p.to(do.dtype)), do, dv)
            dp = mm(do, tl.trans(v))
            ds = p * (dp - delta[:, None])
            dk = mm(tl.trans(ds.to(q.dtype)), q, dk)
        else:
            pT = tl.math.exp2(mm(k, tl.trans(q)) * qk_scale - lse[None, :])  # (BN, BM)
            if CAUSAL:
                if DIAG:
                    if m0 < n_end:
                        pT = tl.where(rows[None, :] >= offs_n[:, None], pT, 0.0)
                else:
                    pT = tl.where(rows[None, :] >= offs_n[:, None], pT, 0.0)
            dv = mm(pT.to(do.dtype), do, dv)
            dpT = mm(v, tl.trans(do))
            dsT = pT * (dpT - delta[None, :])
            dk = mm(dsT.to(q.dtype), q, dk)
    return dk, dv


@triton.jit
def _bwd_dkdv_kernel(
    q_desc, k_desc, v_desc, do_desc, dk_desc, dv_desc, LSE, DELTA, T, S, H, HKV, qk_scale,
    sm_scale, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, CAUSAL: tl.constexpr,
    KV_SMEM: tl.constexpr, FLAT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    DIAG: tl.constexpr = False,
):  # fmt: skip
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // HKV
    hk = pid_bh % HKV
    G = H // HKV
    n0 = pid_n * BLOCK_N
    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    k = _tile(k_desc, b, n0, hk, S, BLOCK_N, BLOCK_D, FLAT)
    v = _tile(v_desc, b, n0, hk, S, BLOCK_N, BLOCK_DV, FLAT)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], tl.float32)
    # Causal: query blocks before the one holding query n0 see none of these keys. Key rows
    # past S only make dK and dV rows that the store drops.
    lo = n0 // BLOCK_M * BLOCK_M if CAUSAL else 0
    for g in range(G):
        h = hk * G + g
        LSE_base = LSE + (b * H + h).to(tl.int64) * T
        DELTA_base = DELTA + (b * H + h).to(tl.int64) * T
        dk, dv = _bwd_dkdv_tiles(
            dk, dv, k, v, q_desc, do_desc, LSE_base, DELTA_base, b, h, lo, n0 + BLOCK_N, offs_n,
            offs_m, T, qk_scale, BLOCK_M, BLOCK_D, BLOCK_DV, CAUSAL, KV_SMEM, FLAT, DIAG,
        )  # fmt: skip
    dk_desc.store([b, n0, hk, 0], (dk * sm_scale).to(dk_desc.dtype).reshape(1, BLOCK_N, 1, BLOCK_D))
    dv_desc.store([b, n0, hk, 0], dv.to(dv_desc.dtype).reshape(1, BLOCK_N, 1, BLOCK_DV))


@triton.jit
def _bwd_dq_tiles(
    dq, q, do, lse, delta, k_desc, v_desc, b, hk, lo, hi, offs_m, offs_n, S, qk_scale,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    CAUSAL_MASK: tl.constexpr,
):  # fmt: skip
    for n0 in range(lo, hi, BLOCK_N):
        # Keys past S read as zeros and so add nothing to dQ.
        k = _tile(k_desc, b, n0, hk, S, BLOCK_N, BLOCK_D, False)
        v = _tile(v_desc, b, n0, hk, S, BLOCK_N, BLOCK_DV, False)
        p = tl.math.exp2(mm(q, tl.trans(k)) * qk_scale - lse[:, None])
        if CAUSAL_MASK:
            p = tl.where((n0 + offs_n)[None, :] <= offs_m[:, None], p, 0.0)
        dp = mm(do, tl.trans(v))
        ds = p * (dp - delta[:, None])
        dq = mm(ds.to(k.dtype), k, dq)
    return dq


@triton.jit
def _bwd_dq_kernel(
    q_desc, k_desc, v_desc, do_desc, dq_desc, LSE, DELTA, T, S, H, HKV, qk_scale, sm_scale,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid_m = tl.num_programs(0) - 1 - tl.program_id(0)  # heaviest causal rows first
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    hk = h // (H // HKV)
    m0 = pid_m * BLOCK_M
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    row_ok = offs_m < T
    q = _tile(q_desc, b, m0, h, T, BLOCK_M, BLOCK_D, False)
    do = _tile(do_desc, b, m0, h, T, BLOCK_M, BLOCK_DV, False)
    lse = tl.load(LSE + pid_bh.to(tl.int64) * T + offs_m, mask=row_ok, other=float("inf"))
    delta = tl.load(DELTA + pid_bh.to(tl.int64) * T + offs_m, mask=row_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    full_end, end = _key_range(m0, S, BLOCK_M, BLOCK_N, CAUSAL)
    dq = _bwd_dq_tiles(
        dq, q, do, lse, delta, k_desc, v_desc, b, hk, 0, full_end, offs_m, offs_n, S, qk_scale,
        BLOCK_N, BLOCK_D, BLOCK_DV, False,
    )  # fmt: skip
    dq = _bwd_dq_tiles(
        dq, q, do, lse, delta, k_desc, v_desc, b, hk, full_end, end, offs_m, offs_n, S,
        qk_scale, BLOCK_N, BLOCK_D, BLOCK_DV, CAUSAL,
    )  # fmt: skip
    dq_desc.store([b, m0, h, 0], (dq * sm_scale).to(dq_desc.dtype).reshape(1, BLOCK_M, 1, BLOCK_D))


# Which block size (rows, columns) each tensor descriptor argument moves.
_BLOCKS = {
    "q_desc": ("BLOCK_M", "BLOCK_D"),
    "do_desc": ("BLOCK_M", "BLOCK_DV"),
    "o_desc": ("BLOCK_M", "BLOCK_DV"),
    "dq_desc": ("BLOCK_M", "BLOCK_D"),
    "k_desc": ("BLOCK_N", "BLOCK_D"),
    "v_desc": ("BLOCK_N", "BLOCK_DV"),
    "dk_desc": ("BLOCK_N", "BLOCK_D"),
    "dv_desc": ("BLOCK_N", "BLOCK_DV"),
}


def _set_blocks(nargs):
    """Give each descriptor the tile shape of the configuration about to run."""
    for name, (rows, cols) in _BLOCKS.items():
        d = nargs.get(name)
        if d is not None:
            if len(d.shape) == 2:
                d.block_shape = [nargs[rows], nargs[cols]]
            else:
                d.block_shape = [1, nargs[rows], 1, nargs[cols]]


def _desc(x: torch.Tensor, flat: bool = False) -> TensorDescriptor:
    """A descriptor of ``[B, N, H, C]`` x: 4-d, or 2-d ``[B * N, H * C]`` (`_tile`'s FLAT).

    The block shape is a placeholder until _set_blocks sees the configuration."""
    if flat:
        B, N, H, C = x.shape
        return TensorDescriptor(x, [B * N, H * C], [H * C, 1], [16, 16])
    return TensorDescriptor(x, list(x.shape), list(x.stride()), [1, 16, 1, 16])


def _flat_dkdv(q, k, v, do) -> bool:
    """Whether the dK/dV pass reads 2-d tiles (the forward and dQ read 4-d ones): T and S
    whole numbers of 128-row blocks (no block size exceeds 128, so a tile never reaches the
    next batch), contiguous inputs with head widths that are whole tiles (powers of two)."""
    return (
        q.shape[1] % 128 == 0
        and k.shape[1] % 128 == 0
        and all(pow2(x.shape[-1]) == x.shape[-1] and x.is_contiguous() for x in (q, k, v, do))
    )


def _configs(rows):
    return [
        triton.Config(
            {"BLOCK_M": m, "BLOCK_N": n, **extra}, num_warps=w, num_stages=s, pre_hook=_set_blocks
        )
        for m, n, w, s, *rest in rows
        for extra in [rest[0] if rest else {}]
    ]


# (BLOCK_M, BLOCK_N, warps, stages[, constexprs]) per kernel; autotuning picks among them per
# shape (how the lists were chosen: README.md).
FWD_CONFIGS = [(64, 64, 4, 3), (128, 128, 8, 3), (128, 64, 8, 3)]
# KV_SMEM: the dK/dV scores as (query, key) tiles, k and v the tensor cores' right operands
# from shared memory; otherwise as (key, query) tiles (`_REG`). DIAG: the causal mask only on
# key blocks that cross the diagonal.
_REG, _SMEM = {"KV_SMEM": False}, {"KV_SMEM": True}
DKDV_CONFIGS = [
    (64, 64, 4, 2, _SMEM),
    (64, 64, 4, 2, {"KV_SMEM": True, "DIAG": True}),
    (64, 64, 4, 3, _SMEM),
    (32, 64, 4, 3, _REG),
    (32, 64, 4, 2, _REG),
    (64, 128, 8, 2, _REG),
]
DQ_CONFIGS = [(64, 64, 4, 3), (128, 64, 8, 3), (64, 32, 4, 3), (64, 64, 4, 2)]
# float32 (three tf32 products each, ops/_kernels.mm) spills at D = 128: the two
# configurations per kernel that spill least. dQ's last is the one that fits a GPU of 99 KiB
# of shared memory a block (RTX 30xx / 40xx, L4, L40: bench/diagnose/sm90_report.py --arch 89).
F32_FWD_CONFIGS = [(64, 64, 4, 3), (64, 32, 4, 2)]
F32_DKDV_CONFIGS = [(32, 64, 4, 2, _REG), (32, 32, 4, 2, _SMEM)]
F32_DQ_CONFIGS = [(64, 32, 4, 3), (64, 16, 4, 2), (32, 16, 4, 1)]
DELTA_CONFIGS = [triton.Config({"BLOCK_M": 64}, num_warps=4)]
INTERPRET_CONFIG = {"BLOCK_M": 16, "BLOCK_N": 16}
KEY = ["T", "S", "BLOCK_D", "BLOCK_DV", "CAUSAL"]


def _launch(kernel, configs, grid, args, meta, interpret_extra=None):
    fixed = dict(INTERPRET_CONFIG, **(interpret_extra or {}))
    launch(kernel, _configs(configs), grid, args, meta, fixed, key=KEY, pre_hook=_set_blocks)


def choose(kind: str, q, k, v, causal: bool) -> tuple[str, str]:
    """The backend that runs pass `kind` ("forward" or "dkdv") of softmax attention on these
    (CUDA or interpreted) inputs, and why not the Gluon one: ("gluon", "") where config
    allows it, Gluon can run here, its kernel takes the inputs and has not failed in this
    process; else ("triton", the reason)."""
    s = config.settings
    if kind == "forward":
        if not s.gluon_forward:
            return "triton", "switched off (config gluon_forward, NCD_GLUON_FORWARD=0)"
    elif kind == "dkdv":
        if not s.gluon_dkdv:
            return "triton", "switched off (config gluon_dkdv, NCD_GLUON_DKDV=0)"
    else:
        raise ValueError(f"fused.choose: kind: expected 'forward' or 'dkdv', found {kind!r}")
    if f"softmax_attention {kind}" in gluon_common.FAILED:
        return "triton", f"the Gluon {kind} kernel failed earlier in this process"
    if not gluon_common.available():
        return "triton", "Gluon of Triton 3.6 cannot run here"
    if kind == "forward":
        ok, why = gluon_forward.supports(q, k, v, causal)
    else:
        ok, why = gluon_dkdv.supports(q, k, v, causal, s.gluon_dkdv_grouped)
    return ("gluon", "") if ok else ("triton", why)


def _gluon(kind: str, q, k, v, causal: bool) -> bool:
    """Whether pass `kind` runs the Gluon kernel (`choose`). Not in a fake run (the opaque
    operators' fake implementation, `_traced.skipping`): the Gluon descriptors read data
    pointers, which fake tensors lack, and a failure there would switch the Gluon kernel off
    for the process (`gluon_common.attempt`). The Triton path it takes instead allocates
    outputs of the same shapes, dtypes and (for contiguous inputs) strides."""
    return not _backend.skip_launches and choose(kind, q, k, v, causal)[0] == "gluon"


def _forward(q, k, v, causal: bool, scale: float):
    if _gluon("forward", q, k, v, causal):
        out = gluon_common.attempt(
            "softmax_attention forward", gluon_forward.run, q, k, v, causal, scale
        )
        if out is not None:
            return out
    B, T, H, D = q.shape
    S, HKV, DV = k.shape[1], k.shape[2], v.shape[3]
    o = torch.empty(B, T, H, DV, device=q.device, dtype=q.dtype)
    lse = torch.empty(B, H, T, device=q.device, dtype=torch.float32)
    meta = dict(BLOCK_D=pow2(D), BLOCK_DV=pow2(DV), CAUSAL=causal)
    _launch(
        _fwd_kernel,
        F32_FWD_CONFIGS if q.dtype == torch.float32 else FWD_CONFIGS,
        lambda m: (cdiv(T, m["BLOCK_M"]), B * H),
        (_desc(q), _desc(k), _desc(v), _desc(o), lse, T, S, H, HKV, scale * LOG2E),
        meta,
    )
    return o, lse


def _backward(q, k, v, o, lse, do, causal: bool, scale: float):
    B, T, H, D = q.shape
    S, HKV, DV = k.shape[1], k.shape[2], v.shape[3]
    delta = torch.empty_like(lse)
    launch(
        _bwd_delta_kernel, DELTA_CONFIGS, lambda m: (cdiv(T, m["BLOCK_M"]), B * H),
        (o, do, delta, T, H), dict(DV=DV, BLOCK_DV=pow2(DV)), {"BLOCK_M": 16}, key=["T"],
    )  # fmt: skip
    if _gluon("dkdv", q, k, v, causal):
        out = gluon_common.attempt(
            "softmax_attention dkdv", gluon_dkdv.run, q, k, v, do, lse, delta, causal, scale
        )
        if out is not None:
            return _dq_pass(q, k, v, do, lse, delta, causal, scale, None), *out
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    flat = _flat_dkdv(q, k, v, do)
    qd, kd, vd, dod = (_desc(x, flat) for x in (q, k, v, do))
    s = config.settings
    _launch(
        _bwd_dkdv_kernel,
        F32_DKDV_CONFIGS if q.dtype == torch.float32 else DKDV_CONFIGS,
        lambda m: (cdiv(S, m["BLOCK_N"]), B * HKV),
        (qd, kd, vd, dod, _desc(dk), _desc(dv), lse, delta, T, S, H, HKV, scale * LOG2E, scale),
        dict(BLOCK_D=pow2(D), BLOCK_DV=pow2(DV), CAUSAL=causal, FLAT=flat),
        interpret_extra={"KV_SMEM": s.interpret_kv_smem, "DIAG": s.interpret_diag},
    )
    made = None if flat else (qd, kd, vd, dod)
    return _dq_pass(q, k, v, do, lse, delta, causal, scale, made), dk, dv


def _dq_pass(q, k, v, do, lse, delta, causal: bool, scale: float, made):
    """dQ, one program per (query block, batch x head); `made`: 4-d descriptors of q, k, v,
    do already built by the dK/dV pass, or None."""
    B, T, H, D = q.shape
    S, HKV, DV = k.shape[1], k.shape[2], v.shape[3]
    dq = torch.empty_like(q)
    qd, kd, vd, dod = made if made is not None else (_desc(x) for x in (q, k, v, do))
    _launch(
        _bwd_dq_kernel,
        F32_DQ_CONFIGS if q.dtype == torch.float32 else DQ_CONFIGS,
        lambda m: (cdiv(T, m["BLOCK_M"]), B * H),
        (qd, kd, vd, dod, _desc(dq), lse, delta, T, S, H, HKV, scale * LOG2E, scale),
        dict(BLOCK_D=pow2(D), BLOCK_DV=pow2(DV), CAUSAL=causal),
    )
    return dq


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
        dq, dk, dv = _backward(q, k, v, o, lse, _aligned(do), ctx.causal, ctx.scale)
        return dq, dk, dv, None, None


def _fwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
            scale: float) -> list[torch.Tensor]:  # fmt: skip
    """[o, lse]: SoftmaxAttentionFunction's forward. q, k, v have the copy engine's strides
    (`_tma_strides`); a start that is not 16-byte aligned is copied here, where the data
    pointer is known."""
    q, k, v = _aligned_start(q), _aligned_start(k), _aligned_start(v)
    o, lse = _forward(q, k, v, causal, scale)
    return [o, lse]


def _bwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor,
            lse: torch.Tensor, do: torch.Tensor, causal: bool,
            scale: float) -> list[torch.Tensor]:  # fmt: skip
    """[dq, dk, dv]: SoftmaxAttentionFunction's backward (q, k, v as `_fwd_op` takes them)."""
    q, k, v = _aligned_start(q), _aligned_start(k), _aligned_start(v)
    dq, dk, dv = _backward(q, k, v, o, lse, _aligned(do), causal, scale)
    return [dq, dk, dv]


_traced_fwd = opaque("softmax_attention_fwd", _fwd_op)
_traced_bwd = opaque("softmax_attention_bwd", _bwd_op)


def _traced_setup(ctx, inputs, output):
    q, k, v, causal, scale = inputs
    ctx.save_for_backward(q, k, v, output[0], output[1])
    ctx.causal, ctx.scale = causal, scale


def _traced_grad(ctx, grads):
    q, k, v, o, lse = ctx.saved_tensors
    dq, dk, dv = _traced_bwd(q, k, v, o, lse, grads[0], ctx.causal, ctx.scale)
    return dq, dk, dv, None, None


_traced_fwd.register_autograd(_traced_grad, setup_context=_traced_setup)


def _aligned_start(x: torch.Tensor) -> torch.Tensor:
    """x, or a copy of it (a dense x's strides kept) when its start is not 16-byte aligned, as
    the tensor copy engine needs. A fake tensor (the opaque operators' fake implementation,
    `_traced.skipping`) has no data pointer and is taken as it is."""
    return x if _backend.skip_launches or x.data_ptr() % 16 == 0 else x.clone()


def _aligned(x: torch.Tensor) -> torch.Tensor:
    """Contiguous, with a 16-byte aligned start, as the tensor copy engine needs."""
    return _aligned_start(x.contiguous())


def _tma_strides(x: torch.Tensor) -> bool:
    """Whether the copy engine can read x in place given a 16-byte aligned start: unit stride
    along the head width, 16-byte aligned strides, and the strides in `[B, T, H, D]` order each
    spanning the dimensions inside it (row-major with padding, such as q cut from a wider
    tensor). Permuted views (``[B, H, T, D]`` seen through a transpose) are not: the CUDA
    documentation describes tensor maps with each stride spanning the dimension inside it, and
    reading them in place has not been tried on a GPU."""
    unit = 16 // x.element_size()
    st, n = x.stride(), x.shape
    return (
        st[-1] == 1
        and all(s % unit == 0 for s in st[:-1])
        and all(st[i] >= st[i + 1] * n[i + 1] for i in range(x.dim() - 1))
    )


def _tma_ready(x: torch.Tensor) -> torch.Tensor:
    """x itself when the copy engine can read it in place (`_tma_strides` and a 16-byte aligned
    start), else an aligned contiguous copy."""
    if _tma_strides(x) and x.data_ptr() % 16 == 0:
        return x
    return _aligned(x)


def _check_args(q, k, v, scale):
    op = "softmax_attention"
    check_qkv(op, q, k, v, "[B, T, H, D]")
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
        tuple(v.shape[1:3]) == tuple(k.shape[1:3]),
        op,
        "v.shape[1:3] (S, Hkv)",
        f"{tuple(k.shape[1:3])} as k",
        tuple(v.shape[1:3]),
    )
    check(T > 0 and k.shape[1] > 0, op, "sequence lengths T, S", "at least 1", (T, k.shape[1]))
    check(k.shape[2] > 0 and H % k.shape[2] == 0, op, "heads", f"H={H} a multiple of k's heads",
          k.shape[2])  # fmt: skip
    check(
        scale is None or (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0),
        op,
        "scale",
        "None or a positive finite number",
        scale,
    )


def _sdpa(q, k, v, causal, scale):
    """The op through PyTorch's scaled_dot_product_attention (its CPU kernel works by blocks
    of keys, so memory stays linear in T): [B, H, T, D] views, grouped heads expanded."""
    group = q.shape[2] // k.shape[2]
    if group > 1:
        k, v = k.repeat_interleave(group, 2), v.repeat_interleave(group, 2)
    o = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal, scale=scale
    )
    return o.transpose(1, 2).contiguous()


@autocast_inputs
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
        backend: ``"auto"`` (Triton on CUDA tensors; elsewhere, and on GPUs the kernels
            do not run on, PyTorch's ``scaled_dot_product_attention``, which never holds the
            T x S scores on the CPU), ``"triton"`` (also on CPU under ``TRITON_INTERPRET=1``)
            or ``"reference"`` (the plain form that holds them, for checking; float64 always
            takes it).

    Returns:
        ``o`` of shape ``[B, T, H, Dv]`` and the dtype of ``q``.

    dtypes float16, bfloat16 and float32 (float32 products as three tf32 products: about
    float32's accuracy, several times slower than 16-bit);
    head widths up to 128 on the Triton path (64 and 128 are the tuned ones; wider heads
    take PyTorch's attention). Differentiable in q, k and v.

    >>> q = torch.randn(2, 63, 4, 64); k = v = torch.randn(2, 63, 2, 64)
    >>> softmax_attention(q, k, v, causal=True).shape
    torch.Size([2, 63, 4, 64])
    """
    _check_args(q, k, v, scale)
    scale = float(default_scale(scale, q.shape[-1]))
    kernel = use_triton(q, backend, "softmax_attention")  # (checks `backend` too)
    if backend == "reference" or q.dtype == torch.float64:  # float64: for checking
        return softmax_attention_reference(q, k, v, causal=causal, scale=scale)
    wide = q.shape[-1] > 128 or v.shape[-1] > 128
    check(not (wide and backend == "triton"), "softmax_attention",
          "head widths D, Dv for the Triton kernels", "at most 128 (else backend='auto')",
          (q.shape[-1], v.shape[-1]))  # fmt: skip
    if not kernel or wide:
        return _sdpa(q, k, v, causal, scale)
    # The copy engine moves rows of whole 16-byte units: odd head widths are padded with
    # zeros (which change no score) and the extra output columns dropped.
    D, DV = q.shape[-1], v.shape[-1]
    unit = 16 // q.element_size()
    pd, pdv = -D % unit, -DV % unit
    if pd:
        q, k = F.pad(q, (0, pd)), F.pad(k, (0, pd))
    if pdv:
        v = F.pad(v, (0, pdv))
    if tracing():  # torch.compile, torch.export: the opaque operators
        # the layout here; the alignment of the start, which tracing does not know, in the ops
        q, k, v = (x if _tma_strides(x) else x.contiguous() for x in (q, k, v))
        o = _traced_fwd(q, k, v, bool(causal), scale)[0]
    else:
        q, k, v = _tma_ready(q), _tma_ready(k), _tma_ready(v)
        o = SoftmaxAttentionFunction.apply(q, k, v, bool(causal), scale)
    return o[..., :DV] if pdv else o
