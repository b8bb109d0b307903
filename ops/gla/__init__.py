"""Gated linear attention (GLA): chunked kernels with secondary chunking (chunk.py), the
one-token step (recurrent.py), the PyTorch references (reference.py) and the cost formulas
(cost.py). Maths in README.md."""

from .._lazy import lazy_exports

# The functions are imported on first use (the kernels load torch and triton); cost.py is
# plain Python, so the cost model reads it without them.
_LAZY = {
    "gla": ".chunk",
    "gla_step": ".recurrent",
    "gla_chunked": ".reference",
    "gla_reference": ".reference",
}

__all__ = ["gla", "gla_step", "gla_chunked", "gla_reference"]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
