"""One-token step of gated linear attention, for decoding: an outer-product update and a
vector-matrix product per head, which PyTorch runs at memory speed (no kernel of its own)."""

import torch

from .._backend import autocast_inputs, check_gate, check_step, default_scale

OP = "gla_step"


@autocast_inputs
def gla_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    state: torch.Tensor | None,
    scale: float | None = None,
):
    """Advance the GLA state by one token and read it.

    ``S' = diag(exp(g)) S + k^T v``, ``o = scale * q S'``: the same function as ``gla`` one
    token at a time, so a prompt run with ``output_final_state=True`` continues here.

    Args:
        q, k: ``[B, H, K]``; v: ``[B, H, V]``; g: ``[B, H, K]`` log gates (any float dtype).
        state: ``[B, H, K, V]`` (float32 suggested); None starts from zeros.
        scale: None means ``K ** -0.5``.

    Returns:
        ``(o [B, H, V] in the dtype of v, new_state [B, H, K, V] float32, or float64 when the
        state is)``.

    >>> q = k = g = torch.zeros(2, 4, 8); v = torch.ones(2, 4, 3)
    >>> o, s = gla_step(q, k, v, -torch.ones(2, 4, 8), None)
    >>> o.shape, s.shape
    (torch.Size([2, 4, 3]), torch.Size([2, 4, 8, 3]))
    """
    B, H, K, V, state = check_step(OP, q, k, v, state, scale)
    check_gate(OP, "g", g, (tuple(q.shape),), f"{tuple(q.shape)} as q", q)
    ct = torch.promote_types(state.dtype, torch.float32)
    scale = default_scale(scale, K)
    s = g.to(ct).exp()[..., None] * state.to(ct) + k.to(ct)[..., None] * v.to(ct)[..., None, :]
    o = scale * torch.einsum("bhk,bhkv->bhv", q.to(ct), s)
    return o.to(v.dtype), s
