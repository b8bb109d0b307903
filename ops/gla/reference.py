"""Plain PyTorch gated linear attention (GLA, Yang et al. 2024): the token-by-token
recurrence, the ground truth for tests, and the chunked form, the CPU path.

Per sequence and head, with per-key-channel log-space gates ``g_t`` (``<= 0``):

    S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t,        o_t = scale * q_t S_t

``S_{-1}`` is the initial state (zeros when absent). Both functions compute in float32 (float64
when given float64), return ``o`` in v's dtype and the final state in the compute dtype.
"""

import torch

from .._backend import GATE_FLOOR, default_scale, split_tokens


def _pieces(cu_seqlens, T):
    """(token slice, sequence index or None) for each sequence."""
    if cu_seqlens is None:
        return [(slice(0, T), None)]
    bounds = cu_seqlens.tolist()
    return [(slice(a, b), n) for n, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]


def _prepare(q, k, v, g, scale):
    ct = torch.promote_types(q.dtype, torch.float32)
    scale = default_scale(scale, q.shape[-1])
    return ct, scale, q.to(ct), k.to(ct), v.to(ct), g.to(ct)


def gla_reference(
    q: torch.Tensor,  # (B, T, H, K)
    k: torch.Tensor,  # (B, T, H, K)
    v: torch.Tensor,  # (B, T, H, V)
    g: torch.Tensor,  # (B, T, H, K) log gates
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,  # (N, H, K, V)
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,  # (N + 1,) int
):
    """The recurrence one token at a time (a Python loop over T: for tests only).
    Returns ``(o, final_state)``; ``final_state`` is None unless asked for."""
    out_dtype = v.dtype
    ct, scale, q, k, v, g = _prepare(q, k, v, g, scale)
    B, T, H, K = q.shape
    outs, states = [], []
    for sl, n in _pieces(cu_seqlens, T):
        if initial_state is None:
            s = q.new_zeros(B, H, K, v.shape[-1])
        else:
            s = initial_state[slice(None) if n is None else slice(n, n + 1)].to(ct)
        o = []
        for t in range(sl.start, sl.stop):
            s = g[:, t].exp()[..., None] * s + k[:, t, :, :, None] * v[:, t, :, None, :]
            o.append(scale * torch.einsum("bhk,bhkv->bhv", q[:, t], s))
        outs.append(torch.stack(o, 1) if o else v.new_zeros(B, 0, H, v.shape[-1]))
        states.append(s)
    o = torch.cat(outs, 1).to(out_dtype)
    return o, (torch.cat(states, 0) if output_final_state else None)


# Chunk of the CPU form, and the largest |b_i - b_mid| (cumulative log gates against the
# chunk's middle row) for which the factored form below is taken: its operands are scaled by
# exp(±span), within float32's range with a wide margin.
CHUNK = 64
SAFE_SPAN = 40.0


def _chunk(q, k, v, g, s, scale):
    """One chunk of n tokens of every sequence of a batch, the value heads split into groups
    [G, R] (value head h = G r + i reads q/k head h // R): q, k: (B, n, G, 1, K), broadcast
    over each group's R heads; g: (B, n, G, R, K); v: (B, n, G, R, V); s: (B, G, R, K, V),
    the state entering the chunk.

    The intra-chunk weights exp(b_i - b_j) (b the cumulative log gate within the chunk) are
    factored as exp(b_i - b_m) exp(b_m - b_j) around the middle row m, so that the scores are
    one product of scaled queries and keys, where every |b - b_m| of the chunk is within
    SAFE_SPAN; otherwise each factor is formed from its own difference (exact in every
    exponent: strong gates neither overflow nor lose precision)."""
    n = q.shape[1]
    b = torch.cumsum(g, 1)  # (B, n, G, R, K): the cumulative log gate within the chunk
    beta = b[:, -1]  # (B, G, R, K): the whole chunk's
    o = scale * torch.einsum("bigrk,bgrkv->bigrv", q * b.exp(), s)
    rel = b - b[:, n // 2 : n // 2 + 1]
    causal = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
    # traced (torch.compile, torch.export): the exact form, with no data-dependent branch
    factor = not torch.compiler.is_compiling() and rel.numel() > 0
    if factor and float(rel.detach().abs().max()) <= SAFE_SPAN:
        a = torch.einsum("bigrk,bjgrk->bgrij", q * rel.exp(), k * (-rel).exp())
        a = scale * a.masked_fill(~causal, 0.0)
    else:
        lag = b[:, :, None] - b[:, None, :]  # (B, i, j, G, R, K)
        decay = torch.where(causal[None, :, :, None, None, None], lag, float("-inf")).exp()
        a = scale * torch.einsum("bigrk,bjgrk,bijgrk->bgrij", q, k, decay)  # (B, G, R, i, j)
    o = o + torch.einsum("bgrij,bjgrv->bigrv", a, v)
    s = beta.exp()[..., None] * s + torch.einsum(
        "bjgrk,bjgrv->bgrkv", k * (beta[:, None] - b).exp(), v
    )
    return o, s


def gla_chunked(
    q: torch.Tensor,  # (B, T, G, K)
    k: torch.Tensor,  # (B, T, G, K)
    v: torch.Tensor,  # (B, T, H, V), H a multiple of G
    g: torch.Tensor,  # (B, T, H, K) log gates
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,  # (N, H, K, V)
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,  # (N + 1,) int
    chunk: int = CHUNK,
):
    """The chunked form in PyTorch: a loop over chunks of ``chunk`` tokens, each vectorised
    (the intra-chunk weights ``exp(b_i - b_j)`` as one product of scaled queries and keys, or
    elementwise over the key channels where the gates are strong: `_chunk`), the state passed
    between chunks. q and k may have G heads shared by the values' H heads in groups (value
    head h reads q/k head h // (H / G); G = H: one each), broadcast rather than repeated.
    Differentiable by autograd. Returns ``(o, final_state)``."""
    out_dtype = v.dtype
    ct, scale, q, k, v, g = _prepare(q, k, v, g, scale)
    g = g.clamp(min=GATE_FLOOR)  # as the kernels: a hard reset (-inf) stays finite
    B, T, G, K = q.shape
    H, V = v.shape[2:]
    R = H // G
    q, k = q[:, :, :, None], k[:, :, :, None]  # (B, T, G, 1, K)
    v, g = v.unflatten(2, (G, R)), g.unflatten(2, (G, R))
    outs, states = [], []
    lengths = [T] if cu_seqlens is None else cu_seqlens.diff().tolist()
    rows = _pieces(cu_seqlens, T)
    for seq, (_, n) in zip(split_tokens((q, k, v, g), lengths), rows, strict=True):
        if initial_state is None:
            s = q.new_zeros(B, G, R, K, V)
        else:
            s = initial_state[slice(None) if n is None else slice(n, n + 1)].to(ct)
            s = s.unflatten(1, (G, R))
        for qc, kc, vc, gc in split_tokens(seq, chunk):
            o, s = _chunk(qc, kc, vc, gc, s, scale)
            outs.append(o.flatten(2, 3))
        if output_final_state:  # else each sequence's last state is freed as it ends
            states.append(s.flatten(1, 2))
    o = torch.cat(outs, 1) if outs else v[:, :0].flatten(2, 3) * 0.0  # empty, on the graph
    return o.to(out_dtype), (torch.cat(states, 0) if output_final_state else None)
