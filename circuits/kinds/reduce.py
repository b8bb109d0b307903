"""Reductions over named axes, cumulative scans, and top-k selection."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..errors import ShapeProblem
from ..sizes import Size
from ..types import Axis
from .base import AxisList, AxisName, BoxBase, count, count_or_size, need, tensor
from .registry import box_kind


@box_kind
class Reduce(BoxBase):
    """Reduces over axes `over`, which leave the box."""

    kind: Literal["reduce"] = "reduce"
    over: AxisList = Field(min_length=1)
    """Axes reduced away."""
    op: Literal["sum", "mean", "max", "min", "prod", "logsumexp"] = "sum"
    """The reduction."""
    family = "reduction"

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        need(x, self.over, "x", "reduced")
        return {"out": x.with_axes([a for a in x.axes if a.name not in self.over])}

    def acts_on(self):
        return self.over


@box_kind
class Scan(BoxBase):
    """Cumulative sum / product / maximum along one axis (the running state of recurrences)."""

    kind: Literal["scan"] = "scan"
    over: AxisName
    """The axis scanned along."""
    op: Literal["sum", "prod", "max"] = "sum"
    """The associative operation."""
    reverse: bool = False
    """Scan from the end."""
    family = "reduction"

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        need(x, (self.over,), "x")
        return {"out": x}

    def acts_on(self):
        return (self.over,)


@box_kind
class TopK(BoxBase):
    """The `k` largest entries along `over`; outputs `values` and `indices` with axis `into`."""

    kind: Literal["topk"] = "topk"
    over: AxisName
    """The axis selected from."""
    k: count_or_size(2**31)
    """How many entries are kept: a number, or a size (`"T/8"`: a share of the axis, as
    Mixture-of-Depths' capacity) that follows its binding."""
    into: AxisName = "k"
    """Name of the axis of the kept entries (size k)."""
    family = "reduction"

    def n_kept(self) -> Size:
        """k as a size expression (a number, or a size such as `T/8`)."""
        return count(self.k)

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        need(x, (self.over,), "x")
        n, k = ctx.resolve(x.axis(self.over).size), ctx.resolve(self.n_kept())
        if k.is_number and not (k.is_Integer and int(k) >= 1):
            raise ShapeProblem("k is a whole number of at least 1", "", "k >= 1", f"{self.k} = {k}")
        if n.is_Integer and k.is_Integer and int(k) > int(n):
            raise ShapeProblem("k exceeds the axis", "x", f"k <= {n}", str(self.k))
        axes = [Axis(self.into, self.n_kept()) if a.name == self.over else a for a in x.axes]
        return {"values": x.with_axes(axes), "indices": x.with_axes(axes, "int64")}

    def acts_on(self):
        return (self.over,)
