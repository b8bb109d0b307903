"""ncd.ops: the Triton op library. Imports nothing else of ncd.

Each family has its own folder: a PyTorch reference, Triton kernels with an autograd
Function, one public function and its cost formulas. CUDA tensors run the kernels, CPU
tensors the reference (see _backend.py). The library's switches are in `config`.
"""

from . import config
from .attention import cost as attention_cost
from .attention import softmax_attention
from .delta_rule import cost as delta_rule_cost
from .delta_rule import delta_rule, delta_rule_step, gated_delta_rule, gated_delta_rule_step
from .gla import cost as gla_cost
from .gla import gla, gla_step
from .linear_attention import cost as linear_attention_cost
from .linear_attention import linear_attention, linear_attention_step
from .simple_gla import cost as simple_gla_cost
from .simple_gla import simple_gla, simple_gla_step

__all__ = [
    "config",
    "softmax_attention",
    "linear_attention",
    "linear_attention_step",
    "attention_cost",
    "linear_attention_cost",
    "simple_gla",
    "simple_gla_step",
    "simple_gla_cost",
    "gla",
    "gla_step",
    "gla_cost",
    "delta_rule",
    "delta_rule_step",
    "gated_delta_rule",
    "gated_delta_rule_step",
    "delta_rule_cost",
]
