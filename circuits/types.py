"""Tensor types: a tuple of named axes with symbolic sizes, plus a dtype; and tuples of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .sizes import Size, product, show

# The element types: the one list of them. Name -> (bytes per element, promotion rank); the
# order is the order specs and the schema list them, the rank orders `promote` (a mix of
# bfloat16 and float16, of equal rank, promotes to float32).
ELEMENT_TYPES: dict[str, tuple[int, int]] = {
    "float32": (4, 7),
    "float16": (2, 6),
    "bfloat16": (2, 6),
    "float64": (8, 8),
    "int64": (8, 4),
    "int32": (4, 3),
    "int8": (1, 2),
    "bool": (1, 1),
}
DTYPES = tuple(ELEMENT_TYPES)
FLOAT_DTYPES = tuple(d for d in DTYPES if "float" in d)
DTYPE_BYTES = {d: nbytes for d, (nbytes, _) in ELEMENT_TYPES.items()}
Dtype = Literal[DTYPES]
"""Any element type (a field of this type accepts exactly DTYPES)."""
FloatDtype = Literal[FLOAT_DTYPES]
"""A floating-point element type."""
DTYPE_PATTERN = "^(float(16|32|64)|bfloat16|int(8|32|64)|bool)$"
"""DTYPES as a regular expression, for fields the schema states as a pattern (tests check the
two agree)."""


def promote(dtypes) -> str:
    """The element type of an elementwise result of operands of `dtypes`."""
    ds = list(dtypes)
    if "bfloat16" in ds and "float16" in ds:
        return "float32"
    return max(ds, key=lambda d: ELEMENT_TYPES[d][1])


@dataclass(frozen=True)
class Axis:
    """One wire of the diagram: a name and a size."""

    name: str
    size: Size

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

    def numel(self) -> Size:
        return product(a.size for a in self.axes)

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
