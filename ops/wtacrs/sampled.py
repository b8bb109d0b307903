"""WTA-CRS linear map: exact forward, weight gradient from winner-take-all column-row
samples, only the sampled rows of the input kept for the backward. PyTorch on every device
(the work is one gather and two matrix products; there is no kernel of its own). Maths and
choices in README.md.
"""

import math

import torch
import torch.nn.functional as F


def _check(cond, what, expected, found):
    if not cond:
        raise ValueError(f"wtacrs_linear: {what}: expected {expected}, found {found}")


def kept_rows(n: int, budget: float) -> int:
    """k, the number of sampled rows: ceil(budget · n), at least 1 and at most n."""
    return max(1, min(n, math.ceil(budget * n - 1e-9)))


def wtacrs_select(scores, k, generator=None):
    """Pick k column-row pairs from their scores s_i ≥ 0 (p_i = s_i / Σ s).

    scores: [n] -> (idx [k] int64, weight [k]) such that Σ_t weight_t · dy_{idx_t}ᵀ x_{idx_t}
    is the WTA-CRS estimate of Σ_i dy_iᵀ x_i: the |C| winners (largest p, weight 1) first,
    then k − |C| draws from the rest with weight (1 − Σ_C p) / ((k − |C|) p_j)."""
    n = scores.shape[0]
    if k >= n:
        return torch.arange(n, device=scores.device), torch.ones_like(scores)
    s = scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores
    total = s.sum()
    if not bool(total > 0):  # every pair is zero: any rows, weight 0
        return torch.arange(k, device=s.device), torch.zeros(k, dtype=s.dtype, device=s.device)
    top, order = torch.topk(s, k)  # the candidates for C, most probable first
    before = torch.cumsum(top, 0) - top  # Σ s over the c largest, c = 0 .. k-1
    rest = total - before
    c = int(torch.argmin(rest / torch.arange(k, 0, -1, device=s.device, dtype=s.dtype)))
    winners = order[:c]
    mass = (total - top[:c].sum()).clamp(min=0)
    q = s.clone()
    q[winners] = 0
    m = k - c
    if not bool(q.sum() > 0):
        draws = order[:m] if c == 0 else winners[:1].expand(m)
        w = torch.zeros(m, dtype=s.dtype, device=s.device)
    else:
        draws = torch.multinomial(q, m, replacement=True, generator=generator)
        w = mass / (m * s[draws])
    idx = torch.cat([winners, draws])
    weight = torch.cat([torch.ones(c, dtype=s.dtype, device=s.device), w])
    return idx, weight.to(scores.dtype)


class WTACRSLinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, k, grad_norms, generator):
        # x: [n, D]; weight: [J, D]; bias: [J] or None
        y = F.linear(x, weight, bias)
        with torch.no_grad():
            if k >= x.shape[0]:
                idx, kept = None, x
            else:
                scores = torch.linalg.vector_norm(x, dim=1)
                if grad_norms is not None:
                    scores = scores * grad_norms.to(scores.dtype)
                idx, w = wtacrs_select(scores, k, generator)
                kept = x[idx] * w[:, None]  # the sampled rows, each times its weight
        ctx.save_for_backward(kept, weight, idx)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, dy):
        kept, weight, idx = ctx.saved_tensors
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = dy @ weight
        if ctx.needs_input_grad[1]:
            rows = dy if idx is None else dy[idx]
            dw = rows.transpose(0, 1) @ kept
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dy.sum(0)
        return dx, dw, db, None, None, None


def wtacrs_linear(x, weight, bias=None, budget=0.3, grad_norms=None, generator=None):
    """y = x Wᵀ + b, exactly; the weight gradient estimated from k = ceil(budget · n) sampled
    rows of the n = prod(x.shape[:-1]) rows of x, of which only those are kept (WTA-CRS).

    x: [..., D]; weight: [J, D]; bias: [J] or None -> y: [..., J].
    budget: fraction of the rows kept, in (0, 1] (1: every row, the exact gradient).
    grad_norms: optional [...] (x's leading shape), an estimate of ‖dy_i‖ per row known at
    forward time; the sampling probabilities are p_i ∝ ‖x_i‖ · grad_norms_i (default: ‖x_i‖).
    The estimate is unbiased for any such p; its variance is smallest when grad_norms are the
    true ‖dy_i‖. Input gradient and bias gradient are exact. Random draws from `generator`
    (default: torch's global generator).

    >>> y = wtacrs_linear(torch.randn(4, 16, 8, requires_grad=True), torch.randn(5, 8))
    >>> y.shape
    torch.Size([4, 16, 5])
    """
    _check(x.dim() >= 1, "x", "a tensor [..., D]", tuple(x.shape))
    _check(
        weight.dim() == 2 and weight.shape[1] == x.shape[-1],
        "weight",
        f"[J, {x.shape[-1]}] (D of x [..., D])",
        tuple(weight.shape),
    )
    _check(
        bias is None or tuple(bias.shape) == (weight.shape[0],),
        "bias",
        f"[{weight.shape[0]}]",
        None if bias is None else tuple(bias.shape),
    )
    _check(0 < budget <= 1, "budget", "a fraction in (0, 1]", budget)
    if not (torch.is_grad_enabled() and weight.requires_grad):  # no dW: nothing to sample
        return F.linear(x, weight, bias)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    if grad_norms is not None:
        _check(tuple(grad_norms.shape) == tuple(lead), "grad_norms", tuple(lead),
               tuple(grad_norms.shape))  # fmt: skip
        grad_norms = grad_norms.reshape(-1)
    k = kept_rows(x2.shape[0], budget)
    y = WTACRSLinearFunction.apply(x2, weight, bias, k, grad_norms, generator)
    return y.reshape(*lead, weight.shape[0])
