"""Ops over an axis: variance and standard deviation, max and min, top-k, softmax."""

from __future__ import annotations

import operator

from ncd.circuits.builder import Wire

from .common import _Unmapped
from .tables import imports


class _Reductions:
    """Ops over an axis (a mixin of `_Importer`, core.py)."""

    @imports("topk")
    def topk(self, n, a) -> tuple[Wire, Wire]:
        """`x.topk(k, dim)` (largest, sorted): the values and indices over a new axis of k."""
        x = self.wire(a)
        k = self.const(self.arg(n, 1, "k"))
        d = self.const(self.arg(n, 2, "dim", -1)) % len(x.axes)
        if not self.const(self.arg(n, 3, "largest", True)) or not self.const(
            self.arg(n, 4, "sorted", True)
        ):
            raise _Unmapped
        into = self.axis("feature", k, avoid=x.axes)
        r = self.b.box("topk", {"x": x}, self.box_name(n), over=x.axes[d], k=k, into=into)
        return r["values"], r["indices"]

    def softmax(self, n, variant: str) -> Wire:
        """`F.softmax(x, dim)`, `F.log_softmax`, `F.softmin` and their methods: a softmax box
        of that variant over the axis at dim (without a dtype to compute in)."""
        x = self.wire(n.args[0] if n.args else n.kwargs.get("input"))
        d = self.const(self.arg(n, 1, "dim"))
        if not isinstance(d, int) or self.const(n.kwargs.get("dtype")) is not None:
            raise _Unmapped
        return self.b.softmax(x, x.axes[d], variant=variant, name=self.box_name(n))

    def spread(self, n, op: str, a) -> Wire:
        """`var` and `std` over some dims: the mean, the centred square's mean, scaled by
        N / (N - correction) for the N positions reduced (a size expression), its root for
        `std`; `var_mean` and `std_mean`: that and the mean, a pair."""
        x = self.wire(a)
        third = self.const(n.args[2]) if len(n.args) > 2 else None
        if isinstance(third, bool):  # var(x, dim, unbiased, keepdim)
            corr = int(third)
            keep = self.const(self.arg(n, 3, "keepdim", False))
        else:
            corr = n.kwargs.get("correction", n.kwargs.get("unbiased", True))
            corr = int(self.const(corr) if corr is not None else 1)
            keep = self.const(n.kwargs.get("keepdim", False))
        if not x.axes or not isinstance(corr, int):
            raise _Unmapped
        dims = self.dims_of(n, x)
        over = [x.axes[d] for d in dims]
        mean = self.b.reduce(x, over, "mean", name=self.box_name(n, "mean"))
        c = self.b.binary(x, mean, "sub", name=self.box_name(n, "centre"))
        sq = self.b.unary(c, "square", name=self.box_name(n, "square"))
        y = self.b.reduce(sq, over, "mean", name=self.box_name(n, "" if op == "var" else "var"))
        if corr:
            count = "*".join(over)
            y = self.b.scale(y, f"({count})/({count} - {corr})", name=self.box_name(n, "correct"))
        if op.startswith("std"):
            y = self.b.unary(y, "sqrt", name=self.box_name(n, "" if op == "std" else "std"))
        if keep:
            self.units[n] = tuple(dims)
        return y if op in ("var", "std") else (y, mean)

    def extreme(self, n, op: str):
        """`x.max(dim)` / `x.min(dim)` (keepdim or not) read for its values alone (`[0]`,
        `.values`): those values as a reduce box, the indices None; `x.max()` the reduce over
        every axis. Read for its indices (ties broken as torch does), opaque."""
        x, dim = self.wire(n.args[0]), self.const(self.arg(n, 1, "dim"))
        if dim is None:
            return self.b.reduce(x, list(x.axes), op, name=self.box_name(n))
        if not isinstance(dim, int) or not all(
            (u.target is operator.getitem and u.args[1] == 0)
            or (u.target is getattr and u.args[1] == "values")
            for u in n.users
        ):
            raise _Unmapped
        d = dim % len(x.axes)
        y = self.b.reduce(x, [x.axes[d]], op, name=self.box_name(n))
        if self.const(self.arg(n, 2, "keepdim", False)):  # the kept dim off the wire, as the
            self.units[n] = (d,)  # other reductions' (`[0]` and `.values` read it)
        return (y, None)
