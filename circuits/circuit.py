"""The `Circuit`: the single source of truth every view reads (docs/design.md)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from .kinds import Box
from .kinds.base import AxisList, AxisName, Name, Ref, SizeExpr
from .limits import (
    MAX_BOXES,
    MAX_DOC,
    MAX_LAYOUT,
    MAX_NAME,
    MAX_PORTS,
    MAX_SIZE,
    MAX_SUBCIRCUITS,
    MAX_TABLE,
    MAX_TEXT,
)
from .types import Dtype

GroupTitle = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]


class Input(BaseModel):
    """An input wire bundle of the circuit."""

    model_config = ConfigDict(extra="forbid")  # field docs: fielddocs.attach()
    name: Name
    """Name of the input; boxes refer to it by this name."""
    axes: AxisList
    """Its axes, in order (`B T D`)."""
    dtype: Dtype = "float32"
    """Element type."""


class Output(BaseModel):
    """An output of the circuit, taken from a box's port or an input."""

    model_config = ConfigDict(extra="forbid")  # field docs: fielddocs.attach()
    name: Name
    """Name of the output."""
    source: Ref
    """Where it comes from: `box`, `box.port` or an input's name."""


class Circuit(BaseModel):
    """An architecture as a typed diagram: inputs, boxes wired by name, outputs.

    Sizes stay symbolic (`axes` gives each axis its size expression, by default the symbol of
    its own name); `sizes` holds a default binding for running and for numbers in reports.
    """

    model_config = ConfigDict(extra="forbid")  # field docs: fielddocs.attach()

    name: Name
    """Identifier of the circuit (gallery name, class name of compiled code)."""
    title: str = Field(default="", max_length=MAX_TEXT)
    """Human title."""
    paper: str = Field(default="", max_length=MAX_TEXT)
    """The paper it comes from."""
    doc: str = Field(default="", max_length=MAX_DOC)
    """A short description."""
    axes: dict[AxisName, SizeExpr] = Field(default_factory=dict, max_length=MAX_TABLE)
    """Axis name -> size expression, for axes whose size is not their own symbol (`D: H*K`)."""
    sizes: dict[AxisName, StrictInt] = Field(default_factory=dict, max_length=MAX_TABLE)
    """A default binding of sizes to numbers (an example configuration)."""
    inputs: list[Input] = Field(default_factory=list, max_length=MAX_PORTS)
    """Input bundles."""
    boxes: list[Box] = Field(default_factory=list, max_length=MAX_BOXES)
    """Operations; their order is kept for display, evaluation order comes from the wiring."""
    outputs: list[Output] = Field(default_factory=list, max_length=MAX_PORTS)
    """Outputs."""
    subcircuits: dict[Name, Circuit] = Field(default_factory=dict, max_length=MAX_SUBCIRCUITS)
    """Circuits that `call` boxes may call, by name."""
    layout: dict[str, Any] = Field(default_factory=dict, max_length=MAX_LAYOUT)
    """View hints that must persist (editor positions, colours); no view keeps its own."""
    tied: dict[Ref, Ref] = Field(default_factory=dict, max_length=MAX_TABLE)
    """Shared parameters: `box.param` -> the `box.param` whose tensor it is (GPT-2's output map
    reading the token embedding's weight), of one shape; one tensor, trained and counted
    once."""
    groups: dict[GroupTitle, GroupTitle] = Field(default_factory=dict, max_length=MAX_BOXES)
    """Nested blocks: a block's title -> the title of the block drawn around it
    (`Decay: Gated DeltaNet`). A block not listed is at the top level; a box's `group` names
    its innermost block."""

    @field_validator("groups")
    @classmethod
    def _groups_nest(cls, v):
        for title in v:
            seen, t = [title], v[title]
            while t in v and t not in seen:
                seen.append(t)
                t = v[t]
            if t in seen:
                loop = " inside ".join(map(repr, [*seen[seen.index(t) :], t]))
                raise ValueError(f"a block cannot be inside itself: {loop}")
        return v

    @field_validator("sizes")
    @classmethod
    def _sizes_positive(cls, v):
        bad = {k: n if n.bit_length() < 64 else "a larger number" for k, n in v.items()
               if n < 1 or n > MAX_SIZE}  # fmt: skip
        if bad:
            raise ValueError(f"sizes must be between 1 and 2**40 (limit MAX_SIZE), found {bad}")
        return v

    def group_path(self, group: str) -> tuple[str, ...]:
        """The blocks a box of `group` is drawn in, outermost first (`('Gated DeltaNet',
        'Decay')` for `Decay`); () for no group."""
        path: list[str] = []
        while group and group not in path:  # (a copy made without validation may loop)
            path.append(group)
            group = self.groups.get(group, "")
        return tuple(reversed(path))

    def box(self, name: str):
        """The box called `name`, or KeyError."""
        for b in self.boxes:
            if b.name == name:
                return b
        raise KeyError(name)

    # Views (pure functions of the circuit), imported late so that circuits stays light.
    def check(self, sizes: dict[str, int] | None = None, *, require_bound: bool = False):
        """Validate and infer every wire's axes; raises ValidationError with every problem."""
        from .validate import check

        return check(self, sizes, require_bound=require_bound)

    def _repr_svg_(self) -> str | None:
        """The diagram, for Jupyter; None (Jupyter then shows text) when it cannot be drawn."""
        from .draw import render
        from .errors import NcdError

        try:
            return render(self)
        except NcdError:
            return None

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        """SVG and a one-line text summary; the text says why when the circuit cannot be drawn."""
        from .draw import render
        from .errors import NcdError

        text = f"Circuit {self.name!r}: {len(self.boxes)} boxes"
        bundle = {"text/plain": text}
        wanted = (include is None or "image/svg+xml" in include) and not (
            exclude and "image/svg+xml" in exclude
        )
        if wanted:
            try:
                bundle["image/svg+xml"] = render(self)
            except NcdError as e:
                bundle["text/plain"] = f"{text} (cannot draw: {e})"
        return bundle

    def to_json(self, indent: int | None = 2) -> str:
        from .io import dumps

        return dumps(self, indent)

    @classmethod
    def from_json(cls, text: str | bytes) -> Circuit:
        from .io import loads

        return loads(text)


__all__ = ["Circuit", "Input", "Output", "Ref", "SizeExpr"]
