"""One-token step of scalar-gate linear attention, for decoding.

An outer-product update and a vector-matrix product per head: a few kilobytes of work that
PyTorch runs at memory speed, so it has no kernel of its own.
"""

import torch

from .._backend import autocast_inputs, check_gate, check_step, default_scale

OP = "simple_gla_step"


@autocast_inputs
def simple_gla_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    state: torch.Tensor | None,
    scale: float | None = None,
):
    """Advance the state by one token and read it: ``S' = exp(g) S + k^T v``,
    ``o = scale q S'``, the same function as ``simple_gla`` one token at a time (a prompt run
    with ``output_final_state=True`` continues here).

    Args:
        q, k: ``[B, G, K]``; v: ``[B, H, V]``, H a multiple of G: value head h reads q/k
            head h // (H / G) (grouped heads; G = H: one each).
        g: ``[B, H]`` log-decays (<= 0) of this token, or ``[H]`` per-head constants; any
            float dtype.
        state: ``[B, H, K, V]`` (float32 suggested); None starts from zeros.
        scale: None means ``K ** -0.5``.

    Returns:
        ``(o [B, H, V] in the dtype of v, new_state [B, H, K, V])``.

    >>> q = k = torch.randn(2, 4, 8); v = torch.randn(2, 4, 16); g = -torch.rand(2, 4)
    >>> o, s = simple_gla_step(q, k, v, g, None)
    >>> o.shape, s.shape
    (torch.Size([2, 4, 16]), torch.Size([2, 4, 8, 16]))
    """
    B, H, K, V, state = check_step(OP, q, k, v, state, scale, groups=True)
    check_gate(OP, "g", g, ((B, H), (H,)), f"({B}, {H}) = [B, H] or ({H},) = [H]", q)
    scale = default_scale(scale, K)
    ct = torch.promote_types(state.dtype, torch.float32)
    G = q.shape[1]
    # the value heads as [G, H / G]: q and k broadcast over each group's heads
    decay = g.to(ct).exp().expand(B, H).unflatten(1, (G, H // G))[..., None, None]
    vf = v.to(ct).unflatten(1, (G, H // G))
    s = decay * state.unflatten(1, (G, H // G)) + k.to(ct)[:, :, None, :, None] * vf[..., None, :]
    o = scale * torch.einsum("bgk,bgrkv->bgrv", q.to(ct), s)  # [B, G, R, V]
    return o.flatten(1, 2).to(v.dtype), s.flatten(1, 2)
