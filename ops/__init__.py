"""ncd.ops: the Triton op library. Imports nothing else of ncd.

Each family has its own folder: a PyTorch reference, Triton kernels with an autograd
Function, one public function and its cost formulas. CUDA tensors run the kernels, CPU
tensors the reference (see _backend.py). The library's switches are in `config`.
"""

from . import config
from ._lazy import lazy_exports
from .attention import cost as attention_cost
from .delta_rule import cost as delta_rule_cost
from .gla import cost as gla_cost
from .ivit import cost as ivit_cost
from .linear_attention import cost as linear_attention_cost
from .lmul import cost as lmul_cost
from .norm import cost as norm_cost
from .short_conv import cost as short_conv_cost
from .simple_gla import cost as simple_gla_cost
from .wtacrs import cost as wtacrs_cost

# The kernels are imported on first use (they load torch and triton); the cost formulas are
# plain Python. A family's folder may have the name of its main function (ncd.ops.gla): the
# function wins, as it did when the kernels were imported here.
_LAZY = {
    "softmax_attention": ".attention",
    "linear_attention": ".linear_attention",
    "linear_attention_step": ".linear_attention",
    "simple_gla": ".simple_gla",
    "simple_gla_step": ".simple_gla",
    "gla": ".gla",
    "gla_step": ".gla",
    "delta_rule": ".delta_rule",
    "delta_rule_step": ".delta_rule",
    "gated_delta_rule": ".delta_rule",
    "gated_delta_rule_step": ".delta_rule",
    "wtacrs_linear": ".wtacrs",
    "lmul": ".lmul",
    "lmul_linear": ".lmul",
    "layer_norm": ".norm",
    "rms_norm": ".norm",
    "add_layer_norm": ".norm",
    "add_rms_norm": ".norm",
    "l2_norm": ".norm",
    "shiftmax": ".ivit",
    "shiftgelu": ".ivit",
    "i_layernorm": ".ivit",
    "requantize": ".ivit",
    "int8_matmul": ".ivit",
    "short_conv": ".short_conv",
    "short_conv_step": ".short_conv",
}
for _name in _LAZY:
    globals().pop(_name, None)  # the folders the imports above bound

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
    "wtacrs_linear",
    "wtacrs_cost",
    "lmul",
    "lmul_linear",
    "lmul_cost",
    "layer_norm",
    "rms_norm",
    "add_layer_norm",
    "add_rms_norm",
    "l2_norm",
    "norm_cost",
    "short_conv",
    "short_conv_step",
    "short_conv_cost",
    "shiftmax",
    "shiftgelu",
    "i_layernorm",
    "requantize",
    "int8_matmul",
    "ivit_cost",
    "load_operators",
]


def load_operators() -> list[str]:
    """Imports every module of the library, which registers the kernels' `ncd::` operators
    (`_traced.py`), and returns their names: what loading an exported program that calls them
    (`torch.export.load`) needs first, since the families are otherwise imported on first use."""
    import importlib
    import pkgutil

    import torch

    for info in pkgutil.walk_packages(__path__, f"{__name__}."):
        importlib.import_module(info.name)
    return sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("ncd::"))


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
