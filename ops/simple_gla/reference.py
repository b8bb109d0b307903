"""Scalar-gate linear attention in plain PyTorch: the token-by-token recurrence (the ground
truth, written from the equations) and the chunked form (the CPU path).

Per head, with ``g_t <= 0`` a log-decay per token and ``c`` the scale:

    S_t = exp(g_t) S_{t-1} + k_t^T v_t,        o_t = c q_t S_t        (S_{-1} = initial state)

The chunked form cuts each sequence into chunks of ``C`` tokens; with ``G_i`` the in-chunk
cumulative sum of ``g`` and ``S`` the state entering the chunk:

    o_i = c sum_{j<=i} exp(G_i - G_j) (q_i . k_j) v_j + c exp(G_i) q_i S
    S'  = exp(G_last) S + sum_j exp(G_last - G_j) k_j^T v_j

It loops over chunks (and over packed sequences), never over tokens, and is differentiable by
autograd.
"""

import torch

from .._backend import GATE_FLOOR, default_scale, split_tokens


def expand_gates(g: torch.Tensor, B: int, T: int, H: int) -> torch.Tensor:
    """``g`` as ``[B, T, H]``: a ``[H]`` constant per-head log-decay is broadcast over B and T."""
    return g[None, None, :].expand(B, T, H) if g.dim() == 1 else g


def _pieces(cu_seqlens):
    """(token slice, state row) per sequence: the whole batch, or each packed sequence."""
    if cu_seqlens is None:
        return [(slice(None), slice(None))]
    b = cu_seqlens.tolist()
    return [(slice(s, e), slice(n, n + 1)) for n, (s, e) in enumerate(zip(b[:-1], b[1:]))]


def _prepare(q, k, v, g, scale, initial_state):
    ct = torch.promote_types(q.dtype, torch.float32)
    B, T, _, K = q.shape
    scale = default_scale(scale, K)
    g = expand_gates(g, B, T, v.shape[2]).to(ct)
    s0 = None if initial_state is None else initial_state.to(ct)
    return ct, scale, q.to(ct), k.to(ct), v.to(ct), g, s0


def simple_gla_recurrent_reference(
    q: torch.Tensor,  # [B, T, H, K]
    k: torch.Tensor,  # [B, T, H, K]
    v: torch.Tensor,  # [B, T, H, V]
    g: torch.Tensor,  # [B, T, H] or [H]
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,  # [N, H, K, V]
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,  # [N + 1]
):
    """The recurrence one token at a time; returns ``(o, final_state or None)``."""
    out_dtype = v.dtype
    ct, scale, q, k, v, g, s0 = _prepare(q, k, v, g, scale, initial_state)
    B, T, H, K = q.shape
    V = v.shape[-1]
    outs, finals = [], []
    for tok, row in _pieces(cu_seqlens):
        qs, ks, vs, gs = q[:, tok], k[:, tok], v[:, tok], g[:, tok]
        n = qs.shape[0]
        S = s0[row] if s0 is not None else q.new_zeros(n, H, K, V)  # [n, H, K, V]
        o = []
        for t in range(qs.shape[1]):
            S = gs[:, t].exp()[..., None, None] * S + ks[:, t, :, :, None] * vs[:, t, :, None, :]
            o.append(scale * torch.einsum("bhk,bhkv->bhv", qs[:, t], S))
        outs.append(torch.stack(o, 1) if o else vs.new_zeros(n, 0, H, V))
        finals.append(S)
    o = torch.cat(outs, 1).to(out_dtype)
    return o, (torch.cat(finals, 0) if output_final_state else None)


def _chunks(q, k, v, g, scale, S, C):
    """Equal-length sequences q, k [n, T, G, K], v [n, T, H, V], g [n, T, H] from state S
    [n, H, K, V], chunk by chunk; returns (o [n, T, H, V], final S). Value head h = G r + i
    reads q/k head h // (H / G): the value heads are split into [G, H / G], so that the
    products broadcast q and k over each group's heads instead of repeating them."""
    n, T, G = q.shape[:3]
    H = v.shape[2]
    R = H // G
    vg, gg, S = v.unflatten(2, (G, R)), g.unflatten(2, (G, R)), S.unflatten(1, (G, R))
    outs = []
    for qc, kc, vc, gc in split_tokens((q, k, vg, gg), C):
        Gc = gc.cumsum(1).permute(0, 2, 3, 1)  # [n, G, R, c]
        c = Gc.shape[-1]
        causal = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
        decay = (Gc[..., :, None] - Gc[..., None, :]).masked_fill(~causal, float("-inf")).exp()
        qk = torch.einsum("bigk,bjgk->bgij", qc, kc)  # [n, G, c, c]: once per group
        scores = qk[:, :, None] * (scale * decay)  # [n, G, R, c, c]
        o = torch.einsum("bgrij,bjgrv->bigrv", scores, vc)
        q_decay = (scale * Gc.exp()).permute(0, 3, 1, 2)[..., None]  # [n, c, G, R, 1]
        o = o + torch.einsum("bigk,bgrkv->bigrv", qc, S) * q_decay
        G_last = Gc[..., -1]  # [n, G, R]
        # the keys' weights exp(G_last - G_j) on the values' rows: per head, where k is not
        v_decay = (G_last[..., None] - Gc).exp().permute(0, 3, 1, 2)[..., None]  # [n, c, G, R, 1]
        S = G_last.exp()[..., None, None] * S + torch.einsum("bjgk,bjgrv->bgrkv", kc, vc * v_decay)
        outs.append(o.flatten(2, 3))
    o = torch.cat(outs, 1) if outs else v * 0.0  # empty (T = 0), on the graph
    return o, S.flatten(1, 2)


def simple_gla_chunked(
    q: torch.Tensor,  # [B, T, G, K]
    k: torch.Tensor,  # [B, T, G, K]
    v: torch.Tensor,  # [B, T, H, V], H a multiple of G
    g: torch.Tensor,  # [B, T, H] or [H]
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,  # [N, H, K, V]
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,  # [N + 1]
    chunk_size: int = 64,
):
    """The chunked form in PyTorch (float32 or float64 compute); returns ``(o, final_state)``.
    q and k may have G heads shared by the values' H heads in groups (value head h reads
    q/k head h // (H / G); G = H: one each), read without copies."""
    out_dtype = v.dtype
    ct, scale, q, k, v, g, s0 = _prepare(q, k, v, g, scale, initial_state)
    g = g.clamp(min=GATE_FLOOR)  # as the kernels: a hard reset (-inf) stays finite
    B, T, _, K = q.shape
    H, V = v.shape[2:]
    outs, finals = [], []
    rows = _pieces(cu_seqlens)
    lengths = [T] if cu_seqlens is None else cu_seqlens.diff().tolist()
    for (qs, ks, vs, gs), (_, row) in zip(split_tokens((q, k, v, g), lengths), rows, strict=True):
        S = s0[row] if s0 is not None else q.new_zeros(qs.shape[0], H, K, V)
        o, S = _chunks(qs, ks, vs, gs, scale, S, chunk_size)
        outs.append(o)
        if output_final_state:  # else each sequence's last state is freed as it ends
            finals.append(S)
    o = torch.cat(outs, 1).to(out_dtype)
    return o, (torch.cat(finals, 0) if output_final_state else None)


def simple_gla_reference(q, k, v, g, scale=None, initial_state=None, output_final_state=False,
                         cu_seqlens=None):  # fmt: skip
    """The reference for benchmarks: the chunked PyTorch form (vectorised, so usable at long T;
    the tests check it against the token-by-token recurrence)."""
    return simple_gla_chunked(q, k, v, g, scale, initial_state, output_final_state, cu_seqlens)
