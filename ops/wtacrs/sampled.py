"""WTA-CRS linear map: exact forward, weight gradient from winner-take-all column-row
samples, only the sampled rows of the input kept for the backward. The selection of the rows
never reads the device: on CUDA tensors it runs as selection.py's kernels, elsewhere (and
above selection.MAX_ROWS rows) as `wtacrs_select` here, which gives the same rows and weights
from the same random numbers. On CUDA tensors the gather of the sampled rows runs in the
selection's last kernel (or kernels.py's, after the PyTorch selection), as PyTorch indexing
otherwise; dW from them as PyTorch's gather and product
(or kernels.py's, DW_KERNEL). Maths and choices in README.md.
"""

import torch
import torch.nn.functional as F

from .._backend import autocast_inputs, use_triton
from . import selection
from .cost import kept_rows
from .kernels import gather_scale, sampled_weight_grad
from .selection import score_bits

# The kernel path's weight gradient from the samples: kernels.sampled_weight_grad (True) or
# PyTorch's gather of dy's rows and matrix product (False; README.md says why).
DW_KERNEL = False


def _check(cond, what, expected, found):
    if not cond:
        raise ValueError(f"wtacrs_linear: {what}: expected {expected}, found {found}")


def integer_scores(s, bits):
    """q_i = ceil(s_i · (2^bits · (1 / max s))) as int64, every product in float64; all 0
    when every score is 0. A score > 0 gets q_i ≥ 1, so every pair that can be nonzero keeps
    a positive probability."""
    smax = s.max().double()
    scale = torch.where(smax > 0, smax.reciprocal() * 2.0**bits, 0.0)
    return (s.double() * scale).ceil().long()


def wtacrs_select(scores, k, generator=None, uniforms=None):
    """Pick k column-row pairs from their scores s_i ≥ 0 (p_i = q_i / Σ q, q the integer
    scores of `integer_scores`).

    scores: [n] -> (idx [k] int64, weight [k]) such that Σ_t weight_t · dy_{idx_t}ᵀ x_{idx_t}
    is the WTA-CRS estimate of Σ_i dy_iᵀ x_i: the |C| winners (largest p, weight 1) first,
    then k − |C| draws from the rest with weight (Σ_{rest} q) / ((k − |C|) q_j).
    Pairs are ordered by score, the lower index first among equal scores; |C| is the number of
    leading positions t < k with q_t (k − t) > Σ_{positions ≥ t} q (README.md: the minimiser
    of the variance factor). uniforms: [k] float64 in [0, 1), the draws' random numbers
    (default: torch.rand from `generator`); the ones at positions t < |C| go unused.
    Tensors of fixed shapes throughout (|C| stays on the device): no host read. The Triton
    form (selection.py) gives the same (idx, weight) bit for bit."""
    n = scores.shape[0]
    if k >= n:
        return torch.arange(n, device=scores.device), torch.ones_like(scores)
    s = scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores
    q = integer_scores(s, score_bits(n))
    order = torch.sort(s, descending=True, stable=True).indices[:k]  # candidates for C
    v = q[order]
    ahead = torch.cumsum(v, 0) - v  # Σ q over the t pairs ahead of position t
    t = torch.arange(k, device=s.device)
    win = v * (k - t) > q.sum() - ahead  # true on a prefix of t: the winners
    c = win.sum()
    cdf = torch.cumsum(q.scatter(0, order, torch.where(win, 0, v)), 0)  # winners left out
    mass = cdf[-1]
    if uniforms is None:
        uniforms = torch.rand(k, generator=generator, device=s.device, dtype=torch.float64)
    # the first index whose cumulative score exceeds floor(u · mass): one with q_j > 0
    target = torch.minimum((uniforms * mass.double()).long(), mass - 1)
    draws = torch.searchsorted(cdf, target, right=True)
    w = torch.where(mass > 0, mass.double() / ((k - c).double() * q[draws].double()), 0)
    idx = torch.where(win, order, draws)
    weight = torch.where(win, 1, w)  # 0 for the draws when nothing is left outside C
    return idx, weight.to(scores.dtype)


# The dtype of the row norms: float32 at least (16-bit scores would round the draws' weights).
_SCORE_DTYPE = {torch.float16: torch.float32, torch.bfloat16: torch.float32}


class WTACRSLinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, k, grad_norms, generator, kernel):
        # x: [..., D], read as [n, D]; weight: [J, D]; bias: [J] or None. Autograd runs this
        # with gradients off: the reshapes here make no autograd nodes.
        x2 = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])
        y = F.linear(x2, weight, bias)
        if x.dim() != 2:
            # y in x's leading shape as a tensor of its own, not a view (autograd refuses
            # in-place changes of a custom Function's outputs that are views), as
            # torch.matmul returns its folded products
            y = torch.ops.aten._unsafe_view.default(y, (*x.shape[:-1], y.shape[1]))
        if k >= x2.shape[0]:
            idx, kept = None, x2
        else:
            scores = torch.linalg.vector_norm(x2, dim=1, dtype=_SCORE_DTYPE.get(x.dtype, x.dtype))
            if kernel and x2.shape[0] <= selection.MAX_ROWS:
                u = torch.rand(k, generator=generator, device=x.device, dtype=torch.float64)
                idx, kept = selection.select_kept(scores, k, u, grad_norms, x2)
            else:
                if grad_norms is not None:
                    scores = scores * grad_norms.to(scores.dtype)
                idx, w = wtacrs_select(scores, k, generator)
                if kernel:
                    kept = gather_scale(x2, idx, w)
                else:
                    kept = (x2[idx] * w[:, None]).to(x.dtype)  # sampled rows times weights
        ctx.save_for_backward(kept, weight, idx)
        ctx.has_bias, ctx.kernel = bias is not None, kernel
        ctx.lead = None if x.dim() == 2 else x.shape
        return y

    @staticmethod
    def backward(ctx, dy):
        kept, weight, idx = ctx.saved_tensors
        if ctx.lead is not None:
            dy = dy.reshape(-1, dy.shape[-1])
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = torch.mm(dy, weight)
            if ctx.lead is not None:
                dx = dx.view(ctx.lead)
        if ctx.needs_input_grad[1]:
            if idx is not None and ctx.kernel and DW_KERNEL:
                dw = sampled_weight_grad(dy, idx, kept, weight.dtype)
            else:
                rows = dy if idx is None else dy.index_select(0, idx)
                dw = torch.mm(rows.t(), kept)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dy.sum(0)
        return dx, dw, db, None, None, None, None


@autocast_inputs
def wtacrs_linear(
    x, weight, bias=None, budget=0.3, grad_norms=None, generator=None, backend="auto"
):
    """y = x Wᵀ + b, exactly; the weight gradient estimated from k = ceil(budget · n) sampled
    rows of the n = prod(x.shape[:-1]) rows of x, of which only those are kept (WTA-CRS).

    x: [..., D]; weight: [J, D]; bias: [J] or None -> y: [..., J].
    budget: fraction of the rows kept, in (0, 1] (1: every row, the exact gradient).
    grad_norms: optional [...] (x's leading shape), an estimate of ‖dy_i‖ per row known at
    forward time; the sampling probabilities are p_i ∝ ‖x_i‖ · grad_norms_i (default: ‖x_i‖).
    The estimate is unbiased for any such p; its variance is smallest when grad_norms are the
    true ‖dy_i‖. Input gradient and bias gradient are exact. Random draws from `generator`
    (default: torch's global generator).
    backend: "auto" (on CUDA tensors the Triton kernels gather the sampled rows and make dW
    from them; on the CPU PyTorch indexing and a matrix product), "triton" or "reference";
    float64 always takes the PyTorch form.

    >>> y = wtacrs_linear(torch.randn(4, 16, 8, requires_grad=True), torch.randn(5, 8))
    >>> y.shape
    torch.Size([4, 16, 5])
    """
    if not (
        x.dim() >= 1
        and weight.dim() == 2
        and weight.shape[1] == x.shape[-1]
        and weight.dtype == x.dtype
        and (bias is None or (bias.shape == weight.shape[:1] and bias.dtype == x.dtype))
        and 0 < budget <= 1
    ):
        _check_arguments(x, weight, bias, budget)
    kernel = use_triton(x, backend, "wtacrs_linear") and x.dtype != torch.float64
    if not (torch.is_grad_enabled() and weight.requires_grad) or x.shape[-1] == 0:
        return F.linear(x, weight, bias)  # no dW (or an empty one): nothing to sample
    n = x.numel() // x.shape[-1]
    if grad_norms is not None:
        lead = x.shape[:-1]
        _check(tuple(grad_norms.shape) == tuple(lead), "grad_norms", tuple(lead),
               tuple(grad_norms.shape))  # fmt: skip
        _check(grad_norms.is_floating_point(), "grad_norms.dtype", "a float dtype",
               grad_norms.dtype)  # fmt: skip
        if not grad_norms.is_cuda and not torch.compiler.is_compiling():  # CUDA's: trusted, no sync
            low = float(grad_norms.min()) if grad_norms.numel() else 0.0
            _check(low >= 0, "grad_norms", "norms (>= 0)", f"a minimum of {low}")
        grad_norms = grad_norms.reshape(-1)
    k = kept_rows(n, budget)
    return WTACRSLinearFunction.apply(x, weight, bias, k, grad_norms, generator, kernel)


def _check_arguments(x, weight, bias, budget):
    """Raises the error that names what is wrong with wtacrs_linear's arguments (called when
    its one-line test of them fails)."""
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
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None:
            _check(t.dtype == x.dtype, f"{name}.dtype", f"{x.dtype} as x", t.dtype)
