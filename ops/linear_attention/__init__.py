"""Causal linear attention: chunked kernels (chunk.py), the one-token step (recurrent.py),
the PyTorch reference (reference.py) and the cost formulas (cost.py). Maths in README.md."""

from .chunk import linear_attention
from .recurrent import linear_attention_step
from .reference import linear_attention_reference

__all__ = ["linear_attention", "linear_attention_step", "linear_attention_reference"]
