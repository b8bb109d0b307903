"""Scalar-gate linear attention: chunked kernels (chunk.py), the one-token step (recurrent.py),
the token-by-token and chunked PyTorch forms (reference.py) and the cost formulas (cost.py).
Maths in README.md."""

from .chunk import simple_gla
from .recurrent import simple_gla_step
from .reference import simple_gla_chunked, simple_gla_recurrent_reference

__all__ = ["simple_gla", "simple_gla_step", "simple_gla_chunked", "simple_gla_recurrent_reference"]
