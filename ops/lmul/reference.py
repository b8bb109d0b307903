"""L-Mul by value (Luo & Sun 2024, "Addition is All You Need for Energy-efficient Language
Models", eq. 3 and the carry of its integer adder): the ground truth for product.py, which works
on bit patterns; this file works on numbers (torch.frexp) and shares no code with it.

    x = (1 + x_m) 2^{x_e},  y = (1 + y_m) 2^{y_e},  x_m, y_m truncated to m bits
    s = x_m + y_m + 2^{-l(m)},      l(m) = m (m ≤ 3), 3 (m = 4), 4 (m > 4)
    L-Mul(x, y) = ±(1 + s) 2^{x_e + y_e}        where s < 1
                = ±s 2^{x_e + y_e + 1}          where s ≥ 1 (the mantissa sum carries)

Operands below the format's smallest normal number count as zero; results outside its
normal range are ±inf (above) or ±0 (below); inf and nan operands give the IEEE product.
"""

import torch

_FORMATS = {torch.float32: (-126, 127), torch.float64: (-1022, 1023)}


def offset_bits(m: int) -> int:
    """l(m), the paper's exponent of the offset term 2^{-l(m)}."""
    return m if m <= 3 else (3 if m == 4 else 4)


def lmul_reference(x, y, m):
    """Elementwise L-Mul of float32 or float64 tensors (broadcast), by value."""
    x, y = torch.broadcast_tensors(x, y)
    dtype = x.dtype
    if dtype not in _FORMATS:
        return lmul_reference(x.float(), y.float(), m).to(dtype)
    emin, emax = _FORMATS[dtype]
    xd, yd = x.double(), y.double()
    tiny = 2.0**emin

    def split(v):
        mant, e = torch.frexp(v.abs())  # |v| = mant 2^e, mant in [0.5, 1)
        frac = 2 * mant - 1  # |v| = (1 + frac) 2^(e - 1)
        return torch.floor(frac * 2**m) / 2**m, e.double() - 1

    fx, ex = split(xd)
    fy, ey = split(yd)
    s = fx + fy + 2.0 ** -offset_bits(m)
    e = ex + ey
    mag = torch.where(s < 1, (1 + s) * torch.exp2(e), s * torch.exp2(e + 1))
    e_out = torch.where(s < 1, e, e + 1)
    mag = torch.where(e_out > emax, torch.full_like(mag, float("inf")), mag)
    mag = torch.where(e_out < emin, torch.zeros_like(mag), mag)
    zero = (xd.abs() < tiny) | (yd.abs() < tiny)
    mag = torch.where(zero, torch.zeros_like(mag), mag)
    negative = torch.signbit(xd) ^ torch.signbit(yd)
    out = torch.where(negative, -mag, mag)
    special = ~torch.isfinite(xd) | ~torch.isfinite(yd)
    out = torch.where(special, xd * yd, out)
    return out.to(dtype)


def lmul_linear_reference(x, weight, bias, m):
    """y[..., j] = Σ_k L-Mul(x[..., k], weight[j, k]) (+ bias[j]): the products as one
    [..., J, K] tensor summed over k. For small inputs."""
    y = lmul_reference(x[..., None, :], weight, m).sum(-1)
    return y if bias is None else y + bias
