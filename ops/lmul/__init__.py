"""L-Mul, float multiplication approximated by integer addition (Luo & Sun 2024): the
elementwise product and the matrix product with their autograd Functions (product.py), a
value-level PyTorch reference (reference.py) and the cost formulas (cost.py). Maths in
README.md."""

import importlib

# The functions are imported on first use (they load torch); cost.py is plain Python.
_LAZY = {
    "lmul": ".product",
    "lmul_linear": ".product",
    "lmul_reference": ".reference",
    "lmul_linear_reference": ".reference",
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
