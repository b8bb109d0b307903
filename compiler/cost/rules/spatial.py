"""Cost rules of convolutions (long ones by FFT), pooling and upsampling."""

from __future__ import annotations

import sympy

from ..symbolic import fft_length
from .common import ZERO, BoxView, Rule, _if, _in, _is_view, _own, costs, numel


@costs("conv")
def conv(v: BoxView) -> Rule:
    b, x, y = v.box, v.x(), v.out()
    k = sympy.Integer(1)
    for n in b._norm("kernel"):
        k *= n
    groups = b.n_groups(v.size(x, b.channel)) if hasattr(b, "n_groups") else b.groups
    if b.transposed:
        mm = 2 * numel(x) * v.size(y, b.out) / groups * k
    else:
        mm = 2 * numel(y) * v.size(x, b.channel) / groups * k
    bias = numel(y) if b.bias else ZERO
    mm_bwd = mm * (2 if v.grad("x") else 1)
    return Rule(flops=mm + bias, mm=mm, mm_bwd=mm_bwd, flops_bwd=mm_bwd + bias, saved=[_in("x")])


@costs("long_conv")
def long_conv(v: BoxView) -> Rule:
    """As compiler/runtime.py's `long_conv` runs it: real FFTs of length n = fft_length(T +
    L − 1) (the smallest 2^a·3^b·5^c ≥ T + L − 1) of x's rows (x's elements over T: one row
    per position of its other axes) and of the filter's, their product over x's rows (m =
    n/2 + 1 complex bins each), the inverse FFT, the first T kept (a copy, laid out [rows…,
    seq]); in float32 for 16-bit wires. An FFT of length n counts 5/2·n·⌈log2 n⌉ FLOPs
    (the radix-2 count, 5 n log2 n for complex data, halved for real), a complex product
    6. FlopCounterMode counts none of it (no matrix engine). The backward: the output's
    gradient transformed (one FFT per row), a complex product per input needing a gradient
    (the filter's summed over the rows it is broadcast over), then for each input a complex
    inverse FFT of full length n (10/2·n·⌈log2 n⌉, as torch's backward of rfft runs it).

    Kept: for x's gradient, x padded to n (torch's rfft keeps its input) and the filter's
    spectrum; for the filter's, the filter padded to n and x's spectrum. Inside the forward:
    the spectra no gradient keeps, the product and the inverse transform's n-long result,
    alive at once before the output is copied out. Inside the backward: the larger of the
    product step's spectra (the output gradient's, and each input's before the filter's is
    summed) and x's inverse transform (two complex n-long buffers), less what torch has
    released by then."""
    b, x, h, y = v.box, v.x(), v.x("filter"), v.out()
    tap = b.taps(x, h)
    T, L = v.size(x, b.seq), v.size(h, tap)
    n = fft_length(T + L - 1)
    m = sympy.floor(n / 2) + 1
    rx, rh = numel(x) / T, numel(h) / L  # rows: the output's are x's
    fb = sympy.Max(v.bytes_per(y), 4)  # float32 at least
    fft = sympy.Rational(5, 2) * n * sympy.ceiling(sympy.log(n, 2))
    gx, gh = v.grad("x"), v.grad("filter")
    Px, Ph = rx * n * fb, rh * n * fb  # padded inputs
    Xf, Hf = rx * m * 2 * fb, rh * m * 2 * fb  # spectra (complex)
    Yp = rx * n * fb  # the inverse transform's n-long result
    flops = (2 * rx + rh) * fft + 6 * rx * m
    flops_bwd = rx * fft + (rx * (n - m) if gx or gh else ZERO)  # the halves doubled
    flops_bwd += (6 * rx * m + 2 * rx * fft if gx else ZERO) + (
        6 * rx * m + 2 * (rx - rh) * m + 2 * rh * fft if gh else ZERO
    )
    saved = [
        *_if(gx, _own("x_padded", Px, "x padded to the FFT length"),
             _own("filter_spectrum", Hf, "the filter's FFT (complex)")),
        *_if(gh, _own("filter_padded", Ph, "the filter padded to the FFT length"),
             _own("x_spectrum", Xf, "x's FFT (complex)")),
    ]  # fmt: skip
    unkept = (ZERO if gh else Xf) + (ZERO if gx else Hf)
    Gx, Gh = v.nbytes(x), v.nbytes(h)
    # the product step: three spectra of x's rows (the output gradient's, and x's gradient's
    # or the conjugate of x's spectrum that torch copies out for the filter's), the filter's
    # gradient summed; x's inverse transform: two complex n-long buffers per row, while x's
    # kept tensors, its gradient's spectrum and the filter's gradient are held
    at_product = 3 * Xf + (Hf - Gx if gx and gh else ZERO) - Gh
    at_inverse = 4 * Px - Hf - Gx + (-Ph if gh else Xf)
    if gx and gh:
        bwd_temps = sympy.Max(at_product, at_inverse)
    else:
        bwd_temps = at_inverse if gx else at_product
    return Rule(
        flops=flops,
        flops_bwd=flops_bwd,
        saved=saved,
        layout={"out": (*[a for a in x.names if a != b.seq], b.seq)},
        extra_io=2 * (Px + Ph + Xf + Hf + Xf + Yp),
        temps=unkept + Xf + Yp - v.nbytes(y),
        bwd_temps=bwd_temps,
    )


@costs("pool")
def pool(v: BoxView) -> Rule:
    """As lowered: PyTorch's pooling on x where x is [N, C, *spatial]; else on x permuted to
    (other axes, spatial axes) and viewed as [-1, 1, *spatial], which copies x (and the copy
    is kept) where the other axes are not adjacent in memory; the result is laid out as that
    permuted order."""
    b, x, y = v.box, v.x(), v.out()
    w = sympy.Integer(1)
    for n in b._norm("window"):
        w *= n
    rest = [a for a in x.names if a not in b.spatial]
    own = len(rest) == 2 and tuple(x.names[2:]) == tuple(b.spatial)
    copied = not own and not _is_view(v.layouts["x"], [rest], v.units)
    saved = [_own("x_copy", v.nbytes(x), "input x, copied to [-1, 1, spatial]") if copied
             else _in("x")]  # fmt: skip
    if b.op == "max":
        saved.append(_own("indices", numel(y) * 8, "argmax indices (int64)"))
    return Rule(
        flops=numel(y) * w,
        saved=_if(v.grad("x"), *saved),
        layout={"out": (*rest, *b.spatial)},
        extra_io=2 * v.nbytes(x) if copied else ZERO,
        temps=v.nbytes(x) if copied and not v.grad("x") else ZERO,
    )


@costs("upsample")
def upsample(v: BoxView) -> Rule:
    b, y = v.box, v.out()
    per = 0 if b.mode == "nearest" else 2 * 2 ** len(b.spatial)
    return Rule(flops=per * numel(y))
