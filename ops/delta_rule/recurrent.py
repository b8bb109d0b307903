"""One-token steps of the delta rule and the gated delta rule, for decoding.

A step is a few vector-matrix products per head on a K x V state, work that PyTorch already
runs at memory speed, so it has no kernel of its own.
"""

import torch

from .._backend import autocast_inputs, check_gate, check_step, default_scale
from .reference import l2norm


def _step(op, q, k, v, g, beta, state, scale, use_qk_l2norm):
    B, H, K, V, state = check_step(op, q, k, v, state, scale, groups=True)
    for name, x in (("beta", beta), ("g", g)):
        if x is not None or name == "beta":
            check_gate(op, name, x, ((B, H),), f"({B}, {H}) = [B, H]", q)
    ct = torch.promote_types(state.dtype, torch.float32)
    scale = default_scale(scale, K)
    if use_qk_l2norm:
        q, k = l2norm(q), l2norm(k)  # in q's dtype, as delta_rule normalises them
    # the value heads as [G, H / G]: q and k (G heads) broadcast over each group's heads
    G = q.shape[1]
    qf, kf = q.to(ct), k.to(ct)
    vf, s = v.to(ct).unflatten(1, (G, H // G)), state.to(ct).unflatten(1, (G, H // G))
    if g is not None:
        s = s * torch.exp(g.to(ct)).unflatten(1, (G, H // G))[..., None, None]
    err = vf - torch.einsum("bgk,bgrkv->bgrv", kf, s)
    b = beta.to(ct).unflatten(1, (G, H // G))
    s = s + kf[:, :, None, :, None] * (b[..., None] * err)[..., None, :]
    o = scale * torch.einsum("bgk,bgrkv->bgrv", qf, s)
    return o.flatten(1, 2).to(v.dtype), s.flatten(1, 2)


@autocast_inputs
def delta_rule_step(q, k, v, beta, state=None, scale=None, use_qk_l2norm=False):
    """Advance the delta-rule state by one token and read it:
    ``S' = S + beta k^T (v - k S)``, ``o = scale q S'`` (the function of ``delta_rule`` one
    token at a time, so a prompt run with ``output_final_state=True`` continues here).

    Args:
        q, k: ``[B, G, K]``; v: ``[B, H, V]``, H a multiple of G: value head h reads q/k
            head h // (H / G) (grouped heads; G = H: one each); beta: ``[B, H]``.
        state: ``[B, H, K, V]`` (float32 suggested); None starts from zeros.
        scale: None means ``K ** -0.5``.

    Returns:
        ``(o [B, H, V] in the dtype of v, new_state [B, H, K, V] float32)``.
    """
    return _step("delta_rule_step", q, k, v, None, beta, state, scale, use_qk_l2norm)


@autocast_inputs
def gated_delta_rule_step(q, k, v, g, beta, state=None, scale=None, use_qk_l2norm=False):
    """Advance the gated delta-rule state by one token and read it: with ``a = exp(g)``,
    ``S' = a S + beta k^T (v - a k S)``, ``o = scale q S'``.

    Args:
        q, k: ``[B, G, K]``; v: ``[B, H, V]``, H a multiple of G: value head h reads q/k
            head h // (H / G) (grouped heads; G = H: one each); g (log decay), beta:
            ``[B, H]``.
        state: ``[B, H, K, V]`` (float32 suggested); None starts from zeros.

    Returns:
        ``(o [B, H, V] in the dtype of v, new_state [B, H, K, V] float32)``.
    """
    return _step("gated_delta_rule_step", q, k, v, g, beta, state, scale, use_qk_l2norm)
