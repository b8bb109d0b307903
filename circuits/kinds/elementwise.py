"""Elementwise boxes (arrowed letters in NCDs), scaling, casts, dropout and masks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..errors import ShapeProblem
from ..sizes import parse_size
from ..types import Dtype
from .base import AxisName, BoxBase, SizeExpr, broadcast, need, promote, tensor
from .registry import box_kind

UNARY = (
    "relu",
    "gelu",
    "gelu_tanh",
    "silu",
    "sigmoid",
    "tanh",
    "exp",
    "log",
    "neg",
    "abs",
    "sqrt",
    "rsqrt",
    "square",
    "reciprocal",
    "softplus",
    "elu",
    "sin",
    "cos",
    "identity",
    "logsigmoid",
    "sign",
    "elu_plus_one",
    "relu6",
    "hardswish",
)
# The comparisons give 1 where they hold and 0 elsewhere, in the operands' type (no gradient).
BINARY = ("add", "sub", "mul", "div", "maximum", "minimum", "pow", "ge", "gt", "le", "lt", "eq")


@box_kind
class Unary(BoxBase):
    """An elementwise function of one tensor (`➤R➤` for ReLU)."""

    kind: Literal["unary"] = "unary"
    fn: Literal[UNARY]
    """The function applied to every element."""
    family = "elementwise"

    def infer(self, ins, ctx):
        return {"out": tensor(ins, "x")}


@box_kind
class Binary(BoxBase):
    """An elementwise function of two tensors, broadcast by axis name (`+` where wires merge)."""

    kind: Literal["binary"] = "binary"
    fn: Literal[BINARY]
    """The function applied pairwise."""
    family = "elementwise"

    def ports(self):
        return ["a", "b"]

    def infer(self, ins, ctx):
        a, b = tensor(ins, "a"), tensor(ins, "b")
        axes = broadcast([("a", a), ("b", b)], ctx)
        return {"out": a.with_axes(axes, promote([a.dtype, b.dtype]))}


@box_kind
class Scale(BoxBase):
    """Multiplication by a constant, a size expression such as `K**-0.5` (`*k^{-1/2}`)."""

    kind: Literal["scale"] = "scale"
    factor: SizeExpr
    """The constant, possibly in terms of axis sizes."""
    family = "elementwise"

    def infer(self, ins, ctx):
        parse_size(self.factor)
        return {"out": tensor(ins, "x")}


@box_kind
class Cast(BoxBase):
    """Converts the element type."""

    kind: Literal["cast"] = "cast"
    dtype: Dtype
    """The new element type."""
    family = "elementwise"

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        return {"out": x.with_axes(x.axes, self.dtype)}


@box_kind
class Dropout(BoxBase):
    """Zeroes elements with probability `p` while training, scaling the rest by 1/(1-p)."""

    kind: Literal["dropout"] = "dropout"
    p: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Drop probability."""
    family = "elementwise"

    def infer(self, ins, ctx):
        return {"out": tensor(ins, "x")}


@box_kind
class Mask(BoxBase):
    """Masks a score tensor over a query axis and a key axis: causal, or a causal window.

    Masked entries take `fill` (-inf before a softmax, 0 for linear attention).
    """

    kind: Literal["mask"] = "mask"
    query: AxisName
    """Axis of query positions (rows)."""
    key: AxisName
    """Axis of key positions (columns)."""
    pattern: Literal["causal", "window"] = "causal"
    """causal: key <= query; window: query - window < key <= query."""
    window: int = Field(default=0, ge=0, le=2**31)
    """Window length for `window` masks."""
    fill: Literal["-inf", "0"] = "-inf"
    """Value of masked entries."""
    family = "elementwise"

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        need(x, (self.query, self.key), "x")
        if self.pattern == "window" and self.window < 1:
            raise ShapeProblem("a window mask needs a window", "x", "window >= 1", "0")
        return {"out": x}

    def acts_on(self):
        return (self.query, self.key)
