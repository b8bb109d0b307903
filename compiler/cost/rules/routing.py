"""Cost rules of routing: gather, scatter, one-hot, compare, where (positions kept int64)."""

from __future__ import annotations

from .common import ZERO, BoxView, Expr, Rule, Saved, _if, _in, _own, costs, numel


def _broadcast_layout(v: BoxView, ports) -> dict[str, tuple[str, ...]]:
    """The output's memory order: that of an operand with every output axis, as PyTorch's
    elementwise kernels follow their inputs' strides (`binary`)."""
    y = v.out()
    for p in ports:
        if set(v.x(p).names) == set(y.names):
            return {"out": v.layouts[p]}
    return {"out": y.names}


def _positions_kept(v: BoxView, copied: bool, nbytes: Expr) -> Saved:
    """The positions autograd keeps: the index input itself, or the int64 copy the lowering
    makes of it (`nbytes`)."""
    if copied:
        return _own("index_long", nbytes, "positions (int64 copy)")
    return _in("index", "positions")


@costs("gather")
def gather(v: BoxView) -> Rule:
    """torch.gather: reads the index and the selected entries, writes the output; autograd
    keeps x (gather's backward reads it) and the positions; the backward scatters into zeros
    of x's shape and layout, which are x's gradient (the lowering neither expands x along
    the positions' axes nor reorders it, so nothing larger is made)."""
    b, x, idx, y = v.box, v.x(), v.x("index"), v.out()
    int32 = idx.dtype != "int64"
    saved = _if(v.grad("x"), _in("x"), _positions_kept(v, int32, 8 * numel(idx)))
    d = x.names.index(b.axis)
    return Rule(
        saved=saved,
        layout={"out": (*x.names[:d], *b.into, *x.names[d + 1 :])},
        io=v.nbytes(idx) + 2 * v.nbytes(y),
        temps=8 * numel(idx) if int32 else ZERO,
    )


@costs("scatter")
def scatter(v: BoxView) -> Rule:
    """Tensor.scatter_add into zeros: one addition per entry of src; the backward gathers the
    output's gradient at the positions. The positions are copied (int64, src's shape) where
    several axes `over` are flattened from an expanded or reordered index."""
    b, src, idx, y = v.box, v.x("src"), v.x("index"), v.out()
    rest = [a for a in src.names if a not in b.over]
    flat = len(b.over) > 1 and tuple(idx.names) != (*rest, *b.over)
    int32 = idx.dtype != "int64"
    kept = 8 * numel(src) if flat else 8 * numel(idx)
    return Rule(
        flops=numel(src),
        saved=_if(v.grad("src"), _positions_kept(v, flat or int32, kept)),
        layout={"out": (*rest, b.axis)},
        io=v.nbytes(idx) + v.nbytes(src) + 2 * v.nbytes(y),  # zeros written, then added into
        temps=8 * numel(idx) if int32 and flat else ZERO,
    )


@costs("one_hot")
def one_hot(v: BoxView) -> Rule:
    """F.one_hot (int64 zeros, a 1 written per position), then the cast to the element type:
    no gradient, one comparison counted per element."""
    y = v.out()
    return Rule(flops=numel(y), temps=8 * numel(y) if y.dtype != "int64" else ZERO)


@costs("compare")
def compare(v: BoxView) -> Rule:
    return Rule(flops=numel(v.out()), layout=_broadcast_layout(v, ("a", "b")))


@costs("where")
def where(v: BoxView) -> Rule:
    """One selection per element; autograd keeps the condition for both operands' gradients,
    and a gradient is summed back over the axes its operand is broadcast along."""
    y = v.out()
    ports = ("a",) if v.box.fill is not None else ("a", "b")
    grads = [p for p in ports if v.grad(p)]
    bwd_temps = ZERO
    for p in grads:
        if set(v.x(p).names) < set(y.names):
            bwd_temps += v.nbytes(y)
    return Rule(
        flops=numel(y),
        saved=_if(bool(grads), _in("cond", "condition (bool)")),
        layout=_broadcast_layout(v, ports),
        bwd_temps=bwd_temps,
    )
