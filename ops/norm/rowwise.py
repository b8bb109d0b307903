"""LayerNorm and RMSNorm over the last axis, with an optional residual add before them, and
L2 normalisation (F.normalize's, RMSNorm's kernels with the sum of squares not averaged):
Triton kernels, launch wrappers, autograd Functions and the public functions.

The input is seen as rows ``[M, N]`` (every leading axis folded into M). Forward: one program
per block of BLOCK_M rows; a row of up to MAX_TILE features is one tile held in registers
(read once), a wider one is streamed in chunks of MAX_TILE (read three times). Statistics in
float32 (mean and 1/sqrt(var + eps) per row), kept for the backward with the normalised input
(the residual sum for the add forms). Backward: a fixed number G of programs, each walking
the row blocks g, g + G, ...: dx row by row, and its own partial sums of dy * xhat (dweight)
and dy (dbias) in float32, written to ``[G, N]`` planes that a second kernel sums over G.
"""

import torch

from .._backend import FLOATS, cdiv, check, launch, pow2, sm_count, use_triton
from .._traced import opaque, tracing
from .._triton import tl, triton
from .reference import (
    add_layer_norm_reference,
    add_rms_norm_reference,
    l2_norm_reference,
    layer_norm_reference,
    rms_norm_reference,
)

MAX_TILE = 16384  # the widest row held as one tile; wider rows are streamed in chunks
ROW_TILE = 4096  # rows are stacked into one program's tile up to this many elements
PROGRAMS_PER_SM = 4  # backward programs per streaming multiprocessor
BWD_MOST = 32  # the most tile elements per thread in the backward's configurations


@triton.jit
def _rstd(ssq, N, eps, RSTD, rows, rmask, L2: tl.constexpr):
    """1 / sqrt(ssq / N + eps) per row (the norms), or for L2 1 / max(sqrt(ssq), eps)
    (F.normalize's clamp), stored in RSTD: negative where the clamp held, for the backward,
    in which the norm then has no gradient."""
    if L2:
        nrm = tl.sqrt(ssq)
        rstd = 1.0 / tl.maximum(nrm, eps)
        tl.store(RSTD + rows, tl.where(nrm < eps, -rstd, rstd), mask=rmask)
    else:
        rstd = 1.0 / tl.sqrt(ssq / N + eps)
        tl.store(RSTD + rows, rstd, mask=rmask)
    return rstd


@triton.jit
def _fwd_kernel(
    X, RES, W, B, Y, SUM, STATS,
    M, N, sx, sres, sy, ssum, eps,
    RMS: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_RES: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, ONE_TILE: tl.constexpr, L2: tl.constexpr,
):  # fmt: skip
    """Rows [pid * BLOCK_M, + BLOCK_M): y = norm(x (+ res)), the sum stored when HAS_RES,
    mean (LayerNorm) and rstd stored per row in STATS ([mean, rstd] or [rstd], each [M]).
    L2 (with RMS): y = x / max(|x|, eps), rstd stored negative where the norm was clamped."""
    MEAN = STATS
    RSTD = STATS
    if not RMS:
        RSTD = STATS + M
    pid = tl.program_id(0)
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < M
    r64 = rows.to(tl.int64)[:, None]
    cols = tl.arange(0, BLOCK_N)
    if ONE_TILE:
        cmask = cols < N
        mask = rmask[:, None] & cmask[None, :]
        x = tl.load(X + r64 * sx + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        if HAS_RES:
            x += tl.load(RES + r64 * sres + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            s = x.to(SUM.dtype.element_ty)
            tl.store(SUM + r64 * ssum + cols[None, :], s, mask=mask)
            x = s.to(tl.float32)  # the rounded sum, as the separate ops normalise it
        if RMS:
            xc = x
        else:
            mean = tl.sum(x, 1) / N
            xc = tl.where(mask, x - mean[:, None], 0.0)
            tl.store(MEAN + rows, mean, mask=rmask)
        rstd = _rstd(tl.sum(xc * xc, 1), N, eps, RSTD, rows, rmask, L2)
        y = xc * rstd[:, None]
        if HAS_W:
            y *= tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
        if HAS_B:
            y += tl.load(B + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
        tl.store(Y + r64 * sy + cols[None, :], y.to(Y.dtype.element_ty), mask=mask)
    else:
        # pass 1: the sum of the row (the residual sum stored on the way)
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for start in range(0, N, BLOCK_N):
            c = start + cols
            mask = rmask[:, None] & (c < N)[None, :]
            x = tl.load(X + r64 * sx + c[None, :], mask=mask, other=0.0).to(tl.float32)
            if HAS_RES:
                x += tl.load(RES + r64 * sres + c[None, :], mask=mask, other=0.0).to(tl.float32)
                s = x.to(SUM.dtype.element_ty)
                tl.store(SUM + r64 * ssum + c[None, :], s, mask=mask)
                x = s.to(tl.float32)
            acc += x
        mean = tl.sum(acc, 1) / N
        if RMS:
            mean = mean * 0.0
        else:
            tl.store(MEAN + rows, mean, mask=rmask)
        # pass 2: the variance about the mean
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for start in range(0, N, BLOCK_N):
            c = start + cols
            mask = rmask[:, None] & (c < N)[None, :]
            if HAS_RES:
                x = tl.load(SUM + r64 * ssum + c[None, :], mask=mask, other=0.0).to(tl.float32)
            else:
                x = tl.load(X + r64 * sx + c[None, :], mask=mask, other=0.0).to(tl.float32)
            xc = tl.where(mask, x - mean[:, None], 0.0)
            acc += xc * xc
        rstd = _rstd(tl.sum(acc, 1), N, eps, RSTD, rows, rmask, L2)
        # pass 3: the output
        for start in range(0, N, BLOCK_N):
            c = start + cols
            cmask = c < N
            mask = rmask[:, None] & cmask[None, :]
            if HAS_RES:
                x = tl.load(SUM + r64 * ssum + c[None, :], mask=mask, other=0.0).to(tl.float32)
            else:
                x = tl.load(X + r64 * sx + c[None, :], mask=mask, other=0.0).to(tl.float32)
            y = (x - mean[:, None]) * rstd[:, None]
            if HAS_W:
                y *= tl.load(W + c, mask=cmask, other=0.0).to(tl.float32)[None, :]
            if HAS_B:
                y += tl.load(B + c, mask=cmask, other=0.0).to(tl.float32)[None, :]
            tl.store(Y + r64 * sy + c[None, :], y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _bwd_rows(X, W, DY, MEAN, RSTD, rows, rmask, r64, c, cmask, sx, sdy,
              RMS: tl.constexpr, HAS_W: tl.constexpr, L2: tl.constexpr):  # fmt: skip
    """xhat, dy and w * dy of a tile of rows and columns c, in float32 (zeros outside)."""
    mask = rmask[:, None] & cmask[None, :]
    x = tl.load(X + r64 * sx + c[None, :], mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(DY + r64 * sdy + c[None, :], mask=mask, other=0.0).to(tl.float32)
    rstd = tl.load(RSTD + rows, mask=rmask, other=0.0)
    if L2:
        rstd = tl.abs(rstd)  # (the sign: the clamp, read by _row_sum)
    if RMS:
        xhat = x * rstd[:, None]
    else:
        mean = tl.load(MEAN + rows, mask=rmask, other=0.0)
        xhat = tl.where(mask, (x - mean[:, None]) * rstd[:, None], 0.0)
    if HAS_W:
        wdy = dy * tl.load(W + c, mask=cmask, other=0.0).to(tl.float32)[None, :]
    else:
        wdy = dy
    return xhat, dy, wdy, rstd


@triton.jit
def _row_sum(total, N, RSTD, rows, rmask, L2: tl.constexpr):
    """The row sum of xhat w dy as dx's formula takes it: its mean over N (the norms), its
    sum for L2, or 0 where L2's norm was clamped (a constant divisor: no gradient through it)."""
    if L2:
        return tl.where(tl.load(RSTD + rows, mask=rmask, other=0.0) > 0, total, 0.0)
    return total / N


@triton.jit
def _bwd_kernel(
    X, W, DY, DSUM, DX, PART, STATS,
    M, N, sx, sdy, sdsum, sdx,
    RMS: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_DSUM: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, ONE_TILE: tl.constexpr, L2: tl.constexpr,
):  # fmt: skip
    """dx = rstd (w dy - xhat mean(xhat w dy) [- mean(w dy)]) (+ dsum) for the row blocks
    pid, pid + G, ...; this program's partial sums of dy xhat and dy into row pid of PART's
    [G, N] planes (dweight's first when HAS_W, then dbias's)."""
    pid = tl.program_id(0)
    G = tl.num_programs(0)
    MEAN = STATS
    RSTD = STATS
    if not RMS:
        RSTD = STATS + M
    DW = PART
    DB = PART
    if HAS_W:
        DB = PART + G * N
    n_blocks = tl.cdiv(M, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    if ONE_TILE:
        cmask = cols < N
        dw = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        db = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for blk in range(pid, n_blocks, G):
            rows = blk * BLOCK_M + tl.arange(0, BLOCK_M)
            rmask = rows < M
            r64 = rows.to(tl.int64)[:, None]
            mask = rmask[:, None] & cmask[None, :]
            xhat, dy, wdy, rstd = _bwd_rows(
                X, W, DY, MEAN, RSTD, rows, rmask, r64, cols, cmask, sx, sdy, RMS, HAS_W, L2
            )
            c1 = _row_sum(tl.sum(xhat * wdy, 1), N, RSTD, rows, rmask, L2)
            if RMS:
                dx = (wdy - xhat * c1[:, None]) * rstd[:, None]
            else:
                c2 = tl.sum(wdy, 1) / N
                dx = (wdy - xhat * c1[:, None] - c2[:, None]) * rstd[:, None]
            if HAS_DSUM:
                dx += tl.load(DSUM + r64 * sdsum + cols[None, :], mask=mask, other=0.0).to(
                    tl.float32
                )
            tl.store(DX + r64 * sdx + cols[None, :], dx.to(DX.dtype.element_ty), mask=mask)
            if HAS_W:
                dw += dy * xhat
            if HAS_B:
                db += dy
        if HAS_W:
            tl.store(DW + pid * N + cols, tl.sum(dw, 0), mask=cmask)
        if HAS_B:
            tl.store(DB + pid * N + cols, tl.sum(db, 0), mask=cmask)
    else:
        # the partial sums live in this program's rows of DW, DB, updated chunk by chunk
        for start in range(0, N, BLOCK_N):
            c = start + cols
            if HAS_W:
                tl.store(DW + pid * N + c, tl.zeros([BLOCK_N], dtype=tl.float32), mask=c < N)
            if HAS_B:
                tl.store(DB + pid * N + c, tl.zeros([BLOCK_N], dtype=tl.float32), mask=c < N)
        for blk in range(pid, n_blocks, G):
            rows = blk * BLOCK_M + tl.arange(0, BLOCK_M)
            rmask = rows < M
            r64 = rows.to(tl.int64)[:, None]
            a1 = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
            a2 = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
            for start in range(0, N, BLOCK_N):
                c = start + cols
                xhat, dy, wdy, rstd = _bwd_rows(
                    X, W, DY, MEAN, RSTD, rows, rmask, r64, c, c < N, sx, sdy, RMS, HAS_W, L2
                )
                a1 += xhat * wdy
                a2 += wdy
            c1 = _row_sum(tl.sum(a1, 1), N, RSTD, rows, rmask, L2)
            c2 = tl.sum(a2, 1) / N
            for start in range(0, N, BLOCK_N):
                c = start + cols
                cmask = c < N
                mask = rmask[:, None] & cmask[None, :]
                xhat, dy, wdy, rstd = _bwd_rows(
                    X, W, DY, MEAN, RSTD, rows, rmask, r64, c, cmask, sx, sdy, RMS, HAS_W, L2
                )
                if RMS:
                    dx = (wdy - xhat * c1[:, None]) * rstd[:, None]
                else:
                    dx = (wdy - xhat * c1[:, None] - c2[:, None]) * rstd[:, None]
                if HAS_DSUM:
                    dx += tl.load(DSUM + r64 * sdsum + c[None, :], mask=mask, other=0.0).to(
                        tl.float32
                    )
                tl.store(DX + r64 * sdx + c[None, :], dx.to(DX.dtype.element_ty), mask=mask)
                if HAS_W:
                    p = tl.load(DW + pid * N + c, mask=cmask, other=0.0)
                    tl.store(DW + pid * N + c, p + tl.sum(dy * xhat, 0), mask=cmask)
                if HAS_B:
                    p = tl.load(DB + pid * N + c, mask=cmask, other=0.0)
                    tl.store(DB + pid * N + c, p + tl.sum(dy, 0), mask=cmask)


@triton.jit
def _sum_plane(P, OUT, G, N, c, cmask, BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr):
    """OUT[c] = sum over g < G of P[g, c] (P a [G, N] float32 plane), in OUT's dtype."""
    acc = tl.zeros([BLOCK_G, BLOCK_N], dtype=tl.float32)
    for g0 in range(0, G, BLOCK_G):
        g = g0 + tl.arange(0, BLOCK_G)
        mask = (g < G)[:, None] & cmask[None, :]
        acc += tl.load(P + g[:, None] * N + c[None, :], mask=mask, other=0.0)
    tl.store(OUT + c, tl.sum(acc, 0).to(OUT.dtype.element_ty), mask=cmask)


@triton.jit
def _sum_kernel(PART, OUT0, OUT1, plane0, plane1, G, N,
                BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr):  # fmt: skip
    """The parameter gradients from the backward's partial sums: program (i, j) sums columns
    [i * BLOCK_N, + BLOCK_N) of PART's plane `plane_j` ([G, N] each) into OUT_j."""
    c = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cmask = c < N
    if tl.program_id(1) == 0:
        _sum_plane(PART + plane0 * G * N, OUT0, G, N, c, cmask, BLOCK_G, BLOCK_N)
    else:
        _sum_plane(PART + plane1 * G * N, OUT1, G, N, c, cmask, BLOCK_G, BLOCK_N)


# ---------------------------------------------------------------- launch wrappers
def _tiles(N: int) -> tuple[int, int, bool]:
    """(BLOCK_M, BLOCK_N, ONE_TILE) for rows of N features: the whole row as one tile up to
    MAX_TILE (and several rows per program while the tile stays within ROW_TILE), else
    chunks of MAX_TILE."""
    n = pow2(N)
    if n > MAX_TILE:
        return 1, MAX_TILE, False
    return max(1, min(16, ROW_TILE // n)), n, True


def _configs(tile: int, most: int = 64) -> list:
    """num_warps giving each thread 8 to `most` elements of the tile (at least one choice)."""
    warps = [w for w in (1, 2, 4, 8, 16, 32) if 8 <= tile // (32 * w) <= most]
    return [triton.Config({}, num_warps=w) for w in warps or [4]]


SUM_BLOCK = (64, 64)  # (BLOCK_G, BLOCK_N) of the partial sums' reduction
_SUM_META = dict(BLOCK_G=SUM_BLOCK[0], BLOCK_N=SUM_BLOCK[1])
_SUM_CONFIGS = [triton.Config({}, num_warps=4)]

# Per-call constants, built once per (direction, N, tile limits, flags): the row block, the
# configurations to tune over and the constexpr arguments.
_launch_plans: dict = {}


def _plan(kind: str, N: int, rms: bool, has_w: bool, has_b: bool, extra: bool,
          l2: bool = False):  # fmt: skip
    """(BLOCK_M, configs, meta) of the forward (kind "fwd", extra: a residual) or the
    backward ("bwd", extra: the sum's cotangent); l2 (with rms): F.normalize's form."""
    N = int(N)  # (a symbolic size under torch.compile(dynamic=True): specialised here)
    key = (kind, N, MAX_TILE, ROW_TILE, rms, has_w, has_b, extra, l2)
    plan = _launch_plans.get(key)
    if plan is None:
        bm, bn, one = _tiles(N)
        meta = dict(RMS=rms or l2, HAS_W=has_w, HAS_B=has_b, BLOCK_M=bm, BLOCK_N=bn,
                    ONE_TILE=one, L2=l2)  # fmt: skip
        meta["HAS_RES" if kind == "fwd" else "HAS_DSUM"] = extra
        # the backward holds about six tiles per thread: 64 elements each spill (sm_90)
        most = 64 if kind == "fwd" else BWD_MOST
        plan = _launch_plans[key] = (bm, _configs(bm * bn, most), meta)
    return plan


def _programs(x: torch.Tensor, n_blocks: int) -> int:
    """The backward's number of programs G: PROGRAMS_PER_SM per multiprocessor (4 under the
    interpreter), at most one per row block."""
    if not x.is_cuda:
        return max(1, min(n_blocks, 4))
    return max(1, min(n_blocks, PROGRAMS_PER_SM * sm_count(x.device)))


def _rows(t: torch.Tensor) -> torch.Tensor:
    """t as [M, N] with unit stride along N (a view where the layout allows, else a copy)."""
    if t.dim() == 2 and t.stride(1) == 1:
        return t
    t2 = t.reshape(-1, t.shape[-1])
    return t2 if t2.stride(-1) == 1 or t2.shape[-1] == 1 else t2.contiguous()


def _forward(x2, r2, weight, bias, eps: float, rms: bool, l2: bool = False):
    """(y, s, stats): the output, the residual sum (None without a residual) and the float32
    statistics [mean, rstd] ([rstd] for RMSNorm and L2), each [M]."""
    M, N = x2.shape
    dev, dt = x2.device, x2.dtype
    y = torch.empty((M, N), device=dev, dtype=dt)
    s = None if r2 is None else torch.empty((M, N), device=dev, dtype=dt)
    stats = torch.empty((1 if rms or l2 else 2, M), device=dev, dtype=torch.float32)
    if M == 0:
        return y, s, stats
    bm, configs, meta = _plan(
        "fwd", N, rms, weight is not None, bias is not None, s is not None, l2
    )
    args = (
        x2, r2, weight, bias, y, s, stats, M, N, x2.stride(0),
        0 if r2 is None else r2.stride(0), y.stride(0), 0 if s is None else s.stride(0),
        float(eps),
    )  # fmt: skip
    grid = (cdiv(M, bm),)
    launch(_fwd_kernel, configs, lambda kw: grid, args, meta, {}, key=("N",))
    return y, s, stats


def _backward(xs, weight, bias, stats, dy2, dsum2, rms: bool, want_w: bool, want_b: bool,
              l2: bool = False):  # fmt: skip
    """(dx, dweight, dbias) from the normalised input xs [M, N] and dy; dsum (the residual
    sum's cotangent) added to dx when given; dweight (dbias) only when want_w (want_b)."""
    M, N = xs.shape
    dev = xs.device
    dx = torch.empty((M, N), device=dev, dtype=xs.dtype)
    dw = torch.empty(N, device=dev, dtype=weight.dtype) if want_w else None
    db = torch.empty(N, device=dev, dtype=bias.dtype) if want_b else None
    if M == 0:
        return dx, None if dw is None else dw.zero_(), None if db is None else db.zero_()
    has_w = weight is not None
    bm, configs, meta = _plan("bwd", N, rms, has_w, want_b, dsum2 is not None, l2)
    G = _programs(xs, cdiv(M, bm))
    # partial sums, one [G, N] plane each: dweight's whenever there is a weight (the kernel
    # reads w dy), then dbias's
    planes = has_w + want_b
    part = torch.empty((planes, G, N), device=dev, dtype=torch.float32) if planes else None
    args = (
        xs, weight, dy2, dsum2, dx, part, stats, M, N, xs.stride(0), dy2.stride(0),
        0 if dsum2 is None else dsum2.stride(0), dx.stride(0),
    )  # fmt: skip
    launch(_bwd_kernel, configs, lambda kw: (G,), args, meta, {}, key=("N",))
    if want_w or want_b:
        out0, plane0 = (dw, 0) if want_w else (db, int(has_w))
        out1, plane1 = (db, int(has_w)) if want_w and want_b else (out0, plane0)
        grid = (cdiv(N, SUM_BLOCK[1]), 1 + (want_w and want_b))
        args = (part, out0, out1, plane0, plane1, G, N)
        launch(_sum_kernel, _SUM_CONFIGS, lambda kw: grid, args, _SUM_META, {})
    return dx, dw, db


class NormFunction(torch.autograd.Function):
    """y = norm(x) over the last axis; keeps x, the weight and bias and the statistics."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, rms, l2):
        x2 = _rows(x)
        y, _, stats = _forward(x2, None, weight, bias, eps, rms, l2)
        ctx.save_for_backward(x2, weight, bias, stats)
        ctx.rms, ctx.l2 = rms, l2
        # (not a view of y, which autograd would refuse to let the caller change in place)
        return y if x.dim() == 2 else torch.ops.aten._unsafe_view(y, x.shape)

    @staticmethod
    def backward(ctx, dy):
        x2, weight, bias, stats = ctx.saved_tensors
        want_w = ctx.needs_input_grad[1] and weight is not None
        want_b = ctx.needs_input_grad[2] and bias is not None
        out = _norm_bwd_op(x2, weight, bias, stats, dy, ctx.rms, want_w, want_b, ctx.l2)
        dx = out[0] if dy.dim() == 2 else out[0].view(dy.shape)
        return dx, out[1] if want_w else None, out[-1] if want_b else None, None, None, None


class AddNormFunction(torch.autograd.Function):
    """(norm(s), s) with s = x + residual; keeps s (not x and residual), the weight and bias
    and the statistics. The backward adds the sum's cotangent to the norm's input gradient,
    which is then the gradient of both summands."""

    @staticmethod
    def forward(ctx, x, residual, weight, bias, eps, rms):
        x2, r2 = _rows(x), _rows(residual)
        y, s, stats = _forward(x2, r2, weight, bias, eps, rms)
        if x.dim() != 2:  # outputs that are not views, so that the caller may change them in
            # place; s is kept as returned, so that such a change is caught by the backward
            y, s = (torch.ops.aten._unsafe_view(t, x.shape) for t in (y, s))
        ctx.save_for_backward(s, weight, bias, stats)
        ctx.rms, ctx.shape = rms, x.shape
        return y, s

    @staticmethod
    def backward(ctx, dy, dsum):
        s, weight, bias, stats = ctx.saved_tensors
        want_w = ctx.needs_input_grad[2] and weight is not None
        want_b = ctx.needs_input_grad[3] and bias is not None
        out = _add_norm_bwd_op(s, weight, bias, stats, dy, dsum, ctx.rms, want_w, want_b)
        dx = out[0] if len(ctx.shape) == 2 else out[0].view(ctx.shape)
        return dx, dx, out[1] if want_w else None, out[-1] if want_b else None, None, None


# ---------------------------------------------------------------- opaque operators
# The two Functions as custom operators, for torch.compile and torch.export (_traced.py).
def _norm_fwd_op(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                 eps: float, rms: bool, l2: bool) -> list[torch.Tensor]:  # fmt: skip
    """[y, stats]: NormFunction's forward. Its input rows `_rows(x)` (x itself, or a view of
    it, where the layout allows) are not returned: `_norm_setup` forms them again."""
    y, _, stats = _forward(_rows(x), None, weight, bias, eps, rms, l2)
    return [y if x.dim() == 2 else torch.ops.aten._unsafe_view(y, x.shape), stats]


def _norm_bwd_op(x2: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                 stats: torch.Tensor, dy: torch.Tensor, rms: bool, want_w: bool,
                 want_b: bool, l2: bool) -> list[torch.Tensor]:  # fmt: skip
    """[dx] (+ [dweight] when want_w, + [dbias] when want_b): NormFunction's backward, dx as
    [M, N] rows."""
    dx, dw, db = _backward(x2, weight, bias, stats, _rows(dy), None, rms, want_w, want_b, l2)
    return [dx, *([dw] if want_w else []), *([db] if want_b else [])]


_traced_norm_fwd = opaque("norm_fwd", _norm_fwd_op)
_traced_norm_bwd = opaque("norm_bwd", _norm_bwd_op)


def _norm_setup(ctx, inputs, output):
    x, weight, bias, _, rms, l2 = inputs
    ctx.save_for_backward(_rows(x), weight, bias, output[1])
    ctx.rms, ctx.l2 = rms, l2


def _norm_grad(ctx, grads):
    x2, weight, bias, stats = ctx.saved_tensors
    dy = grads[0]
    want_w = ctx.needs_input_grad[1] and weight is not None
    want_b = ctx.needs_input_grad[2] and bias is not None
    out = _traced_norm_bwd(x2, weight, bias, stats, dy, ctx.rms, want_w, want_b, ctx.l2)
    dx = out[0] if dy.dim() == 2 else out[0].view(dy.shape)
    dw = out[1] if want_w else None
    db = out[-1] if want_b else None
    return dx, dw, db, None, None, None


_traced_norm_fwd.register_autograd(_norm_grad, setup_context=_norm_setup)


def _add_norm_fwd_op(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor | None,
                     bias: torch.Tensor | None, eps: float,
                     rms: bool) -> list[torch.Tensor]:  # fmt: skip
    """[y, s, stats]: AddNormFunction's forward."""
    y, s, stats = _forward(_rows(x), _rows(residual), weight, bias, eps, rms)
    if x.dim() != 2:
        y, s = (torch.ops.aten._unsafe_view(t, x.shape) for t in (y, s))
    return [y, s, stats]


def _add_norm_bwd_op(s: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                     stats: torch.Tensor, dy: torch.Tensor | None, dsum: torch.Tensor | None,
                     rms: bool, want_w: bool, want_b: bool) -> list[torch.Tensor]:  # fmt: skip
    """[dx] (+ [dweight] when want_w, + [dbias] when want_b): AddNormFunction's backward, dx
    as [M, N] rows, the gradient of both summands (returned once: outputs may not alias)."""
    s = _rows(s)
    dsum2 = None if dsum is None else _rows(dsum)
    if dy is None:
        dy = torch.zeros_like(s)
    dx, dw, db = _backward(s, weight, bias, stats, _rows(dy), dsum2, rms, want_w, want_b)
    return [dx, *([dw] if want_w else []), *([db] if want_b else [])]


_traced_add_norm_fwd = opaque("add_norm_fwd", _add_norm_fwd_op)
_traced_add_norm_bwd = opaque("add_norm_bwd", _add_norm_bwd_op)


def _add_norm_setup(ctx, inputs, output):
    x, _, weight, bias, _, rms = inputs
    ctx.save_for_backward(output[1], weight, bias, output[2])
    ctx.rms, ctx.shape = rms, x.shape
    # y's or s's gradient stays None where it is, as AddNormFunction receives them
    ctx.set_materialize_grads(False)


def _add_norm_grad(ctx, grads):
    s, weight, bias, stats = ctx.saved_tensors
    want_w = ctx.needs_input_grad[2] and weight is not None
    want_b = ctx.needs_input_grad[3] and bias is not None
    out = _traced_add_norm_bwd(s, weight, bias, stats, grads[0], grads[1], ctx.rms, want_w,
                               want_b)  # fmt: skip
    dx = out[0] if len(ctx.shape) == 2 else out[0].view(ctx.shape)
    dw = out[1] if want_w else None
    db = out[-1] if want_b else None
    return dx, dx, dw, db, None, None


_traced_add_norm_fwd.register_autograd(_add_norm_grad, setup_context=_add_norm_setup)


# ---------------------------------------------------------------- public functions
def _check(op, x, residual, weight, bias, eps):
    T = torch.Tensor
    if (  # the common case without building any message (this runs on every call)
        isinstance(x, T) and x.dtype in FLOATS and x.dim() >= 1
        and (residual is None or (isinstance(residual, T) and residual.shape == x.shape
                                  and residual.dtype == x.dtype and residual.device == x.device))
        and (weight is None or (isinstance(weight, T) and weight.shape == x.shape[-1:]
                                and weight.device == x.device))
        and (bias is None or (isinstance(bias, T) and bias.shape == x.shape[-1:]
                              and bias.device == x.device))
        and isinstance(eps, (int, float)) and eps > 0
    ):  # fmt: skip
        return
    check(isinstance(x, T), op, "x", "a torch.Tensor", type(x).__name__)
    check(x.dim() >= 1, op, "x.shape", "at least 1 dim [..., N]", tuple(x.shape))
    check(x.dtype in FLOATS, op, "x.dtype", "float16, bfloat16, float32 or float64", x.dtype)
    n = tuple(x.shape[-1:])
    if residual is not None:
        check(isinstance(residual, T), op, "residual", "a torch.Tensor", type(residual).__name__)
        check(residual.shape == x.shape, op, "residual.shape", f"{tuple(x.shape)} as x",
              tuple(residual.shape))  # fmt: skip
        check(residual.dtype == x.dtype, op, "residual.dtype", f"{x.dtype} as x", residual.dtype)
        check(residual.device == x.device, op, "residual.device", f"{x.device} as x",
              residual.device)  # fmt: skip
    for name, p in (("weight", weight), ("bias", bias)):
        if p is None:
            continue
        check(isinstance(p, T), op, name, "a torch.Tensor or None", type(p).__name__)
        check(tuple(p.shape) == n, op, f"{name}.shape", f"{n}, the last axis of x",
              tuple(p.shape))  # fmt: skip
        check(p.device == x.device, op, f"{name}.device", f"{x.device} as x", p.device)
    check(isinstance(eps, (int, float)) and eps > 0, op, "eps", "a positive number", eps)


def _promoted(x, residual):
    """x and residual in their promoted dtype where both are float tensors of two dtypes."""
    T = torch.Tensor
    if (isinstance(x, T) and isinstance(residual, T) and x.dtype != residual.dtype
            and x.dtype in FLOATS and residual.dtype in FLOATS):  # fmt: skip
        dt = torch.promote_types(x.dtype, residual.dtype)
        return x.to(dt), residual.to(dt)
    return x, residual


def _params(weight, bias):
    """Contiguous weight and bias (they are read by column index)."""
    w = None if weight is None else weight.contiguous()
    return w, (None if bias is None else bias.contiguous())


def _kernel(x, backend: str, op: str) -> bool:
    """The Triton kernels, but for float64 and rows of no features (PyTorch's form then)."""
    return use_triton(x, backend, op) and x.dtype != torch.float64 and x.shape[-1] > 0


def layer_norm(x, weight=None, bias=None, eps: float = 1e-5, backend: str = "auto"):
    """LayerNorm over the last axis: ``(x - mean) / sqrt(var + eps) * weight + bias``.

    Args:
        x: ``[..., N]``, float16, bfloat16 or float32 (float64 runs the reference).
        weight, bias: optional ``[N]`` (any float dtype; read in float32).
        eps: added to the (biased) variance.
        backend: ``"auto"`` (Triton on CUDA tensors, PyTorch on CPU), ``"triton"`` (also on
            CPU under ``TRITON_INTERPRET=1``) or ``"reference"``.

    Returns:
        ``y [..., N]`` in x's dtype. Statistics in float32; any N (one tile per row up to
        16384 features, streamed beyond).
    """
    _check("layer_norm", x, None, weight, bias, eps)
    if not _kernel(x, backend, "layer_norm"):
        return layer_norm_reference(x, weight, bias, eps)
    if tracing():  # torch.compile, torch.export: the opaque operators
        return _traced_norm_fwd(x, *_params(weight, bias), float(eps), False, False)[0]
    return NormFunction.apply(x, *_params(weight, bias), float(eps), False, False)


def rms_norm(x, weight=None, eps: float = 1e-6, backend: str = "auto"):
    """RMSNorm over the last axis: ``x / sqrt(mean(x^2) + eps) * weight``.

    Shapes, dtypes and ``backend`` as `layer_norm`'s. Returns ``y [..., N]`` in x's dtype.
    """
    _check("rms_norm", x, None, weight, None, eps)
    if not _kernel(x, backend, "rms_norm"):
        return rms_norm_reference(x, weight, eps)
    if tracing():
        return _traced_norm_fwd(x, _params(weight, None)[0], None, float(eps), True, False)[0]
    return NormFunction.apply(x, _params(weight, None)[0], None, float(eps), True, False)


def l2_norm(x, eps: float = 1e-12, backend: str = "auto"):
    """L2 normalisation over the last axis: ``x / max(sqrt(sum(x^2)), eps)``, the function
    and gradient of ``F.normalize(x, p=2, dim=-1, eps=eps)`` (no gradient through the norm
    where the clamp holds), with the norm in float32. DeltaNet's keys and queries.

    Shapes, dtypes and ``backend`` as `layer_norm`'s. Returns ``y [..., N]`` in x's dtype.
    """
    _check("l2_norm", x, None, None, None, eps)
    if not _kernel(x, backend, "l2_norm"):
        return l2_norm_reference(x, eps)
    if tracing():
        return _traced_norm_fwd(x, None, None, float(eps), True, True)[0]
    return NormFunction.apply(x, None, None, float(eps), True, True)


def add_layer_norm(x, residual, weight=None, bias=None, eps: float = 1e-5, backend="auto"):
    """The pre-norm residual step ``s = x + residual; y = layer_norm(s)`` in one pass.

    Args:
        x, residual: ``[..., N]``, one shape; of two float dtypes (a bfloat16 sublayer's
            output on a float32 residual stream, as under autocast) both are taken in the
            promoted one, as ``x + residual`` would be. The rest as `layer_norm`'s.

    Returns:
        ``(y, s)``, both ``[..., N]`` in that dtype: the normalised sum and the sum itself
        (rounded to the dtype, the value normalised). The gradient of both summands is
        ``dnorm(dy) + ds``.
    """
    x, residual = _promoted(x, residual)
    _check("add_layer_norm", x, residual, weight, bias, eps)
    if not _kernel(x, backend, "add_layer_norm"):
        return add_layer_norm_reference(x, residual, weight, bias, eps)
    if tracing():
        out = _traced_add_norm_fwd(x, residual, *_params(weight, bias), float(eps), False)
        return out[0], out[1]
    return AddNormFunction.apply(x, residual, *_params(weight, bias), float(eps), False)


def add_rms_norm(x, residual, weight=None, eps: float = 1e-6, backend: str = "auto"):
    """``s = x + residual; y = rms_norm(s)`` in one pass; returns ``(y, s)`` as
    `add_layer_norm` does (mixed float dtypes promoted as there)."""
    x, residual = _promoted(x, residual)
    _check("add_rms_norm", x, residual, weight, None, eps)
    if not _kernel(x, backend, "add_rms_norm"):
        return add_rms_norm_reference(x, residual, weight, eps)
    if tracing():
        out = _traced_add_norm_fwd(x, residual, _params(weight, None)[0], None, float(eps), True)
        return out[0], out[1]
    return AddNormFunction.apply(x, residual, _params(weight, None)[0], None, float(eps), True)
