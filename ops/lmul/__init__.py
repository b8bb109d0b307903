"""L-Mul, float multiplication approximated by integer addition (Luo & Sun 2024): the
elementwise product and the matrix product with their autograd Functions (product.py), a
value-level PyTorch reference (reference.py) and the cost formulas (cost.py). Maths in
README.md."""

from .._lazy import lazy_exports

# The functions are imported on first use (they load torch); cost.py is plain Python.
_LAZY = {
    "lmul": ".product",
    "lmul_linear": ".product",
    "lmul_reference": ".reference",
    "lmul_linear_reference": ".reference",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
