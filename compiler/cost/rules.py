"""One cost rule per box kind: FLOPs, what autograd keeps for the backward pass, aliasing.

A rule reads a `BoxView` (the box's resolved input/output types, which inputs need a
gradient, the memory layout of each input) and returns a `Rule`. Conventions, stated in
every report:

- A multiply-add counts 2 FLOPs; a contraction of wires a, b, c summed over c costs 2·a·b·c.
- An elementwise function counts 1 FLOP per element per arithmetic step; a transcendental
  (exp, log, tanh, erf) counts 1.
- `mm` is the part a matrix engine does (contractions, linear maps, convolutions): the part
  `torch.utils.flop_counter.FlopCounterMode` counts. It counts elementwise work as zero.
- `saved` names the tensors PyTorch autograd keeps for the backward pass of the eager
  lowering (as torch 2.x `derivatives.yaml` says, checked with saved-tensor hooks).

Contractions and linear maps lower to `torch.einsum`, which permutes each operand to
(batch, free, summed) and flattens the groups for one batched matrix product; where the
operand's memory layout does not allow a view, einsum copies it and autograd keeps the copy.
The rules model that from the layout of each wire (axis order in memory), because it
decides whether a T×S score matrix is kept once or twice.
"""

from __future__ import annotations

import copy as _copy_module
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import sympy

from ncd.circuits.kinds.registry import Registry
from ncd.circuits.sizes import parse_size
from ncd.circuits.types import TensorType
from ncd.ops import (
    attention_cost,
    delta_rule_cost,
    gla_cost,
    linear_attention_cost,
    simple_gla_cost,
)
from ncd.ops import config as ops_config

from ..choices import attention_backend
from .symbolic import fft_length

Expr = sympy.Expr
ZERO = sympy.Integer(0)


# FLOPs per element of each unary function (forward).
UNARY_FLOPS = {
    "identity": 0,
    "neg": 1,
    "abs": 1,
    "relu": 1,
    "sign": 1,
    "square": 1,
    "reciprocal": 1,
    "exp": 1,
    "log": 1,
    "sqrt": 1,
    "rsqrt": 1,
    "sin": 1,
    "cos": 1,
    "tanh": 1,
    "sigmoid": 3,  # exp, add, divide
    "logsigmoid": 4,
    "softplus": 3,
    "elu": 3,
    "elu_plus_one": 4,
    "silu": 4,
    "gelu": 5,  # erf, scale, add, two multiplies
    "gelu_tanh": 8,
    "relu6": 2,  # two comparisons
    "hardswish": 4,  # add, clamp, multiply, divide
}
# What autograd keeps for each unary function: its input, its result, or nothing.
UNARY_SAVES = {
    **dict.fromkeys(["identity", "neg", "sign"], ()),
    **dict.fromkeys(["relu", "sigmoid", "tanh", "exp", "sqrt", "rsqrt", "reciprocal"], ("out",)),
    **dict.fromkeys(
        ["gelu", "gelu_tanh", "silu", "log", "abs", "square", "softplus", "elu"], ("in",)
    ),
    **dict.fromkeys(["sin", "cos", "elu_plus_one", "relu6", "hardswish"], ("in",)),
    "logsigmoid": ("in", "buffer"),
}
SOFTMAX_FLOPS = 5  # max, subtract, exp, sum, divide
POINTWISE = {"unary", "binary", "scale", "cast", "dropout", "mask"}
ALIAS_KINDS = {
    "split_axis",
    "permute",
    "rename",
    "copy",
    "pack",
    "unpack",
    "index",
    "slice",
    "split",
    "diagonal",
    "param",
}


RULES = Registry("cost rule", "compiler/cost/rules.py", "@costs")
costs = RULES.register


@dataclass
class Saved:
    """A tensor kept for the backward pass: an input (`in`, port), an output (`out`, port), or
    a tensor the op makes itself (`own`, key) of `nbytes`."""

    what: str
    where: str
    ref: str
    nbytes: Expr = ZERO


@dataclass
class Rule:
    flops: Expr = ZERO
    """Forward FLOPs, all of them (mm included)."""
    mm: Expr = ZERO
    """Forward FLOPs of matrix-engine work (what FlopCounterMode counts)."""
    flops_bwd: Expr | None = None
    """Backward FLOPs; by default 2× the elementwise part plus mm_bwd."""
    mm_bwd: Expr = ZERO
    mm_run: Expr | None = None
    """Forward FLOPs the matrix engine runs, where FlopCounterMode counts others (`mm`):
    causal attention computes the (query, key) pairs at or below the diagonal, and
    FlopCounterMode counts every pair. The roofline times take these; None: `mm`."""
    mm_run_bwd: Expr | None = None
    """The same for the backward (None: `mm_bwd`)."""
    saved: list[Saved] = field(default_factory=list)
    alias: dict[str, str] = field(default_factory=dict)
    """Output port -> input port whose storage it shares (views, copies, tuples)."""
    layout: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Output port -> axis order in memory (default: the output's own order)."""
    extra_io: Expr = ZERO
    """Bytes moved by copies the lowering makes inside the box (einsum relayouts)."""
    temps: Expr = ZERO
    """Bytes allocated and freed inside the box's forward (copies not kept)."""
    bwd_temps: Expr = ZERO
    """Bytes allocated and freed inside the box's backward, beyond the input gradients
    (products before a broadcast is summed away, flipped copies of a reverse scan)."""
    io: Expr | None = None
    io_bwd: Expr | None = None
    fused: str = ""
    """Name of the fused kernel whose formulas the rule used (ops/)."""
    notes: list[str] = field(default_factory=list)


class BoxView:
    """What a rule may read about one box (sizes already resolved)."""

    def __init__(self, box, ins, outs, params, grads, layouts, nbytes, units=frozenset(),
                 platform="cuda", resolve=None):  # fmt: skip
        self.box = box
        self.ins: dict[str, TensorType] = ins
        self.outs = outs
        self.params: dict[str, TensorType] = params
        self.grads: dict[str, bool] = grads
        self.layouts: dict[str, tuple[str, ...]] = layouts
        self.nbytes: Callable[[TensorType], Expr] = nbytes
        self.units: frozenset[str] = frozenset(units)
        """Axes of size 1 under the bound sizes: where they lie in memory changes no stride
        that matters, so a relayout that only moves them is a view."""
        self.platform: str = platform
        """The torch device type the module runs on (`Device.platform`): "cuda" or "cpu"."""
        self.resolve: Callable = resolve or (lambda e: e)
        """A size expression of the box's settings with what validation learned substituted
        (`D` -> `H*K`), as the wires' sizes are."""

    def x(self, port: str = "x") -> TensorType:
        return self.ins[port]

    def bytes_per(self, t: TensorType) -> Expr:
        """Bytes of one element of t as analysed (a float wire in the analysis's dtype)."""
        return self.nbytes(TensorType((), t.dtype))

    def out(self, port: str = "out") -> TensorType:
        return self.outs[port]

    def size(self, t: TensorType, axis: str) -> Expr:
        return t.axis(axis).size

    def grad(self, port: str) -> bool:
        return self.grads.get(port, False)

    def any_grad(self) -> bool:
        return any(self.grads.values()) or bool(self.params)

    def sizes_of(self, t: TensorType, axes) -> Expr:
        return sympy.Mul(*[t.axis(a).size for a in axes]) if axes else sympy.Integer(1)


def numel(t: TensorType) -> Expr:
    return t.numel()


def _in(port: str, what: str = "") -> Saved:
    return Saved(what or f"input {port}", "in", port)


def _out(port: str = "out", what: str = "") -> Saved:
    return Saved(what or "output", "out", port)


def _own(key: str, nbytes: Expr, what: str) -> Saved:
    return Saved(what, "own", key, nbytes)


def _if(cond: bool, *items):
    return list(items) if cond else []


# -- learned
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


# -- contractions
@dataclass
class _Operand:
    axes: tuple[str, ...]  # names, any order
    layout: tuple[str, ...]  # order in memory
    ref: Saved | None  # what autograd keeps if this operand is kept (None: a parameter)
    grad: bool
    sizes: dict[str, Expr]


def _is_view(layout: tuple[str, ...], groups: list[list[str]], units=frozenset()) -> bool:
    """Whether permuting a tensor stored in `layout` order and flattening each group of axes
    is a view (each group's axes adjacent in memory, in the group's order). Axes in `units`
    (size 1) are left out: PyTorch's reshape ignores their strides."""
    layout = tuple(a for a in layout if a not in units)
    groups = [[a for a in g if a not in units] for g in groups]
    pos = {a: i for i, a in enumerate(layout)}
    return all(all(pos[g[i + 1]] == pos[g[i]] + 1 for i in range(len(g) - 1)) for g in groups)


def _label_key(letter: str) -> int:
    # torch.einsum numbers labels A-Z then a-z; contraction dims follow that order
    return ord(letter) - ord("A") if letter.isupper() else 26 + ord(letter) - ord("a")


@dataclass
class Einsum:
    flops: Expr
    mm: Expr
    mm_bwd: Expr
    saved: list[Saved]
    layout: tuple[str, ...]
    io: Expr
    temps: Expr


def einsum(v: BoxView, ops: list[_Operand], out: TensorType, dtype: str) -> Einsum:
    """torch.einsum as PyTorch runs it without opt_einsum: operands contracted left to right
    (sumproduct_pair); each pair is one batched matrix product of left -> (lro, lo, summed)
    and right -> (lro, summed, ro), or a broadcast multiply when nothing is summed. An
    operand whose groups are not adjacent in memory is copied, and autograd keeps the copy."""
    from ncd.compiler.names import letters

    order = [a for o in ops for a in o.axes] + list(out.names)
    lab = letters(order)
    contraction = sorted({a for o in ops for a in o.axes} - set(out.names), key=lambda a:
                         _label_key(lab[a]))  # fmt: skip
    canon = [*out.names, *contraction]
    sizes: dict[str, Expr] = {}
    for o in ops:
        sizes.update(o.sizes)

    def prod(axes) -> Expr:
        return sympy.Mul(*[sizes[a] for a in axes]) if axes else sympy.Integer(1)

    def nbytes(axes) -> Expr:
        return v.nbytes(TensorType((), dtype)) * prod(axes)

    flops = mm = mm_bwd = io = temps = ZERO
    saved: list[Saved] = []
    cur = ops[0]
    for j in range(1, len(ops)):
        nxt = ops[j]
        later = set(out.names).union(*[set(o.axes) for o in ops[j + 1 :]])
        pair = [a for a in canon if a in cur.axes or a in nxt.axes]
        summed = [a for a in pair if a not in later]
        lro = [a for a in pair if a in cur.axes and a in nxt.axes and a not in summed]
        lo = [a for a in pair if a in cur.axes and a not in nxt.axes and a not in summed]
        ro = [a for a in pair if a in nxt.axes and a not in cur.axes and a not in summed]
        keep = [a for a in pair if a not in summed]
        step = f"step{j}"
        if summed:
            mm_j = 2 * prod(pair)
            mm += mm_j
            mm_bwd += mm_j * (int(cur.grad) + int(nxt.grad))
            layout = tuple(lro + lo + ro)
            copies = (
                not _is_view(cur.layout, [lro, lo, summed], v.units),
                not _is_view(nxt.layout, [lro, summed, ro], v.units),
            )
        else:
            flops += prod(pair)
            layout = tuple(keep)
            copies = (False, False)
        for k, (o, other) in enumerate(((cur, nxt), (nxt, cur))):
            if copies[k]:
                io += 2 * nbytes(o.axes)
            if not other.grad or o.ref is None:
                if copies[k]:
                    temps += nbytes(o.axes)
                continue
            if copies[k]:
                what = f"relaid-out copy of {o.ref.what}"
                saved.append(_own(f"{step}_copy{k}", nbytes(o.axes), what))
            else:
                saved.append(o.ref)
        if j < len(ops) - 1:
            key = f"{step}_out"
            ref = _own(key, nbytes(keep), f"intermediate ({' '.join(keep)})")
            cur = _Operand(tuple(keep), layout, ref, cur.grad or nxt.grad, sizes)
            temps += nbytes(keep)  # counted once kept tensors are known (see contract)
        else:
            cur = _Operand(tuple(keep), layout, None, cur.grad or nxt.grad, sizes)
    flops += mm
    return Einsum(flops, mm, mm_bwd, saved, cur.layout, io, temps)


def _operand(v: BoxView, port: str) -> _Operand:
    t = v.x(port)
    return _Operand(
        t.names, v.layouts[port], _in(port), v.grad(port), {a.name: a.size for a in t.axes}
    )


@costs("contract")
def contract(v: BoxView) -> Rule:
    b, y = v.box, v.out()
    ports = list(b.operands)
    if len(ports) == 1:  # a sum over `over`
        n = numel(v.x(ports[0]))
        return Rule(flops=n, flops_bwd=n)
    e = einsum(v, [_operand(v, p) for p in ports], y, y.dtype)
    # a broadcast product's backward forms grad·other at the full size, then sums it down
    bwd_temps = ZERO
    if e.mm == 0:
        for p in ports:
            if v.grad(p) and set(v.x(p).names) < set(y.names):
                bwd_temps += v.nbytes(y)
    # intermediates that autograd keeps are not temporary
    kept = sum((s.nbytes for s in e.saved if s.where == "own" and s.ref.endswith("_out")), ZERO)
    return Rule(
        flops=e.flops,
        mm=e.mm,
        mm_bwd=e.mm_bwd,
        flops_bwd=e.mm_bwd + 2 * (e.flops - e.mm),
        saved=e.saved,
        layout={"out": e.layout},
        extra_io=e.io,
        temps=e.temps - kept,
        bwd_temps=bwd_temps,
    )


@costs("diagonal")
def diagonal(v: BoxView) -> Rule:
    b = v.box
    lay = tuple(b.into if a == b.axes[0] else a for a in v.layouts["x"] if a != b.axes[1])
    return Rule(alias={"out": "x"}, layout={"out": lay})


# -- elementwise
def _follow(v: BoxView, port: str = "x") -> dict[str, tuple[str, ...]]:
    return {"out": v.layouts[port]}


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
    return Rule(flops=numel(y), saved=saved, layout={"out": lay}, bwd_temps=bwd_temps)


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


# -- normalisation
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
    rows = numel(x) / v.sizes_of(x, (b.channel, *b.over)) * b.groups
    return Rule(
        flops=(5 + 2 * b.affine) * numel(x),
        saved=[
            _in("x"),
            _own("stats", _stat_bytes(v, 2 * rows, kernel=False), "per-group mean and 1/std"),
        ],
    )


@costs("normalize")
def normalize(v: BoxView) -> Rule:
    b, x = v.box, v.x()
    rows = numel(x) / v.size(x, b.over)
    return Rule(
        flops=3 * numel(x),
        saved=[
            _in("x"),
            _own("norm", _stat_bytes(v, 2 * rows, kernel=False), "the norm and its clamp"),
        ],
    )


# -- reductions
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


# -- rearrangements (views, aliases) and copies
@costs("split_axis")
def split_axis(v: BoxView) -> Rule:
    b = v.box
    lay = []
    for a in v.layouts["x"]:
        lay += list(b.into) if a == b.axis else [a]
    return Rule(alias={"out": "x"}, layout={"out": tuple(lay)})


@costs("merge_axes")
def merge_axes(v: BoxView) -> Rule:
    b = v.box
    lay = v.layouts["x"]
    if _is_view(lay, [list(b.axes)], v.units):
        i = lay.index(b.axes[0])
        new = (*[a for a in lay[:i]], b.into, *[a for a in lay[i:] if a not in b.axes])
        return Rule(alias={"out": "x"}, layout={"out": tuple(new)})
    return Rule(notes=["axes not adjacent in memory: reshape copies"])


@costs("permute")
def permute(v: BoxView) -> Rule:
    return Rule(alias={"out": "x"}, layout=_follow(v))


@costs("rename")
def rename(v: BoxView) -> Rule:
    m = v.box.mapping
    return Rule(alias={"out": "x"}, layout={"out": tuple(m.get(a, a) for a in v.layouts["x"])})


@costs("copy")
def copy(v: BoxView) -> Rule:
    return Rule(alias={str(i): "x" for i in range(v.box.n)})


@costs("pack")
def pack(v: BoxView) -> Rule:
    return Rule(alias={"out": "*"})


@costs("unpack")
def unpack(v: BoxView) -> Rule:
    return Rule(alias={p: "x" for p in v.outs})


@costs("index")
def index(v: BoxView) -> Rule:
    return Rule(
        alias={"out": "x"}, layout={"out": tuple(a for a in v.layouts["x"] if a != v.box.axis)}
    )


@costs("slice")
def slice_(v: BoxView) -> Rule:
    return Rule(alias={"out": "x"}, layout=_follow(v))


@costs("split")
def split(v: BoxView) -> Rule:
    return Rule(alias={p: "x" for p in v.outs}, layout={p: v.layouts["x"] for p in v.outs})


@costs("concat")
def concat(v: BoxView) -> Rule:
    return Rule()


# -- convolutions
@costs("conv")
def conv(v: BoxView) -> Rule:
    b, x, y = v.box, v.x(), v.out()
    k = sympy.Integer(1)
    for n in b._norm("kernel"):
        k *= n
    groups = b.n_groups(v.size(x, b.channel)) if hasattr(b, "n_groups") else b.groups
    if b.transposed:
        mm = 2 * numel(x) * v.size(y, b.out) / groups * k
    else:
        mm = 2 * numel(y) * v.size(x, b.channel) / groups * k
    bias = numel(y) if b.bias else ZERO
    mm_bwd = mm * (2 if v.grad("x") else 1)
    return Rule(flops=mm + bias, mm=mm, mm_bwd=mm_bwd, flops_bwd=mm_bwd + bias, saved=[_in("x")])


@costs("long_conv")
def long_conv(v: BoxView) -> Rule:
    """As compiler/runtime.py's `long_conv` runs it: real FFTs of length n = fft_length(T +
    L − 1) (the smallest 2^a·3^b·5^c ≥ T + L − 1) of x's rows (x's elements over T: one row
    per position of its other axes) and of the filter's, their product over x's rows (m =
    n/2 + 1 complex bins each), the inverse FFT, the first T kept (a copy, laid out [rows…,
    seq]); in float32 for 16-bit wires. An FFT of length n counts 5/2·n·⌈log2 n⌉ FLOPs
    (the radix-2 count, 5 n log2 n for complex data, halved for real), a complex product
    6. FlopCounterMode counts none of it (no matrix engine). The backward: the output's
    gradient transformed (one FFT per row), a complex product per input needing a gradient
    (the filter's summed over the rows it is broadcast over), then for each input a complex
    inverse FFT of full length n (10/2·n·⌈log2 n⌉, as torch's backward of rfft runs it).

    Kept: for x's gradient, x padded to n (torch's rfft keeps its input) and the filter's
    spectrum; for the filter's, the filter padded to n and x's spectrum. Inside the forward:
    the spectra no gradient keeps, the product and the inverse transform's n-long result,
    alive at once before the output is copied out. Inside the backward: the larger of the
    product step's spectra (the output gradient's, and each input's before the filter's is
    summed) and x's inverse transform (two complex n-long buffers), less what torch has
    released by then."""
    b, x, h, y = v.box, v.x(), v.x("filter"), v.out()
    tap = b.taps(x, h)
    T, L = v.size(x, b.seq), v.size(h, tap)
    n = fft_length(T + L - 1)
    m = sympy.floor(n / 2) + 1
    rx, rh = numel(x) / T, numel(h) / L  # rows: the output's are x's
    fb = sympy.Max(v.bytes_per(y), 4)  # float32 at least
    fft = sympy.Rational(5, 2) * n * sympy.ceiling(sympy.log(n, 2))
    gx, gh = v.grad("x"), v.grad("filter")
    Px, Ph = rx * n * fb, rh * n * fb  # padded inputs
    Xf, Hf = rx * m * 2 * fb, rh * m * 2 * fb  # spectra (complex)
    Yp = rx * n * fb  # the inverse transform's n-long result
    flops = (2 * rx + rh) * fft + 6 * rx * m
    flops_bwd = rx * fft + (rx * (n - m) if gx or gh else ZERO)  # the halves doubled
    flops_bwd += (6 * rx * m + 2 * rx * fft if gx else ZERO) + (
        6 * rx * m + 2 * (rx - rh) * m + 2 * rh * fft if gh else ZERO
    )
    saved = [
        *_if(gx, _own("x_padded", Px, "x padded to the FFT length"),
             _own("filter_spectrum", Hf, "the filter's FFT (complex)")),
        *_if(gh, _own("filter_padded", Ph, "the filter padded to the FFT length"),
             _own("x_spectrum", Xf, "x's FFT (complex)")),
    ]  # fmt: skip
    unkept = (ZERO if gh else Xf) + (ZERO if gx else Hf)
    Gx, Gh = v.nbytes(x), v.nbytes(h)
    # the product step: three spectra of x's rows (the output gradient's, and x's gradient's
    # or the conjugate of x's spectrum that torch copies out for the filter's), the filter's
    # gradient summed; x's inverse transform: two complex n-long buffers per row, while x's
    # kept tensors, its gradient's spectrum and the filter's gradient are held
    at_product = 3 * Xf + (Hf - Gx if gx and gh else ZERO) - Gh
    at_inverse = 4 * Px - Hf - Gx + (-Ph if gh else Xf)
    if gx and gh:
        bwd_temps = sympy.Max(at_product, at_inverse)
    else:
        bwd_temps = at_inverse if gx else at_product
    return Rule(
        flops=flops,
        flops_bwd=flops_bwd,
        saved=saved,
        layout={"out": (*[a for a in x.names if a != b.seq], b.seq)},
        extra_io=2 * (Px + Ph + Xf + Hf + Xf + Yp),
        temps=unkept + Xf + Yp - v.nbytes(y),
        bwd_temps=bwd_temps,
    )


@costs("pool")
def pool(v: BoxView) -> Rule:
    """As lowered: PyTorch's pooling on x where x is [N, C, *spatial]; else on x permuted to
    (other axes, spatial axes) and viewed as [-1, 1, *spatial], which copies x (and the copy
    is kept) where the other axes are not adjacent in memory; the result is laid out as that
    permuted order."""
    b, x, y = v.box, v.x(), v.out()
    w = sympy.Integer(1)
    for n in b._norm("window"):
        w *= n
    rest = [a for a in x.names if a not in b.spatial]
    own = len(rest) == 2 and tuple(x.names[2:]) == tuple(b.spatial)
    copied = not own and not _is_view(v.layouts["x"], [rest], v.units)
    saved = [_own("x_copy", v.nbytes(x), "input x, copied to [-1, 1, spatial]") if copied
             else _in("x")]  # fmt: skip
    if b.op == "max":
        saved.append(_own("indices", numel(y) * 8, "argmax indices (int64)"))
    return Rule(
        flops=numel(y) * w,
        saved=_if(v.grad("x"), *saved),
        layout={"out": (*rest, *b.spatial)},
        extra_io=2 * v.nbytes(x) if copied else ZERO,
        temps=v.nbytes(x) if copied and not v.grad("x") else ZERO,
    )


@costs("upsample")
def upsample(v: BoxView) -> Rule:
    b, y = v.box, v.out()
    per = 0 if b.mode == "nearest" else 2 * 2 ** len(b.spatial)
    return Rule(flops=per * numel(y))


# -- fused kernels (ops/): formulas of the op library
def _attention_dims(v: BoxView):
    b = v.box
    q, k, vv = v.x("q"), v.x("k"), v.x("v")
    T, S = v.size(q, b.query), v.size(k, b.key)
    K, V = v.size(q, b.head), v.size(vv, b.value)
    batch = numel(q) / (T * K)
    return batch, T, S, K, V


def _bytes_per(v: BoxView) -> Expr:
    return v.nbytes(TensorType((), v.x("q").dtype))


def kernel_order(batch: list[str], seq: str, feat: str) -> tuple[str, ...]:
    """The axis order the kernels of ncd.ops read a tensor in (compiler/fused.py, `_to_bthk`):
    batch axes in q's own order, the last of them after the sequence axis."""
    if not batch:
        return (seq, feat)
    return (*batch[:-1], seq, batch[-1], feat)


def relayouts(kind, query, key, head, names, layouts) -> tuple[list[str], bool]:
    """Copies the fused attention ops make because of memory order: (which of q, k, v are
    copied into the kernels' ``[B, T, H, K]`` and kept for the backward, whether the output's
    gradient is copied). `names` and `layouts`: role (q, k, v, out) -> axis names in type
    order and in memory order; the output's gradient is taken to come in its names' order.
    Softmax attention copies every input the kernels would see permuted, and a cotangent not
    in the kernels' order; linear attention reads permuted inputs through their strides,
    copying q and k only when their layouts differ, and a cotangent not in v's layout
    (ops/linear_attention/chunk.py, `_readable`, `_backward`)."""
    if len(query.split()) != 1:  # several query axes are folded: treat as copied
        return ["q", "k", "v"], True
    batch = [a for a in names["q"] if a not in (query, key, head)]
    rest = [a for a in names["v"] if a not in batch and a != key]
    value = rest[0] if len(rest) == 1 else head
    want = {
        "q": kernel_order(batch, query, head),
        "k": kernel_order(batch, key, head),
        "v": kernel_order(batch, key, value),
    }
    grad_order = tuple(names["out"])
    if kind == "attention":
        permuted = [p for p in ("q", "k", "v") if tuple(layouts[p]) != want[p]]
        return permuted, grad_order != kernel_order(batch, query, value)
    order = [a for a in want["q"] if a != query]
    same = [a for a in layouts["q"] if a in order] == [a for a in layouts["k"] if a in order]
    return ([] if same else ["q", "k"]), grad_order != tuple(layouts["v"])


def _copies(v: BoxView, kind: str = "") -> tuple[list[Saved], Expr]:
    """Kept tensors for q, k, v (the op's copies where it makes them) and the bytes of a
    copied cotangent, from the box's input layouts (`relayouts`; `kind` "attention": the op
    copies every permuted input, "linear_attention": it reads them through their strides)."""
    b = v.box
    names = {p: v.x(p).names for p in ("q", "k", "v")} | {"out": v.out().names}
    layouts = {p: v.layouts.get(p, names[p]) for p in ("q", "k", "v")}
    if getattr(b, "kv_heads", None) is not None:  # grouped: the head axes last of the batch
        rn = {b.kv_heads: b.heads}
        own = (b.query, b.key, b.head, b.value, b.heads)
        names["q"] = (*[a for a in names["q"] if a not in own], b.heads, b.query, b.head)
        for p in ("k", "v"):
            names[p] = tuple(rn.get(a, a) for a in names[p])
            layouts[p] = tuple(rn.get(a, a) for a in layouts[p])
    copied, do_copy = relayouts(kind or b.kind, b.query, b.key, b.head, names, layouts)
    saved = [
        _own(f"{p}_copy", v.nbytes(v.x(p)), f"{p}, copied to [B, T, H, K]")
        if p in copied
        else _in(p)
        for p in ("q", "k", "v")
    ]
    return saved, (v.nbytes(v.out()) if do_copy else ZERO)


@costs("attention")
def attention(v: BoxView) -> Rule:
    b = v.box
    B, T, S, K, V = _attention_dims(v)
    bp = _bytes_per(v)
    kept, do_copy = _copies(v)
    # ops' formulas take (B, T, H, ...); the batch axes of the box, whatever they are, are B,
    # except grouped heads: B the others, H the query heads, Hkv the key/value heads.
    H, G, notes = 1, None, []
    if b.kv_heads is not None:
        H, G = v.size(v.x("q"), b.heads), v.size(v.x("k"), b.kv_heads)
        B = B / H
        notes = [f"grouped heads: FLOPs of {H} query heads, keys and values of {G} heads"]
    # a mask takes the causal pattern in: the kernel then computes every (query, key) pair
    causal = b.causal and not b.masked
    mk = MaskCost()
    if b.masked:
        m = v.x("mask")
        mk = mask_cost(B * H, T, S, numel(m), v.bytes_per(m), _combined(v), m.dtype == "bool",
                       bp, v.nbytes(v.out()), b.causal, v.grad("mask"))  # fmt: skip
        if G is not None:  # SDPA reads keys and values repeated to the query heads
            kv = B * S * (K + V) * bp
            kept = [kept[0], _own("kv_heads", H * kv, f"k, v repeated to the {H} query heads")]
            mk.io += (G + H) * kv
            mk.io_bwd += (G + H) * kv  # the copies' gradients summed over each group
            mk.bwd_temps += H * kv
            notes = [f"grouped heads: k and v of {G} heads repeated to the {H} query heads"]
            G = None
    flops = attention_cost.flops_forward(B, T, H, K, V, S, causal=causal) + mk.flops
    flops_bwd = attention_cost.flops_backward(B, T, H, K, V, S, causal=causal) + mk.flops
    o = _own("o", v.nbytes(v.out()), "SDPA's output (before empty rows are zeroed)")
    # SDPA's backward also holds a float32 dQ accumulator (FlashAttention-2's schedule)
    temps = attention_cost.backward_temp_bytes(B, T, H, K, atomic_dq=_sdpa_on_cuda(b.masked))
    dims = (B, T, H, K, V, S)
    return Rule(
        flops=flops,
        mm=2 * B * H * T * S * (K + V),  # FlopCounterMode counts every (query, key) pair
        flops_bwd=flops_bwd,
        mm_bwd=2 * B * H * T * S * (2 * K + 3 * V),
        mm_run=flops if causal else None,  # the kernel's products: the pairs it computes
        mm_run_bwd=flops_bwd if causal else None,
        saved=[
            *kept,
            o if b.masked else _out(),
            _own("lse", 4 * B * H * T, "log-sum-exp per query (float32)"),
            *mk.saved,
        ],
        bwd_temps=temps + do_copy + mk.bwd_temps,
        io=attention_cost.io_forward(*dims, Hkv=G, causal=causal, bytes_per=bp) + mk.io,
        io_bwd=attention_cost.io_backward(*dims, Hkv=G, causal=causal, bytes_per=bp) + mk.io_bwd,
        fused=softmax_attention_kernel(b.masked),
        notes=[
            "FLOPs, IO and saved tensors: ops/attention/cost.py (FlashAttention-2 kernel)",
            *notes,
            *mk.notes,
        ],  # fmt: skip
    )


def _combined(v: BoxView) -> Expr:
    """Elements of the mask SDPA takes: the mask's own, or with `causal` the mask and the
    causal pattern combined, over the mask's axes and the query and key axes."""
    b, m = v.box, v.x("mask")
    n = numel(m)
    if b.causal:
        for a, t in ((b.query, v.x("q")), (b.key, v.x("k"))):
            if m.axis(a) is None:
                n *= v.size(t, a)
    return n


@dataclass
class MaskCost:
    """What a mask adds to softmax attention, as `runtime.masked_attention` runs it."""

    flops: Expr = ZERO
    io: Expr = ZERO
    io_bwd: Expr = ZERO
    saved: list[Saved] = field(default_factory=list)
    bwd_temps: Expr = ZERO
    notes: list[str] = field(default_factory=list)


def mask_cost(BH, T, S, n_mask, mask_bp, n_sdpa, keep, bp, out_bytes, causal, bias_grad):
    """The mask's costs around SDPA's memory-efficient kernel (CUDA's backend for a mask),
    as `runtime.masked_attention` runs it: with `causal`, the mask of `n_mask` elements
    combined with the causal pattern into `n_sdpa`; for a keep-mask (`keep`), `any` over the
    keys (the rows left no key) and an `or`, then SDPA's conversion to a bias in the
    queries' type; for a bias, the cast to it, `> -inf`, `any` and a fill; the kernel reads
    the bias once forward and once backward (its broadcast served from cache) and keeps it;
    the output is zeroed where no key was left (SDPA's output and the rows kept). A bias
    needing a gradient: the kernel writes it over every (query, key) pair of each head, then
    sums it to the mask's shape. One FLOP per pair for the mask's add."""
    rows = n_sdpa / S  # the bool `any` over the keys, kept by the output's fill
    io = n_mask * mask_bp + n_sdpa * mask_bp if causal else ZERO
    if keep:
        io += n_sdpa + 2 * n_sdpa + n_sdpa * (1 + bp)  # any; or; SDPA's conversion
    else:
        io += n_sdpa * (mask_bp + bp) if mask_bp != bp else ZERO  # the cast to the queries'
        io += n_sdpa * (bp + 1) + n_sdpa + 2 * n_sdpa * bp + rows  # > -inf; any; fill
    io += n_sdpa * bp + 2 * out_bytes + rows  # the kernel's read; the output's fill
    io_bwd = n_sdpa * bp + 2 * out_bytes + rows
    bwd_temps = out_bytes  # the gradient of SDPA's output, zeroed in the empty rows
    notes = ["mask: SDPA's memory-efficient kernel (every pair computed; the bias kept)"]
    if bias_grad:
        full = BH * T * S * bp
        io_bwd += 2 * full + n_mask * mask_bp
        bwd_temps += full
        notes.append("the bias' gradient is written per (query, key) pair of each head, "
                     "then summed to the mask's shape")  # fmt: skip
    saved = [
        _own("bias", n_sdpa * bp, "the mask as SDPA's bias (the queries' type)"),
        _own("rows", rows, "the rows left a key (bool)"),
    ]
    return MaskCost(BH * T * S, io, io_bwd, saved, bwd_temps, notes)


def _sdpa_on_cuda(masked: bool = False) -> bool:
    return attention_backend("cuda", masked=masked) == "torch"


def softmax_attention_kernel(masked: bool = False) -> str:
    """What a fused softmax attention runs on CUDA by the compiler's choices (compiler/
    choices.py): PyTorch's SDPA or ncd.ops' kernel, both priced as a FlashAttention-2 kernel
    (SDPA's backward with its float32 dQ accumulator); a masked one always SDPA."""
    if _sdpa_on_cuda(masked):
        return "F.scaled_dot_product_attention" + (" (mask)" if masked else "")
    return "ncd.ops.softmax_attention"


@costs("linear_attention")
def linear_attention_box(v: BoxView) -> Rule:
    """Each variant with the formulas of the kernel it lowers to (compiler/fused.py), as on
    CUDA: `linear` and `lightning` ncd.ops.linear_attention, `decay` (and packed `linear`,
    `lightning`) simple_gla, `gla` gla, `delta` and `gated_delta` the delta rules. What each
    keeps is what its autograd Function saves. Grouped heads: `_grouped`."""
    if v.box.heads is not None:
        return _grouped(v)
    return _linear_attention_rule(v)


def _linear_attention_rule(v: BoxView) -> Rule:
    b = v.box
    if b.packed and not b.causal:
        return _packed_windows(v)
    if b.variant in ("linear", "lightning") and not b.packed:
        return _plain_linear_attention(v)
    if b.variant in ("linear", "lightning", "decay"):
        return _simple_gla(v)
    if b.variant == "gla":
        return _gla(v)
    return _delta_rule(v)


def _grouped(v: BoxView) -> Rule:
    """A grouped box as the lowering runs it (compiler/fused.py, `_repeat_to_heads`): q and k
    repeated to the H value heads (contiguous copies, in their own axis order with H in the
    group axis' place), then the kernel of H heads, priced by the rule of an ungrouped box
    whose q and k are those copies, with the heads last of the batch axes as the kernels
    take them. On top: the copies' traffic (q, k read, H/G times as much written), kept in
    the inputs' place (or, where the kernel copies them again, freed in the forward), and in
    the backward the kernel's gradients of the copies (temporaries) summed over each
    group's heads (an add per element beyond the first of each group, read and written)."""
    b = v.box
    wide = {p: b.per_head(v.x(p), v.x("v")) for p in ("q", "k")}
    own = (b.query, b.key, b.head, b.value, b.heads)
    inner = _copy_module.copy(v)
    inner.ins, inner.layouts = dict(v.ins), dict(v.layouts)
    for p, t in wide.items():
        batch = [t.axis(a) for a in t.names if a not in own]
        seq = b.query if p == "q" else b.key
        # type order: the heads last of the batch (the kernels' H); memory: the copy's own
        order = [*batch, t.axis(b.heads), t.axis(seq), t.axis(b.head)]
        inner.ins[p], inner.layouts[p] = t.with_axes(order), t.names
    r = _linear_attention_rule(inner)
    io = io_bwd = flops_bwd = temps = bwd_temps = ZERO
    saved = list(r.saved)
    for p in ("q", "k"):
        small, big = v.nbytes(v.x(p)), v.nbytes(wide[p])
        io += small + big
        kept = [i for i, s in enumerate(saved) if s.where == "in" and s.ref == p]
        for i in kept:
            saved[i] = _own(f"{p}_heads", big, f"{p}, repeated to the {b.heads} heads")
        if not kept:  # the kernel keeps a copy of its own: the repeated one is freed
            temps += big
        if v.grad(p):
            io_bwd += small + big
            flops_bwd += numel(wide[p]) - numel(v.x(p))
            bwd_temps += big
    G = v.size(v.x("q"), b.qk_heads) if b.qk_heads is not None else 1
    note = (
        f"grouped heads: q and k of {G} group(s) repeated to the {v.size(v.x('v'), b.heads)} "
        "heads before the kernel (FLOPs of every head; the copies kept; their gradients summed "
        "per group)"
    )
    base_bwd = r.flops_bwd if r.flops_bwd is not None else 2 * (r.flops - r.mm) + r.mm_bwd
    priced = r.io is not None  # else (packed windows) the analyser's default, from the ports
    return dataclasses.replace(
        r,
        flops_bwd=base_bwd + flops_bwd,
        saved=saved,
        temps=r.temps + temps,
        bwd_temps=r.bwd_temps + bwd_temps,
        io=r.io + io if priced else None,
        extra_io=r.extra_io + (ZERO if priced else io),
        io_bwd=r.io_bwd + io_bwd if r.io_bwd is not None else None,
        notes=[*r.notes, note],
    )


def _plain_linear_attention(v: BoxView) -> Rule:
    b = v.box
    B, T, _, K, V = _attention_dims(v)
    bp = _bytes_per(v)
    notes = ["FLOPs, IO and saved tensors: ops/linear_attention/cost.py (chunked kernel, C=64)"]
    la, nz = linear_attention_cost, bool(b.normalize)
    kept, do_copy = _copies(v)
    precise = bp < 4  # normalised 16-bit inputs: float32 operands as hi + lo pairs
    flops = la.flops_forward(B, T, 1, K, V, normalize=nz, precise=precise)
    flops_bwd = la.flops_backward(B, T, 1, K, V, normalize=nz, precise=precise)
    norm = _own("o32_den", 4 * B * T * (V + 1), "output and denominator (float32)")
    return Rule(
        flops=flops,
        mm=flops,
        flops_bwd=flops_bwd,
        mm_bwd=flops_bwd,
        saved=[*kept, *_if(nz, norm)],
        bwd_temps=la.backward_temp_bytes(B, T, 1, K, V, bytes_per=bp, normalize=nz) + do_copy,
        io=la.io_forward(B, T, 1, K, V, bytes_per=bp, normalize=nz),
        io_bwd=la.io_backward(B, T, 1, K, V, bytes_per=bp, normalize=nz),
        fused="ncd.ops.linear_attention",
        notes=notes,
    )


def _token_gate(v: BoxView, port: str, what: str) -> Saved:
    """A scalar gate as the kernels keep it, float32 [B, T, H]: the input itself where it is
    float32 and laid out so already, else the op's copy."""
    b = v.box
    t = v.x(port)
    B, T, *_ = _attention_dims(v)
    batch = [a for a in v.x("q").names if a not in (b.query, b.key, b.head, b.value)]
    in_place = (
        b.key in t.names
        and v.nbytes(TensorType((), t.dtype)) == 4
        and tuple(v.layouts.get(port, t.names)) == kernel_order(batch, b.key, b.head)[:-1]
    )
    return _in(port) if in_place else _own(f"{port}32", 4 * B * T, f"{what}, float32 [B, T, H]")


def _packed_note(v: BoxView) -> list[str]:
    return ["packed sequences: priced per token (a chunk per sequence end not counted)"] * bool(
        v.box.packed
    )


def _simple_gla(v: BoxView) -> Rule:
    B, T, _, K, V = _attention_dims(v)
    bp = _bytes_per(v)
    sg = simple_gla_cost
    dg = "g" in v.ins and v.grad("g")
    kept, do_copy = _copies(v, "linear_attention")  # read through their strides, as linear's
    gate = _token_gate(v, "g", "gates") if "g" in v.ins else _own("g32", 4 * B * T, "decay")
    flops = sg.flops_forward(B, T, 1, K, V)
    flops_bwd = sg.flops_backward(B, T, 1, K, V, want_dg=dg, precise=dg and bp != 4)
    return Rule(
        flops=flops,
        mm=flops,
        flops_bwd=flops_bwd,
        mm_bwd=flops_bwd,
        saved=[*kept, gate],
        bwd_temps=sg.backward_temp_bytes(B, T, 1, K, V, want_dg=dg) + do_copy,
        io=sg.io_forward(B, T, 1, K, V, bytes_per=bp),
        io_bwd=sg.io_backward(B, T, 1, K, V, bytes_per=bp, want_dg=dg),
        fused="ncd.ops.simple_gla",
        notes=[
            "FLOPs, IO and saved tensors: ops/simple_gla/cost.py (chunked kernel, C=64)",
            *_packed_note(v),
        ],  # fmt: skip
    )


def _gla(v: BoxView) -> Rule:
    b = v.box
    B, T, _, K, V = _attention_dims(v)
    bp = _bytes_per(v)
    gb = v.nbytes(TensorType((), v.x("g").dtype))
    kept, do_copy = _copies(v, "attention")  # contiguous copies of permuted inputs
    g = v.x("g")
    batch = [a for a in v.x("q").names if a not in (b.query, b.key, b.head, b.value)]
    gate = (
        _in("g")
        if tuple(v.layouts.get("g", g.names)) == kernel_order(batch, b.key, b.head)
        else _own("g_copy", v.nbytes(g), "g, copied to [B, T, H, K]")
    )
    C = 64
    A = _own("A", 4 * B * T * C, "intra-chunk scores A, float32 [B, T, H, 64]")
    return Rule(
        flops=gla_cost.flops_forward(B, T, 1, K, V, C=C),
        mm=gla_cost.flops_forward(B, T, 1, K, V, C=C),
        flops_bwd=gla_cost.flops_backward(B, T, 1, K, V, C=C),
        mm_bwd=gla_cost.flops_backward(B, T, 1, K, V, C=C),
        saved=[*kept, gate, A],
        temps=gla_cost.forward_temp_bytes(B, T, 1, K, V, bytes_per=bp),
        bwd_temps=gla_cost.backward_temp_bytes(B, T, 1, K, V, C=C, bytes_per=bp) + do_copy,
        io=gla_cost.io_forward(B, T, 1, K, V, bytes_per=bp, gate_bytes=gb, C=C),
        io_bwd=gla_cost.io_backward(B, T, 1, K, V, bytes_per=bp, gate_bytes=gb, C=C),
        fused="ncd.ops.gla",
        notes=[
            "FLOPs, IO and saved tensors: ops/gla/cost.py (chunked kernel, C=64, BC=16)",
            *_packed_note(v),
        ],  # fmt: skip
    )


def _delta_rule(v: BoxView) -> Rule:
    B, T, _, K, V = _attention_dims(v)
    bp = _bytes_per(v)
    gated = v.box.variant == "gated_delta"
    dr = delta_rule_cost
    kept, do_copy = _copies(v, "attention")  # contiguous copies of permuted inputs
    gates = [_token_gate(v, "beta", "beta")] + ([_token_gate(v, "g", "gates")] if gated else [])
    inverse = _own("wy_inverse", B * T * 64 * bp, "T, each chunk's WY inverse (64 per token)")
    s = ops_config.settings
    keep = s.delta_keep_states  # the forward's scan also writes S and V'
    values = s.gated_delta_keep_values if gated else s.delta_keep_values  # V' in -W's place
    saved = (
        [] if values else [_own("wy_w", B * T * K * bp, "-W = -T diag(beta gamma) K (K per token)")]
    )
    if keep or values:
        saved.append(_own("v_new", B * T * V * bp, "V' = U - W S (V per token)"))
    if keep:
        saved.append(
            _own("chunk_states", B * T * K * V * bp / 64, "the state entering each chunk (K x V)")
        )
    ckpt = s.delta_checkpoint_states and not keep  # the forward's scan also writes checkpoints
    T_seg = sympy.sympify(T)  # (a sympy T: the checkpoints' count is a ceiling, which // gives)
    if ckpt:
        saved.append(
            _own(
                "state_checkpoints",
                dr.checkpoint_bytes(B, T_seg, 1, K, V),
                "the state entering every 16th chunk (float32 K x V)",
            )  # fmt: skip
        )
    prep = s.delta_prepared_qk  # the prepare kernel also forms Q K^T
    flops = dr.flops_forward(B, T, 1, K, V, gated=gated, prepared=prep)
    flops_bwd = dr.flops_backward(
        B, T, 1, K, V, gated=gated, keep_states=keep, prepared=prep, keep_values=values
    )
    name = "gated_delta_rule" if gated else "delta_rule"
    switches = dict(bytes_per=bp, gated=gated, keep_states=keep, prepared=prep, keep_values=values)
    io_switches = dict(switches, checkpoints=ckpt)
    return Rule(
        flops=flops,
        mm=flops,
        flops_bwd=flops_bwd,
        mm_bwd=flops_bwd,
        saved=[*kept, *gates, inverse, *saved],
        temps=dr.forward_temp_bytes(B, T, 1, K, V, **switches),
        bwd_temps=do_copy
        + dr.backward_temp_bytes(B, T, 1, K, V, bytes_per=bp, keep_states=keep, keep_values=values),
        io=dr.io_forward(B, T_seg, 1, K, V, **io_switches),
        io_bwd=dr.io_backward(B, T_seg, 1, K, V, **io_switches),
        fused=f"ncd.ops.{name}",
        notes=[
            "FLOPs, IO and saved tensors: ops/delta_rule/cost.py (WY chunked kernel, C=64)",
            *_packed_note(v),
            *(["ops switch delta_keep_states on: the chunk states and V' kept"] if keep else []),
            *([f"ops switch {name}_keep_values on: V' kept in place of -W"] if values else []),
            *(["ops switch delta_prepared_qk on: Q K^T formed once per chunk"] if prep else []),
            *(
                ["ops switch delta_checkpoint_states off: the states rescanned whole"]
                if not (s.delta_checkpoint_states or keep)
                else []
            ),
            *(
                ["ops switch gated_delta_factored off: the scans form the decay matrix"]
                if gated and not s.gated_delta_factored
                else []
            ),
        ],  # fmt: skip
    )


# -- structure
@costs("opaque")
def opaque(v: BoxView) -> Rule:
    flops = parse_size(v.box.flops)
    return Rule(
        flops=flops,
        saved=[_in(p) for p in v.ins],
        notes=["opaque: FLOPs as stated on the box; assumed to keep its inputs"],
    )


@costs("call")
def call(v: BoxView) -> Rule:  # pragma: no cover - the analyser expands calls itself
    raise AssertionError("calls are analysed recursively")


# -- linear attention within the windows of a packed sequence (non-causal, packed)
def _packed_windows(v: BoxView) -> Rule:
    """`runtime.packed_window_attention`: q, k, v copied into windows padded to the longest
    (priced as if no window were padded), Σ kᵀv per window, q (Σ kᵀv); with `normalize`, Σ k
    per window and the per-token denominator. N windows: the offsets' length less one."""
    B, T, _, K, V = _attention_dims(v)  # B: the head axis (packed inputs have no other)
    n = numel(v.x("offsets")) - 1
    bp = _bytes_per(v)
    nz = bool(v.box.normalize)
    mm = 4 * B * T * K * V
    other = (3 * B * T * K + B * T * V) if nz else ZERO
    qkv = bp * B * T * (2 * K + V)
    kv = bp * n * B * K * V
    saved = [
        _own("padded", qkv, "q, k, v padded into windows"),
        _own("kv", kv, "Σ kᵀv per window"),
        _own("index", 16 * T, "each token's window and place (int64)"),
        *_if(nz, _own("z", bp * B * T * K, "Σ k of each token's window"),
             _own("den", bp * B * T, "denominators")),
    ]  # fmt: skip
    return Rule(
        flops=mm + other,
        mm=mm,
        mm_bwd=2 * mm,
        saved=saved,
        extra_io=2 * qkv + 2 * kv,
        fused="runtime.packed_window_attention",
        notes=[
            "packed windows: PyTorch (no ncd.ops kernel); padding of unequal windows not counted"
        ],  # fmt: skip
    )


# -- linear with a WTA-CRS backward or L-Mul products (ops/wtacrs, ops/lmul)
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


# -- integer arithmetic (I-ViT, HAWQ-V3): integer operations are counted as FLOPs, one per
# element per step, as float ones are; the notes say the box's arithmetic is integer.
UNARY_FLOPS.update({"round": 1, "floor": 1})
UNARY_SAVES.update({"round": (), "floor": ()})
POINTWISE |= {"clamp", "requantize"}
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


@costs("add_norm")
def add_norm(v: BoxView) -> Rule:
    """The add (one FLOP an element) and the norm on the sum, which the norm keeps with its
    statistics (the summands are not kept; the RMS norm's as `_rms_kept` says); as lowered
    without ncd.ops' kernel, the add then the norm's layer, the same kept tensors. Under the
    fused lowering on CUDA the box is priced as ncd.ops' kernel (analyse.py: reads x and h,
    writes the sum and the output once)."""
    b, x = v.box, v.x()
    rows = numel(x) / v.sizes_of(x, b.over)
    total = _out("sum", "the residual sum")
    if b.norm == "layernorm":
        stats = [_own("mean", _stat_bytes(v, rows), "mean"),
                 _own("rstd", _stat_bytes(v, rows), "1/std")]  # fmt: skip
        return Rule(flops=(6 + 2 * b.affine) * numel(x), saved=[total, *stats])
    return Rule(flops=(4 + b.affine) * numel(x), saved=_rms_kept(v, total, rows, b.affine))


@costs("short_conv")
def short_conv(v: BoxView) -> Rule:
    """As lowered by default (compiler/runtime.py's short_conv). One sequence: PyTorch's
    conv1d padded kernel - 1 on both sides, the first positions kept, SiLU; the products over
    the padded length (what FlopCounterMode counts), the bias's add and SiLU; kept: the input,
    and for SiLU the convolution's whole padded output (SiLU keeps its input, a view of it).
    Packed sequences: the W taps of every token gathered, those before its sequence's start
    masked to 0, multiplied by the filter and summed (elementwise work, no matrix product);
    kept: the masked taps (for the filter's gradient), the mask (for x's) and SiLU's input.
    Under the fused lowering the box is priced as ncd.ops.short_conv (analyse.py: x read and
    y written once, only x kept)."""
    b, x = v.box, v.x()
    T, W = v.size(x, b.axis), b.kernel
    extra = (numel(x) if b.bias else ZERO) + (
        UNARY_FLOPS["silu"] * numel(x) if b.activation == "silu" else ZERO
    )
    silu_in = _own("y", v.nbytes(x), "the convolution's output (SiLU's input)")
    if b.packed:
        taps = numel(x) * W * v.bytes_per(x)
        flops = 2 * numel(x) * W + extra
        saved = [
            _own("taps", taps, "each token's W taps, masked at its sequence's start"),
            *_if(v.grad("x"), _own("mask", T * W, "the taps' mask (bool)")),
            *_if(b.activation == "silu", silu_in),
        ]
        return Rule(flops=flops, flops_bwd=2 * flops, saved=saved, temps=taps)
    padded = numel(x) / T * (T + W - 1)
    mm = 2 * padded * W
    mm_bwd = mm * (2 if v.grad("x") else 1)
    saved = [_in("x")]
    if b.activation == "silu":
        saved.append(_own("padded", padded * v.nbytes(x) / numel(x),
                          "the convolution's padded output (SiLU's input)"))  # fmt: skip
    return Rule(flops=mm + extra, mm=mm, mm_bwd=mm_bwd, flops_bwd=mm_bwd + 2 * extra, saved=saved)


# -- routing: data movement (no arithmetic) for gather and scatter's placement; the index
# positions are what autograd keeps (as int64, torch's index type).
POINTWISE |= {"compare", "where"}


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
    of x's shape broadcast over the positions' axes, summed back."""
    b, x, idx, y = v.box, v.x(), v.x("index"), v.out()
    int32 = idx.dtype != "int64"
    saved = _if(v.grad("x"), _in("x"), _positions_kept(v, int32, 8 * numel(idx)))
    rest = [a for a in x.names if a != b.axis]
    wide = v.sizes_of(x, rest) * v.sizes_of(idx, b.into) * v.size(x, b.axis)
    return Rule(
        saved=saved,
        layout={"out": (*rest, *b.into)},
        io=v.nbytes(idx) + 2 * v.nbytes(y),
        temps=8 * numel(idx) if int32 else ZERO,
        bwd_temps=wide * v.bytes_per(x) if b.into else ZERO,
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
