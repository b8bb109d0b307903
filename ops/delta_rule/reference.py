"""Token-by-token PyTorch recurrences of the delta rule and the gated delta rule: the ground
truth for the chunked forms, written from the papers' equations, for tests and small inputs.

Per head, with the state ``S`` (K x V, row-vector convention), ``a_t = exp(g_t)`` (1 for the
ungated rule) and ``beta_t`` in (0, 1):

    S_t = a_t S_{t-1} + beta_t k_t^T (v_t - a_t k_t S_{t-1}),      o_t = scale q_t S_t
"""

import torch

from .._backend import default_scale

L2NORM_EPS = 1e-6


def l2norm(x: torch.Tensor) -> torch.Tensor:
    """``x / sqrt(sum x^2 + 1e-6)`` over the last axis (fla's ``l2norm``), in x's dtype."""
    xf = x.float() if x.dtype != torch.float64 else x
    return (xf * torch.rsqrt((xf * xf).sum(-1, keepdim=True) + L2NORM_EPS)).to(x.dtype)


def _recurrence(q, k, v, beta, g, scale, s):
    """One batch of equal-length sequences. q, k: (B, T, H, K); v: (B, T, H, V); beta, g:
    (B, T, H); s: (B, H, K, V). Returns o (B, T, H, V) and the last state."""
    out = []
    for t in range(q.shape[1]):
        if g is not None:
            s = s * torch.exp(g[:, t])[..., None, None]
        k_t = k[:, t]  # (B, H, K)
        err = v[:, t] - torch.einsum("bhk,bhkv->bhv", k_t, s)
        s = s + torch.einsum("bhk,bhv->bhkv", k_t, beta[:, t, :, None] * err)
        out.append(scale * torch.einsum("bhk,bhkv->bhv", q[:, t], s))
    if not out:  # an empty sequence: its state passes through
        return v * 0.0, s  # empty, and on the graph as the outputs of longer sequences are
    return torch.stack(out, 1), s


def gated_delta_rule_reference(
    q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
    cu_seqlens=None, use_qk_l2norm=False,
):  # fmt: skip
    """q, k ``[B, T, H, K]``, v ``[B, T, H, V]``, g (log decay) and beta ``[B, T, H]`` (g may
    be None: the ungated rule), initial_state ``[N, H, K, V]``, cu_seqlens ``[N + 1]``.
    Returns ``(o in v's dtype, final_state or None)``; computes in float32 (float64 inputs in
    float64)."""
    ct = torch.promote_types(q.dtype, torch.float32)
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = default_scale(scale, K)
    if use_qk_l2norm:
        q, k = l2norm(q.to(ct)), l2norm(k.to(ct))
    q, k, v, beta = q.to(ct), k.to(ct), v.to(ct), beta.to(ct)
    g = None if g is None else g.to(ct)
    if cu_seqlens is None:
        pieces = [(slice(None), slice(None))]
        N = B
    else:
        bounds = cu_seqlens.tolist()
        pieces = [
            (slice(a, b), slice(n, n + 1)) for n, (a, b) in enumerate(zip(bounds, bounds[1:]))
        ]
        N = len(pieces)
    s0 = (
        torch.zeros(N, H, K, V, dtype=ct, device=q.device)
        if initial_state is None
        else initial_state.to(ct)
    )
    outs, states = [], []
    for tok, seq in pieces:
        o, s = _recurrence(
            q[:, tok], k[:, tok], v[:, tok], beta[:, tok], None if g is None else g[:, tok],
            scale, s0[seq],
        )  # fmt: skip
        outs.append(o)
        states.append(s)
    o = torch.cat(outs, 1).to(v.dtype)
    return o, (torch.cat(states, 0) if output_final_state else None)


def delta_rule_reference(q, k, v, beta, **kwargs):
    """The ungated rule: ``gated_delta_rule_reference`` with g absent."""
    return gated_delta_rule_reference(q, k, v, None, beta, **kwargs)
