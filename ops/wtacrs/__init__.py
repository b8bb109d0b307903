"""Linear map with a winner-take-all column-row sampled weight gradient (WTA-CRS): the
autograd Function and public function (sampled.py), the selection's Triton kernels
(selection.py), the PyTorch reference estimators (reference.py) and the cost formulas
(cost.py). Maths in README.md."""

from .._lazy import lazy_exports

# The functions are imported on first use (they load torch); cost.py is plain Python, so the
# cost model reads it without them.
_LAZY = {
    "wtacrs_linear": ".sampled",
    "wtacrs_select": ".sampled",
    "crs_estimate": ".reference",
    "wtacrs_estimate": ".reference",
    "exact_weight_grad": ".reference",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
