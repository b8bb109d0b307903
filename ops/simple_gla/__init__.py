"""Scalar-gate linear attention: chunked kernels (chunk.py), the one-token step (recurrent.py),
the token-by-token and chunked PyTorch forms (reference.py) and the cost formulas (cost.py).
Maths in README.md."""

import importlib

# The functions are imported on first use (the kernels load torch and triton); cost.py is
# plain Python, so the cost model reads it without them.
_LAZY = {
    "simple_gla": ".chunk",
    "simple_gla_step": ".recurrent",
    "simple_gla_chunked": ".reference",
    "simple_gla_recurrent_reference": ".reference",
}

__all__ = ["simple_gla", "simple_gla_step", "simple_gla_chunked", "simple_gla_recurrent_reference"]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
