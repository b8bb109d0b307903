"""Plain PyTorch causal linear attention: the ground truth for the chunked kernels, and the
chunked form that CPU tensors run.

`linear_attention_reference` is the quadratic masked form (a [T, T] score matrix per head),
so only for tests and small inputs; `linear_attention_chunked` is linear in T (chunks of 64
tokens, a loop over chunks, never over tokens). With decay ``lam`` (one per head) and
``scale`` ``c``:

    S_t = lam * S_{t-1} + k_t^T v_t,          o_t = c * q_t S_t
    z_t = lam * z_{t-1} + k_t,                o_t <- o_t / (c * q_t . z_t + eps)   (normalize)

that is ``o_t = c * sum_{s<=t} lam^(t-s) (q_t . k_s) v_s + c * lam^(t+1) q_t S_{-1}``. With
``normalize`` a row whose denominator ``c * q_t . z_t`` is exactly 0 gives 0 (`normalized`).
"""

import torch

from .._backend import check
from ..simple_gla.reference import simple_gla_chunked

EPS = 1e-10


def normalized(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / (den + EPS)``, and 0 with no gradient where ``den`` is exactly 0.

    ``den = c q_t . z_t`` is 0 when the query's features meet none of the keys' (all zero after
    a ReLU feature map, or every key so far zero): the row attends to nothing and reads 0.
    Differentiating ``num / (den + EPS)`` there gives ``c S_t^T do_t / EPS`` for dq (and the
    like for dk), about 1e10 times the gradient of a normal row: a size set by EPS alone, which
    float32 holds but float16 and bfloat16 overflow to inf (and inf * 0 = NaN then spreads
    through the backward scans to dk and dv). Such rows are therefore constants: output 0,
    gradient 0, in every dtype and backend. Rows with ``den != 0`` are unchanged."""
    empty = den == 0
    return torch.where(empty, 0.0, num / torch.where(empty, 1.0, den + EPS))


def check_decay(op: str, decay, H: int, grad: bool = False) -> None:
    """The per-head decay: a tensor ``[H]`` of factors in (0, 1], without a gradient unless
    `grad` (the one-token step, plain PyTorch, differentiates it). Its values are read only
    where they lie on the host, so that a call never waits on the GPU."""
    check(
        isinstance(decay, torch.Tensor) and tuple(decay.shape) == (H,),
        op,
        "decay.shape",
        f"({H},), one factor per head",
        getattr(decay, "shape", decay),
    )
    host = not decay.is_cuda and not torch.compiler.is_compiling()  # no read when traced
    if host and not bool(((decay > 0) & (decay <= 1)).all()):
        check(False, op, "decay values", "in (0, 1]", decay.tolist())
    check(
        grad or not decay.requires_grad,
        op,
        "decay.requires_grad",
        "False (the decay is a fixed per-head constant; no gradient is computed)",
        True,
    )


def _one(q, k, v, log_decay, scale, s0, z0, normalize):
    """One batch of equal-length sequences. q, k: (B, T, H, K); v: (B, T, H, V)."""
    T = q.shape[1]
    t = torch.arange(T, device=q.device, dtype=q.dtype)
    lag = t[:, None] - t[None, :]  # (T, T)
    causal = lag >= 0
    decay_tt = torch.exp(log_decay[:, None, None] * lag.clamp(min=0)) * causal  # (H, T, T)
    scores = torch.einsum("bthk,bshk->bhts", q, k) * scale * decay_tt  # (B, H, T, S)
    o = torch.einsum("bhts,bshv->bthv", scores, v)
    q_decay = torch.exp(log_decay[None, :] * (t[:, None] + 1))[None, :, :, None]  # (1, T, H, 1)
    k_decay = torch.exp(log_decay[None, :] * (T - 1 - t[:, None]))[None, :, :, None]
    total = torch.exp(log_decay * T)[None, :, None, None]  # (1, H, 1, 1)
    if s0 is not None:
        o = o + torch.einsum("bthk,bhkv->bthv", q * scale * q_decay, s0)
    s_t = torch.einsum("bthk,bthv->bhkv", k * k_decay, v)
    if s0 is not None:
        s_t = s_t + total * s0
    z_t = None
    if normalize:
        den = scores.sum(-1).transpose(1, 2)  # (B, T, H)
        if z0 is not None:
            den = den + torch.einsum("bthk,bhk->bth", q * scale * q_decay, z0)
        o = normalized(o, den[..., None])
        z_t = (k * k_decay).sum(1) + (total[..., 0] * z0 if z0 is not None else 0)
    return o, s_t, z_t


def linear_attention_reference(
    q: torch.Tensor,  # (B, T, H, K)
    k: torch.Tensor,  # (B, T, H, K)
    v: torch.Tensor,  # (B, T, H, V)
    decay: torch.Tensor | None = None,  # (H,) in (0, 1]
    scale: float = 1.0,
    initial_state=None,  # (N, H, K, V), or a tuple with z (N, H, K) when normalize
    output_final_state: bool = False,
    normalize: bool = False,
    cu_seqlens: torch.Tensor | None = None,  # (N + 1,) int
):
    """Returns ``(o, final_state)``; ``final_state`` is None unless asked for."""
    ct = torch.promote_types(q.dtype, torch.float32)
    H = q.shape[2]
    log_decay = torch.zeros(H, device=q.device, dtype=ct) if decay is None else decay.to(ct).log()
    out_dtype = v.dtype
    s0, z0 = initial_state if isinstance(initial_state, tuple) else (initial_state, None)
    q, k, v = q.to(ct), k.to(ct), v.to(ct)
    if cu_seqlens is None:
        pieces = [(slice(None), None)]
    else:
        bounds = cu_seqlens.tolist()
        pieces = [(slice(a, b), n) for n, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
    outs, states, zs = [], [], []
    for sl, n in pieces:
        pick = slice(None) if n is None else slice(n, n + 1)
        o, s_t, z_t = _one(
            q[:, sl],
            k[:, sl],
            v[:, sl],
            log_decay,
            scale,
            None if s0 is None else s0[pick].to(ct),
            None if z0 is None else z0[pick].to(ct),
            normalize,
        )
        outs.append(o)
        states.append(s_t)
        zs.append(z_t)
    o = torch.cat(outs, 1).to(out_dtype)
    if not output_final_state:
        return o, None
    s_t = torch.cat(states, 0)
    return o, ((s_t, torch.cat(zs, 0)) if normalize else s_t)


def linear_attention_chunked(
    q: torch.Tensor,  # (B, T, G, K)
    k: torch.Tensor,  # (B, T, G, K)
    v: torch.Tensor,  # (B, T, H, V), H a multiple of G
    decay: torch.Tensor | None = None,  # (H,) in (0, 1]
    scale: float = 1.0,
    initial_state=None,  # (N, H, K, V), or a tuple with z (N, H, K) when normalize
    output_final_state: bool = False,
    normalize: bool = False,
    cu_seqlens: torch.Tensor | None = None,  # (N + 1,) int
    chunk_size: int = 64,
):
    """The same maths and signature as `linear_attention_reference`, linear in T: scalar-gate
    linear attention's chunked form (ops/simple_gla) with the constant per-head log-decay
    ``log(lam)`` (0 without decay). With ``normalize`` the denominator rides along as one more
    value column of ones, whose state is ``z``. float32 compute at least; differentiable by
    autograd. q and k may have G heads shared by the values' H heads in groups (value head h
    reads q/k head h // (H / G)), read without copies. Returns ``(o, final_state)``."""
    ct = torch.promote_types(q.dtype, torch.float32)
    B, T, _, K = q.shape
    H, V = v.shape[2:]
    g = torch.zeros(H, device=q.device, dtype=ct) if decay is None else decay.to(ct).log()
    s0, z0 = initial_state if isinstance(initial_state, tuple) else (initial_state, None)
    s0 = None if s0 is None else s0.to(ct)
    vv = v.to(ct)
    if normalize:
        vv = torch.cat([vv, vv.new_ones(B, T, H, 1)], -1)
        if s0 is not None or z0 is not None:
            N = (s0 if s0 is not None else z0).shape[0]
            s0 = q.new_zeros(N, H, K, V, dtype=ct) if s0 is None else s0
            z0 = q.new_zeros(N, H, K, dtype=ct) if z0 is None else z0.to(ct)
            s0 = torch.cat([s0, z0[..., None]], -1)
    o, s_t = simple_gla_chunked(q.to(ct), k.to(ct), vv, g, scale, s0, output_final_state,
                                cu_seqlens, chunk_size)  # fmt: skip
    if normalize:
        o = normalized(*o.split([V, 1], -1))  # one split: its backward joins the two once
        s_t = None if s_t is None else (s_t[..., :V], s_t[..., V])
    return o.to(v.dtype), s_t
