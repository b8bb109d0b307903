"""Tensor types: a tuple of named axes with symbolic sizes, plus a dtype; and tuples of them."""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from .sizes import show

DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int8", "uint8", "bool")
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")


@dataclass(frozen=True)
class Axis:
    """One wire of the diagram: a name and a size."""

    name: str
    size: sympy.Expr

    def __str__(self) -> str:
        s = show(self.size)
        return self.name if s == self.name else f"{self.name}={s}"


@dataclass(frozen=True)
class TensorType:
    """A tensor as NCDs see it: parallel wires (axes, by name) and an element type."""

    axes: tuple[Axis, ...]
    dtype: str = "float32"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    def axis(self, name: str) -> Axis | None:
        return next((a for a in self.axes if a.name == name), None)

    def numel(self) -> sympy.Expr:
        return sympy.Mul(*[a.size for a in self.axes]) if self.axes else sympy.Integer(1)

    def with_axes(self, axes, dtype: str | None = None) -> TensorType:
        return TensorType(tuple(axes), dtype or self.dtype)

    def __str__(self) -> str:
        return f"[{' '.join(str(a) for a in self.axes)}]" + (
            "" if self.dtype == "float32" else f" {self.dtype}"
        )


@dataclass(frozen=True)
class TupleType:
    """A tuple of tensors (the dashed line in NCDs), members named."""

    items: tuple[tuple[str, TensorType], ...]

    def __str__(self) -> str:
        return "(" + " ; ".join(f"{n}: {t}" for n, t in self.items) + ")"


Value = TensorType | TupleType
