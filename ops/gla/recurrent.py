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
        q, k: ``[B, G, K]``; v: ``[B, H, V]``, H a multiple of G: value head h reads q/k
            head h // (H / G) (grouped heads; G = H: one each); g: ``[B, H, K]`` log gates
            per value head (any float dtype).
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
    B, H, K, V, state = check_step(OP, q, k, v, state, scale, groups=True)
    check_gate(OP, "g", g, ((B, H, K),), f"({B}, {H}, {K}) = [B, H, K] (per value head)", q)
    ct = torch.promote_types(state.dtype, torch.float32)
    scale = default_scale(scale, K)
    # the value heads as [G, H / G]: q and k (G heads) broadcast over each group's heads
    G = q.shape[1]
    decay = g.to(ct).exp().unflatten(1, (G, H // G))[..., None]
    vf = v.to(ct).unflatten(1, (G, H // G))
    s = decay * state.to(ct).unflatten(1, (G, H // G))
    s = s + k.to(ct)[:, :, None, :, None] * vf[..., None, :]
    o = scale * torch.einsum("bgk,bgrkv->bgrv", q.to(ct), s)
    return o.flatten(1, 2).to(v.dtype), s.flatten(1, 2)
