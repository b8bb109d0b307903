"""Causal linear attention: chunked kernels (chunk.py), the one-token step (recurrent.py),
the PyTorch forms (reference.py: the quadratic reference and the chunked CPU path) and the cost
formulas (cost.py). Maths in README.md."""

from .._lazy import lazy_exports

# The functions are imported on first use (the kernels load torch and triton); cost.py is
# plain Python, so the cost model reads it without them.
_LAZY = {
    "linear_attention": ".chunk",
    "linear_attention_step": ".recurrent",
    "linear_attention_reference": ".reference",
    "linear_attention_chunked": ".reference",
}

__all__ = [
    "linear_attention",
    "linear_attention_step",
    "linear_attention_reference",
    "linear_attention_chunked",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
