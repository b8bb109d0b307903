"""Integer-only ViT operations (I-ViT, Li & Gu 2023; HAWQ-V3, Yao et al. 2021): Shiftmax,
ShiftGELU, I-LayerNorm, dyadic requantisation (nonlinear.py) and the int8 matrix product with
int32 accumulation (matmul.py), their integer PyTorch references (reference.py) and the cost
formulas (cost.py). Inference only. Maths in README.md."""

from .._lazy import lazy_exports

# The functions are imported on first use (the kernels load torch and triton); cost.py is
# plain Python, so the cost model reads it without them.
_LAZY = {
    "shiftmax": ".nonlinear",
    "shiftgelu": ".nonlinear",
    "i_layernorm": ".nonlinear",
    "requantize": ".nonlinear",
    "int8_matmul": ".matmul",
    "dyadic": ".reference",
    "shiftmax_reference": ".reference",
    "shiftgelu_reference": ".reference",
    "i_layernorm_reference": ".reference",
    "requantize_reference": ".reference",
    "int8_matmul_reference": ".reference",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
