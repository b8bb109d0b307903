"""Fused softmax attention (FlashAttention-2): Triton kernels in fused.py, the Hopper kernels in
gluon/, the PyTorch reference in reference.py, cost formulas in cost.py. Maths in README.md."""

import importlib

# The functions are imported on first use (the kernels load torch and triton); cost.py is
# plain Python, so the cost model reads it without them.
_LAZY = {
    "softmax_attention": ".fused",
    "softmax_attention_reference": ".reference",
}

__all__ = ["softmax_attention", "softmax_attention_reference"]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
