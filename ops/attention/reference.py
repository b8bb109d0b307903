"""Plain PyTorch softmax attention: the ground truth for the fused kernels.

Materialises the [B, H, T, S] score matrix, so it is only for testing and small inputs.
"""

import torch

from .._backend import default_scale


def softmax_attention_reference(
    q: torch.Tensor,  # (B, T, H, D)
    k: torch.Tensor,  # (B, S, Hkv, D)
    v: torch.Tensor,  # (B, S, Hkv, Dv)
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:  # (B, T, H, Dv)
    B, T, H, D = q.shape
    S, Hkv = k.shape[1], k.shape[2]
    scale = default_scale(scale, D)
    group = H // Hkv
    k = k.repeat_interleave(group, dim=2)
    v = v.repeat_interleave(group, dim=2)
    ct = torch.promote_types(q.dtype, torch.float32)  # float64 stays float64
    scores = torch.einsum("bthd,bshd->bhts", q.to(ct), k.to(ct)) * scale  # (B, H, T, S)
    if causal:
        keep = torch.ones(T, S, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    p = torch.softmax(scores, dim=-1)
    o = torch.einsum("bhts,bshd->bthd", p, v.to(ct))
    return o.to(q.dtype)
