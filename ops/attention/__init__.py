"""Fused softmax attention (FlashAttention-2): Triton kernels in fused.py, the Hopper kernels in
gluon/, the PyTorch reference in reference.py, cost formulas in cost.py. Maths in README.md."""

from .._lazy import lazy_exports

# The functions are imported on first use (the kernels load torch and triton); cost.py is
# plain Python, so the cost model reads it without them.
_LAZY = {
    "softmax_attention": ".fused",
    "softmax_attention_reference": ".reference",
}

__all__ = ["softmax_attention", "softmax_attention_reference"]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
