"""Rearrangements (wires split, merge, cross, rename), copies, tuples, concatenation, indexing."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..errors import ShapeProblem
from ..sizes import Size, ceiling, parse_size, product, show, simplify
from ..types import Axis, TensorType
from .base import (
    AxisList,
    AxisName,
    BoxBase,
    Name,
    SizeExpr,
    clash,
    need,
    new_axes,
    replace_axes,
    tensor,
    tuple_of,
)
from .registry import box_kind


def units(names, kept: str, port: str, ctx) -> None:
    """Axes split off an axis that keeps its name (`H -> H V`), or merged into one of their
    own (`H V -> H`), hold one position each: each must be known to be 1, by the circuit's
    axis table or by the sizes bound where the rule runs. A bound 1 is learned as the
    circuit's (`V := 1`), so that the Builder, which checks each line against the bound sizes,
    and validation, which checks in symbols, take and refuse the same boxes."""
    for name in names:
        size = ctx.resolve(ctx.size(name))
        if size.is_number and size == 1:
            continue
        bound = ctx.bound(name)
        free = size == Size.of(name)
        if free and bound == 1:
            ctx.unify(size, Size.number(1), port, f"size of {name}")
            continue
        found = str(bound) if free and bound is not None else show(size)
        unknown = found == name
        raise ShapeProblem(
            f"{name} is a unit axis ({kept} keeps its name and size, so {name} holds one "
            "position)", port, "1", found + (", which has no size" if unknown else ""),
            hint=f'declare it: b.axis("{name}", 1) in Python, or "axes": {{"{name}": "1"}} '
            "in a spec" if unknown else "",
        )  # fmt: skip


@box_kind
class SplitAxis(BoxBase):
    """Splits one axis into several (`D -> H K`); sizes must multiply to the original. An
    axis that keeps its name has unit axes split off beside it (`H -> H V`, V of size 1)."""

    kind: Literal["split_axis"] = "split_axis"
    axis: AxisName
    """The axis split."""
    into: AxisList = Field(min_length=1)
    """The new axes, outermost first; their sizes come from the circuit's axis table."""
    family = "rearrangement"

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        need(x, (self.axis,), "x")
        if self.axis in self.into:
            units([a for a in self.into if a != self.axis], self.axis, "x", ctx)
        new = new_axes(self.into, ctx)
        try:
            ctx.unify(
                x.axis(self.axis).size,
                product([a.size for a in new]),
                "x",
                f"size of {self.axis} = product of {' '.join(self.into)}",
            )
        except ShapeProblem as e:  # a new axis of no size is a size of its own name
            free = [a.name for a in new if ctx.resolve(a.size) == Size.of(a.name)]
            if free:
                one = len(free) == 1
                # The Builder checks each line against the sizes bound in sizes=, validation
                # in symbols: a bound axis passes the first and fails here, which reads as a
                # contradiction unless said.
                where = (
                    " in the circuit's axis table (a value in sizes= binds it, shapes are "
                    "checked in symbols)"
                    if any(ctx.bound(n) is not None for n in free)
                    else ""
                )
                value = ctx.bound(free[0]) or "…"
                e.hint = (
                    f"{' '.join(free)} {'has' if one else 'have'} no size{where}: declare "
                    f'{"it" if one else "them"} (b.axis("{free[0]}", {value}) in Python, or '
                    'the spec\'s "axes")'
                )
            raise
        y = replace_axes(x, (self.axis,), new)
        clash(list(y.axes), "x")
        return {"out": y}

    def acts_on(self):
        return (self.axis, *self.into)


@box_kind
class MergeAxes(BoxBase):
    """Merges axes into one (`H K -> D`), at the place of the first. Merged into one of
    their own, the others are unit axes taken away (`H V -> H`, V of size 1)."""

    kind: Literal["merge_axes"] = "merge_axes"
    axes: AxisList = Field(min_length=1)
    """The axes merged, outermost first."""
    into: AxisName
    """The merged axis."""
    family = "rearrangement"

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        need(x, self.axes, "x")
        if self.into in self.axes:
            units([a for a in self.axes if a != self.into], self.into, "x", ctx)
        size = product([x.axis(a).size for a in self.axes])
        ctx.unify(
            ctx.size(self.into),
            size,
            "x",
            f"size of {self.into} = product of {' '.join(self.axes)}",
        )
        y = replace_axes(x, self.axes, [Axis(self.into, size)])
        clash(list(y.axes), "x")
        return {"out": y}

    def acts_on(self):
        return (*self.axes, self.into)


@box_kind
class Permute(BoxBase):
    """Reorders axes (a crossing of wires). Only the stated axes move, in the given order."""

    kind: Literal["permute"] = "permute"
    order: AxisList = Field(min_length=1)
    """The new order of all the input's axes."""
    family = "rearrangement"

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        if sorted(self.order) != sorted(x.names):
            raise ShapeProblem(
                "order must list every axis once", "x", " ".join(x.names), " ".join(self.order)
            )
        return {"out": x.with_axes([x.axis(a) for a in self.order])}

    def acts_on(self):
        return self.order


@box_kind
class Rename(BoxBase):
    """Gives axes new names, sizes unchanged (keys over `T` become keys over `S`)."""

    kind: Literal["rename"] = "rename"
    mapping: dict[AxisName, AxisName] = Field(min_length=1, max_length=64)
    """Old name -> new name."""
    family = "rearrangement"

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        need(x, tuple(self.mapping), "x", "renamed")
        axes = []
        for a in x.axes:
            if a.name in self.mapping:
                new = self.mapping[a.name]
                ctx.unify(ctx.size(new), a.size, "x", f"size of {new}")
                axes.append(Axis(new, a.size))
            else:
                axes.append(a)
        clash(axes, "x")
        return {"out": x.with_axes(axes)}

    def acts_on(self):
        return tuple(self.mapping) + tuple(self.mapping.values())


@box_kind
class Copy(BoxBase):
    """Copies a value to `n` outputs `0 … n-1` (a dot where a wire splits)."""

    kind: Literal["copy"] = "copy"
    n: int = Field(default=2, ge=2, le=64)
    """Number of copies."""
    family = "structure"

    def infer(self, ins, ctx):
        return {str(i): ins["x"] for i in range(self.n)}


@box_kind
class Pack(BoxBase):
    """Makes a tuple of tensors (members separated by a dashed line)."""

    kind: Literal["pack"] = "pack"
    items: tuple[Name, ...] = Field(min_length=1, max_length=64)
    """Member names, which are also the input ports."""
    family = "structure"

    def ports(self):
        return list(self.items)

    def infer(self, ins, ctx):
        return {"out": tuple_of((n, tensor(ins, n)) for n in self.items)}


@box_kind
class Unpack(BoxBase):
    """Opens a tuple; one output port per member."""

    kind: Literal["unpack"] = "unpack"
    family = "structure"

    def infer(self, ins, ctx):
        t = ins["x"]
        if isinstance(t, TensorType):
            raise ShapeProblem("expects a tuple", "x", "a tuple", f"a tensor {t}")
        return dict(t.items)


@box_kind
class Concat(BoxBase):
    """Concatenates operands along `axis`, their other axes matched by name. An operand without
    `axis` joins as one position along it (a class token before the patches); one without
    another axis repeats along it (a class token shared by the batch, zeros padding every
    row), as binary ops broadcast. The operand with `axis` and the most axes has every axis
    (the output's, in its order). Where no operand has `axis`, they are stacked: each is one
    position along the new axis, whose size is their number, put last."""

    kind: Literal["concat"] = "concat"
    axis: AxisName
    """The axis joined along; its sizes add up."""
    operands: tuple[Name, ...] = Field(default=("a", "b"), min_length=2, max_length=64)
    """Port names, in order."""
    along: dict[Name, AxisName] = Field(default_factory=dict, max_length=64)
    """Operands joining along an axis of another name: port -> that axis. Pieces of other
    sizes cannot share one axis name (a name is a size): features of 4 (`F`) and of 6 (`E`)
    join into `axis` = F of size F + E. The other operands join along `axis` itself."""
    family = "rearrangement"

    @model_validator(mode="after")
    def _along_operands(self):
        extra = [p for p in self.along if p not in self.operands]
        if extra:
            raise ValueError(f"along names ports that are not operands: {', '.join(extra)}")
        return self

    def ports(self):
        return list(self.operands)

    def joined(self, port: str, t: TensorType) -> TensorType:
        """Operand t with the axis it joins along named `axis`."""
        own = self.along.get(port)
        if own is None or own == self.axis:
            return t
        need(t, (own,), port, "joined")
        if t.axis(self.axis) is not None:
            raise ShapeProblem(
                f"the operand joins along {own}, which takes the name {self.axis}; it has an "
                f"axis {self.axis} already", port, f"no axis {self.axis}", " ".join(t.names),
            )  # fmt: skip
        return t.with_axes([Axis(self.axis, a.size) if a.name == own else a for a in t.axes])

    def infer(self, ins, ctx):
        ts = [(p, self.joined(p, tensor(ins, p))) for p in self.operands]
        having = [(p, t) for p, t in ts if t.axis(self.axis) is not None]
        if not having:  # a stack: the widest operand, with the new axis last
            first_port, first = max(ts, key=lambda h: len(h[1].names))
            n = Size.number(len(ts))
            ctx.unify(
                ctx.size(self.axis), n, first_port, f"size of {self.axis} (the operands stacked)"
            )
            first = first.with_axes([*first.axes, Axis(self.axis, Size.number(0))])
        else:
            # the output's axes: those of the operand with the joined axis and the most axes
            first_port, first = max(having, key=lambda h: len(h[1].names))
        for p, t in ts:
            if t is first:
                continue
            extra = [a for a in t.names if first.axis(a) is None]
            if extra:
                raise ShapeProblem(
                    f"an operand's axes are among those of the widest with {self.axis} (it "
                    "repeats along the ones it lacks)", p, " ".join(first.names),
                    " ".join(t.names),
                )  # fmt: skip
            for a in t.axes:
                if a.name != self.axis:
                    ctx.unify(first.axis(a.name).size, a.size, p, f"size of {a.name}")
        total = sum(
            (t.axis(self.axis).size if t.axis(self.axis) is not None else Size.number(1)
             for _, t in ts),
            Size.number(0),
        )  # fmt: skip
        return {
            "out": first.with_axes(
                [Axis(a.name, total) if a.name == self.axis else a for a in first.axes]
            )
        }

    def acts_on(self):
        return (self.axis, *dict.fromkeys(a for a in self.along.values() if a != self.axis))


@box_kind
class Split(BoxBase):
    """Splits along `axis` into pieces of the given sizes, outputs named by `names`."""

    kind: Literal["split"] = "split"
    axis: AxisName
    """The axis cut."""
    sizes: tuple[SizeExpr, ...] = Field(min_length=2, max_length=64)
    """Sizes of the pieces; they add up to the axis size."""
    names: tuple[Name, ...] = ()
    """Output port names (default `0 … n-1`)."""
    family = "rearrangement"

    @model_validator(mode="after")
    def _names_match(self):
        if self.names and len(self.names) != len(self.sizes):
            raise ValueError("names and sizes must have the same length")
        return self

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        need(x, (self.axis,), "x")
        pieces = [parse_size(s) for s in self.sizes]
        ctx.unify(
            x.axis(self.axis).size,
            sum(pieces, Size.number(0)),
            "x",
            f"size of {self.axis} = sum of the pieces",
        )
        names = self.names or tuple(str(i) for i in range(len(pieces)))
        return {
            n: x.with_axes([Axis(a.name, s) if a.name == self.axis else a for a in x.axes])
            for n, s in zip(names, pieces, strict=True)
        }

    def acts_on(self):
        return (self.axis,)


@box_kind
class Index(BoxBase):
    """Takes one position along `axis` (the pentagon tag); the axis leaves."""

    kind: Literal["index"] = "index"
    axis: AxisName
    """The axis indexed."""
    index: int = Field(ge=-(2**40), le=2**40)
    """The position (negative counts from the end)."""
    family = "rearrangement"

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        need(x, (self.axis,), "x")
        n = ctx.resolve(x.axis(self.axis).size)
        if n.is_Integer and not -int(n) <= self.index < int(n):
            raise ShapeProblem("index out of range", "x", f"-{n} <= index < {n}", str(self.index))
        return {"out": x.with_axes([a for a in x.axes if a.name != self.axis])}

    def acts_on(self):
        return (self.axis,)


@box_kind
class Slice(BoxBase):
    """Keeps positions `start:stop:step` along `axis`."""

    kind: Literal["slice"] = "slice"
    axis: AxisName
    """The axis sliced."""
    start: int = Field(default=0, ge=0, le=2**40)
    """First position kept."""
    stop: SizeExpr | None = None
    """One past the last position (an expression such as `T-1`); the end when empty."""
    step: int = Field(default=1, ge=1, le=2**20)
    """Stride."""
    family = "rearrangement"

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        need(x, (self.axis,), "x")
        n = x.axis(self.axis).size
        stop = n if self.stop is None else parse_size(self.stop)
        size = simplify(ceiling((stop - self.start) / self.step))
        if size.is_number and size <= 0:
            raise ShapeProblem("the slice is empty", "x", "start < stop", f"{self.start}:{stop}")
        return {
            "out": x.with_axes([Axis(a.name, size) if a.name == self.axis else a for a in x.axes])
        }

    def acts_on(self):
        return (self.axis,)
