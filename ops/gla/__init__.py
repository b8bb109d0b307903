"""Gated linear attention (GLA): chunked kernels with secondary chunking (chunk.py), the
one-token step (recurrent.py), the PyTorch references (reference.py) and the cost formulas
(cost.py). Maths in README.md."""

import importlib

# The functions are imported on first use (the kernels load torch and triton); cost.py is
# plain Python, so the cost model reads it without them.
_LAZY = {
    "gla": ".chunk",
    "gla_step": ".recurrent",
    "gla_chunked": ".reference",
    "gla_reference": ".reference",
}

__all__ = ["gla", "gla_step", "gla_chunked", "gla_reference"]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
