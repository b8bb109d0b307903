"""Causal depthwise short convolution over T with an optional SiLU (Mamba, DeltaNet, Gated
DeltaNet): the Triton kernels with their autograd Function and public function (kernels.py),
the PyTorch reference and one-token decode step (reference.py) and the cost formulas
(cost.py). Maths in README.md."""

from .._lazy import lazy_exports

# The functions are imported on first use (the kernels load torch and triton); cost.py is
# plain Python, so the cost model reads it without them.
_LAZY = {
    "short_conv": ".kernels",
    "short_conv_reference": ".reference",
    "short_conv_step": ".reference",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
