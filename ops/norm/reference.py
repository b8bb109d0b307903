"""Plain PyTorch row normalisations over the last axis: what the CPU runs, and the form the
compiler's unfused boxes compute (so a rewrite to the fused op changes no CPU result).

With ``N`` features, ``x`` one row, ``w`` and ``b`` optional ``[N]``:

    LayerNorm:  y = (x - mean(x)) / sqrt(var(x) + eps) * w + b     (var: biased, / N)
    RMSNorm:    y = x / sqrt(mean(x^2) + eps) * w
    L2:         y = x / max(sqrt(sum(x^2)), eps)                       (F.normalize)

The residual-add forms take a second summand ``r`` of x's shape and dtype and return both
``(norm(s), s)`` with ``s = x + r`` rounded to x's dtype (as the two separate ops give it).
"""

import torch
import torch.nn.functional as F


def _one_dtype(norm, x, *params):
    """``norm(x, *params)`` where the parameters are in x's dtype (or absent); otherwise in
    float32 (float64 with a float64 x) and rounded to x's dtype, as the kernels read
    parameters of any float dtype."""
    if all(p is None or p.dtype == x.dtype for p in params):
        return norm(x, *params)
    ct = torch.float64 if x.dtype == torch.float64 else torch.float32
    return norm(x.to(ct), *(None if p is None else p.to(ct) for p in params)).to(x.dtype)


def layer_norm_reference(x, weight=None, bias=None, eps: float = 1e-5):
    return _one_dtype(lambda x, w, b: F.layer_norm(x, (x.shape[-1],), w, b, eps), x, weight, bias)


def rms_norm_reference(x, weight=None, eps: float = 1e-6):
    return _one_dtype(lambda x, w: F.rms_norm(x, (x.shape[-1],), w, eps), x, weight)


def l2_norm_reference(x, eps: float = 1e-12):
    return F.normalize(x, p=2.0, dim=-1, eps=eps)


def add_layer_norm_reference(x, residual, weight=None, bias=None, eps: float = 1e-5):
    s = x + residual
    return layer_norm_reference(s, weight, bias, eps), s


def add_rms_norm_reference(x, residual, weight=None, eps: float = 1e-6):
    s = x + residual
    return rms_norm_reference(s, weight, eps), s


def stats_reference(x: torch.Tensor, eps: float, rms: bool):
    """(mean, 1 / sqrt(var + eps)) per row in float32, the statistics the kernels keep
    (mean None for RMSNorm, whose "variance" is mean(x^2))."""
    xf = x.float()
    if rms:
        return None, torch.rsqrt(xf.pow(2).mean(-1) + eps)
    mean = xf.mean(-1)
    return mean, torch.rsqrt((xf - mean[..., None]).pow(2).mean(-1) + eps)
