"""What every cost rule shares: `@costs`, `Rule`, `Saved`, `BoxView`, helpers, kind tables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sympy

from ncd.circuits.kinds.registry import Registry
from ncd.circuits.types import TensorType

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
    "round": 1,  # integer arithmetic (elementwise.py)
    "floor": 1,
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
    "round": (),
    "floor": (),
}
# Elementwise kinds, integer arithmetic and routing's comparisons and selections included.
POINTWISE = {
    "unary",
    "binary",
    "scale",
    "cast",
    "dropout",
    "mask",
    "clamp",
    "requantize",
    "compare",
    "where",
}
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


RULES = Registry("cost rule", "compiler/cost/rules/ (the module of its family)", "@costs")
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
    extra_io_bwd: Expr = ZERO
    """The same in the backward, beyond the default (kept tensors, the output's gradient and
    the inputs' gradients read or written once): where `io_bwd` is not given."""
    temps: Expr = ZERO
    """Bytes allocated and freed inside the box's forward (copies not kept)."""
    bwd_temps: Expr = ZERO
    """Bytes allocated and freed inside the box's backward, beyond the input gradients
    (products before a broadcast is summed away, flipped copies of a reverse scan)."""
    frees_kept: bool = False
    """The box's backward frees what it keeps as it makes its inputs' gradients (a chunked
    form walking its chunks back, each chunk's tensors freed once its gradients are made):
    its backward holds the kept tensors with `bwd_temps` (as it starts, one chunk's passing
    gradients) or, at its end, the inputs' gradients, not both."""
    grad_through: tuple[str, ...] = ()
    """Input ports whose gradient is the output's gradient itself, unchanged (an add of
    operands of the output's shape): no buffer of their own in the backward."""
    io: Expr | None = None
    io_bwd: Expr | None = None
    fused: str = ""
    """Name of the fused kernel whose formulas the rule used (ops/)."""
    notes: list[str] = field(default_factory=list)


class BoxView:
    """What a rule may read about one box (sizes already resolved)."""

    def __init__(self, box, ins, outs, params, grads, layouts, nbytes, units=frozenset(),
                 platform="cuda", resolve=None, number=None):  # fmt: skip
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
        self.number: Callable = number or (lambda e: None)
        """The value of a size expression under the bound sizes, None where symbols stay free:
        for choices the ops make by size (which form runs), as `units`; formulas stay
        symbolic."""

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


def _is_view(layout: tuple[str, ...], groups: list[list[str]], units=frozenset()) -> bool:
    """Whether permuting a tensor stored in `layout` order and flattening each group of axes
    is a view (each group's axes adjacent in memory, in the group's order). Axes in `units`
    (size 1) are left out: PyTorch's reshape ignores their strides."""
    layout = tuple(a for a in layout if a not in units)
    groups = [[a for a in g if a not in units] for g in groups]
    pos = {a: i for i, a in enumerate(layout)}
    return all(all(pos[g[i + 1]] == pos[g[i]] + 1 for i in range(len(g) - 1)) for g in groups)


def _follow(v: BoxView, port: str = "x") -> dict[str, tuple[str, ...]]:
    return {"out": v.layouts[port]}
