"""Cost rules of softmax and the norms, with the statistics PyTorch keeps per platform."""

from __future__ import annotations

from ncd.ops.norm import cost as norm_cost

from ...choices import choose
from .common import BoxView, Expr, Rule, Saved, _follow, _if, _in, _out, _own, costs, numel

SOFTMAX_FLOPS = 5  # max, subtract, exp, sum, divide


def _stat_bytes(v: BoxView, count: Expr, kernel: bool = True) -> Expr:
    """Bytes of `count` statistics of x. PyTorch's CUDA kernels for layer and batch norm keep
    them in float32 for 16-bit x (checked with saved-tensor hooks on an H200); its CPU kernels,
    the group norm's and norms written as PyTorch ops (`kernel=False`) in x's own dtype."""
    b = v.bytes_per(v.x())
    return count * (max(4, b) if kernel and v.platform == "cuda" else b)


def _rms_kept(v: BoxView, x_kept: Saved, rows: Expr, affine: bool) -> list[Saved]:
    """What PyTorch's RMS norm keeps of x (`x_kept`, the box's input or the residual sum).
    On CUDA one kernel (`_fused_rms_norm`): x and 1/rms per row. On the CPU it is written out
    at float32 width (float64 for float64): x as float32 (a copy where x has 16 bits), 1/rms
    and, with a weight, x/rms for the weight's gradient. 1/rms is float32 (float64 for
    float64) on both; checked with saved-tensor hooks on the CPU and an H200."""
    x = v.x()
    b = v.bytes_per(x)
    wide = max(4, b)
    rstd = _own("rstd", rows * wide, "1/rms")
    if v.platform != "cpu":
        return [x_kept, rstd]
    if b < 4:
        x_kept = _own("x32", numel(x) * 4, f"{x_kept.what} as float32")
    normed = _own("normed", numel(x) * wide, "x/rms (for the weight's gradient)")
    return [x_kept, rstd, *_if(affine, normed)]


@costs("softmax")
def softmax(v: BoxView) -> Rule:
    # the compiler's softmax runs in the input's memory order (a contraction's result is a
    # permuted view), so its output keeps that layout; softmin is torch's, row-major
    lay = v.x().names if v.box.variant == "softmin" else v.layouts["x"]
    return Rule(flops=SOFTMAX_FLOPS * numel(v.x()), saved=[_out()], layout={"out": lay})


@costs("layernorm")
def layernorm(v: BoxView) -> Rule:
    b, x = v.box, v.x()
    rows = numel(x) / v.sizes_of(x, b.over)
    return Rule(
        flops=(5 + 2 * b.affine) * numel(x),
        saved=[
            _in("x"),
            _own("mean", _stat_bytes(v, rows), "mean"),
            _own("rstd", _stat_bytes(v, rows), "1/std"),
        ],
    )


@costs("rmsnorm")
def rmsnorm(v: BoxView) -> Rule:
    b, x = v.box, v.x()
    rows = numel(x) / v.sizes_of(x, b.over)
    return Rule(flops=(3 + b.affine) * numel(x), saved=_rms_kept(v, _in("x"), rows, b.affine))


@costs("batchnorm")
def channelnorm(v: BoxView) -> Rule:
    b, x = v.box, v.x()
    c = v.size(x, b.channel)
    return Rule(
        flops=(5 + 2 * b.affine) * numel(x),
        saved=[_in("x"), _own("stats", _stat_bytes(v, 2 * c), "per-channel mean and 1/std")],
    )


@costs("unifiednorm")
def unifiednorm(v: BoxView) -> Rule:
    b, x = v.box, v.x()
    c = v.size(x, b.channel)
    return Rule(
        flops=4 * numel(x),
        saved=[
            _own("normed", v.nbytes(x), "x normalised by the smoothed statistics"),
            _own("stats", _stat_bytes(v, 2 * c, False), "per-channel statistic and its scale"),
        ],
    )


@costs("groupnorm")
def groupnorm(v: BoxView) -> Rule:
    b, x = v.box, v.x()
    rows = numel(x) / v.sizes_of(x, (b.channel, *b.over)) * v.resolve(b.n_groups())
    return Rule(
        flops=(5 + 2 * b.affine) * numel(x),
        saved=[
            _in("x"),
            _own("stats", _stat_bytes(v, 2 * rows, kernel=False), "per-group mean and 1/std"),
        ],
    )


@costs("normalize")
def normalize(v: BoxView) -> Rule:
    """F.normalize: x and the norm and its clamp in x's dtype kept; where the compiler runs
    ncd.ops.l2_norm (p = 2 on CUDA, compiler/choices.py), x and the float32 1/norm of each row,
    the kernel's traffic (ops/norm/cost.py, L2 normalisation as RMS without affine)."""
    b, x = v.box, v.x()
    rows = numel(x) / v.size(x, b.over)
    if b.p == 2 and v.platform == "cuda" and choose("l2_norm", v.platform) == "ncd":
        # the lowering permutes x's axes to the box's axis last: rows read in place where x's
        # memory order is already that, else copied (the copy kept for the backward); y in it
        order = (*(a for a in x.names if a != b.over), b.over)
        n, bp = v.size(x, b.over), v.bytes_per(x)
        copy = tuple(v.layouts["x"]) != order
        xs = _own("x_rows", numel(x) * bp, "x, its axis made last") if copy else _in("x")
        return Rule(
            flops=norm_cost.flops_forward(rows, n, rms=True, affine=False),
            flops_bwd=norm_cost.flops_backward(rows, n, rms=True, affine=False),
            saved=[xs, _own("rstd", 4 * rows, "1/norm of each row, float32")],
            io=norm_cost.io_forward(rows, n, bp, rms=True, affine=False) + 2 * copy * v.nbytes(x),
            io_bwd=norm_cost.io_backward(rows, n, bp, rms=True, affine=False),
            layout={"out": order},
            fused="ncd.ops.l2_norm",
        )
    return Rule(
        flops=3 * numel(x),
        saved=[
            _in("x"),
            _own("norm", _stat_bytes(v, 2 * rows, kernel=False), "the norm and its clamp"),
        ],
        layout=_follow(v),  # x divided by its norm: the quotient in x's memory order
    )
