"""ncd.ops: the Triton op library. Imports nothing else of ncd.

Each family has its own folder: a PyTorch reference, Triton kernels with an autograd
Function, one public function and its cost formulas. CUDA tensors run the kernels, CPU
tensors the reference (see _backend.py). The library's switches are in `config`.
"""

from . import config
from .attention import cost as attention_cost
from .attention import softmax_attention
from .linear_attention import cost as linear_attention_cost
from .linear_attention import linear_attention, linear_attention_step

__all__ = [
    "config",
    "softmax_attention",
    "linear_attention",
    "linear_attention_step",
    "attention_cost",
    "linear_attention_cost",
]
