"""Cost rules of reductions over named axes, cumulative scans and top-k selection."""

from __future__ import annotations

from .common import ZERO, BoxView, Rule, Saved, _follow, _if, _in, _out, _own, costs, numel


@costs("reduce")
def reduce(v: BoxView) -> Rule:
    op = v.box.op
    saved = [_in("x"), _out()] if op in ("max", "min", "prod", "logsumexp") else []
    per = 3 if op == "logsumexp" else 1
    return Rule(flops=per * numel(v.x()), saved=_if(v.grad("x"), *saved))


@costs("scan")
def scan(v: BoxView) -> Rule:
    op, x = v.box.op, v.x()
    saved: list[Saved] = []
    if op == "prod":
        saved = [_in("x"), _out()]
    elif op == "max":
        saved = [_own("indices", numel(x) * 8, "argmax indices (int64)")]
    # a running sum's backward is a reverse running sum: flip, cumsum, flip
    bwd_temps = 2 * v.nbytes(x) if op == "sum" and v.grad("x") else ZERO
    return Rule(flops=numel(x), saved=_if(v.grad("x"), *saved), layout=_follow(v),
                bwd_temps=bwd_temps)  # fmt: skip


@costs("topk")
def topk(v: BoxView) -> Rule:
    v.out("values")
    return Rule(
        flops=numel(v.x()),
        saved=_if(v.grad("x"), _out("indices", "indices (int64)")),
    )
