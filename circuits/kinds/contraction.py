"""Einstein contractions (the half-disc) and diagonals (a dot joining wires)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..errors import ShapeProblem
from .base import AxisList, AxisName, BoxBase, broadcast, need, promote, tensor
from .registry import box_kind


@box_kind
class Contract(BoxBase):
    """Multiply operands and sum over the axes `over`; axes of one name are one wire.

    Axes that several operands share and that are not summed are kept (a batch or diagonal
    axis, as the heads in attention); the output holds every remaining axis in order of first
    appearance, or in the order `out` gives.
    """

    kind: Literal["contract"] = "contract"
    over: AxisList
    """Axes summed over (the wires that enter the half-disc and do not leave)."""
    operands: tuple[str, ...] = Field(default=("a", "b"), min_length=1, max_length=8)
    """Port names, one per operand."""
    out: AxisList = ()
    """Optional output order; by default the order of first appearance."""
    family = "contraction"

    def ports(self):
        return list(self.operands)

    def infer(self, ins, ctx):
        ts = [(p, tensor(ins, p)) for p in self.operands]
        for a in self.over:
            if not any(t.axis(a) for _, t in ts):
                raise ShapeProblem(
                    f"summed axis {a} is on no operand",
                    self.operands[0],
                    f"an operand with axis {a}",
                    ", ".join(f"{p} {t}" for p, t in ts),
                )
        axes = [a for a in broadcast(ts, ctx) if a.name not in self.over]
        if self.out:
            have = {a.name: a for a in axes}
            if sorted(self.out) != sorted(have):
                raise ShapeProblem(
                    "output order must list the kept axes",
                    self.operands[0],
                    " ".join(have),
                    " ".join(self.out),
                )
            axes = [have[n] for n in self.out]
        dtype = promote(t.dtype for _, t in ts)
        return {"out": ts[0][1].with_axes(axes, dtype)}

    def acts_on(self):
        return self.over


@box_kind
class Diagonal(BoxBase):
    """Keeps the diagonal of two axes of equal size, as one axis `into`."""

    kind: Literal["diagonal"] = "diagonal"
    axes: AxisList = Field(min_length=2, max_length=2)
    """The two axes joined."""
    into: AxisName
    """Name of the joined axis."""
    family = "rearrangement"

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        need(x, self.axes, "x")
        a, b = x.axis(self.axes[0]), x.axis(self.axes[1])
        ctx.unify(a.size, b.size, "x", f"sizes of {a.name} and {b.name}")
        out = []
        for ax in x.axes:
            if ax.name == a.name:
                out.append(type(ax)(self.into, ax.size))
            elif ax.name != b.name:
                out.append(ax)
        return {"out": x.with_axes(out)}

    def acts_on(self):
        return self.axes
