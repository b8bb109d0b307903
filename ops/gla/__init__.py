"""Gated linear attention (GLA): chunked kernels with secondary chunking (chunk.py), the
one-token step (recurrent.py), the PyTorch references (reference.py) and the cost formulas
(cost.py). Maths in README.md."""

from .chunk import gla
from .recurrent import gla_step
from .reference import gla_chunked, gla_reference

__all__ = ["gla", "gla_step", "gla_chunked", "gla_reference"]
