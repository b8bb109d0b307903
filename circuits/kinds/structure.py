"""Structure: calls of subcircuits (with repetition), and opaque boxes from imports."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ..types import DTYPE_PATTERN, TensorType
from .base import AxisList, BoxBase, Name, PortNames, SizeExpr, new_axes
from .registry import box_kind


@box_kind
class Call(BoxBase):
    """Calls a subcircuit of this circuit; `repeat` N > 1 chains N copies with separate
    parameters (the NCD parentheses `λ = 1 … N`). Ports are the subcircuit's inputs."""

    kind: Literal["call"] = "call"
    circuit: Name
    """Name of a circuit in this circuit's `subcircuits`."""
    repeat: SizeExpr = "1"
    """How many times the subcircuit is applied in sequence (its output feeds its input)."""
    family = "structure"

    def ports(self):
        return sorted(self.inputs)  # checked against the subcircuit's inputs by the validator

    def infer(self, ins, ctx):
        return ctx.call(self, ins)


@box_kind
class Opaque(BoxBase):
    """A box ncd cannot see into (an imported module or function): it draws and runs, and its
    output axes are stated. The callable itself never comes from the spec."""

    kind: Literal["opaque"] = "opaque"
    target: str = Field(default="", max_length=200)
    """What it stands for, for people (`torch.nn.GRU`); never imported or evaluated."""
    in_ports: PortNames = ("x",)
    """Input ports."""
    outputs: dict[Name, AxisList] = Field(min_length=1, max_length=64)
    """Output port -> its axes."""
    dtype: str = Field(default="float32", pattern=DTYPE_PATTERN)
    """Element type of the outputs."""
    dtypes: dict[Name, Annotated[str, Field(pattern=DTYPE_PATTERN)]] = Field(
        default_factory=dict, max_length=64
    )
    """Output port -> its element type, where it is not `dtype` (a max's int64 indices)."""
    flops: SizeExpr = "0"
    """Known FLOPs per call, if any (used by the cost model)."""
    family = "opaque"

    def ports(self):
        return list(self.in_ports)

    def infer(self, ins, ctx):
        return {
            p: TensorType(tuple(new_axes(ax, ctx)), self.dtypes.get(p, self.dtype))
            for p, ax in self.outputs.items()
        }
