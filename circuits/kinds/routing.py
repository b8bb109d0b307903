"""Routing: entries taken and put back by integer positions (expert and top-k selection),
one-hot encodings, comparisons with boolean results, and selection by a boolean condition.

Positions are integer tensors with named axes, as `topk`'s `indices`: `gather` takes the
entries they point at along one axis, `scatter` adds entries into the positions they name
(its inverse), `one_hot` makes a new axis with a 1 at each position.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..errors import ShapeProblem
from ..types import Dtype, TensorType
from .base import (
    AxisList,
    AxisName,
    BoxBase,
    broadcast,
    clash,
    need,
    new_axes,
    promote,
    replace_axes,
    tensor,
)
from .registry import box_kind

INDEX_DTYPES = ("int32", "int64")
COMPARISONS = ("eq", "ne", "lt", "le", "gt", "ge")


def _positions(t: TensorType, port: str) -> None:
    if t.dtype not in INDEX_DTYPES:
        raise ShapeProblem("positions are integers", port, "an int32 or int64 tensor", t.dtype)


def _batch_of(index: TensorType, data: TensorType, own, port: str, ctx, role: str) -> None:
    """The index's axes other than `own` are axes of `data` (matched by name, sizes unified)."""
    stray = [a for a in index.names if a not in own and data.axis(a) is None]
    if stray:
        raise ShapeProblem(
            f"axes {' '.join(stray)} of the positions are neither {role} nor on the data",
            port, f"{role} ({' '.join(own) or 'none'}) or axes of the data ({str(data)})",
            " ".join(index.names),
        )  # fmt: skip
    for a in index.names:
        if a not in own:
            ctx.unify(data.axis(a).size, index.axis(a).size, port, f"size of {a}")


@box_kind
class Gather(BoxBase):
    """Takes the entries of `x` along `axis` at the positions `index` holds:
    out[…, j, …] = x[…, index[…, j, …], …]. The axis leaves; the index's axes `into` take its
    place (none: one entry per position of the other axes, as an argmax picks). The index's
    other axes are axes of x, matched by name; x's axes the index lacks are broadcast (every
    row takes the same positions). Positions lie in [0, size of `axis`)."""

    kind: Literal["gather"] = "gather"
    axis: AxisName
    """The axis of x the positions index; it leaves the box."""
    into: AxisList = ()
    """Axes of the index that hold the positions (top-k's `k`); they replace `axis`."""
    family = "rearrangement"

    def ports(self):
        return ["x", "index"]

    def infer(self, ins, ctx):
        x, index = tensor(ins, "x"), tensor(ins, "index")
        need(x, (self.axis,), "x", "indexed")
        _positions(index, "index")
        need(index, self.into, "index", "of the positions")
        taken = [a for a in self.into if x.axis(a) is not None]
        if taken:
            raise ShapeProblem(
                f"axes {' '.join(taken)} of the positions are already axes of x", "index",
                f"new axis names for the positions (not {' '.join(x.names)})", " ".join(taken),
            )  # fmt: skip
        if self.axis in index.names:
            raise ShapeProblem(
                f"the positions index axis {self.axis}; they cannot run along it too", "index",
                f"axes without {self.axis}", " ".join(index.names),
            )  # fmt: skip
        _batch_of(index, x, self.into, "index", ctx, "positions")
        out = replace_axes(x, (self.axis,), [index.axis(a) for a in self.into])
        clash(list(out.axes), "index")
        return {"out": out}

    def acts_on(self):
        return (self.axis, *self.into)


@box_kind
class Scatter(BoxBase):
    """The inverse of `gather`: adds the entries of `src` into a new axis `axis` at the
    positions `index` holds, zeros elsewhere: out[…, n, …] = Σ_{j: index[…, j, …] = n}
    src[…, j, …] (a scatter-add; with distinct positions, the plain scatter). The axes `over`
    (of src and of the index) are summed away and `axis` takes their place; its size comes
    from the circuit's axis table. The index's other axes are axes of src; src's axes the
    index lacks are broadcast. Positions lie in [0, size of `axis`)."""

    kind: Literal["scatter"] = "scatter"
    axis: AxisName
    """The new axis the entries are put into (the experts, the vocabulary)."""
    over: AxisList = Field(min_length=1)
    """Axes of src and of the index along which the positions run; they leave the box."""
    family = "rearrangement"

    def ports(self):
        return ["src", "index"]

    def infer(self, ins, ctx):
        src, index = tensor(ins, "src"), tensor(ins, "index")
        need(src, self.over, "src", "scattered")
        _positions(index, "index")
        need(index, self.over, "index", "of the positions")
        if src.axis(self.axis) is not None:
            raise ShapeProblem(
                f"axis {self.axis} is already an axis of src", "src",
                f"a new axis name (not {' '.join(src.names)})", self.axis,
            )  # fmt: skip
        _batch_of(index, src, (), "index", ctx, "positions")
        out = replace_axes(src, self.over, new_axes((self.axis,), ctx))
        clash(list(out.axes), "src")
        return {"out": out}

    def acts_on(self):
        return (*self.over, self.axis)


@box_kind
class OneHot(BoxBase):
    """Integer positions to a new axis `into`: 1 at each position, 0 elsewhere, in `dtype`
    (float32 unless asked: the result of integer positions is not an integer count unless
    said so). The axis is put last; its size comes from the circuit's axis table. Positions
    lie in [0, size of `into`)."""

    kind: Literal["one_hot"] = "one_hot"
    into: AxisName
    """The new axis (the classes, the experts)."""
    dtype: Dtype = "float32"
    """Element type of the result (bool for a mask). float32, the circuit's float type,
    follows the float inputs in a compiled module run in another float dtype (bfloat16)."""
    family = "rearrangement"

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        _positions(x, "x")
        out = x.with_axes([*x.axes, *new_axes((self.into,), ctx)], self.dtype)
        clash(list(out.axes), "x")
        return {"out": out}

    def acts_on(self):
        return (self.into,)


@box_kind
class Compare(BoxBase):
    """An elementwise comparison of two tensors, broadcast by axis name, with a boolean result
    (a mask for `where`). The comparisons of `binary` give 1 and 0 in the operands' type
    instead (a mask to multiply by)."""

    kind: Literal["compare"] = "compare"
    fn: Literal[COMPARISONS]
    """a = b, a ≠ b, a < b, a ≤ b, a > b or a ≥ b."""
    family = "elementwise"

    def ports(self):
        return ["a", "b"]

    def infer(self, ins, ctx):
        a, b = tensor(ins, "a"), tensor(ins, "b")
        axes = broadcast([("a", a), ("b", b)], ctx)
        return {"out": TensorType(tuple(axes), "bool")}


@box_kind
class Where(BoxBase):
    """Selects by a boolean condition, elementwise, broadcast by axis name:
    out = a where cond holds, b elsewhere (the element type of a and b promoted). With
    `fill`, b is that constant and there is no port b (masked_fill: -inf before a softmax)."""

    kind: Literal["where"] = "where"
    fill: Literal["-inf", "0", "inf"] | None = None
    """A constant in place of b, or none (b is an input)."""
    family = "elementwise"

    def ports(self):
        return ["cond", "a"] if self.fill is not None else ["cond", "a", "b"]

    def infer(self, ins, ctx):
        cond, a = tensor(ins, "cond"), tensor(ins, "a")
        if cond.dtype != "bool":
            raise ShapeProblem("the condition is boolean (`compare` makes one)", "cond", "bool",
                               cond.dtype)  # fmt: skip
        operands = [("a", a)]
        if self.fill is None:
            operands.append(("b", tensor(ins, "b")))
        elif "float" not in a.dtype:
            raise ShapeProblem(f"the fill {self.fill} is a float", "a", "a float tensor",
                               a.dtype)  # fmt: skip
        axes = broadcast([*operands, ("cond", cond)], ctx)  # the values' axes first
        dtype = promote([t.dtype for _, t in operands])
        return {"out": TensorType(tuple(axes), dtype)}
