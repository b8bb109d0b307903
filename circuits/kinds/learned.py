"""Learned boxes (bold in NCDs): linear maps, free parameters, embeddings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..errors import ShapeProblem
from ..types import FloatDtype, TensorType
from .base import AxisList, AxisName, BoxBase, clash, need, new_axes, replace_axes, tensor
from .registry import box_kind


@box_kind
class Linear(BoxBase):
    """A learned linear map from axes `over` to axes `out` (`L`, or `L₊` with a bias).

    The weight has axes `out + over`: a map from `(D,)` to `(H, K)` has a weight `(H, K, D)`.
    A compiled module holds it as nn.Linear does, the axes of `out` and of `over` each merged
    into one: `weight` [H·K, D] (`(H, K, D)` row-major), `bias` [H·K].
    """

    kind: Literal["linear"] = "linear"
    over: AxisList
    """Input axes the map consumes (contracted with the weight)."""
    out: AxisList
    """Output axes the map produces, put where the first consumed axis stood."""
    bias: bool = True
    """Whether a bias over `out` is added (`L₊`)."""
    backward: Literal["exact", "wtacrs"] = "exact"
    """The weight's gradient: exact, or estimated from winner-take-all column-row samples of
    the input's rows (WTA-CRS, Liu et al. 2023), keeping only the sampled rows for the
    backward. The forward and the input's gradient stay exact."""
    budget: float = Field(0.3, gt=0, le=1)
    """With backward `wtacrs`: the fraction of the input's rows (every axis but `over`)
    sampled and kept."""
    product: Literal["exact", "lmul3", "lmul4"] = "exact"
    """The products of the map: exact, or L-Mul (Luo & Sun 2024) with 3- or 4-bit mantissas,
    one integer addition each (gradients as for exact products)."""
    family = "learned"
    learned = True

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        if self.backward != "exact" and self.product != "exact":
            raise ShapeProblem(
                "a sampled backward and L-Mul products are not combined",
                "x",
                'backward "exact" or product "exact"',
                f"backward {self.backward!r}, product {self.product!r}",
            )
        need(x, self.over, "x", "consumed by the map")
        y = replace_axes(x, self.over, new_axes(self.out, ctx))
        clash(list(y.axes), "x")
        return {"out": y}

    def params(self, ins, ctx):
        x = tensor(ins, "x")
        w = new_axes(self.out, ctx) + [x.axis(a) for a in self.over]
        ps = {"weight": TensorType(tuple(w), x.dtype)}
        if self.bias:
            ps["bias"] = TensorType(tuple(new_axes(self.out, ctx)), x.dtype)
        return ps

    def acts_on(self):
        return self.over + self.out


@box_kind
class Param(BoxBase):
    """A free learned tensor with named axes (positional embeddings, learned gates, tokens),
    or with `trained` False a fixed one (an imported model's buffer)."""

    kind: Literal["param"] = "param"
    axes: AxisList
    """Axes of the tensor."""
    dtype: FloatDtype = "float32"
    """Element type."""
    init: Literal["normal", "zeros", "ones"] = "normal"
    """Initial values (normal: std 0.02)."""
    trained: bool = True
    """False: fixed data, loaded with the weights and never trained (a buffer the imported
    model held, a tensor its code holds): a buffer of the compiled module, drawn not bold."""
    family = "learned"
    learned = True

    def is_learned(self) -> bool:
        return self.trained

    def ports(self):
        return []

    def infer(self, ins, ctx):
        return {"out": TensorType(tuple(new_axes(self.axes, ctx)), self.dtype)}

    def params(self, ins, ctx):
        return {"weight": TensorType(tuple(new_axes(self.axes, ctx)), self.dtype)}

    def acts_on(self):
        return self.axes


@box_kind
class Embedding(BoxBase):
    """Looks integer indices up in a learned table of `vocab` rows; adds axes `out`."""

    kind: Literal["embedding"] = "embedding"
    vocab: AxisName
    """Axis whose size is the number of rows of the table."""
    out: AxisList
    """Axes of one embedding vector."""
    dtype: FloatDtype = "float32"
    """Element type of the table."""
    family = "learned"
    learned = True

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        if not x.dtype.startswith(("int", "uint")):
            raise ShapeProblem("indices must be integers", "x", "an integer tensor", x.dtype)
        y = x.with_axes(list(x.axes) + new_axes(self.out, ctx), self.dtype)
        clash(list(y.axes), "x")
        return {"out": y}

    def params(self, ins, ctx):
        return {"weight": TensorType(tuple(new_axes((self.vocab, *self.out), ctx)), self.dtype)}

    def acts_on(self):
        return (self.vocab, *self.out)
