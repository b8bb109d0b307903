"""Sizes the model's code reads (`x.shape[1]`, `x.size(0)`): followed to the circuit's axes, as
size expressions where they scale, and fixed at the example's sizes where the code takes them
as numbers (`pin`)."""

from __future__ import annotations

import math
import operator
import warnings

import torch
from torch import fx

from ncd.circuits.builder import Wire
from ncd.circuits.sizes import parse_size

from .. import tracing
from ..errors import TorchImportError
from .common import _Lazy, _num

_SIZE_OPS = {operator.add: "{}+{}", operator.sub: "{}-{}", operator.mul: "{}*{}",
             operator.truediv: "{}/{}", operator.floordiv: "floor({}/{})",
             operator.pow: "{}**{}", operator.neg: "-{}"}  # fmt: skip
"""Python's arithmetic on sizes as size expressions (of operands each in parentheses)."""


def _is_shape(n: fx.Node) -> bool:
    """Whether node n reads a tensor's sizes: `x.shape`, `x.size()`, `x.size(d)`."""
    if n.op == "call_function" and n.target is getattr:
        return n.args[1] == "shape"
    return n.op == "call_method" and n.target == "size"


def _axes_in(size) -> set[str]:
    """The axes an entry of `_Importer.dim_sizes` names (none for a number or None)."""
    if size is None or (isinstance(size, str) and size.isdigit()):
        return set()
    return {size} if isinstance(size, str) else set(size)


class _Sizes:
    """Sizes the model's code reads (a mixin of `_Importer`, core.py)."""

    def dim_sizes(self, x) -> list[str | tuple[str, ...] | None] | None:
        """Per dim of node x's tensor, in torch's order: the axis whose size it is, a number
        (a size-1 dim the wire leaves out, a held tensor's dim), the axes it may be (a tensor
        no wire carries) or None (unknown); None where x is no tensor."""
        w, v = self.wires.get(x), self.values.get(x)
        if not isinstance(v, torch.Tensor):
            return None
        if isinstance(w, _Lazy):  # a held tensor: its sizes are its weight's
            return [str(s) for s in v.shape]
        if not isinstance(w, Wire):  # (a complex tensor inside an opaque region): any axis
            # of the same size may be the one read
            return [tuple(a for a, s in self.sizes.items() if s == n) or str(n)
                    for n in v.shape]  # fmt: skip
        units, grown = self.units.get(x, ()), self.grown.get(x, {})
        axes = iter(w.axes)
        return [
            (None if d in grown else "1") if d in units else next(axes, None)
            for d in range(v.dim())
        ]

    def size_expr(self, a) -> tuple[str, frozenset[str]] | None:
        """A number the model computes from sizes (`x.shape[1] ** 0.5`, `x.size(0) // 2`) as a
        size expression of the axes it reads, with those axes; a plain number as itself; None
        where it is neither (a tuple, a tensor, an op the size language has no form for)."""
        if isinstance(a, bool) or (not isinstance(a, (int, float, fx.Node))):
            return None
        if not isinstance(a, fx.Node):
            return (_num(a), frozenset()) if math.isfinite(a) else None
        v = self.values.get(a)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None
        dim = self.read_dim(a)
        if dim is not None:
            x, d = dim
            sizes = self.dim_sizes(x)
            if sizes is None or not -len(sizes) <= d < len(sizes) or sizes[d] is None:
                return None
            s = sizes[d]
            if isinstance(s, tuple):
                return None  # one of several axes: no expression
            return (s, frozenset()) if s.isdigit() else (s, frozenset({s}))
        op = _SIZE_OPS.get(a.target) if a.op == "call_function" else None
        if op is None or a.kwargs:
            return None
        parts = [self.size_expr(x) for x in a.args]
        if any(p is None for p in parts):
            return None
        texts = [f"({t})" for t, _ in parts]
        return op.format(*texts), frozenset().union(*(names for _, names in parts))

    def read_dim(self, a: fx.Node) -> tuple[fx.Node, int] | None:
        """(x, d) where node a is the size of dim d of node x's tensor: `x.shape[d]`,
        `x.size(d)`, `x.size()[d]`; else None."""
        if a.op == "call_method" and a.target == "size" and len(a.args) + len(a.kwargs) == 2:
            d = self.arg(a, 1, "dim")
            return (a.args[0], d) if isinstance(d, int) else None
        if a.target is not operator.getitem or not isinstance(a.args[1], int):
            return None
        src = a.args[0]
        if not isinstance(src, fx.Node):
            return None
        whole = _is_shape(src) and (src.target is getattr or len(src.args) + len(src.kwargs) == 1)
        return (src.args[0], a.args[1]) if whole else None

    def size_axes(self, a: fx.Node) -> set[str] | None:
        """The axes whose sizes node a's value is computed from (walking back to the reads of
        a tensor's shape, as `tracing.reads_values` does); None where one read cannot be
        followed to an axis."""
        found: set[str] = set()
        seen, todo = set(), [a]
        while todo:
            m = todo.pop()
            if m in seen:
                continue
            seen.add(m)
            dim = self.read_dim(m)
            shape = _is_shape(m)
            if dim is not None or shape:
                x = dim[0] if dim is not None else m.args[0]
                sizes = self.dim_sizes(x)
                if sizes is None:
                    return None
                if dim is not None and -len(sizes) <= dim[1] < len(sizes):
                    sizes = [sizes[dim[1]]]  # one dim's size, else every dim's
                found |= {ax for s in sizes for ax in _axes_in(s)}
                continue
            if m.op == "placeholder" or (m.op == "call_method" and m.target == "dim") or (
                m.op == "call_function" and m.target is getattr
                and m.args[1] in ("dtype", "device", "ndim")
            ):  # fmt: skip
                continue  # a value fixed at its default, a rank, a dtype: no size
            todo += m.all_input_nodes
        return found

    def pin(self, a: fx.Node) -> None:
        """Fixes the axes whose sizes node a's value is computed from to the example's sizes,
        where the circuit holds that value as a number (an imported model run at other sizes
        is refused by the circuit's input check, not computed with the example's number)."""
        if not isinstance(a, fx.Node) or a.op == "placeholder":
            return
        axes = self.size_axes(a)
        if axes is None:
            raise TorchImportError(
                f"{self.where(a)}: the model's code reads a size ncd cannot follow to an "
                "axis of the circuit, as the example's number; compute it inside a "
                "submodule kept whole (keep=[path], `ncd import --keep PATH`)"
            )
        if axes:
            self.pending.append((axes, a))

    def pin_read_sizes(self, checked, live) -> bool:
        """Fixes the sizes the model's code took as the example's numbers (Python control flow
        on sizes: `range(x.shape[0] // 2)`, `if T > 1`, `int(T / 2)`: tracing.READ) and those
        live boxes hold as numbers (`pin`): each free size symbol they are made of is
        declared at the example's size, with a warning naming the axes and what read them
        (the compiled module then refuses other sizes). Whether any was."""
        self.pending = []
        for n in self.gm.graph.nodes:
            for d in n.meta.get(tracing.READ, ()):
                if d is None:
                    self.pin(n)
                    continue
                sizes = self.dim_sizes(n)
                if sizes is None or sizes[d] is None:
                    raise TorchImportError(
                        f"{self.where(n)}: the model's code takes the length of a tensor ncd "
                        "cannot follow to an axis of the circuit, as the example's number; "
                        "run that code inside a submodule kept whole (keep=[path], "
                        "`ncd import --keep PATH`)"
                    )
                if _axes_in(sizes[d]):
                    self.pending.append((_axes_in(sizes[d]), n))
        pins = [*((axes, m) for axes, m, boxes in self.pins
                  if boxes is None or set(live) & set(boxes)), *self.pending]  # fmt: skip
        declared = self.b._draft.axes
        fixed: dict[str, fx.Node] = {}
        for axes, m in pins:
            for ax in sorted(axes):
                for sym in sorted(checked.resolve(parse_size(ax)).names()):
                    if sym not in declared and sym in self.sizes:
                        fixed.setdefault(sym, m)
        for sym in fixed:
            self.b.axis(sym, self.sizes[sym])
        weighed = {  # sizes the weights fix anyway: fixing them again is no news
            sym for ps in checked.params.values() for t in ps.values() for ax in t.names
            for sym in checked.resolve(parse_size(ax)).names()
        }  # fmt: skip
        news = {sym: m for sym, m in fixed.items() if sym not in weighed}
        if news:
            said = "; ".join(f"{sym} = {self.sizes[sym]} (read by {self.where(m)})"
                             for sym, m in news.items())  # fmt: skip
            warnings.warn(
                f"{type(self.model).__name__}: the model's code reads sizes as numbers "
                f"(Python arithmetic or control flow on x.shape), so the circuit fixes {said}; "
                "import again with an example of the sizes wanted to run at others",
                stacklevel=4,
            )
        return bool(fixed)
