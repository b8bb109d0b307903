"""What every box kind shares: its name and wiring, and the helpers shape rules are made of.

A kind is a pydantic model with a literal `kind`, typed parameters, and a shape rule
`infer(ins, ctx) -> {port: type}`. Axes a box does not name are broadcast through it. Shape rules
raise `ShapeProblem` (port, expected, found); the validator adds the box's name.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Annotated, Any, ClassVar, get_args

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from ..errors import ShapeProblem, SizeError
from ..limits import MAX_AXES, MAX_BOX_INPUTS, MAX_NAME, exceeded
from ..sizes import Size, parse_size, show
from ..types import Axis, TensorType, TupleType, Value, promote

_AXIS_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Box names are free text for people (they are sanitised wherever they reach code) but cannot
# hold the reference separator '.', control characters, bidirectional or other invisible
# formatting characters (which make text read other than it is) or lone surrogates.
_NAME_RE = re.compile(
    "^[^\x00-\x1f\x7f-\x9f.\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]+$"
)


def _axis_name(v: str) -> str:
    if not isinstance(v, str) or not _AXIS_RE.match(v) or len(v) > MAX_NAME:
        raise ValueError(
            "an axis name is an ASCII identifier (letters, digits, _) of at most "
            f"{MAX_NAME} characters"
        )
    return v


def _split_axes(v: Any) -> Any:
    if isinstance(v, str):
        v = v.split(None, MAX_AXES)
    if isinstance(v, list | tuple) and len(v) > MAX_AXES:
        raise ValueError(f"more than {MAX_AXES} axes (limit MAX_AXES)")
    return tuple(v) if isinstance(v, list) else v


def _few_ports(v: Any) -> Any:
    if isinstance(v, dict | list | tuple) and len(v) > MAX_BOX_INPUTS:
        raise ValueError(exceeded("input ports", "MAX_BOX_INPUTS", len(v)))
    return v


def _unique(v: tuple[str, ...]) -> tuple[str, ...]:
    seen: set[str] = set()
    dup = sorted({a for a in v if a in seen or seen.add(a)})
    if dup:
        raise ValueError(f"axis names repeat: {' '.join(dup)}")
    return v


def _box_name(v: str) -> str:
    if not isinstance(v, str) or not v.strip() or len(v) > MAX_NAME or not _NAME_RE.match(v):
        raise ValueError(
            f"a name is 1 to {MAX_NAME} characters without '.', control or invisible "
            "formatting characters (limit MAX_NAME)"
        )
    return v


def _size_expr(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"a size is a finite number, found {v}")
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 64:
        raise ValueError("a number larger than 2**64 (limit MAX_NUMBER)")
    if isinstance(v, int | float) and not isinstance(v, bool):
        return str(v)
    if isinstance(v, str):
        try:
            parse_size(v)
        except SizeError as e:
            raise ValueError(str(e)) from None
        return v
    raise ValueError("a size is an integer or an expression such as 'H*K'")


def _is_size_expr(metadata) -> bool:
    return any(getattr(m, "func", None) is _size_expr for m in metadata)


def _holds_size_expr(annotation) -> bool:
    """Whether a field's type is `SizeExpr` or holds one (`SizeExpr | None`, a tuple)."""
    if _is_size_expr(getattr(annotation, "__metadata__", ())):
        return True
    return any(_holds_size_expr(a) for a in get_args(annotation))


@functools.cache
def _size_fields(cls) -> tuple[str, ...]:
    """The names of a box kind's fields typed `SizeExpr` (alone, optional or in a tuple), in
    field order: read off the annotations once per kind."""
    return tuple(
        name for name, info in cls.model_fields.items()
        if _holds_size_expr(info.annotation) or _is_size_expr(info.metadata)
    )  # fmt: skip


AxisName = Annotated[str, AfterValidator(_axis_name)]
AxisList = Annotated[tuple[AxisName, ...], BeforeValidator(_split_axes), AfterValidator(_unique)]
Name = Annotated[str, AfterValidator(_box_name)]
SizeExpr = Annotated[str, BeforeValidator(_size_expr)]


def _whole_number(v: Any) -> Any:
    """A whole number written as text ("4", as the editor's form gives it) is that number, so
    that a spec reads the same however it was written."""
    return int(v) if isinstance(v, str) and v.strip().isdigit() and len(v.strip()) < 8 else v


def count_or_size(limit: int):
    """A field that counts something: a whole number from 1 to `limit`, or a size expression
    (`"H"`, `"T/8"`) that follows the sizes' binding; checked to be a whole number of at
    least 1 where it is bound (`count`)."""
    return Annotated[
        Annotated[int, Field(ge=1, le=limit)] | SizeExpr, BeforeValidator(_whole_number)
    ]


def count(value: int | str):
    """The Size of a `count_or_size` field."""
    return Size.number(value) if isinstance(value, int) else parse_size(value)


Ref = Annotated[str, Field(max_length=2 * MAX_NAME + 1)]
Wiring = Annotated[dict[str, Ref], Field(max_length=MAX_BOX_INPUTS), BeforeValidator(_few_ports)]
PortNames = Annotated[
    tuple[Name, ...], Field(max_length=MAX_BOX_INPUTS), BeforeValidator(_few_ports)
]


class Context:
    """What a shape rule may ask of the circuit: sizes of new axes and size unification."""

    def size(self, axis: str) -> Size:  # pragma: no cover - interface
        raise NotImplementedError

    def unify(self, a: Size, b: Size, port: str, what: str) -> None:  # pragma: no cover
        raise NotImplementedError

    def resolve(self, e: Size) -> Size:  # pragma: no cover - interface
        raise NotImplementedError

    def call(self, box, ins: dict[str, Value]) -> dict[str, Value]:  # pragma: no cover
        raise NotImplementedError

    def known(self, axis: str) -> bool:
        """Whether the circuit knows `axis` where the rule runs: a wire so far carries it, or
        the circuit gives it a size (a box that makes an axis from nothing asks)."""
        return True

    def known_axes(self) -> list[str]:
        """The axes `known` accepts, sorted (for the message that refuses another)."""
        return []

    def bound(self, axis: str) -> int | None:
        """The number the sizes in force bind `axis` to (`sizes=`, `--sizes`), if any."""
        return None


class BoxBase(BaseModel):
    """Fields every box has. Subclasses add `kind` and their parameters."""

    model_config = ConfigDict(extra="forbid")  # field docs: fielddocs.attach()

    name: Name
    """Unique name of the box in its circuit; parameters and generated code are named after it."""
    inputs: Wiring = Field(default_factory=dict)
    """Input port -> source, written `box` (its only output), `box.port`, or an input's name."""
    label: str = Field(default="", max_length=MAX_NAME)
    """A name for the box's role (`L^Q` for a query map, `φ` for a feature map), kept in the
    spec, in cost reports and in the written code's comments; what the drawing makes of it
    (and of none) depends on the kind: `ncd schema KIND`."""
    group: str = Field(default="", max_length=MAX_NAME)
    """Title of the block (shaded region) the box belongs to, e.g. `Multi-Head Attention`;
    where blocks nest (`Circuit.groups`), the innermost one."""

    family: ClassVar[str] = "other"  # drawing colour and palette section
    learned: ClassVar[bool] = False
    """Whether boxes of the kind hold learned tensors; `is_learned()` says it of one box."""
    broadcasts: ClassVar[bool] = True
    """Whether the axes `acts_on()` does not name are broadcast through the operation (it is
    applied to each of their positions alone). False where the operation couples them: batch
    norm's statistics are taken over every axis but the channel, so no axis passes it by."""

    named_ports: ClassVar[bool] = False
    """Whether the drawing names the input ports on their stubs: the inputs play roles the
    pictogram does not tell apart (a fused attention's q and k, or g and beta, may carry the
    same axes)."""

    def ports(self) -> list[str]:
        """Input port names, in the order the operation takes them."""
        return ["x"]

    def size_expressions(self) -> list[tuple[str, str]]:
        """(field, text) of each size expression among the box's settings (fields typed
        `SizeExpr`, alone, optional or in a tuple: `sizes[1]`), in field order."""
        out = []
        for name in _size_fields(type(self)):
            value = getattr(self, name)
            if isinstance(value, tuple):
                out += [(f"{name}[{i}]", v) for i, v in enumerate(value)]
            elif value is not None:
                out.append((name, str(value)))  # a field that takes a number or a size
        return out

    def infer(self, ins: dict[str, Value], ctx: Context) -> dict[str, Value]:
        raise NotImplementedError

    def params(self, ins: dict[str, Value], ctx: Context) -> dict[str, TensorType]:
        """Learned tensors of the box, by name, with their axes."""
        return {}

    def acts_on(self) -> tuple[str, ...]:
        """The axes the operation names (all others are broadcast through it, unless the kind
        sets `broadcasts` False)."""
        return ()

    def is_learned(self) -> bool:
        """Whether this box holds learned tensors (drawn bold): the kind's `learned`, except
        where an option decides (a norm with `affine` False learns nothing)."""
        return type(self).learned


def tensor(ins: dict[str, Value], port: str) -> TensorType:
    t = ins[port]
    if not isinstance(t, TensorType):
        raise ShapeProblem("expects a tensor", port, "a tensor", f"a tuple {t}")
    return t


def need(t: TensorType, names, port: str, role: str = "") -> None:
    missing = [a for a in names if t.axis(a) is None]
    if missing:
        raise ShapeProblem(
            f"axis {' '.join(missing)} {('(' + role + ') ') if role else ''}not on the input",
            port,
            f"axes including {' '.join(names)}",
            str(t),
        )


def new_axes(names, ctx: Context) -> list[Axis]:
    return [Axis(n, ctx.size(n)) for n in names]


def replace_axes(t: TensorType, old, new: list[Axis], dtype: str | None = None) -> TensorType:
    """`t` with axes `old` removed and `new` put where the first of `old` stood."""
    out, placed = [], False
    for a in t.axes:
        if a.name in old:
            if not placed:
                out += new
                placed = True
        else:
            out.append(a)
    if not placed:
        out += new
    return t.with_axes(out, dtype)


def clash(axes: list[Axis], port: str) -> None:
    names = [a.name for a in axes]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ShapeProblem(
            f"axis {' '.join(dup)} would appear twice", port, "distinct axis names", " ".join(names)
        )


def broadcast(types: list[tuple[str, TensorType]], ctx: Context) -> list[Axis]:
    """Union of axes by name (first appearance order), sizes unified."""
    seen: dict[str, Axis] = {}
    for port, t in types:
        for a in t.axes:
            if a.name in seen:
                ctx.unify(seen[a.name].size, a.size, port, f"size of axis {a.name}")
            else:
                seen[a.name] = a
    return list(seen.values())


def tuple_of(items) -> TupleType:
    return TupleType(tuple(items))


__all__ = [
    "AxisList",
    "AxisName",
    "BoxBase",
    "Context",
    "Name",
    "Ref",
    "ShapeProblem",
    "SizeExpr",
    "broadcast",
    "clash",
    "need",
    "new_axes",
    "promote",
    "replace_axes",
    "show",
    "tensor",
    "tuple_of",
]
