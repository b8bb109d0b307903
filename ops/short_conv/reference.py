"""Plain PyTorch causal depthwise short convolution over T: what the CPU runs, written from the
definition (a sum of W shifted copies of the input, vectorised over tokens and channels).

With x ``[B, T, C]`` (channels last), ``w`` ``[C, W]``, optional ``b`` ``[C]``:

    y[b, t, c] = act( b[c] + sum_{j=0}^{W-1} w[c, j] x[b, t - (W - 1) + j, c] )

where x before the start of its sequence is zero (causal padding: output t sees inputs
t - W + 1 .. t) and ``act`` is the identity or SiLU. With packed sequences (``cu_seqlens``,
x ``[1, total, C]``), an input of another sequence counts as zero too.
"""

import torch
import torch.nn.functional as F

from .._backend import FLOATS, check

ACTIVATIONS = (None, "silu")


def check_params(op, x, weight, bias, activation):
    """What short_conv and its step check alike: x a float tensor whose last axis is the C
    channels; weight ``[C, W]`` or ``[C, 1, W]`` (W >= 1), bias ``[C]`` or None, both on x's
    device; the activation None or ``"silu"``."""
    T = torch.Tensor
    check(x.dtype in FLOATS, op, "x.dtype", "float16, bfloat16, float32 or float64", x.dtype)
    C = x.shape[-1]
    check(isinstance(weight, T), op, "weight", "a torch.Tensor", type(weight).__name__)
    ok = (weight.dim() == 2 and weight.shape[0] == C) or (
        weight.dim() == 3 and weight.shape[0] == C and weight.shape[1] == 1
    )
    check(ok, op, "weight.shape", f"[C, W] or [C, 1, W] with C={C}", tuple(weight.shape))
    check(weight.shape[-1] >= 1, op, "kernel width W", "at least 1", weight.shape[-1])
    check(weight.dtype.is_floating_point, op, "weight.dtype", "a float dtype", weight.dtype)
    check(weight.device == x.device, op, "weight.device", f"{x.device} as x", weight.device)
    if bias is not None:
        check(isinstance(bias, T), op, "bias", "a torch.Tensor or None", type(bias).__name__)
        check(tuple(bias.shape) == (C,), op, "bias.shape", f"[C] = ({C},)", tuple(bias.shape))
        check(bias.device == x.device, op, "bias.device", f"{x.device} as x", bias.device)
    check(activation in ACTIVATIONS, op, "activation", "None or 'silu'", repr(activation))


def weight_2d(weight: torch.Tensor) -> torch.Tensor:
    """The weight as ``[C, W]``: nn.Conv1d's depthwise ``[C, 1, W]`` or already ``[C, W]``."""
    return weight[:, 0] if weight.dim() == 3 else weight


def sequence_starts(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    """Per token of a packed batch, the position where its sequence starts (int32 [total]);
    computed on the tensor's device without waiting on it (the output size is given)."""
    cu = cu_seqlens.to(torch.int64)
    return torch.repeat_interleave(cu[:-1], cu[1:] - cu[:-1], output_size=total).to(torch.int32)


def short_conv_reference(x, weight, bias=None, activation=None, cu_seqlens=None):
    """act(causal depthwise convolution of x over T) in x's dtype, computed in float32 (float64
    for float64 inputs); see the module's docstring."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"short_conv: activation: expected None or 'silu', found {activation!r}")
    w = weight_2d(weight)
    W = w.shape[-1]
    T = x.shape[1]
    acc_t = torch.float64 if x.dtype == torch.float64 else torch.float32
    xf = x.to(acc_t)
    xp = F.pad(xf, (0, 0, W - 1, 0))  # W - 1 zeros before every sequence of the batch
    pos = torch.arange(T, device=x.device)
    start = None if cu_seqlens is None else sequence_starts(cu_seqlens, T).to(x.device)
    y = torch.zeros_like(xf)
    for j in range(W):  # tap j reads the input W - 1 - j tokens back
        tap = xp[:, j : j + T]
        if start is not None:  # a tap reaching before its sequence's start reads zero
            tap = tap * (pos - (W - 1 - j) >= start).to(acc_t)[None, :, None]
        y = y + tap * w[:, j].to(acc_t)
    if bias is not None:
        y = y + bias.to(acc_t)
    if activation == "silu":
        y = F.silu(y)
    return y.to(x.dtype)


def short_conv_step(x, cache, weight, bias=None, activation=None):
    """One token of decoding: x ``[N, C]`` the new inputs, cache ``[N, W - 1, C]`` the last
    W - 1 inputs (oldest first; None or zeros at the start of a sequence). Returns
    ``(y [N, C], cache)`` with the cache shifted by one token (a new tensor)."""
    op = "short_conv_step"
    check(isinstance(x, torch.Tensor) and x.dim() == 2, op, "x.shape", "2 dims [N, C]",
          tuple(getattr(x, "shape", ())))  # fmt: skip
    check_params(op, x, weight, bias, activation)
    w = weight_2d(weight)
    W = w.shape[-1]
    N, C = x.shape
    if cache is None:
        cache = x.new_zeros((N, W - 1, C))
    found = tuple(getattr(cache, "shape", ()))
    check(isinstance(cache, torch.Tensor) and found == (N, W - 1, C), op, "cache.shape",
          f"({N}, {W - 1}, {C}) = [N, W - 1, C]", found)  # fmt: skip
    check(cache.is_floating_point() and cache.device == x.device, op, "cache",
          f"a float tensor on {x.device} as x", f"{cache.dtype} on {cache.device}")  # fmt: skip
    window = torch.cat([cache, x[:, None]], dim=1)  # [N, W, C], oldest first
    acc_t = torch.float64 if x.dtype == torch.float64 else torch.float32
    y = torch.einsum("nwc,cw->nc", window.to(acc_t), w.to(acc_t))
    if bias is not None:
        y = y + bias.to(acc_t)
    if activation == "silu":
        y = F.silu(y)
    return y.to(x.dtype), window[:, 1:]
