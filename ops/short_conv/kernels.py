"""Causal depthwise short convolution over T, with an optional SiLU after it: Triton kernels,
launch wrappers, the autograd Function and the public function.

x is ``[B, T, C]`` with unit stride along C (channels last: the layout the projections before
it write, so no transpose). Forward: one program per (block of BT tokens, block of BC
channels, sequence of the batch): the W taps are W shifted loads of the same tile (the halo of
W - 1 tokens before it comes from L1/L2), accumulated in float32, the bias and SiLU applied,
y written in x's dtype. Only x is kept for the backward.

Backward, two kernels: with dy(t) = dout(t) * act'(z(t)) (the pre-activation z recomputed
from x; dy = dout without an activation),

    dx(t)   = sum_s w[W - 1 - s] dy(t + s)           s = 0 .. W - 1
    dw[j]   = sum_t dy(t) x(t - (W - 1) + j)
    db      = sum_t dy(t)

The first kernel computes dy of SPAN tokens per program (W shifted loads of x for z, one of
dout), writes it in x's dtype (with SiLU; without, dy is dout and nothing is written),
accumulates the terms of dw and db elementwise, and writes their float32 sums over its tokens
to its own row of a
``[programs along T, W + 1, C]`` buffer that one sum over its first axis reduces: no atomics,
deterministic. The second reads dy at W shifts and writes dx. Packed sequences (cu_seqlens)
pass a per-token start position: a tap before its token's start reads zero, and a dy after
its sequence's end is zero.
"""

import torch

from .._backend import cdiv, check, check_backend, check_cu_seqlens, launch, next_pow2, use_triton
from .._traced import opaque, tracing
from .._triton import tl, triton
from .cost import MAX_WIDTH, SPAN
from .reference import check_params, sequence_starts, short_conv_reference, weight_2d

_CONFIGS = [
    triton.Config({"BT": bt, "BC": bc}, num_warps=w)
    for bt, bc, w in ((64, 128, 4), (32, 256, 4), (128, 64, 4), (64, 256, 8))
]
_INTERPRET = {"BT": 16, "BC": 32}
# The backward's first kernel walks SPAN tokens (cost.py) per program in blocks of BT,
# accumulating its dw and db terms elementwise and summing them over the tokens once, at the
# end: one float32 row of partial sums per SPAN tokens. Its [W, BT, BC] accumulator bounds the
# tiles (no spills for sm_90: bench/diagnose/sm90_report.py --kernels conv).
_DY_CONFIGS = [
    triton.Config({"BT": bt, "BC": bc}, num_warps=w)
    for bt, bc, w in ((32, 64, 4), (64, 32, 4), (16, 128, 4), (32, 128, 8), (64, 64, 8))
]


@triton.jit
def _tap(X, b_start, rows, cols, T, C, sxt, shift, VARLEN: tl.constexpr):
    """x at tokens `rows - shift` of the tile's channels, zero before the sequence's start."""
    src = rows - shift
    ok = (src >= 0) & (rows < T)
    if VARLEN:
        ok = ok & (src >= b_start)
    ptrs = X + src.to(tl.int64)[:, None] * sxt + cols[None, :]
    return tl.load(ptrs, mask=ok[:, None] & (cols < C)[None, :], other=0.0).to(tl.float32)


@triton.jit
def _preact(X, Wt, BIAS, b_start, rows, cols, T, C, sxt, swc,
            KW: tl.constexpr, HAS_B: tl.constexpr, VARLEN: tl.constexpr, BT: tl.constexpr,
            BC: tl.constexpr):  # fmt: skip
    """bias + sum_j w[:, j] x(rows - (KW - 1) + j), float32 [BT, BC]."""
    cmask = cols < C
    acc = tl.zeros((BT, BC), dtype=tl.float32)
    for j in tl.static_range(KW):
        wj = tl.load(Wt + cols * swc + j, mask=cmask, other=0.0).to(tl.float32)
        acc += _tap(X, b_start, rows, cols, T, C, sxt, KW - 1 - j, VARLEN) * wj[None, :]
    if HAS_B:
        acc += tl.load(BIAS + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
    return acc


@triton.jit
def _fwd_kernel(
    X, Wt, BIAS, Y, START, T, C, sxb, sxt, syb, syt, swc,
    KW: tl.constexpr, HAS_B: tl.constexpr, SILU: tl.constexpr, VARLEN: tl.constexpr,
    BT: tl.constexpr, BC: tl.constexpr,
):  # fmt: skip
    i_t, i_c, i_b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rows = i_t * BT + tl.arange(0, BT)
    cols = i_c * BC + tl.arange(0, BC)
    X += i_b.to(tl.int64) * sxb
    b_start = 0
    if VARLEN:
        b_start = tl.load(START + rows, mask=rows < T, other=0)
    acc = _preact(X, Wt, BIAS, b_start, rows, cols, T, C, sxt, swc, KW, HAS_B, VARLEN,
                  BT, BC)  # fmt: skip
    if SILU:
        acc = acc * tl.sigmoid(acc)
    mask = (rows < T)[:, None] & (cols < C)[None, :]
    out = Y + i_b.to(tl.int64) * syb + rows.to(tl.int64)[:, None] * syt + cols[None, :]
    tl.store(out, acc.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _bwd_dy_kernel(
    X, Wt, BIAS, DO, DY, PART, START, T, C, sxb, sxt, sdb, sdt, syb, syt, swc,
    KW: tl.constexpr, HAS_B: tl.constexpr, SILU: tl.constexpr, VARLEN: tl.constexpr,
    KP: tl.constexpr, SPAN: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr,
):  # fmt: skip
    """dy = dout act'(z) of the program's SPAN tokens (written in x's dtype with SiLU), and
    its float32 partial sums of dw and db over them (from dy before rounding)."""
    i_t, i_c, i_b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    cols = i_c * BC + tl.arange(0, BC)
    cmask = cols < C
    X += i_b.to(tl.int64) * sxb
    DO += i_b.to(tl.int64) * sdb
    DY += i_b.to(tl.int64) * syb
    taps = tl.arange(0, KP)  # KP: KW's next power of two
    # [j, t, c]: dy(t) x(t - (KW - 1) + j), summed over t after the loop
    wacc = tl.zeros((KP, BT, BC), dtype=tl.float32)
    bacc = tl.zeros((BT, BC), dtype=tl.float32)
    for i in tl.range(SPAN // BT):
        rows = i_t * SPAN + i * BT + tl.arange(0, BT)
        mask = (rows < T)[:, None] & cmask[None, :]
        b_start = 0
        if VARLEN:
            b_start = tl.load(START + rows, mask=rows < T, other=0)
        dptr = DO + rows.to(tl.int64)[:, None] * sdt + cols[None, :]
        dy = tl.load(dptr, mask=mask, other=0.0).to(tl.float32)
        if SILU:
            z = _preact(X, Wt, BIAS, b_start, rows, cols, T, C, sxt, swc, KW, HAS_B, VARLEN,
                        BT, BC)  # fmt: skip
            sig = tl.sigmoid(z)
            dy = dy * sig * (1.0 + z * (1.0 - sig))
            out = DY + rows.to(tl.int64)[:, None] * syt + cols[None, :]
            tl.store(out, dy.to(DY.dtype.element_ty), mask=mask)
        for j in tl.static_range(KW):
            xj = _tap(X, b_start, rows, cols, T, C, sxt, KW - 1 - j, VARLEN)
            wacc += tl.where(taps[:, None, None] == j, (dy * xj)[None, :, :], 0.0)
        bacc += dy
    wsum = tl.sum(wacc, axis=1)
    bsum = tl.sum(bacc, axis=0)
    prow = PART + (i_b * tl.num_programs(0) + i_t).to(tl.int64) * (KW + 1) * C
    wmask = (taps < KW)[:, None] & cmask[None, :]
    tl.store(prow + taps[:, None] * C + cols[None, :], wsum, mask=wmask)
    tl.store(prow + KW * C + cols, bsum, mask=cmask)


@triton.jit
def _bwd_dx_kernel(
    DY, Wt, DX, START, T, C, syb, syt, sob, sot, swc,
    KW: tl.constexpr, VARLEN: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr,
):  # fmt: skip
    """dx(t) = sum_s w[W - 1 - s] dy(t + s), dy of the same sequence only."""
    i_t, i_c, i_b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    base = i_t * BT + tl.arange(0, BT)
    cols = i_c * BC + tl.arange(0, BC)
    cmask = cols < C
    DY += i_b.to(tl.int64) * syb
    b_start = 0
    if VARLEN:
        b_start = tl.load(START + base, mask=base < T, other=0)
    dx = tl.zeros((BT, BC), dtype=tl.float32)
    for s in tl.static_range(KW):
        rows = base + s
        ok = rows < T
        if VARLEN:
            ok = ok & (tl.load(START + rows, mask=ok, other=-1) == b_start)
        ptr = DY + rows.to(tl.int64)[:, None] * syt + cols[None, :]
        dy = tl.load(ptr, mask=ok[:, None] & cmask[None, :], other=0.0).to(tl.float32)
        w = tl.load(Wt + cols * swc + (KW - 1 - s), mask=cmask, other=0.0).to(tl.float32)
        dx += dy * w[None, :]
    mask = (base < T)[:, None] & cmask[None, :]
    out = DX + i_b.to(tl.int64) * sob + base.to(tl.int64)[:, None] * sot + cols[None, :]
    tl.store(out, dx.to(DX.dtype.element_ty), mask=mask)


def _starts(x, cu_seqlens):
    if cu_seqlens is None:
        return None
    return sequence_starts(cu_seqlens.to(x.device), x.shape[1])


def _meta(W, bias, silu, start):
    return {"KW": W, "HAS_B": bias is not None, "SILU": silu, "VARLEN": start is not None}


def _forward(x, w, bias, silu, start):
    B, T, C = x.shape
    y = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    if x.numel() == 0:
        return y
    args = (x, w, bias, y, start, T, C, x.stride(0), x.stride(1), y.stride(0), y.stride(1),
            w.stride(0))  # fmt: skip
    launch(_fwd_kernel, _CONFIGS, lambda kw: (cdiv(T, kw["BT"]), cdiv(C, kw["BC"]), B), args,
           _meta(w.shape[1], bias, silu, start), _INTERPRET, key=("T", "C"))  # fmt: skip
    return y


def _backward(x, w, bias, silu, start, dout, want_w, want_b):
    """(dx, dw, db): dw [C, W] and db [C] in float32 (None unless wanted). Two kernels: dy and
    the partial sums of dw and db, then dx from dy. Without an activation dy is dout itself
    and nothing is written for it."""
    B, T, C = x.shape
    W = w.shape[1]
    dx = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    if x.numel() == 0:
        zeros = torch.zeros((C, W + 1), device=x.device, dtype=torch.float32)
        return dx, zeros[:, :W] if want_w else None, zeros[:, W] if want_b else None
    span = SPAN if x.is_cuda else 2 * _INTERPRET["BT"]
    part = torch.empty((B * cdiv(T, span), W + 1, C), device=x.device, dtype=torch.float32)
    dy = torch.empty(x.shape, device=x.device, dtype=x.dtype) if silu else dout
    args = (x, w, bias, dout, dy, part, start, T, C, x.stride(0), x.stride(1), dout.stride(0),
            dout.stride(1), dy.stride(0), dy.stride(1), w.stride(0))  # fmt: skip
    meta = {**_meta(W, bias, silu, start), "KP": next_pow2(W), "SPAN": span}
    launch(_bwd_dy_kernel, _DY_CONFIGS, lambda kw: (cdiv(T, span), cdiv(C, kw["BC"]), B), args,
           meta, _INTERPRET, key=("T", "C"))  # fmt: skip
    args = (dy, w, dx, start, T, C, dy.stride(0), dy.stride(1), dx.stride(0), dx.stride(1),
            w.stride(0))  # fmt: skip
    launch(_bwd_dx_kernel, _CONFIGS, lambda kw: (cdiv(T, kw["BT"]), cdiv(C, kw["BC"]), B), args,
           {"KW": W, "VARLEN": start is not None}, _INTERPRET, key=("T", "C"))  # fmt: skip
    sums = part.sum(0) if want_w or want_b else None  # [W + 1, C]
    dw = sums[:W].t() if want_w else None
    db = sums[W] if want_b else None
    return dx, dw, db


def _operands(x, weight, bias, cu_seqlens):
    """(w [C, W], bias, per-token sequence starts or None) as the kernels read them."""
    w = weight_2d(weight)
    if w.stride(1) != 1 and w.shape[1] > 1:  # the kernels read a filter with unit stride
        w = w.contiguous()
    if bias is not None and bias.stride(0) != 1:  # ... and the bias
        bias = bias.contiguous()
    return w, bias, _starts(x, cu_seqlens)


class ShortConvFunction(torch.autograd.Function):
    """act(causal depthwise conv of x over T); keeps x, the weight and the bias."""

    @staticmethod
    def forward(ctx, x, weight, bias, silu, cu_seqlens):
        w, bias, start = _operands(x, weight, bias, cu_seqlens)
        y = _forward(x, w, bias, silu, start)
        ctx.save_for_backward(x, w, bias, start)
        ctx.silu, ctx.wshape = silu, weight.shape
        return y

    @staticmethod
    def backward(ctx, dout):
        x, w, bias, start = ctx.saved_tensors
        _, want_w, want_b = ctx.needs_input_grad[:3]
        if dout.stride(-1) != 1:
            dout = dout.contiguous()
        dx, dw, db = _backward(
            x, w, bias, ctx.silu, start, dout, want_w, want_b and bias is not None
        )
        if dw is not None:
            dw = dw.to(w.dtype).reshape(ctx.wshape)
        if db is not None:
            db = db.to(bias.dtype)
        return dx, dw, db, None, None


# The same forward and backward as opaque operators, for torch.compile and torch.export
# (_traced.py). They take the operands of `_operands` (computed in the traced graph), so the
# weight's gradient reaches a [C, 1, W] weight through autograd of weight_2d's view.
def _fwd_op(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None,
            start: torch.Tensor | None, silu: bool) -> torch.Tensor:  # fmt: skip
    return _forward(x, w, bias, silu, start)


def _bwd_op(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None,
            start: torch.Tensor | None, dout: torch.Tensor, silu: bool, want_w: bool,
            want_b: bool) -> list[torch.Tensor]:  # fmt: skip
    """[dx] (+ [dw] when want_w, + [db] when want_b), in the dtypes of x, w and bias."""
    if dout.stride(-1) != 1:
        dout = dout.contiguous()
    dx, dw, db = _backward(x, w, bias, silu, start, dout, want_w, want_b)
    if dw is not None:
        dw = dw.to(w.dtype)
    if db is not None:
        db = db.to(bias.dtype)
        if dw is not None and dw.dtype == db.dtype == torch.float32:
            db = db.clone()  # dw and db view one float32 buffer: outputs must not alias
    return [dx, *([dw] if want_w else []), *([db] if want_b else [])]


_traced_fwd = opaque("short_conv_fwd", _fwd_op)
_traced_bwd = opaque("short_conv_bwd", _bwd_op)


def _traced_setup(ctx, inputs, output):
    x, w, bias, start, silu = inputs
    ctx.save_for_backward(x, w, bias, start)
    ctx.silu = silu


def _traced_grad(ctx, dout):
    x, w, bias, start = ctx.saved_tensors
    want_w = ctx.needs_input_grad[1]
    want_b = bias is not None and ctx.needs_input_grad[2]
    out = _traced_bwd(x, w, bias, start, dout, ctx.silu, want_w, want_b)
    return out[0], (out[1] if want_w else None), (out[-1] if want_b else None), None, None


_traced_fwd.register_autograd(_traced_grad, setup_context=_traced_setup)


# ---------------------------------------------------------------- public functions
def _check(op, x, weight, bias, activation, cu_seqlens):
    T = torch.Tensor
    check(isinstance(x, T), op, "x", "a torch.Tensor", type(x).__name__)
    check(x.dim() == 3, op, "x.shape", "[B, T, C] (channels last)", tuple(x.shape))
    check_params(op, x, weight, bias, activation)
    check_cu_seqlens(op, cu_seqlens, x.shape[0], x.shape[1])


def short_conv(x, weight, bias=None, *, activation=None, cu_seqlens=None, backend="auto"):
    """Causal depthwise convolution over T, optionally followed by SiLU (the short convolution
    of Mamba, DeltaNet and Gated DeltaNet).

    x: ``[B, T, C]``, channels last; weight: ``[C, W]`` or nn.Conv1d's depthwise ``[C, 1, W]``;
    bias: ``[C]`` or None; activation: None or ``"silu"``; cu_seqlens: N + 1 offsets of packed
    sequences along T (x ``[1, total, C]``), none of which sees another's inputs. Returns y of
    x's shape and dtype, ``y[b, t, c] = act(bias[c] + sum_j weight[c, j] x[b, t - W + 1 + j, c])``
    with zeros before each sequence's start. CUDA tensors run the Triton kernels (W <= 8),
    others the PyTorch reference (reference.py).
    """
    op = "short_conv"
    _check(op, x, weight, bias, activation, cu_seqlens)
    check_backend(backend, op)  # also where the kernels are not asked
    triton_ok = weight.shape[-1] <= MAX_WIDTH and x.dtype != torch.float64
    if backend == "triton" and not triton_ok:
        check(False, op, "backend='triton'", f"W <= {MAX_WIDTH} and a 16- or 32-bit float x",
              f"W={weight.shape[-1]}, {x.dtype}")  # fmt: skip
    if not (triton_ok and use_triton(x, backend, op)):
        return short_conv_reference(x, weight, bias, activation, cu_seqlens)
    if x.stride(2) != 1:
        x = x.contiguous()
    if tracing():  # torch.compile, torch.export: the opaque operators
        return _traced_fwd(x, *_operands(x, weight, bias, cu_seqlens), activation == "silu")
    return ShortConvFunction.apply(x, weight, bias, activation == "silu", cu_seqlens)
