"""Fused softmax attention (FlashAttention-2): Triton kernels in fused.py, the Hopper kernels in
gluon/, the PyTorch reference in reference.py, cost formulas in cost.py. Maths in README.md."""

from .fused import softmax_attention
from .reference import softmax_attention_reference

__all__ = ["softmax_attention", "softmax_attention_reference"]
