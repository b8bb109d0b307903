"""Row normalisations (LayerNorm, RMSNorm, L2) and their residual-add forms: the Triton kernels
with their autograd Functions and public functions (rowwise.py), the PyTorch reference
(reference.py) and the cost formulas (cost.py). Maths in README.md."""

from .._lazy import lazy_exports

# The functions are imported on first use (the kernels load torch and triton); cost.py is
# plain Python, so the cost model reads it without them.
_LAZY = {
    "layer_norm": ".rowwise",
    "rms_norm": ".rowwise",
    "add_layer_norm": ".rowwise",
    "add_rms_norm": ".rowwise",
    "l2_norm": ".rowwise",
    "layer_norm_reference": ".reference",
    "rms_norm_reference": ".reference",
    "add_layer_norm_reference": ".reference",
    "add_rms_norm_reference": ".reference",
    "l2_norm_reference": ".reference",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
