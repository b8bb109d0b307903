"""Entries taken and put back by integer positions: `torch.gather` is a gather box;
`scatter_add`, `index_add` (and `scatter` of positions distinct by construction) a scatter box,
added to the tensor scattered into unless that is zeros made from sizes alone."""

from __future__ import annotations

import operator

import torch
from torch import fx

from ncd.circuits.builder import Wire

from .. import tracing
from .common import _is_t, _Unmapped
from .tables import imports

_SAME = {"long", "int", "to", "contiguous"}
"""Ops that keep an index tensor's values where they are."""


class _Routing:
    """Gather and scatter by positions (a mixin of `_Importer`, core.py)."""

    def aligned(self, n, w: Wire, like: list[str], d: int, node) -> tuple[Wire, str]:
        """`w` (a tensor of `like`'s rank, an operand of a gather or scatter along dim d) with
        `like`'s axis names at every dim but d, and at d a name `like` does not hold; with that
        name."""
        own = w.axes[d]
        if own in like:
            own = self.fresh(like[d], self.shape(node)[d], avoid=[*like, *w.axes])
        want = [*like[:d], own, *like[d + 1 :]]
        mapping = {a: b for a, b in zip(w.axes, want, strict=True) if a != b}
        if mapping:
            w = self.b.rename(w, mapping, name=self.box_name(n, "align"))
        return w, own

    @imports("gather")
    def gather(self, n) -> Wire:
        """`torch.gather(x, dim, index)` (`x.gather(dim, index)`): a gather box along x's axis
        at dim, the index's axis there taking its place; the index's other dims are x's (a
        smaller index stays opaque)."""
        a, d, i = (self.arg(n, k, key) for k, key in enumerate(("input", "dim", "index")))
        if not (_is_t(self, a) and _is_t(self, i)):
            raise _Unmapped
        xs, ins = self.shape(a), self.shape(i)
        d = self.const(d) % len(xs)
        if len(ins) != len(xs) or any(ins[k] != xs[k] for k in range(len(xs)) if k != d):
            raise _Unmapped
        x, idx = self.wire(a), self.wire(i)
        idx, into = self.aligned(n, idx, list(x.axes), d, i)
        y = self.b.box("gather", {"x": x, "index": idx}, self.box_name(n), axis=x.axes[d],
                       into=[into])  # fmt: skip
        return self.order(y, [*x.axes[:d], into, *x.axes[d + 1 :]], n)

    @imports("scatter")
    def scatter(self, n, add: bool) -> Wire:
        """`base.scatter_add(dim, index, src)`: a scatter box of src into base's axis at dim,
        added to base unless base is zeros made from sizes alone (`torch.zeros_like(x)`).
        `scatter` (no add) only into such zeros and from positions distinct along dim by
        construction (top-k's or a sort's indices), where it is the same sum; a number as src
        or a `reduce` stays opaque."""
        base, d, i = (self.arg(n, k, key) for k, key in enumerate(("input", "dim", "index")))
        src = self.arg(n, 3, "src")
        if n.kwargs.get("reduce") is not None or not all(_is_t(self, t) for t in (base, i, src)):
            raise _Unmapped
        bs, ins, ss = self.shape(base), self.shape(i), self.shape(src)
        d = self.const(d) % len(bs)
        if ins != ss or len(ins) != len(bs) or any(ins[k] != bs[k] for k in range(len(bs))
                                                   if k != d):  # fmt: skip
            raise _Unmapped
        zeros = self.zeros(base)
        if not add and not (zeros and self.distinct(i, d)):
            raise _Unmapped  # (torch leaves the result of repeated positions undefined)
        into = self.wire(base)
        s, over = self.aligned(n, self.wire(src), list(into.axes), d, src)
        idx = self.wire(i)
        if list(idx.axes) != list(s.axes):
            mapping = dict(zip(idx.axes, s.axes, strict=True))
            idx = self.b.rename(idx, mapping, name=self.box_name(n, "align"))
        y = self.b.box("scatter", {"src": s, "index": idx}, self.box_name(n),
                       axis=into.axes[d], over=[over])  # fmt: skip
        y = self.order(y, list(into.axes), n)
        if zeros:
            return y
        return self.b.binary(into, y, "add", name=self.box_name(n, "into"))

    def index_add(self, n) -> Wire:
        """`base.index_add(dim, index, source)` (Mixtral's `out.index_add_(0, rows, y)`): a
        scatter box of source's rows along dim into base's axis there by the 1-dim index,
        added to base unless that is zeros made from sizes alone; `alpha` stays opaque."""
        names = ("input", "dim", "index", "source")
        base, d, i, src = (self.arg(n, k, key) for k, key in enumerate(names))
        if n.kwargs.get("alpha", 1) != 1 or not all(_is_t(self, t) for t in (base, i, src)):
            raise _Unmapped
        bs, ins, ss = self.shape(base), self.shape(i), self.shape(src)
        d = self.const(d) % len(bs)
        if (
            len(ins) != 1
            or len(ss) != len(bs)
            or ss[d] != ins[0]
            or any(ss[k] != bs[k] for k in range(len(bs)) if k != d)
        ):
            raise _Unmapped
        into = self.wire(base)
        s, over = self.aligned(n, self.wire(src), list(into.axes), d, src)
        idx = self.wire(i)
        if idx.axes[0] != over:
            idx = self.b.rename(idx, {idx.axes[0]: over}, name=self.box_name(n, "rows"))
        y = self.b.box("scatter", {"src": s, "index": idx}, self.box_name(n),
                       axis=into.axes[d], over=[over])  # fmt: skip
        y = self.order(y, list(into.axes), n)
        if self.zeros(base):
            return y
        return self.b.binary(into, y, "add", name=self.box_name(n, "into"))

    def zeros(self, a: fx.Node) -> bool:
        """Whether node a is zeros made without reading the inputs' values (`zeros_like(x)`
        reads only x's shape)."""
        if bool(self.values[a].any()):
            return False
        made = a.target in (torch.zeros_like, torch.zeros) or (
            a.op == "call_method" and a.target == "new_zeros"
        )
        return made or not tracing.reads_values(a)

    def distinct(self, i, d: int) -> bool:
        """Whether index node i holds positions distinct along dim d by construction: the
        indices of a top-k or sort along d (or an argsort), cast or made contiguous on the
        way."""

        def name(m):
            return str(m.target) if m.op == "call_method" else getattr(m.target, "__name__", "")

        while isinstance(i, fx.Node) and name(i) in _SAME and i.args:
            i = i.args[0]
        if not isinstance(i, fx.Node):
            return False
        makers = {"argsort"}
        if i.target is operator.getitem and i.args[1] == 1 and isinstance(i.args[0], fx.Node):
            i, makers = i.args[0], {"topk", "sort"}  # (values, indices)[1]
        if name(i) not in makers or not _is_t(self, i.args[0]):
            return False
        dim = self.const(self.arg(i, 2 if name(i) == "topk" else 1, "dim", -1))
        return isinstance(dim, int) and dim % len(self.shape(i.args[0])) == d
