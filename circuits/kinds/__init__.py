"""The closed vocabulary of box kinds. Adding a kind: write its class in the module of its
family, list it in KINDS below; the vocabulary tests then ask for its drawing, cost and lowering.
"""

from typing import Annotated, Union

from pydantic import Field

from .base import BoxBase, Context
from .contraction import Contract, Diagonal
from .elementwise import BINARY, UNARY, Binary, Cast, Dropout, Mask, Scale, Unary
from .fused import Attention, LinearAttention
from .learned import Embedding, Linear, Param
from .normalise import (
    BatchNorm,
    GroupNorm,
    LayerNorm,
    Normalize,
    RMSNorm,
    Softmax,
    UnifiedNorm,
)
from .rearrange import (
    Concat,
    Copy,
    Index,
    MergeAxes,
    Pack,
    Permute,
    Rename,
    Slice,
    Split,
    SplitAxis,
    Unpack,
)
from .reduce import Reduce, Scan, TopK
from .spatial import Conv, Pool, Upsample
from .structure import Call, Opaque

_CLASSES = [
    Linear,
    Param,
    Embedding,
    Contract,
    Diagonal,
    Unary,
    Binary,
    Scale,
    Cast,
    Dropout,
    Mask,
    Softmax,
    LayerNorm,
    RMSNorm,
    BatchNorm,
    GroupNorm,
    UnifiedNorm,
    Normalize,
    Reduce,
    Scan,
    TopK,
    SplitAxis,
    MergeAxes,
    Permute,
    Rename,
    Copy,
    Pack,
    Unpack,
    Concat,
    Split,
    Index,
    Slice,
    Conv,
    Pool,
    Upsample,
    Attention,
    LinearAttention,
    Call,
    Opaque,
]

KINDS: dict[str, type[BoxBase]] = {c.model_fields["kind"].default: c for c in _CLASSES}

Box = Annotated[Union[tuple(_CLASSES)], Field(discriminator="kind")]  # noqa: UP007

__all__ = ["BINARY", "KINDS", "UNARY", "Box", "BoxBase", "Context", *[c.__name__ for c in _CLASSES]]
