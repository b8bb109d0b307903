"""One-token recurrent step of causal linear attention, for decoding.

A step is an outer-product update and a vector-matrix product per head, a few kilobytes of
work that PyTorch already runs at memory speed, so it has no kernel of its own.
"""

import torch

from .._backend import autocast_inputs, check, check_step
from .reference import check_decay, normalized

OP = "linear_attention_step"


@autocast_inputs
def linear_attention_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    state,
    decay: torch.Tensor | None = None,
    normalize: bool = False,
    scale: float = 1.0,
):
    """Advance the linear-attention state by one token and read it.

    ``S' = decay * S + k^T v``, ``o = scale * q S'`` (and with ``normalize``, ``z' = decay z + k``,
    ``o = o / (scale * q . z' + 1e-10)``, 0 where ``q . z' = 0``): the same function as
    ``linear_attention`` one token at a time, so a prompt run with ``output_final_state=True``
    continues here.

    Args:
        q, k: ``[B, G, K]``; v: ``[B, H, V]``, H a multiple of G: value head h reads q/k
            head h // (H / G) (grouped heads; G = H: one each).
        state: ``[B, H, K, V]`` (float32 suggested), or ``(S, z [B, H, K])`` with
            ``normalize``; None starts from zeros.
        decay: optional ``[H]`` factors in ``(0, 1]``.

    Returns:
        ``(o [B, H, V] in the dtype of v, new_state)``.
    """
    s, z = state if isinstance(state, tuple) else (state, None)
    B, H, K, V, s = check_step(OP, q, k, v, s, scale, scale_optional=False, groups=True)
    if state is None:
        z = torch.zeros(B, H, K, device=q.device, dtype=torch.float32) if normalize else None
    else:
        check(
            normalize == (z is not None),
            OP,
            "state",
            "a tuple (S, z) when normalize=True, else a tensor",
            type(state).__name__,
        )
        if z is not None:
            check(
                isinstance(z, torch.Tensor) and tuple(z.shape) == (B, H, K),
                OP,
                "state's z shape",
                f"({B}, {H}, {K}) = [B, H, K]",
                tuple(getattr(z, "shape", ())),
            )
    ct = torch.promote_types(s.dtype, torch.float32)
    G = q.shape[1]
    # the value heads as [G, H / G]: q and k broadcast over each group's heads
    qf, kf, vf = q.to(ct), k.to(ct), v.to(ct).unflatten(1, (G, H // G))
    s = s.unflatten(1, (G, H // G))  # (B, G, R, K, V)
    z = None if z is None else z.unflatten(1, (G, H // G))
    if decay is not None:
        check_decay(OP, decay, H, grad=True)
        lam = decay.to(ct).view(1, G, H // G, 1)
        s = s * lam[..., None]
        z = None if z is None else z * lam
    s = s + kf[:, :, None, :, None] * vf[..., None, :]
    o = scale * torch.einsum("bgk,bgrkv->bgrv", qf, s)
    if normalize:
        z = z + kf[:, :, None]
        o = normalized(o, scale * torch.einsum("bgk,bgrk->bgr", qf, z)[..., None])
        z = z.flatten(1, 2)
    o, s = o.flatten(1, 2), s.flatten(1, 2)
    return o.to(v.dtype), ((s, z) if normalize else s)
