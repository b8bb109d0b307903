"""The chunked (WY / UT-transform) form of the (gated) delta rule in PyTorch: the CPU path,
differentiable through autograd. Within a chunk everything is a batched matrix product or a
triangular solve over all chunks at once; only the state is carried by a loop over chunks.

Per chunk of C tokens (README.md has the derivation), with G the chunk-local cumulative sum of
g, gamma_i = exp(G_i) and E_ij = exp(G_i - G_j):

    A  = strictly_lower(diag(beta) (K K^T * E))          T = (I + A)^{-1}
    W  = T diag(beta gamma) K                            U = T diag(beta) V
    V' = U - W S                                         (S: the state entering the chunk)
    O  = scale diag(gamma) Q S + scale (Q K^T * E * causal) V'
    S  <- gamma_C S + (diag(gamma_C / gamma) K)^T V'

Grouped heads: q and k may have fewer heads than v, beta and g (Hq dividing H), value head h
reading q/k head h // (H / Hq). The value heads are split into [Hq, H / Hq] and q and k
broadcast over each group's heads (K K^T and, ungated, Q K^T formed once per group), not
repeated.
"""

import torch
import torch.nn.functional as F

from .._backend import GATE_FLOOR, default_scale

CHUNK = 64


def _pad_sequences(x, cu_seqlens, T_pad):
    """(1, T, H, ...) packed along T -> (N, T_pad, H, ...) with zeros after each sequence's end,
    and the flat positions (N * T_pad) of the real tokens in packed order."""
    bounds = cu_seqlens.tolist()
    N = len(bounds) - 1
    lens = torch.tensor([b - a for a, b in zip(bounds, bounds[1:])], device=x.device)
    t = torch.arange(T_pad, device=x.device)
    starts = torch.tensor(bounds[:-1], device=x.device)
    valid = t[None, :] < lens[:, None]  # (N, T_pad)
    idx = torch.where(valid, starts[:, None] + t[None, :], x.shape[1])  # the zero row
    flat = x[0]
    flat = torch.cat([flat, flat.new_zeros(1, *flat.shape[1:])], 0)
    positions = (torch.arange(N, device=x.device)[:, None] * T_pad + t[None, :])[valid]
    return flat[idx.reshape(-1)].reshape(N, T_pad, *flat.shape[1:]), positions


def gated_delta_rule_chunked(
    q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
    cu_seqlens=None, chunk_size=CHUNK,
):  # fmt: skip
    """Same arguments and result as ``gated_delta_rule_reference`` (g None: ungated), keys
    already normalised; computes in float32 (float64 inputs in float64)."""
    ct = torch.promote_types(q.dtype, torch.float32)
    out_dtype = v.dtype
    B, T, G, K = q.shape
    H, V = v.shape[2:]
    R = H // G  # value heads per q/k head
    C = chunk_size
    scale = default_scale(scale, K)
    q, k, v, beta = q.to(ct), k.to(ct), v.to(ct), beta.to(ct)
    g = None if g is None else g.to(ct).clamp(min=GATE_FLOOR)  # as the kernels (-inf stays finite)
    xs = [q, k, v, beta[..., None]] + ([] if g is None else [g[..., None]])
    if cu_seqlens is None:
        N, T_pad = B, max(C, -(-T // C) * C)  # one chunk at least: T = 0 gives the state back
        xs = [F.pad(x, (0, 0, 0, 0, 0, T_pad - T)) for x in xs]
        positions = None
    else:
        bounds = cu_seqlens.tolist()
        N = len(bounds) - 1
        T_pad = max(C, -(-max(b - a for a, b in zip(bounds, bounds[1:])) // C) * C)
        padded = [_pad_sequences(x, cu_seqlens, T_pad) for x in xs]
        xs, positions = [p[0] for p in padded], padded[0][1]
    NT = T_pad // C
    # (N, T_pad, G or H, D) -> (N, G, 1 or R, NT, C, D): q and k broadcast over R
    xs = [
        x.reshape(N, NT, C, G, x.shape[2] // G, x.shape[-1]).permute(0, 3, 4, 1, 2, 5) for x in xs
    ]
    q, k, v, beta = xs[0], xs[1], xs[2], xs[3][..., 0]
    ones = torch.ones(C, C, dtype=torch.bool, device=q.device)
    strict, causal = torch.tril(ones, -1), torch.tril(ones)
    kk = k @ k.transpose(-1, -2)  # (N, G, 1, NT, C, C)
    qk = q @ k.transpose(-1, -2) * scale
    if g is not None:
        gc = xs[4][..., 0].cumsum(-1)  # (N, G, R, NT, C)
        diff = gc[..., :, None] - gc[..., None, :]
        decay = torch.exp(diff.masked_fill(~causal, float("-inf")))  # E on and below the diagonal
        gamma = torch.exp(gc)
        gamma_last = gamma[..., -1]  # (N, G, R, NT)
        k_out = k * torch.exp(gc[..., -1:] - gc)[..., None]  # keys decayed to the chunk's end
        kk = kk * decay
        qk = qk * decay
        q_in = q * (gamma * scale)[..., None]
        b_w = k * (beta * gamma)[..., None]
    else:
        qk = qk.masked_fill(~causal, 0.0)
        q_in = q * scale
        k_out = k
        b_w = k * beta[..., None]
    a = (beta[..., None] * kk).masked_fill(~strict, 0.0)
    lower = a + torch.eye(C, dtype=ct, device=q.device)
    w = torch.linalg.solve_triangular(lower, b_w, upper=False, unitriangular=True)
    u = torch.linalg.solve_triangular(lower, v * beta[..., None], upper=False, unitriangular=True)
    s = q.new_zeros(N, H, K, V) if initial_state is None else initial_state.to(ct)
    s = s.unflatten(1, (G, R))
    outs = []
    for n in range(NT):
        v_new = u[:, :, :, n] - w[:, :, :, n] @ s  # (N, G, R, C, V)
        outs.append(q_in[:, :, :, n] @ s + qk[:, :, :, n] @ v_new)
        if g is not None:
            s = s * gamma_last[:, :, :, n, None, None]
        s = s + k_out[:, :, :, n].transpose(-1, -2) @ v_new
    s = s.flatten(1, 2)
    o = torch.stack(outs, 3).flatten(1, 2)  # (N, H, NT, C, V)
    if positions is None:
        # the real tokens copied into a tensor of their own: a slice of the padded output
        # would hold all of its storage wherever the result is kept
        o = o.reshape(N, H, T_pad, V)[:, :, :T].transpose(1, 2)
        o = o.to(out_dtype, memory_format=torch.contiguous_format, copy=True)
    else:
        o = o.permute(0, 2, 3, 1, 4).reshape(N * T_pad, H, V)[positions][None].to(out_dtype)
    return o, (s if output_final_state else None)
