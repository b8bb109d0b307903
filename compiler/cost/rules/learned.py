"""Cost rules of learned boxes: linear maps (exact, WTA-CRS, L-Mul), parameters, embeddings."""

from __future__ import annotations

import sympy

from .common import ZERO, BoxView, Rule, _in, _is_view, _own, costs, numel
from .contraction import _Operand, _operand, einsum


@costs("linear")
def linear(v: BoxView) -> Rule:
    """As the compiler lowers it: `F.linear` on the weight viewed as a matrix when the map
    consumes the input's trailing axes (nn.Linear's one fused matmul with the bias), einsum
    otherwise."""
    b, x, y = v.box, v.x(), v.out()
    if b.backward != "exact" or b.product != "exact":
        return _linear_sampled_or_lmul(v)
    w = v.params["weight"]
    bias = numel(y) if b.bias else ZERO
    mm = 2 * numel(y) * v.sizes_of(x, b.over)
    mm_bwd = mm * (2 if v.grad("x") else 1)
    n_in = len(b.over)
    if tuple(x.names[-n_in:]) == tuple(b.over):
        lead = [a for a in x.names if a not in b.over]
        copied = not _is_view(v.layouts["x"], [lead, list(b.over)], v.units)
        kept = _own("x_copy", v.nbytes(x), "relaid-out copy of input x") if copied else _in("x")
        return Rule(
            flops=mm + bias,
            mm=mm,
            mm_bwd=mm_bwd,
            flops_bwd=mm_bwd + bias,
            saved=[kept],
            layout={"out": y.names},
            extra_io=2 * v.nbytes(x) if copied else ZERO,
        )
    ops = [
        _operand(v, "x"),
        _Operand(
            (*b.out, *b.over), (*b.out, *b.over), None, True, {a.name: a.size for a in w.axes}
        ),
    ]
    e = einsum(v, ops, y, y.dtype)
    return Rule(
        flops=e.flops + bias,
        mm=e.mm,
        mm_bwd=e.mm_bwd,
        flops_bwd=e.mm_bwd + bias,
        saved=e.saved,
        layout={"out": e.layout},
        extra_io=e.io,
        # the einsum's result before the bias is added
        temps=e.temps + (v.nbytes(y) if b.bias else ZERO),
        # the weight's gradient leaves the batched product laid out (over, out) and is copied
        # into the weight's own layout when autograd accumulates it
        bwd_temps=v.nbytes(w),
    )


@costs("param")
def param(v: BoxView) -> Rule:
    return Rule(alias={"out": "@weight"})


@costs("embedding")
def embedding(v: BoxView) -> Rule:
    y = v.out()
    return Rule(
        flops_bwd=numel(y),  # scatter-add into the table's gradient
        saved=[_in("x", "indices x")],
        io=v.nbytes(v.x()) + 2 * v.nbytes(y),  # indices, gathered rows, output
    )


def _linear_sampled_or_lmul(v: BoxView) -> Rule:
    """As lowered: x laid out [rows, over] (a view where its layout allows, else a copy)
    into ncd.ops.wtacrs_linear (exact F.linear forward; dW from the k = budget · rows sampled
    rows, the only ones kept, with their int64 indices) or ncd.ops.lmul_linear (integer
    additions, no matrix-engine work forward; x kept; the backward the exact map's)."""
    from ncd.ops import lmul_cost, wtacrs_cost

    b, x, y = v.box, v.x(), v.out()
    lead = [a for a in x.names if a not in b.over]
    n, D = v.sizes_of(x, lead), v.sizes_of(x, b.over)
    J = numel(y) / n
    per = v.bytes_per(x)
    copied = not _is_view(v.layouts["x"], [lead, list(b.over)], v.units)
    grad_x = v.grad("x")
    if b.backward == "wtacrs":
        k = sympy.ceiling(sympy.Rational(str(b.budget)) * n)  # the op's rows: ceil(budget n)
        mm = 2 * n * D * J
        mm_bwd = 2 * k * D * J + (2 * n * J * D if grad_x else ZERO)
        bias = n * J if b.bias else ZERO
        return Rule(
            flops=mm + bias,
            mm=mm,
            mm_bwd=mm_bwd,
            flops_bwd=mm_bwd + bias,
            saved=[_own("x_sampled", wtacrs_cost.kept_bytes(k, D, per), "sampled rows of x")],
            layout={"out": (*lead, *b.out)},
            extra_io=2 * v.nbytes(x) if copied else ZERO,
            temps=(v.nbytes(x) if copied else ZERO) + k * D * per + n * per,
            bwd_temps=k * J * per,  # dy's sampled rows
            notes=[f"WTA-CRS backward: {b.budget:g} of the rows kept"],
        )
    mm_bwd = 2 * n * J * D * (2 if grad_x else 1)
    kept = _own("x_copy", v.nbytes(x), "relaid-out copy of input x") if copied else _in("x")
    return Rule(
        flops=lmul_cost.flops_forward(n, D, J, b.bias),
        mm=ZERO,
        mm_bwd=mm_bwd,
        flops_bwd=lmul_cost.flops_backward(n, D, J, grad_x, b.bias),
        saved=[kept],
        layout={"out": (*lead, *b.out)},
        extra_io=2 * v.nbytes(x) if copied else ZERO,
        temps=lmul_cost.temp_bytes(n, D, J, per, sympy.Max, sympy.Min),
        notes=[f"L-Mul products ({b.product[-1]}-bit mantissas): integer additions, no mm"],
    )
