"""Cost rules of elementwise boxes, rotary, positions, integer arithmetic (I-ViT, HAWQ-V3)."""

from __future__ import annotations

import sympy

from ncd.circuits.sizes import parse_size

from .common import (
    UNARY_FLOPS,
    UNARY_SAVES,
    ZERO,
    BoxView,
    Rule,
    Saved,
    _follow,
    _if,
    _in,
    _out,
    _own,
    costs,
    numel,
)


@costs("unary")
def unary(v: BoxView) -> Rule:
    fn = v.box.fn
    n = numel(v.x())
    saved = []
    if v.grad("x"):
        for what in UNARY_SAVES[fn]:
            if what == "in":
                saved.append(_in("x"))
            elif what == "out":
                saved.append(_out())
            else:
                saved.append(_own("buffer", v.nbytes(v.x()), "log-sigmoid buffer"))
    temps = v.nbytes(v.x()) if fn == "elu_plus_one" else ZERO  # elu's result, before + 1
    return Rule(flops=UNARY_FLOPS[fn] * n, saved=saved, layout=_follow(v), temps=temps)


@costs("binary")
def binary(v: BoxView) -> Rule:
    fn = v.box.fn
    a, b, y = v.x("a"), v.x("b"), v.out()
    ga, gb = v.grad("a"), v.grad("b")
    saved: list[Saved] = []
    if fn == "mul":
        saved = _if(gb, _in("a")) + _if(ga, _in("b"))
    elif fn == "div":
        saved = _if(gb, _in("a")) + _if(ga or gb, _in("b"))
    elif fn in ("maximum", "minimum"):
        saved = _if(ga or gb, _in("a"), _in("b"))
    elif fn == "pow":
        saved = _if(ga or gb, _in("a"), _in("b")) + _if(gb, _out())
    names = set(y.names)
    lay = (
        v.layouts["a"]
        if set(a.names) == names
        else v.layouts["b"]
        if set(b.names) == names
        else y.names
    )
    bwd_temps = ZERO
    if fn in ("mul", "div", "maximum", "minimum", "pow"):
        for p, t in (("a", a), ("b", b)):
            if v.grad(p) and set(t.names) < set(y.names):
                bwd_temps += v.nbytes(y)  # the full-size product, before the sum
        if fn == "div" and gb:
            bwd_temps += 2 * v.nbytes(y)  # -grad·a / b², in steps
    # an add hands each operand of the output's shape the output's gradient itself (a
    # subtraction its first operand; the second gets its negation)
    through = {"add": ("a", "b"), "sub": ("a",)}.get(fn, ())
    through = tuple(p for p in through if numel(v.x(p)) == numel(y) and v.x(p).dtype == y.dtype)
    return Rule(flops=numel(y), saved=saved, layout={"out": lay}, bwd_temps=bwd_temps,
                grad_through=through)  # fmt: skip


@costs("scale")
def scale(v: BoxView) -> Rule:
    return Rule(flops=numel(v.x()), layout=_follow(v))


@costs("cast")
def cast(v: BoxView) -> Rule:
    if v.box.bits:  # a view of the same bytes
        return Rule(alias={"out": "x"}, layout=_follow(v))
    return Rule(layout=_follow(v))


@costs("dropout")
def dropout(v: BoxView) -> Rule:
    x = v.x()
    if v.box.p == 0:  # torch returns its input unchanged
        return Rule(alias={"out": "x"}, layout=_follow(v))
    return Rule(
        flops=2 * numel(x),
        saved=[_own("mask", v.nbytes(x), "dropout mask (scaled, dtype of x)")],
        layout=_follow(v),
    )


@costs("mask")
def mask(v: BoxView) -> Rule:
    b, x = v.box, v.x()
    t, s = v.size(x, b.query), v.size(x, b.key)
    return Rule(
        flops=numel(x),
        saved=_if(v.grad("x"), _own("mask", t * s, f"bool mask {b.query}×{b.key}")),
        layout=_follow(v),
        extra_io=t * s,
    )


@costs("rotary")
def rotary(v: BoxView) -> Rule:
    """As compiler/runtime.py's `rotary` runs it. FLOPs: the frequencies (3 per pair: a
    division, a power, a reciprocal), the angles and their cos and sin (3 per position and
    pair, P positions: T, or T times the start's axes), a start's add (1 per position), and
    for each rotated element two products and a sum (3); the backward turns the gradient back
    (3 per rotated element). Kept for x's gradient: the cos and sin tables (P × d/2 each, in
    x's type). Inside the forward: the half-size products and the turned halves before they
    are joined (d/F of x's bytes beyond the output at most), and the tables where nothing
    keeps them; inside the backward, the halves' gradients as they are joined (as much).
    IO: x read and the output written, plus the products' and halves' round trips (6 × the
    rotated part) and the tables. The output is laid out [rows…, seq, feature] (the
    runtime's concatenation)."""
    b, x = v.box, v.x()
    n = v.size(x, b.feature)
    d = n if b.rotated is None else sympy.sympify(v.resolve(parse_size(b.rotated)))
    rows = [a for a in x.names if a not in (b.seq, b.feature)]
    positions = v.size(x, b.seq)
    if b.start:
        positions = positions * v.sizes_of(x, v.x("start").names)
    rot = numel(x) * d / n  # rotated elements
    table = positions * d / 2  # (position, pair) entries
    bp = v.bytes_per(x)
    grad = v.grad("x")
    flops = 3 * d / 2 + 3 * table + (positions if b.start else ZERO) + 3 * rot
    kept = [_own("cos", table * bp, "cos table"), _own("sin", table * bp, "sin table")]
    return Rule(
        flops=flops,
        flops_bwd=3 * rot,
        saved=kept if grad else [],
        layout={"out": (*rows, b.seq, b.feature)},
        extra_io=6 * rot * bp + 2 * table * bp,
        temps=rot * bp + (ZERO if grad else 2 * table * bp),
        bwd_temps=rot * bp,
    )


@costs("positions")
def positions(v: BoxView) -> Rule:
    """As compiler/runtime.py's `positions` runs it: torch.arange writes the n positions (no
    arithmetic; no gradient). A start: taken to the output's type (a copy where its type
    differs) and added to the arange, one add per output element. Packed: the int64 arange,
    each position's sequence (searchsorted) and that sequence's first position (a gather),
    one subtraction per position, then the result taken to the output's type (a copy unless
    int64), int32 offsets widened first; searchsorted's comparisons are not counted."""
    b, y = v.box, v.out()
    n = v.size(y, b.axis)
    bp = v.bytes_per(y)
    if b.start:
        s = v.x("start")
        cast = numel(s) * bp if s.dtype != y.dtype else ZERO
        return Rule(flops=numel(y), extra_io=2 * (n * bp + cast), temps=n * bp + cast)
    if b.packed:
        off = v.x("offsets")
        made = 3 * 8 * n + (8 * n if y.dtype != "int64" else ZERO)  # int64 tensors of n
        made += 8 * numel(off) if off.dtype != "int64" else ZERO  # the offsets as int64
        return Rule(flops=n, extra_io=2 * made, temps=made)
    return Rule()


# Integer arithmetic (I-ViT, HAWQ-V3): integer operations are counted as FLOPs, one per
# element per step, as float ones are; the notes say the box's arithmetic is integer.
_INTEGER = "integer arithmetic (its operations counted as FLOPs)"


@costs("clamp")
def clamp(v: BoxView) -> Rule:
    b, x = v.box, v.x()
    bounds = (b.low is not None) + (b.high is not None)
    return Rule(flops=bounds * numel(x), saved=_if(v.grad("x"), _in("x")), layout=_follow(v))


@costs("constant")
def constant(v: BoxView) -> Rule:
    """A buffer read where it is used: no arithmetic, no traffic of its own."""
    return Rule(io=ZERO, notes=[f"buffer of {v.nbytes(v.out())} bytes, loaded with the weights"])


@costs("requantize")
def requantize(v: BoxView) -> Rule:
    """Per element: a multiply by b, the rounding add, a shift by c, two comparisons of the
    clip; the products are int64 (two int64 temporaries), the multipliers read once."""
    x, y = v.x(), v.out()
    per = v.sizes_of(x, v.box.axes)
    return Rule(
        flops=5 * numel(x),
        layout=_follow(v),
        extra_io=8 * per,
        temps=2 * 8 * numel(x),
        notes=[_INTEGER, f"dyadic requantisation to {y.dtype}"],
    )


@costs("int_linear")
def int_linear(v: BoxView) -> Rule:
    """As lowered: x and the int8 weight widened to int32 (copies), one einsum in int32, the
    int32 bias added; the weight and bias are buffers (read, not parameters)."""
    b, x, y = v.box, v.x(), v.out()
    lead = [a for a in x.names if a not in b.over]
    n, D = v.sizes_of(x, lead), v.sizes_of(x, b.over)
    J = numel(y) / n
    mm = 2 * n * D * J
    weights = J * D + (4 * J if b.bias else ZERO)
    return Rule(
        flops=mm + (n * J if b.bias else ZERO),
        mm=mm,
        extra_io=weights,
        temps=4 * n * D + 4 * J * D,
        notes=[_INTEGER, f"int8 products accumulated in int32; buffers of {weights} bytes"],
    )
