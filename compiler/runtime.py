"""What compiled circuits call besides torch: parameter holders and a few layout helpers.

This module imports only torch. The source emitter copies the definitions a circuit uses
verbatim into the generated file, so that file stays standalone; keep each one short and
self-contained (no references to other names of this module except those listed in DEPS).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class Held(nn.Module):
    """A holder some of whose tensors are constants (`optional`: their names), saved in the
    state_dict with the rest; a state dict without them loads too, strict or not, and they keep
    their values. An imported model's constants (a non-persistent buffer, a tensor literal, a
    table its code makes) are no part of its own state_dict, so that state_dict, renamed,
    loads into the compiled module with strict=True; a compiled module's state_dict still
    carries them to another (a generated file, the interpreter)."""

    optional: tuple = ()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):  # fmt: skip
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)  # fmt: skip
        for name in self.optional:
            if prefix + name in missing_keys:
                missing_keys.remove(prefix + name)


class Param(Held):
    """A free learned tensor `weight` (initial values: normal(0, std), zeros or ones), or a
    buffer where the imported model held it: `held` "state" (in its state_dict) or "constant"
    (not: optional when loading, `Held`)."""

    def __init__(self, shape, init="normal", std=0.02, held=None):
        super().__init__()
        w = torch.empty(*shape)
        if init == "normal":
            nn.init.normal_(w, std=std)
        else:
            nn.init.constant_(w, 1.0 if init == "ones" else 0.0)
        if held is None:
            self.weight = nn.Parameter(w)
        else:
            self.register_buffer("weight", w)
            self.optional = ("weight",) if held == "constant" else ()

    def extra_repr(self):
        return ", ".join(map(str, self.weight.shape))


class ChannelBatchNorm(nn.BatchNorm1d):
    """Batch normalisation of the channel axis at `dim`, statistics over every other axis."""

    def __init__(self, channels, dim, eps=1e-5, momentum=0.1, affine=True):
        super().__init__(channels, eps=eps, momentum=momentum, affine=affine)
        self.dim = dim

    def forward(self, x):
        y = x.movedim(self.dim, -1)
        return super().forward(y.reshape(-1, y.shape[-1])).reshape(y.shape).movedim(-1, self.dim)


class UnifiedNorm(nn.Module):
    """Unified Normalization (Yang et al. 2022) of the channel axis at `dim`.

    Training: z = x / sqrt(v + eps) with v per channel the geometric mean of the last `window`
    batches' mean of x² (each batch's own until `warmup` steps and the window have passed; its
    own too when outlier filtration skips it); y = weight z + bias. Backward: g = dy weight r,
    dx = (g - nu z) / sqrt(v + eps), nu a moving average of the window's mean of g·z and r the
    clamped ratio sqrt(v + eps) / sqrt(running_var + eps). Inference: v = running_var."""

    def __init__(self, channels, dim, eps=1e-5, momentum=0.1, affine=True, window=4,
                 warmup=4000, outlier=True, compensate_after=1000):  # fmt: skip
        super().__init__()
        self.dim, self.eps, self.momentum, self.window = dim, eps, momentum, window
        self.warmup, self.outlier, self.compensate_after = warmup, outlier, compensate_after
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("running_gz", torch.zeros(channels))
        self.register_buffer("window_var", torch.zeros(window, channels))
        self.register_buffer("window_gz", torch.zeros(window, channels))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("skips", torch.zeros((), dtype=torch.long))

    def extra_repr(self):
        affine = self.weight is not None
        return (f"{self.running_var.shape[0]}, dim={self.dim}, eps={self.eps}, "
                f"momentum={self.momentum}, affine={affine}, window={self.window}")  # fmt: skip

    class Train(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight, bias, un):  # x [N, C]
            t, n = int(un.steps) + 1, un.window
            un.steps.fill_(t)
            q = x.pow(2).mean(0)
            spread = un.window_var.sqrt().var()  # of the window before this batch
            un.window_var[t % n] = q
            skip = n == 1
            if un.outlier and t >= un.warmup:
                gm = un.window_var.log().mean(0).exp()
                if bool((un.window_var.mean(0) - gm > n * spread).any()):
                    un.window_var[t % n] = un.running_var
                    un.skips += 1
                    skip = True
            own = skip or t <= n or t < un.warmup
            v = q if own else un.window_var.log().mean(0).exp()
            r = ((v + un.eps) / (un.running_var + un.eps)).sqrt().clamp(0.2, 5.0)
            if skip or t <= max(un.compensate_after, un.warmup):
                r = torch.ones_like(r)
            z = x * torch.rsqrt(v + un.eps)
            un.running_var.mul_(1 - un.momentum).add_(un.momentum * v)
            ctx.un, ctx.t, ctx.skip, ctx.own = un, t, skip, own
            ctx.save_for_backward(z, v, r, weight)
            return z if weight is None else z * weight + bias

        @staticmethod
        def backward(ctx, dy):
            z, v, r, weight = ctx.saved_tensors
            un, n = ctx.un, ctx.un.window
            g = dy * r if weight is None else dy * weight * r
            gz = (g * z).mean(0)
            un.window_gz[ctx.t % n] = un.running_gz if ctx.skip else gz
            nu = gz if ctx.own else un.window_gz.mean(0)
            un.running_gz.mul_(1 - un.momentum).add_(un.momentum * nu)
            dx = (g - (nu if ctx.skip else un.running_gz) * z) * torch.rsqrt(v + un.eps)
            if weight is None:
                return dx, None, None, None
            return dx, (dy * r * z).sum(0), dy.sum(0), None

    def forward(self, x):
        y = x.movedim(self.dim, -1)
        if self.training:
            flat = self.Train.apply(y.reshape(-1, y.shape[-1]), self.weight, self.bias, self)
            return flat.reshape(y.shape).movedim(-1, self.dim)
        y = y * torch.rsqrt(self.running_var + self.eps)
        if self.weight is not None:
            y = y * self.weight + self.bias
        return y.movedim(-1, self.dim)


def softmax(x, dim: int, log: bool = False):
    """(log-)softmax over `dim`, computed in the tensor's memory order: a contraction returns
    a permuted view, and torch.softmax would copy it to row-major first (and the next
    contraction would copy it back)."""
    fn = torch.log_softmax if log else torch.softmax
    if not isinstance(x, torch.Tensor) or x.is_contiguous():  # (a traced value: plain call)
        return fn(x, dim)
    order = sorted(range(x.dim()), key=lambda d: x.stride(d), reverse=True)
    y = x.permute(order)
    if not y.is_contiguous():
        return fn(x, dim)
    return fn(y, order.index(dim)).permute([order.index(d) for d in range(x.dim())])


def causal_mask(x, query: int, key: int, window: int = 0, fill: float = float("-inf")):
    """x with entries where key > query (or key <= query - window) set to `fill`, in x's
    memory layout (`torch.where` keeps a permuted input's strides; masked_fill would copy)."""
    i = torch.arange(x.shape[query], device=x.device)[:, None]
    j = torch.arange(x.shape[key], device=x.device)[None, :]
    drop = (j > i) | (j <= i - window) if window else j > i
    if query > key:
        drop = drop.T
    shape = [1] * x.dim()
    shape[query], shape[key] = x.shape[query], x.shape[key]
    return torch.where(drop.reshape(shape), fill, x)


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


def traced() -> bool:
    """Whether this call is being traced (torch.compile, torch.export, torch.jit.trace), where
    tensors' values cannot be read on the host."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def check_offsets(offsets, T, what):
    """Packed-sequence offsets [N + 1] along an axis of T positions: integers, from 0 to T,
    non-decreasing; else a ValueError naming `what` (the values are read on the host).
    Traced (torch.compile, torch.export, torch.jit.trace), where no value can be read on the
    host, the graph checks CPU offsets itself (a RuntimeError with the same message); CUDA
    offsets are trusted there, as a failed device-side assert ends the process's CUDA use."""
    if offsets.dim() != 1 or offsets.numel() < 2 or offsets.is_floating_point():
        raise ValueError(
            f"{what}: offsets: expected a 1-D integer tensor [N + 1], found "
            f"{offsets.dtype} of shape {tuple(offsets.shape)}"
        )
    want = f"{what}: offsets: expected non-decreasing from 0 to T={T}"
    if traced():
        if not offsets.is_cuda:
            ok = (offsets[0] == 0) & (offsets[-1] == T) & (offsets[1:] >= offsets[:-1]).all()
            torch._assert_async(ok, want)
        return
    o = offsets.tolist()
    if o[0] != 0 or o[-1] != T or any(b < a for a, b in zip(o, o[1:])):
        shown = o if len(o) <= 8 else [*o[:4], "...", *o[-3:]]
        raise ValueError(f"{want}, found {shown}")


def packed_positions(offsets, T):
    """Each of T packed tokens' place in its sequence [T] (0 at a sequence's first token),
    from offsets [N + 1] (checked), on the device: shapes do not depend on the offsets."""
    off = offsets.long()
    t = torch.arange(T, device=offsets.device)
    return t - off[torch.searchsorted(off[1:].contiguous(), t, right=True)]


def short_conv(x, weight, bias=None, *, activation=None, cu_seqlens=None):
    """act(causal depthwise convolution over T) of x [B, T, C] (channels last), weight
    [C, 1, W] (nn.Conv1d's): PyTorch's conv1d padded W - 1 on both sides, the first T outputs
    kept, then SiLU when activation is "silu" (the fallback of ncd.ops.short_conv). Packed
    sequences (cu_seqlens, batch 1): each sequence convolved alone, as one product of the W
    taps of every token with those before its sequence's start dropped."""
    T, W = x.shape[1], weight.shape[-1]
    if cu_seqlens is not None:
        check_offsets(cu_seqlens, T, "short_conv")
        pos = packed_positions(cu_seqlens.to(x.device), T)
        taps = F.pad(x, (0, 0, W - 1, 0)).unfold(1, W, 1)  # [B, T, C, W]: x_{t-W+1} .. x_t
        back = torch.arange(W - 1, -1, -1, device=x.device)  # how far back each tap reads
        taps = torch.where((back <= pos[:, None])[:, None, :], taps, 0.0)  # [T, 1, W]
        y = (taps * weight[:, 0]).sum(-1)
        y = y if bias is None else y + bias
        return F.silu(y) if activation == "silu" else y
    y = F.conv1d(x.transpose(1, 2), weight, bias, padding=W - 1, groups=x.shape[2])
    y = y[..., :T].transpose(1, 2)
    return F.silu(y) if activation == "silu" else y


def rotary(x, seq: int, feature: int, base: float = 10000.0, rotated: int = 0,
           interleaved: bool = False, start=None, cu_seqlens=None):  # fmt: skip
    """Rotary position embedding (RoFormer) of x, positions along dim `seq`, feature pairs
    along dim `feature`: each pair (a, b) of the first `rotated` features (all when 0) at
    position p turned by p·θ_i, θ_i = base^(-2i/rotated): (a cos - b sin, b cos + a sin).
    Pairs are features i and i + rotated/2 (LLaMA's rotate_half), or 2i and 2i + 1 where
    `interleaved` (GPT-J). Positions 0 … T-1, plus `start` (integers that broadcast against
    x's other dims in their order), or counted from each packed sequence's first token
    (cu_seqlens [N + 1]). Angles in float32 (float64 for float64 x), their cos
    and sin in x's dtype, as Hugging Face's LLaMA computes them."""
    y = x.movedim((seq, feature), (-2, -1))
    T, n = y.shape[-2], y.shape[-1]
    d = rotated or n
    ftype = torch.float64 if x.dtype == torch.float64 else torch.float32
    if cu_seqlens is not None:
        check_offsets(cu_seqlens, T, "rotary")
        pos = packed_positions(cu_seqlens.to(x.device), T).to(ftype)
    else:
        pos = torch.arange(T, device=x.device, dtype=ftype)
    if start is not None:
        pos = start[..., None].to(device=x.device, dtype=ftype) + pos  # [..., 1] + [T]
    inv = 1.0 / base ** (torch.arange(0, d, 2, device=x.device, dtype=ftype) / d)
    angle = pos[..., None] * inv  # [..., T, d/2]
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    # views by split and unbind, whose backward joins the gradients in one tensor (a slice's
    # fills a zero tensor of the whole); the turned halves live only while they are joined
    r, rest = y.split((d, n - d), -1) if d < n else (y, None)
    if interleaved:  # pairs (2i, 2i + 1)
        a, b = r.unflatten(-1, (d // 2, 2)).unbind(-1)
        out = torch.stack((a * cos - b * sin, b * cos + a * sin), -1).flatten(-2)
    else:  # pairs (i, i + d/2)
        a, b = r.unflatten(-1, (2, d // 2)).unbind(-2)
        out = torch.cat((a * cos - b * sin, b * cos + a * sin), -1)
    if rest is not None:
        out = torch.cat((out, rest), -1)
    return out.movedim((-2, -1), (seq, feature))


def fft_length(n):
    """The smallest 2^a 3^b 5^c >= n: a length whose real FFTs pocketfft (the CPU's) and
    cuFFT run at full speed, the rule of scipy.fft.next_fast_len(n, real=True)."""
    best = 1 << max(n - 1, 0).bit_length()  # the next power of two bounds the search
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def long_conv(x, h, dim):
    """Causal convolution of x with the filter h along dim, y[t] = sum_{s <= t} h[t - s] x[s]
    (Hyena's fftconv): h broadcasts against x but along dim, where it holds L <= T taps.
    Computed as a product of real FFTs of length n >= T + L - 1, so that the circular
    convolution's wrap-around lands past the T outputs kept; in float32 at least, since torch
    has no FFT of bfloat16 (of float16 only on CUDA, at powers of two) and a transform's
    rounding error is spread over every output in proportion to the whole signal's norm,
    which 16-bit precision would leave larger than the small outputs. Then cast to x's type
    promoted with h's."""
    dim = dim - x.dim() if dim >= 0 else dim  # h may lack x's leading dims
    T, L = x.shape[dim], h.shape[dim]
    if L > T:
        raise ValueError(f"long_conv: filter: expected at most T={T} taps, found {L}")
    out = torch.promote_types(x.dtype, h.dtype)
    ftype = torch.promote_types(out, torch.float32)
    n = fft_length(T + L - 1)
    xf = torch.fft.rfft(x.movedim(dim, -1).to(ftype), n=n)
    hf = torch.fft.rfft(h.movedim(dim, -1).to(ftype), n=n)
    y = torch.fft.irfft(xf * hf, n=n)[..., :T]
    # a copy of the T kept, so that the output does not hold the whole n-long result
    return y.to(out).contiguous().movedim(-1, dim)


def positions(n: int, dtype=torch.float32, like=None, start=None, cu_seqlens=None):
    """The positions 0 … n-1 along an axis [n]; with `start` (integers [...]), start[..., None]
    + 0 … n-1 [..., n]; with `cu_seqlens` ([N + 1] offsets of sequences packed along the
    axis), each position's index within its sequence [n]. On `like`'s device; float32, the
    circuit's float type, takes `like`'s dtype where `like` is a float tensor (a module run
    in float64 or bfloat16). A float type holds integers exactly only up to 2/eps (256 in
    bfloat16, 2048 in float16): positions past it would repeat, and are a ValueError (a
    start's values are read on the host for a 16-bit type, except when traced)."""
    device = None if like is None else like.device
    if dtype == torch.float32 and like is not None and like.is_floating_point():
        dtype = like.dtype
    if cu_seqlens is not None:
        check_offsets(cu_seqlens, n, "positions")
        return packed_positions(cu_seqlens.to(device), n).to(dtype)  # each below n
    top = n - 1
    if start is not None:
        start = start.to(device)
        if dtype.is_floating_point and torch.finfo(dtype).bits == 16 and not traced():
            top += int(start.abs().max()) if start.numel() else 0
    exact = int(2 / torch.finfo(dtype).eps) if dtype.is_floating_point else top
    if top > exact:
        raise ValueError(
            f"positions: {str(dtype).removeprefix('torch.')} holds integers exactly only up to "
            f"{exact}, found positions up to {top}: make the box's dtype int32 or int64, or "
            "run the module in float32"
        )
    pos = torch.arange(n, device=device, dtype=dtype)
    return pos if start is None else start[..., None].to(dtype) + pos


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


def lightning_decay(heads: int, like: torch.Tensor | None = None, rate: float = 1.0):
    """Fixed per-head decay of the `lightning` variant, exp(-rate 2^(-8h/H)) for h = 1 .. H
    (the ALiBi slopes; as `ncd.circuits.kinds.LinearAttention.lightning_decay`, written in
    torch so that generated files stay standalone). float64 when `like` is, else float32."""
    h = torch.arange(1, heads + 1, dtype=torch.float64)
    dtype = torch.float64 if like is not None and like.dtype == torch.float64 else torch.float32
    decay = torch.exp(-rate * 2.0 ** (-8.0 * h / heads)).to(dtype)
    return decay if like is None else decay.to(like.device)


def split_along(xs, sizes, dim):
    """The tensors xs cut along `dim`, one split each: `sizes` the pieces' lengths, or one
    chunk length (the last piece shorter; an empty axis gives none). Returns a tuple of
    pieces per piece. Autograd joins the pieces' gradients with one concatenation, where
    indexing a piece at a time fills a zero gradient of the whole size for every piece."""
    if isinstance(sizes, int) and xs[0].shape[dim] == 0:
        return []
    return list(zip(*(x.split(sizes, dim) for x in xs)))


def gla(q, k, v, g, scale=None, cu_seqlens=None, backend=None, chunk=64):
    """Gated linear attention, S_t = diag(exp g_t) S_{t-1} + k_tᵀ v_t and
    o_t = scale q_t S_t, on q, k [B, T, G, K], v [B, T, H, V], value head h reading q/k head
    h // (H/G) (G = H: one each), and log-gates g [B, T, H, K] (or [B, T, H, 1], one per
    token and head); scale None means K**-0.5; every sequence that `cu_seqlens` ([N + 1]
    offsets, B = 1) packs along T starts from a zero state. The chunked form in plain
    PyTorch (the fallback of ncd.ops.gla; `backend` is not read): a loop over chunks, within
    one the weights exp(b_i - b_j) of the in-chunk cumulative gates b as one product of
    queries and keys scaled by exp(±(b - b_m)) (m the middle row) where every
    |b - b_m| <= 40, else each weight from its own difference. The value heads are taken as
    [G, H/G], q and k broadcast over each group's heads. Returns (o in v's dtype, None)."""
    B, T, n_qk, K = q.shape
    H, V = v.shape[2:]
    R = H // n_qk
    scale = (K**-0.5 if K else 1.0) if scale is None else scale
    out_dtype, ct = v.dtype, torch.promote_types(q.dtype, torch.float32)
    q, k = (x.to(ct)[:, :, :, None] for x in (q, k))  # [B, T, G, 1, K]
    v, g = (x.to(ct).unflatten(2, (n_qk, R)) for x in (v, g))  # [B, T, G, R, .]
    lengths = [T] if cu_seqlens is None else cu_seqlens.diff().tolist()
    outs = []
    for seq in split_along((q, k, v, g), lengths, 1):
        s = v.new_zeros(B, n_qk, R, K, V)  # the state, K x V per head
        for qc, kc, vc, gc in split_along(seq, chunk, 1):
            b = gc.cumsum(1)
            n = b.shape[1]
            b = b.expand(B, n, n_qk, R, K)  # [B, n, G, R, K]
            causal = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
            rel = b - b[:, n // 2 : n // 2 + 1]
            # traced: no host read
            small = not traced() and float(rel.detach().abs().max()) <= 40.0
            if small:
                a = torch.einsum("bigrk,bjgrk->bgrij", qc * rel.exp(), kc * (-rel).exp())
                a = a.masked_fill(~causal, 0.0)  # [B, G, R, i, j]
            else:
                lag = b[:, :, None] - b[:, None, :]
                decay = torch.where(causal[..., None, None, None], lag, -math.inf).exp()
                a = torch.einsum("bigrk,bjgrk,bijgrk->bgrij", qc, kc, decay)
            o = torch.einsum("bigrk,bgrkv->bigrv", qc * b.exp(), s)
            o = scale * (o + torch.einsum("bgrij,bjgrv->bigrv", a, vc))
            outs.append(o.flatten(2, 3))
            last = b[:, -1]  # [B, G, R, K]
            kd = kc * (last[:, None] - b).exp()
            s = last.exp()[..., None] * s + torch.einsum("bjgrk,bjgrv->bgrkv", kd, vc)
    o = torch.cat(outs, 1) if outs else v.flatten(2, 3)
    return o.to(out_dtype), None


def simple_gla(q, k, v, g, scale=None, cu_seqlens=None, backend=None, chunk=64):
    """Linear attention with a scalar log-decay per token and head, g [B, T, H] (or [H],
    one per head): S_t = exp(g_t) S_{t-1} + k_tᵀ v_t, o_t = scale q_t S_t, on q, k
    [B, T, G, K] and v [B, T, H, V], value head h reading q/k head h // (H/G) (G = H: one
    each); scale None means K**-0.5; every sequence that `cu_seqlens` ([N + 1] offsets,
    B = 1) packs along T starts from a zero state. The chunked form in plain PyTorch (the
    fallback of ncd.ops.simple_gla; `backend` is not read): per chunk, with G the in-chunk
    cumulative log-decay, E_ij = exp(G_i - G_j) for i ≥ j and S the entering state,
    O = scale ((Q Kᵀ ∘ E) V + diag(exp G) Q S) and
    S ← exp(G_last) S + Kᵀ diag(exp(G_last - G)) V.
    The value heads are taken as [G, H/G], so that the products broadcast q and k over
    each group's heads (einsum, not repeated copies); log-decays below -64 count as -64,
    so that a reset (-inf) stays finite. Returns (o in v's dtype, None)."""
    B, T, n_qk, K = q.shape
    H, V = v.shape[2:]
    scale = (K**-0.5 if K else 1.0) if scale is None else scale
    out_dtype, ct = v.dtype, torch.promote_types(q.dtype, torch.float32)
    g = g.expand(B, T, H) if g.dim() == 1 else g
    q, k = (x.to(ct).transpose(1, 2)[:, :, None] for x in (q, k))  # [B, G, 1, T, K]
    v = v.to(ct).transpose(1, 2).unflatten(1, (n_qk, H // n_qk))  # [B, G, R, T, V]
    g = g.to(ct).clamp(min=-64.0).transpose(1, 2)
    g = g.unflatten(1, (n_qk, H // n_qk))[..., None]  # [B, G, R, T, 1]
    lengths = [T] if cu_seqlens is None else cu_seqlens.diff().tolist()
    outs = []
    for seq in split_along((q, k, v, g), lengths, 3):
        s = v.new_zeros(B, n_qk, H // n_qk, K, V)  # the state, K x V per head
        for qc, kc, vc, gc in split_along(seq, chunk, 3):
            G = gc[..., 0].cumsum(-1)  # [B, G, R, n]
            n = G.shape[-1]
            causal = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
            E = torch.where(causal, G[..., :, None] - G[..., None, :], -math.inf).exp()
            a = torch.einsum("bgxik,bgxjk->bgxij", qc, kc) * (scale * E)  # [B, G, R, n, n]
            qs = torch.einsum("bgxik,bgrkv->bgriv", qc, s)
            outs.append(a @ vc + qs * (scale * G.exp())[..., None])
            last = G[..., -1:]  # [B, G, R, 1]
            vd = vc * (last - G).exp()[..., None]
            s = last.exp()[..., None] * s + torch.einsum("bgxjk,bgrjv->bgrkv", kc, vd)
    o = torch.cat(outs, 3) if outs else v
    return o.flatten(1, 2).transpose(1, 2).to(out_dtype), None


def gated_delta_rule(q, k, v, g, beta, scale=None, cu_seqlens=None, backend=None, chunk=64):
    """The gated delta rule, S_t = a_t S_{t-1} + β_t k_tᵀ (v_t - a_t k_t S_{t-1}) with
    a_t = exp(g_t) and o_t = scale q_t S_t, on q, k [B, T, G, K], v [B, T, H, V], value
    head h reading q/k head h // (H/G) (G = H: one each), log-decays g and strengths beta
    [B, T, H]; scale None means K**-0.5; sequences packed by `cu_seqlens` as in `gla`. The
    chunked (WY) form in plain PyTorch (the fallback of ncd.ops.gated_delta_rule): per
    chunk, with G the in-chunk cumulative log decay, E_ij = exp(G_i - G_j) and S the
    entering state, the corrected values
    V' = (I + strictly_lower(diag β (K Kᵀ ∘ E)))⁻¹ diag β (V - diag(exp G) K S),
    then O = scale (diag(exp G) Q S + (Q Kᵀ ∘ E, causal) V') and
    S ← exp(G_last) S + (exp(G_last - G) K)ᵀ V'. The value heads are taken as [G, H/G], q
    and k broadcast over each group's heads. Returns (o in v's dtype, None)."""
    B, T, n_qk, K = q.shape
    H, V = v.shape[2:]
    R = H // n_qk
    scale = (K**-0.5 if K else 1.0) if scale is None else scale
    out_dtype, ct = v.dtype, torch.promote_types(q.dtype, torch.float32)
    # [B, G, 1 or R, T, .] so that the chunk's products are batched matrix products
    q, k = (x.to(ct).transpose(1, 2)[:, :, None] for x in (q, k))
    v, g, beta = (x.to(ct).transpose(1, 2).unflatten(1, (n_qk, R)) for x in (v, g, beta))
    lengths = [T] if cu_seqlens is None else cu_seqlens.diff().tolist()
    outs = []
    for seq in split_along((q, k, v, g[..., None], beta[..., None]), lengths, 3):
        s = v.new_zeros(B, n_qk, R, K, V)
        for qc, kc, vc, gc, bc in split_along(seq, chunk, 3):
            G = gc[..., 0].cumsum(-1)  # [B, G, R, n]
            n = G.shape[-1]
            causal = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
            E = torch.where(causal, G[..., :, None] - G[..., None, :], -math.inf).exp()
            lower = torch.eye(n, dtype=ct, device=q.device) + (bc * (kc @ kc.mT) * E).tril(-1)
            rhs = bc * (vc - G.exp()[..., None] * (kc @ s))
            vn = torch.linalg.solve_triangular(lower, rhs, upper=False, unitriangular=True)
            outs.append(scale * (G.exp()[..., None] * (qc @ s) + (qc @ kc.mT * E) @ vn))
            last = G[..., -1:]  # [B, G, R, 1]
            s = last.exp()[..., None] * s + (kc * (last - G).exp()[..., None]).mT @ vn
    o = torch.cat(outs, 3) if outs else v
    return o.flatten(1, 2).transpose(1, 2).to(out_dtype), None


def delta_rule(q, k, v, beta, scale=None, cu_seqlens=None, backend=None):
    """The delta rule, S_t = S_{t-1} + β_t k_tᵀ (v_t - k_t S_{t-1}), o_t = scale q_t S_t:
    `gated_delta_rule` without decay (the fallback of ncd.ops.delta_rule). Returns (o, None)."""
    return gated_delta_rule(q, k, v, torch.zeros_like(beta), beta, scale, cu_seqlens)


def softmax_attention(q, k, v, causal=False, scale=None):
    """softmax(scale q kᵀ [causal]) v on [B, T, H, K] tensors (PyTorch's SDPA; the fallback
    of ncd.ops.softmax_attention)."""
    o = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal, scale=scale
    )
    return o.transpose(1, 2)


def masked_attention(q, k, v, mask, causal=False, scale=None):
    """softmax(scale q kᵀ + mask [causal]) v on [..., T, K] tensors (SDPA's layout), `mask`
    [..., T, S] broadcast against the scores: a keep-mask (True: attend) or a float bias.
    With `causal` both apply. A query left no key gives 0 and no gradient on every SDPA
    backend (some give NaN): SDPA sees its row unmasked, and its output is zeroed."""
    if causal:  # SDPA takes is_causal or a mask, not both
        below = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
        mask = mask & below if mask.dtype == torch.bool else mask.where(below, float("-inf"))
    if mask.dtype == torch.bool:
        alive = mask.any(-1, keepdim=True)
        mask = mask | ~alive
    else:
        mask = mask.to(q.dtype)  # SDPA's bias has the queries' type
        alive = (mask > float("-inf")).any(-1, keepdim=True)
        mask = mask.masked_fill(~alive, 0.0)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    return o.masked_fill(~alive, 0.0)


def linear_attention(q, k, v, decay=None, causal=True, normalize=False, scale=1.0,
                     backend=None, chunk=64):  # fmt: skip
    """Causal linear attention on q, k [B, T, G, K] and v [B, T, H, V] (value head h reading
    q/k head h // (H/G); G = H: one each), o_t = scale Σ_{s≤t} λ^(t-s) (q_t·k_s) v_s with
    λ = `decay` [H] (1 when None); `normalize` divides by the same sum with v = 1, carried as
    one more value column (+ 1e-10; a row whose sum is 0 gives 0). The chunked form of
    `simple_gla` with the constant log-decay log λ (the fallback of ncd.ops.linear_attention).
    Returns (o in v's dtype, None)."""
    if not causal:  # as ncd.ops.linear_attention: the compiler lowers the rest as products
        raise ValueError("linear_attention: causal: expected True, found False")
    out_dtype, ct = v.dtype, torch.promote_types(q.dtype, torch.float32)
    H = v.shape[2]
    v = v.to(ct)
    if normalize:
        v = torch.cat([v, torch.ones_like(v[..., :1])], -1)
    lg = v.new_zeros(H) if decay is None else decay.to(ct).log()  # log λ per head
    o, _ = simple_gla(q, k, v, lg, scale, chunk=chunk)
    if normalize:  # 0 with no gradient where the denominator is 0, as ncd.ops.linear_attention
        num, den = o[..., :-1], o[..., -1:]
        o = torch.where(den == 0, 0.0, num / torch.where(den == 0, 1.0, den + 1e-10))
    return o.to(out_dtype), None


class Opaque(nn.Module):
    """Runs a callable ncd cannot see into (kept in memory, never in a spec); `name` is the
    key it is given by in `opaque={name: fn}`, for the error where none was."""

    def __init__(self, fn=None, name=""):
        super().__init__()
        self.fn = fn
        self.name = name

    def extra_repr(self):
        return repr(self.name)

    def forward(self, *args):
        if self.fn is None:
            raise RuntimeError(
                f"opaque box {self.name!r} has no callable (a spec keeps none); pass it as "
                f"opaque={{{self.name!r}: fn}} to the module's constructor or to ncd.compile"
            )
        return self.fn(*args)


# Comparisons: 1 where they hold, 0 elsewhere, in the operands' promoted type.
def compare_ge(a, b):
    return torch.ge(a, b).to(torch.promote_types(a.dtype, b.dtype))


def compare_gt(a, b):
    return torch.gt(a, b).to(torch.promote_types(a.dtype, b.dtype))


def compare_le(a, b):
    return torch.le(a, b).to(torch.promote_types(a.dtype, b.dtype))


def compare_lt(a, b):
    return torch.lt(a, b).to(torch.promote_types(a.dtype, b.dtype))


def compare_eq(a, b):
    return torch.eq(a, b).to(torch.promote_types(a.dtype, b.dtype))


# Helpers that call other helpers: the source emitter copies these along.
DEPS = {
    "Param": ["Held"],
    "Constant": ["Held"],
    "conv": ["channels_first", "channels_back"],
    "group_norm": ["channels_first", "channels_back"],
    "gla": ["split_along", "traced"],
    "simple_gla": ["split_along"],
    "gated_delta_rule": ["split_along"],
    "linear_attention": ["simple_gla"],
    "delta_rule": ["gated_delta_rule"],
    "check_offsets": ["traced"],
    "short_conv": ["check_offsets", "packed_positions", "traced"],
    "rotary": ["check_offsets", "packed_positions", "traced"],
    "long_conv": ["fft_length"],
    "positions": ["check_offsets", "packed_positions", "traced"],
    "packed_window_attention": ["check_offsets", "packed_positions", "gla", "traced"],
    "PackedScan": ["check_offsets", "packed_positions", "traced"],
}


class PackedScan(nn.Module):
    """`scan(q, k, v, *gates, cu_seqlens=offsets, **kw)`: a recurrence of ncd.ops (simple_gla,
    gla, delta_rule, gated_delta_rule) on sequences packed along T (q [1, T, H, K], offsets
    [N + 1]). Traced (torch.compile, torch.export, torch.jit.trace), where the offsets cannot
    be read on the host, the same recurrence runs over all T tokens with a log-decay of -64
    at each sequence's first token, so that shapes do not depend on the offsets: the state
    enters a sequence multiplied by exp(-64) (the ops take -inf as -64 too; -inf itself
    would give NaN in the plain fallbacks). `gated` (gated_delta_rule) then stands in for
    delta_rule, which has no log-decay. Returns what `scan` returns."""

    def __init__(self, scan, gated=None):
        super().__init__()
        self.scan, self.gated = scan, gated

    def extra_repr(self):
        return self.scan.__name__

    def forward(self, q, k, v, *gates, offsets, **kw):
        if not traced():
            return self.scan(q, k, v, *gates, cu_seqlens=offsets, **kw)
        B, T, H = (*q.shape[:2], v.shape[2])  # H: the values' heads (q, k may be grouped)
        check_offsets(offsets, T, self.scan.__name__)
        first = packed_positions(offsets.to(q.device), T) == 0  # [T]: a sequence's first token
        if self.gated is None:
            scan, g, rest = self.scan, gates[0], gates[1:]
        else:  # the delta rule: the gated rule with log-decays of 0
            scan, g, rest = self.gated, q.new_zeros(B, T, H), gates
        g = g.expand(B, T, H) if g.dim() == 1 else g  # [H]: one log-decay per head
        g = g.masked_fill(first.view(1, T, *[1] * (g.dim() - 2)), -64.0)
        return scan(q, k, v, g, *rest, **kw)


def packed_window_attention(q, k, v, offsets, normalize=False, scale=1.0):
    """Non-causal linear attention inside the windows of a packed sequence: q, k [T, H, K],
    v [T, H, V], offsets the N window starts then T. o_t = scale q_t Σ_{s in w(t)} k_sᵀ v_s,
    divided by scale q_t · Σ_{s in w(t)} k_s + 1e-10 when `normalize`. The windows are padded
    to the longest and multiplied as one batch (no loop over windows or tokens). Traced
    (torch.compile, torch.export, torch.jit.trace), where the longest window's length cannot
    be read on the host: the sum over s <= t plus the sum over s >= t less the term s = t,
    each a causal scan (`gla`) restarted at every window, so shapes do not depend on it."""
    T = q.shape[0]
    check_offsets(offsets, T, "packed_window_attention")
    q = q * scale
    if normalize:  # the denominators as one more value column of ones
        v = torch.cat([v, torch.ones_like(v[..., :1])], -1)
    if traced():
        first = packed_positions(offsets.to(q.device), T) == 0  # [T]: a window's first token
        last = torch.cat([first[1:], first.new_ones(1)])  # [T]: a window's last token

        def scan(x, restart):  # Σ_{s <= t in w(t)} (q_t · k_s) v_s, x = (q, k, v) [T, H, .]
            g = torch.where(restart, -64.0, 0.0).to(q.dtype)  # a log-decay: exp(-64) at a restart
            g = g[None, :, None, None].expand(1, T, q.shape[1], 1)
            return gla(*(t[None] for t in x), g, scale=1.0, chunk=64)[0][0]

        fwd = scan((q, k, v), first)
        bwd = scan([t.flip(0) for t in (q, k, v)], last.flip(0)).flip(0)
        o = fwd + bwd - (q * k).sum(-1, keepdim=True) * v
    else:
        offsets = offsets.to(device=q.device, dtype=torch.long)
        t = torch.arange(T, device=q.device)
        win = torch.searchsorted(offsets[1:], t, right=True)  # each token's window
        pos = t - offsets[win]  # its place in the window
        n, width = offsets.numel() - 1, int((offsets[1:] - offsets[:-1]).max())

        def padded(x):  # [T, H, F] -> [N, width, H, F], zeros past each window's end
            return x.new_zeros(n, width, *x.shape[1:]).index_put((win, pos), x)

        kv = torch.einsum("nlhk,nlhv->nhkv", padded(k), padded(v))  # Σ kᵀv per window
        o = torch.einsum("nlhk,nhkv->nlhv", padded(q), kv)[win, pos]
    return o[..., :-1] / (o[..., -1:] + 1e-10) if normalize else o


def wtacrs_linear(x, weight, bias=None, budget=0.3):
    """x Wᵀ + b. With ncd, the weight's gradient is estimated from winner-take-all column-row
    samples of x's rows and only those rows are kept (ncd.ops.wtacrs_linear); without it,
    this exact map, whose gradient is that estimate's expectation."""
    return F.linear(x, weight, bias)


def lmul_linear(x, weight, bias=None, mantissa_bits=4):
    """y[..., j] = Σ_k L-Mul(x[..., k], weight[j, k]) + bias[j] (Luo & Sun 2024): mantissas
    truncated to m bits, (1 + x_m + y_m + 2^-l(m)) 2^(x_e + y_e), the mantissa sum carrying
    into the exponent where it reaches 1; results outside the format's normal range are ±0
    or ±inf. Gradients as for exact products. By value, for float32 and float64."""
    m = mantissa_bits
    emin, emax = (-126, 127) if x.dtype != torch.float64 else (-1022, 1023)
    a, b = x[..., None, :].detach(), weight.detach()
    fa, ea = torch.frexp(a.abs())
    fb, eb = torch.frexp(b.abs())
    fa, fb = torch.floor((2 * fa - 1) * 2**m) / 2**m, torch.floor((2 * fb - 1) * 2**m) / 2**m
    s = fa + fb + 2.0 ** -(m if m <= 3 else 3)
    e = (ea + eb - 2).to(x.dtype) + (s >= 1).to(x.dtype)
    mag = torch.where(s < 1, 1 + s, s) * torch.exp2(e)
    mag = torch.where(e > emax, float("inf"), mag)
    small = (e < emin) | (a.abs() < 2.0**emin) | (b.abs() < 2.0**emin)
    prod = torch.where(torch.signbit(a) ^ torch.signbit(b), -mag, mag).masked_fill(small, 0.0)
    prod = torch.where(torch.isfinite(a) & torch.isfinite(b), prod, a * b)
    exact = F.linear(x, weight)
    y = prod.sum(-1) + (exact - exact.detach())  # the values of L-Mul, the gradient of x Wᵀ
    return y if bias is None else y + bias


# Integer-only inference: buffers loaded with the weights (quantised, not trained) and the
# dyadic requantisation.
class Constant(Held):
    """A fixed tensor `value` of `shape` and `dtype`, filled with `fill` (or loaded with the
    weights, an imported table whose elements differ). Optional when loading (`Held`), unless
    `state`: a buffer of the imported model's own state_dict."""

    def __init__(self, shape, dtype=torch.int32, fill=0, state=False):
        super().__init__()
        self.register_buffer("value", torch.full(tuple(shape), fill, dtype=dtype))
        self.optional = () if state else ("value",)

    def extra_repr(self):
        return f"{tuple(self.value.shape)}, dtype={self.value.dtype}"


class IntLinear(nn.Module):
    """An integer linear map's int8 `weight` [*out, *over] and int32 `bias` [*out]."""

    def __init__(self, out_shape, in_shape, bias=True):
        super().__init__()
        self.register_buffer("weight", torch.zeros(*out_shape, *in_shape, dtype=torch.int8))
        b = torch.zeros(*out_shape, dtype=torch.int32) if bias else None
        self.register_buffer("bias", b)

    def extra_repr(self):
        return f"weight={tuple(self.weight.shape)}, bias={self.bias is not None}"


class Requantize(nn.Module):
    """A dyadic requantisation's int32 `multiplier` b and `shift` c (of shape `shape`)."""

    def __init__(self, shape=()):
        super().__init__()
        self.register_buffer("multiplier", torch.ones(tuple(shape), dtype=torch.int32))
        self.register_buffer("shift", torch.zeros(tuple(shape), dtype=torch.int32))

    def extra_repr(self):
        return str(tuple(self.multiplier.shape))


def requantize(x, multiplier, shift, low: int, high: int, dtype=torch.int8):
    """clamp((x·b + 2^(c−1)) >> c, low, high) in int64, as `dtype`."""
    b, c = multiplier.to(torch.int64), shift.to(torch.int64)
    half = torch.bitwise_left_shift(torch.ones_like(c), c) >> 1
    y = torch.bitwise_right_shift(x.to(torch.int64) * b + half, c)
    return torch.clamp(y, low, high).to(dtype)


def int8_matmul(a, b, bias=None):
    """a [..., K] @ b [K, N] of int8 values as int32 [..., N], plus an int32 `bias` [N]. The
    products are summed in float64, exact on any device (|sum| <= K 2^14 < 2^53)."""
    y = torch.matmul(a.to(torch.float64), b.to(torch.float64)).to(torch.int32)
    return y if bias is None else y + bias


class BatchedMatmul(nn.Module):
    """`matmul` (an integer product of [M, K] by [K, N], such as int8_matmul) over the
    leading axes that a [..., M, K] and b [..., K, N] share, one call per batch element:
    [..., M, N] (int32 where the batch is empty)."""

    def __init__(self, matmul):
        super().__init__()
        self.matmul = matmul

    def extra_repr(self):
        return getattr(self.matmul, "__name__", "")

    def forward(self, a, b):
        lead = a.shape[:-2]
        a3, b3 = a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:])
        if a3.shape[0] == 0:
            return a.new_zeros(*lead, a.shape[-2], b.shape[-1], dtype=torch.int32)
        y = torch.stack([self.matmul(x, w) for x, w in zip(a3, b3)])
        return y.reshape(*lead, *y.shape[1:])


class CheckInputs:
    """A forward pre-hook that checks a module's inputs against the circuit: `expected` maps
    each input's name, in the order forward takes them, to its dtype and its axes (axis ->
    the size it must have, or the name of a free size that must agree across inputs).
    Raises `error` (ValueError, or a subclass of it) naming the input and the axis. A float
    input must also have a dtype the module's float parameters and buffers have (float64 into
    a float32 module would fail inside, or compute silently in another precision), except
    under torch.autocast, which mixes dtypes on purpose."""

    def __init__(self, expected, error=ValueError):
        self.expected = expected
        self.error = error
        self.accepted = None  # the inputs' (shape, dtype), the module's first float dtype
        # and whether autocast was on, at the last call that passed

    @staticmethod
    def _kind(t: str) -> str:
        """The kind of a dtype name: bool, float, int, or the name itself (no generator
        here: torch.compile with fullgraph=True cannot trace one)."""
        return "bool" if t == "bool" else "float" if "float" in t else "int" if "int" in t else t

    @staticmethod
    def _multiple(size: str):
        """(k, S) for a free size written `k*S` (an integer times a size name), else (1,
        size): the axis must be a multiple of k, and S the same wherever it appears."""
        head, star, tail = size.partition("*")
        if star and head.isdigit() and tail.isidentifier():
            return int(head), tail
        return 1, size

    def _seen(self, args, kwargs):
        """The inputs' shapes and dtypes, or None when one is not a tensor (checked then)."""
        seen = []
        for i, name in enumerate(self.expected):
            x = args[i] if i < len(args) else kwargs.get(name)
            if not isinstance(x, torch.Tensor):
                return None
            seen.append((x.shape, x.dtype))
        return seen

    @staticmethod
    def _floats(module):
        """The dtypes of the module's float parameters and buffers, names sorted (a tuple:
        no generator, as in `_kind`)."""
        found = set()
        for t in [*module.parameters(), *module.buffers()]:
            if t.is_floating_point():
                found.add(str(t.dtype))
        return tuple(sorted(found))

    @staticmethod
    def _probe(module):
        """The dtype of the module's first float parameter, or None: what a call compares with
        the last passing one instead of walking every tensor (.half(), .double() change it)."""
        for t in module.parameters():
            if t.is_floating_point():
                return t.dtype
        return None

    def _autocast(self, args, kwargs) -> bool:
        """Whether torch.autocast is on for an input's device (each input is a tensor)."""
        for i, name in enumerate(self.expected):
            x = args[i] if i < len(args) else kwargs[name]
            if torch.is_autocast_enabled(x.device.type):
                return True
        return False

    def __call__(self, module, args, kwargs):
        seen = self._seen(args, kwargs)
        autocast = seen is not None and self._autocast(args, kwargs)
        key = None if seen is None else (seen, self._probe(module), autocast)
        if key is not None and key == self.accepted:
            return  # the same shapes and dtypes, module dtype and autocast as a call that passed
        self.check(args, kwargs, None if autocast else self._floats(module))
        if not torch.jit.is_tracing():  # its sizes would be traced values, not numbers
            self.accepted = key

    def check(self, args, kwargs, floats=None):
        """`floats`: the dtypes a float input may have (the module's, by name); None: any."""
        free = {}
        for i, (name, (dtype, axes)) in enumerate(self.expected.items()):
            x = args[i] if i < len(args) else kwargs.get(name)
            if x is None:
                continue  # forward itself says which argument is missing
            names = " ".join(axes) or "none"
            if not isinstance(x, torch.Tensor):
                raise self.error(
                    f"input {name!r}: expected a tensor with axes {names}, found {type(x).__name__}"
                )
            shape = f"({name}.shape = {tuple(x.shape)})"
            if x.dim() != len(axes):
                raise self.error(
                    f"input {name!r}: expected {len(axes)} axes ({names}), found {x.dim()} {shape}"
                )
            for (axis, size), found in zip(axes.items(), x.shape):
                if isinstance(size, int):
                    if found != size:
                        raise self.error(
                            f"input {name!r}: axis {axis} has size {size} in the "
                            f"circuit, found {found} {shape}"
                        )
                    continue
                factor, symbol = self._multiple(size)
                if found % factor:
                    raise self.error(
                        f"input {name!r}: axis {axis} has size {size} in the circuit, a "
                        f"multiple of {factor}, found {found} {shape}"
                    )
                value = found // factor
                if symbol not in free:
                    free[symbol] = (name, axis, value)
                elif free[symbol][2] != value:
                    other, other_axis, first = free[symbol]
                    wanted = f"{size} with {symbol}={first}" if factor > 1 else f"size {first}"
                    raise self.error(
                        f"input {name!r}: axis {axis} has {wanted} in input {other!r} (axis "
                        f"{other_axis}), found {found} {shape}"
                    )
            want, kind = self._kind(dtype), self._kind(str(x.dtype).removeprefix("torch."))
            if kind != want:
                raise self.error(
                    f"input {name!r}: the circuit declares {dtype} (kind {want}), "
                    f"found {x.dtype} (kind {kind})"
                )
            if kind == "float" and floats and str(x.dtype) not in floats:
                want = " or ".join(floats)
                raise self.error(
                    f"input {name!r}: the module's parameters are {want}, found {x.dtype} "
                    f"(convert the input with .to({floats[0]}), the module with "
                    f".to({x.dtype}), or run under torch.autocast)"
                )
