"""What compiled circuits call besides torch: parameter holders and a few layout helpers.

This module imports only torch. The source emitter copies the definitions a circuit uses
verbatim into the generated file, so that file stays standalone; keep each one short and
self-contained (no references to other names of this module except those listed in DEPS).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class Linear(nn.Module):
    """A linear map over named axes: weight [*out, *over], bias [*out]; PyTorch's init."""

    def __init__(self, out_shape, in_shape, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(*out_shape, *in_shape))
        self.bias = nn.Parameter(torch.empty(*out_shape)) if bias else None
        bound = 1 / math.sqrt(math.prod(in_shape))  # = nn.Linear's kaiming_uniform(a=sqrt(5))
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)


class Param(nn.Module):
    """A free learned tensor `weight` (initial values: normal(0, std), zeros or ones)."""

    def __init__(self, shape, init="normal", std=0.02):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(*shape))
        if init == "normal":
            nn.init.normal_(self.weight, std=std)
        else:
            nn.init.constant_(self.weight, 1.0 if init == "ones" else 0.0)


class ChannelBatchNorm(nn.BatchNorm1d):
    """Batch normalisation of the channel axis at `dim`, statistics over every other axis."""

    def __init__(self, channels, dim, eps=1e-5, momentum=0.1, affine=True):
        super().__init__(channels, eps=eps, momentum=momentum, affine=affine)
        self.dim = dim

    def forward(self, x):
        y = x.movedim(self.dim, -1)
        return super().forward(y.reshape(-1, y.shape[-1])).reshape(y.shape).movedim(-1, self.dim)


class UnifiedNorm(nn.Module):
    """Unified Normalization (Yang et al. 2022), simplified: per channel, the running
    statistics normalise in training and inference alike (updated from each training batch
    before use), so that at inference it is an affine map that folds into a neighbour."""

    def __init__(self, channels, dim, eps=1e-5, momentum=0.1, affine=True):
        super().__init__()
        self.dim, self.eps, self.momentum = dim, eps, momentum
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x):
        y = x.movedim(self.dim, -1)
        if self.training:
            with torch.no_grad():
                flat = y.detach().reshape(-1, y.shape[-1])
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(m * flat.mean(0))
                self.running_var.mul_(1 - m).add_(m * flat.var(0, unbiased=False))
        y = (y - self.running_mean) * torch.rsqrt(self.running_var + self.eps)
        if self.weight is not None:
            y = y * self.weight + self.bias
        return y.movedim(-1, self.dim)


def softmax(x, dim: int, log: bool = False):
    """(log-)softmax over `dim`, computed in the tensor's memory order: a contraction returns
    a permuted view, and torch.softmax would copy it to row-major first (and the next
    contraction would copy it back)."""
    fn = torch.log_softmax if log else torch.softmax
    if isinstance(x, torch.fx.Proxy) or x.is_contiguous():  # (fx retraces when unpickling)
        return fn(x, dim)
    order = sorted(range(x.dim()), key=lambda d: x.stride(d), reverse=True)
    y = x.permute(order)
    if not y.is_contiguous():
        return fn(x, dim)
    return fn(y, order.index(dim)).permute([order.index(d) for d in range(x.dim())])


def causal_mask(x, query: int, key: int, window: int = 0, fill: float = float("-inf")):
    """x with entries where key > query (or key <= query - window) set to `fill`."""
    i = torch.arange(x.shape[query], device=x.device)[:, None]
    j = torch.arange(x.shape[key], device=x.device)[None, :]
    drop = (j > i) | (j <= i - window) if window else j > i
    if query > key:
        drop = drop.T
    shape = [1] * x.dim()
    shape[query], shape[key] = x.shape[query], x.shape[key]
    return x.masked_fill(drop.reshape(shape), fill)


def channels_first(x, channel: int, spatial):
    """Permute to (rest..., channel, *spatial) and fold `rest` into one batch axis.
    Returns the tensor and the permutation, for `channels_back`."""
    rest = [d for d in range(x.dim()) if d != channel and d not in spatial]
    perm = [*rest, channel, *spatial]
    y = x.permute(perm)
    return y.reshape(-1, *y.shape[len(rest) :]), perm, [x.shape[d] for d in rest]


def channels_back(y, perm, rest_shape):
    """Inverse of `channels_first` (the channel and spatial sizes may have changed)."""
    y = y.reshape(*rest_shape, *y.shape[1:])
    inv = [perm.index(d) for d in range(len(perm))]
    return y.permute(inv)


def conv(x, weight, bias, channel: int, spatial, stride, padding, dilation, groups,
         transposed=False, output_padding=0):  # fmt: skip
    """N-d (transposed) convolution with the channel axis at `channel` and the spatial axes at
    `spatial`, in any layout; weights in PyTorch's layout."""
    y, perm, rest = channels_first(x, channel, spatial)
    n = len(spatial)
    if transposed:
        fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[n - 1]
        y = fn(y, weight, bias, stride, padding, output_padding, groups, dilation)
    else:
        fn = (F.conv1d, F.conv2d, F.conv3d)[n - 1]
        y = fn(y, weight, bias, stride, padding, dilation, groups)
    return channels_back(y, perm, rest)


def pool(x, spatial, op, window, stride, padding):
    """Max or average pooling over the axes at `spatial`, in any layout."""
    keep = [d for d in range(x.dim()) if d not in spatial]
    perm = [*keep, *spatial]
    y = x.permute(perm)
    y = y.reshape(-1, 1, *y.shape[len(keep) :])
    n = len(spatial)
    if op == "max":
        y = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[n - 1](y, window, stride, padding)
    else:
        y = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[n - 1](y, window, stride, padding)
    y = y.reshape(*[x.shape[d] for d in keep], *y.shape[2:])
    return y.permute([perm.index(d) for d in range(len(perm))])


def upsample(x, spatial, factor, mode):
    """Nearest or (bi/tri)linear upsampling of the axes at `spatial`, in any layout."""
    keep = [d for d in range(x.dim()) if d not in spatial]
    perm = [*keep, *spatial]
    y = x.permute(perm)
    y = y.reshape(-1, 1, *y.shape[len(keep) :])
    if mode == "linear":
        mode = ("linear", "bilinear", "trilinear")[len(spatial) - 1]
        y = F.interpolate(y, scale_factor=factor, mode=mode, align_corners=False)
    else:
        y = F.interpolate(y, scale_factor=factor, mode="nearest")
    y = y.reshape(*[x.shape[d] for d in keep], *y.shape[2:])
    return y.permute([perm.index(d) for d in range(len(perm))])


def group_norm(x, groups: int, weight, bias, eps, channel: int, over):
    """Group normalisation with the channel axis at `channel`, statistics over `over`."""
    y, perm, rest = channels_first(x, channel, over)
    return channels_back(F.group_norm(y, groups, weight, bias, eps), perm, rest)


def lightning_decay(heads: int, like: torch.Tensor | None = None):
    """Fixed per-head decay of the `lightning` variant, exp(-2^(-8h/H)) for h = 1 .. H (the
    ALiBi slopes; as `ncd.circuits.kinds.LinearAttention.lightning_decay`, written in torch so
    that generated files stay standalone). float64 when `like` is, else float32."""
    h = torch.arange(1, heads + 1, dtype=torch.float64)
    dtype = torch.float64 if like is not None and like.dtype == torch.float64 else torch.float32
    decay = torch.exp(-(2.0 ** (-8.0 * h / heads))).to(dtype)
    return decay if like is None else decay.to(like.device)


def gated_linear_attention(q, k, v, g, scale=1.0):
    """GLA recurrence on [B, T, H, K] / [B, T, H, V]: S_t = diag(exp g_t) S_{t-1} + k_t v_tᵀ,
    o_t = scale q_t S_t, with log-gates g (<= 0) shaped like k. Plain loop over T."""
    B, T, H, K = q.shape
    s = q.new_zeros(B, H, K, v.shape[-1])
    out = []
    for t in range(T):
        s = s * g[:, t].exp()[..., None] + k[:, t, :, :, None] * v[:, t, :, None, :]
        out.append(torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, s))
    return torch.stack(out, 1)


def delta_rule_attention(q, k, v, beta, scale=1.0):
    """Delta-rule recurrence: S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}ᵀ k_t)ᵀ,
    o_t = scale q_t S_t; q, k [B, T, H, K], v [B, T, H, V], beta [B, T, H]. Plain loop."""
    B, T, H, K = q.shape
    s = q.new_zeros(B, H, K, v.shape[-1])
    out = []
    for t in range(T):
        kt = k[:, t]
        err = v[:, t] - torch.einsum("bhk,bhkv->bhv", kt, s)
        s = s + beta[:, t, :, None, None] * kt[..., None] * err[..., None, :]
        out.append(torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, s))
    return torch.stack(out, 1)


def softmax_attention(q, k, v, causal=False, scale=None):
    """softmax(scale q kᵀ [causal]) v on [B, T, H, K] tensors (PyTorch's SDPA; the fallback
    of ncd.ops.softmax_attention)."""
    o = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal, scale=scale
    )
    return o.transpose(1, 2)


def linear_attention(q, k, v, decay=None, causal=True, normalize=False, scale=1.0):
    """Causal linear attention on [B, T, H, K] tensors, quadratic masked form (the fallback
    of ncd.ops.linear_attention). Returns (o, None)."""
    T = q.shape[1]
    t = torch.arange(T, device=q.device)
    lag = (t[:, None] - t[None, :]).to(q.dtype)
    w = (lag >= 0).to(q.dtype)
    if decay is not None:
        w = w * decay.to(q.dtype)[:, None, None] ** lag.clamp(min=0)
    scores = torch.einsum("bthk,bshk->bhts", q, k) * scale * w
    o = torch.einsum("bhts,bshv->bthv", scores, v)
    if normalize:
        o = o / (scores.sum(-1).transpose(1, 2)[..., None] + 1e-10)
    return o, None


class Opaque(nn.Module):
    """Runs a callable ncd cannot see into (kept in memory, never in a spec)."""

    def __init__(self, fn=None):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        if self.fn is None:
            raise RuntimeError("this opaque box has no callable; pass it to the constructor")
        return self.fn(*args)


# Helpers that call other helpers: the source emitter copies these along.
DEPS = {"conv": ["channels_first", "channels_back"], "group_norm": ["channels_first",
        "channels_back"]}  # fmt: skip
