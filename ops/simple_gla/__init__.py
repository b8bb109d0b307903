"""Scalar-gate linear attention: chunked kernels (chunk.py), the one-token step (recurrent.py),
the token-by-token and chunked PyTorch forms (reference.py) and the cost formulas (cost.py).
Maths in README.md."""

from .._lazy import lazy_exports

# The functions are imported on first use (the kernels load torch and triton); cost.py is
# plain Python, so the cost model reads it without them.
_LAZY = {
    "simple_gla": ".chunk",
    "simple_gla_step": ".recurrent",
    "simple_gla_chunked": ".reference",
    "simple_gla_recurrent_reference": ".reference",
}

__all__ = ["simple_gla", "simple_gla_step", "simple_gla_chunked", "simple_gla_recurrent_reference"]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
