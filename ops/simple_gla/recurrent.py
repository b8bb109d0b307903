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
        q, k: ``[B, H, K]``; v: ``[B, H, V]``.
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
    B, H, K, V, state = check_step(OP, q, k, v, state, scale)
    check_gate(OP, "g", g, ((B, H), (H,)), f"({B}, {H}) = [B, H] or ({H},) = [H]", q)
    scale = default_scale(scale, K)
    ct = torch.promote_types(state.dtype, torch.float32)
    decay = g.to(ct).exp().expand(B, H)[..., None, None]  # [B, H, 1, 1]
    s = decay * state + k.to(ct)[..., :, None] * v.to(ct)[..., None, :]  # [B, H, K, V]
    o = scale * torch.einsum("bhk,bhkv->bhv", q.to(ct), s)
    return o.to(v.dtype), s
