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


def _pack_chunks(x, sched):
    """(1, T, H, ...) packed along T -> (1, NC * C, H, ...), the chunk slots of `sched`
    (`_chunk_schedule`) filled with their tokens, zeros where a sequence's last chunk ends."""
    flat = torch.cat([x[0], x.new_zeros(1, *x.shape[2:])])  # row T: the padding
    return flat.index_select(0, sched["source"])[None]


def _chunk_schedule(cu_seqlens, C, T, device):
    """The layout of packed sequences in chunks: each sequence's tokens in chunks of its own,
    the chunks step-major (the n-th chunks of every sequence that has one, the sequences with
    the most chunks first, so those still running at step n are a prefix of that `order`).
    `steps`: (first chunk, sequences running) per step; `source`: each chunk slot's token of
    the T packed ones (T: padding); `positions`: the slot of each token of the sequences."""
    bounds = cu_seqlens.tolist()
    lens = [b - a for a, b in zip(bounds, bounds[1:])]
    counts = [-(-n // C) for n in lens]
    if not any(counts):
        counts[0] = 1  # one chunk at least: empty sequences give their states back
    order = sorted(range(len(lens)), key=lambda i: -counts[i])
    steps, slots, m = [], [], len(order)
    for n in range(max(counts)):
        while counts[order[m - 1]] <= n:  # the sequences past m have ended
            m -= 1
        steps.append((len(slots), m))
        slots += [(i, n) for i in order[:m]]
    t = torch.arange(C)
    source = torch.tensor([bounds[i] + n * C for i, n in slots]).reshape(-1, 1) + t
    end = torch.tensor([bounds[i + 1] for i, _ in slots]).reshape(-1, 1)
    source = torch.where(source < end, source, T).reshape(-1)
    real = source < T
    positions = torch.empty(T, dtype=torch.long)
    positions[source[real]] = torch.arange(source.numel())[real]
    positions = positions[bounds[0] : bounds[-1]]
    return {"order": order, "steps": steps, "source": source.to(device),
            "positions": positions.to(device)}  # fmt: skip


def _products(xs, N, NT, C, G, order, scale, gated):
    """Every chunk's operands at once, from the padded q, k, v, beta (and g): the scaled
    queries, the masked (decayed) Q K^T, the solves' W and U, the keys of the state update
    and each chunk's total decay (None ungated). The passing tensors (masks, beta K K^T,
    I + A, the gate differences) are freed on return: only what autograd keeps lives on."""
    xs = [x.reshape(N, NT, C, G, x.shape[2] // G, x.shape[-1]).permute(order) for x in xs]
    q, k, v, beta = xs[0], xs[1], xs[2], xs[3][..., 0]
    ones = torch.ones(C, C, dtype=torch.bool, device=q.device)
    strict, causal = torch.tril(ones, -1), torch.tril(ones)
    kk = k @ k.transpose(-1, -2)  # (N, G, 1, NT, C, C)
    qk = q @ k.transpose(-1, -2) * scale
    if gated:
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
    lower = a + torch.eye(C, dtype=q.dtype, device=q.device)
    w = torch.linalg.solve_triangular(lower, b_w, upper=False, unitriangular=True)
    u = torch.linalg.solve_triangular(lower, v * beta[..., None], upper=False, unitriangular=True)
    return q_in, qk, w, u, k_out, (gamma_last if gated else None)


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
        sched = None
    else:  # one row of chunks, each sequence's own, walked in the schedule's steps
        sched = _chunk_schedule(cu_seqlens, C, T, q.device)
        xs = [_pack_chunks(x, sched) for x in xs]
        N, T_pad = 1, xs[0].shape[1]
    NT = T_pad // C
    # (N, T_pad, G or H, D) -> (N, G, 1 or R, NT, C, D): q and k broadcast over R; packed,
    # (NT, G, 1 or R, 1, C, D): a step's chunks, consecutive, are then a contiguous block
    order = (0, 3, 4, 1, 2, 5) if sched is None else (1, 3, 4, 0, 2, 5)
    q_in, qk, w, u, k_out, gamma_last = _products(xs, N, NT, C, G, order, scale, g is not None)
    S = B if sched is None else len(sched["order"])
    s = u.new_zeros(S, H, K, V) if initial_state is None else initial_state.to(ct)
    # each step's operands cut out by one unbind or split per tensor (autograd joins their
    # gradients once; indexing a step at a time would zero-fill a whole-size gradient a step)
    if sched is None:  # step n: chunk n of every sequence

        def steps(x):
            return x.unbind(3)
    else:  # chunks first .. first + m - 1 belong to the first m sequences of the order
        s = s[sched["order"]]
        sizes = [m for _, m in sched["steps"]]

        def steps(x):
            return x.squeeze(3).split(sizes, 0)

    s = s.unflatten(1, (G, R))
    outs, done = [], []
    n_steps = NT if sched is None else len(sched["steps"])
    gammas = steps(gamma_last) if g is not None else [None] * n_steps
    for u_n, w_n, q_n, qk_n, k_n, gamma_n in zip(
        *(steps(x) for x in (u, w, q_in, qk, k_out)), gammas, strict=True
    ):
        m = u_n.shape[0]
        if m < s.shape[0]:  # sequences that ended: their states set aside
            done.append(s[m:])
            s = s[:m].clone()  # (a view would keep the whole of s for the backward)
        v_new = u_n - w_n @ s  # (sequences, G, R, C, V)
        outs.append(q_n @ s + qk_n @ v_new)
        if g is not None:
            s = s * gamma_n[..., None, None]
        s = s + k_n.transpose(-1, -2) @ v_new
    s = (torch.cat([s, *reversed(done)]) if done else s).flatten(1, 2)
    if sched is None:
        o = torch.stack(outs, 3).flatten(1, 2)  # (N, H, NT, C, V)
        del outs  # (the pieces, freed before the copy below)
        # the real tokens copied into a tensor of their own: a slice of the padded output
        # would hold all of its storage wherever the result is kept
        o = o.reshape(N, H, T_pad, V)[:, :, :T].transpose(1, 2)
        o = o.to(out_dtype, memory_format=torch.contiguous_format, copy=True)
    else:
        s = s[torch.tensor(sched["order"]).argsort().to(s.device)]  # back in the given order
        o = torch.cat(outs).flatten(1, 2).transpose(1, 2)  # (chunks, C, H, V), the steps' order
        del outs
        o = o.reshape(T_pad, H, V)[sched["positions"]][None].to(out_dtype)
    return o, (s if output_final_state else None)
