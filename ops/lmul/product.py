"""L-Mul on bit patterns: the elementwise product and the matrix product, each an autograd
Function whose backward is that of the exact product (straight-through). The forward runs the
Triton kernels of kernels.py on CUDA tensors (float32 and 16-bit) and PyTorch integer
arithmetic otherwise; maths and choices in README.md.
"""

import math

import torch

from .._backend import check, use_triton

# dtype -> (integer type of the same width, exponent bits, mantissa bits)
_FORMATS = {torch.float32: (torch.int32, 8, 23), torch.float64: (torch.int64, 11, 52)}
MANTISSA_BITS = (3, 4)
CHUNK_ELEMENTS = 1 << 20  # products of one chunk of rows in the matrix product


def offset_bits(m: int) -> int:
    """l(m) of the paper: the offset term 2^{-l(m)} in units of the mantissa's last bit."""
    return m if m <= 3 else (3 if m == 4 else 4)


class _Parts:
    """A float tensor split into int64 fields: sign bit, biased exponent, mantissa truncated
    to m bits (an m-bit integer), and whether the value is inf or nan."""

    def __init__(self, sign, exp, frac, special):
        self.sign, self.exp, self.frac, self.special = sign, exp, frac, special

    @classmethod
    def of(cls, v, m):
        itype, E, M = _FORMATS[v.dtype]
        bits = v.view(itype).to(torch.int64)
        exp = (bits >> M) & ((1 << E) - 1)
        return cls((bits >> (E + M)) & 1, exp, (bits & ((1 << M) - 1)) >> (M - m),
                   exp == (1 << E) - 1)  # fmt: skip

    def __getitem__(self, idx):
        return _Parts(self.sign[idx], self.exp[idx], self.frac[idx], self.special[idx])


def _combine(a: _Parts, b: _Parts, m, dtype, exact):
    """L-Mul of two split operands (broadcast): one integer addition of the (exponent,
    mantissa) fields, r = ((e_a + e_b − bias) << m) + f_a + f_b + 2^{m − l(m)}; its high part
    is the result's biased exponent (the mantissa's carry included), its low m bits the
    result's mantissa. `exact` is a callable giving the IEEE product for special operands.
    Worked in place on two int64 temporaries of the broadcast shape."""
    itype, E, M = _FORMATS[dtype]
    bias = (1 << (E - 1)) - 1
    r = a.exp + b.exp
    r.sub_(bias).mul_(1 << m).add_(a.frac).add_(b.frac).add_(1 << (m - offset_bits(m)))
    exp = r >> m
    r.bitwise_and_((1 << m) - 1).mul_(1 << (M - m))  # the result's mantissa field
    over = exp >= (1 << E) - 1
    under = exp <= 0
    under |= a.exp == 0  # zero or subnormal operands
    under |= b.exp == 0
    mag = exp.mul_(1 << M).bitwise_or_(r)
    del r
    mag.masked_fill_(over, ((1 << E) - 1) << M)
    mag.masked_fill_(under, 0)
    del over, under
    out = mag.to(itype).view(dtype)  # the magnitude's pattern: below the sign bit
    del mag
    out = torch.where(a.sign != b.sign, -out, out)
    special = a.special | b.special
    if torch.compiler.is_compiling() or bool(special.any()):  # (traced: no host read)
        out = torch.where(special, exact(), out)
    return out


def _as_format(v, op):
    check(v.is_floating_point(), op, "operands", "floating point tensors", v.dtype)
    return v if v.dtype in _FORMATS else v.float()


def _kernel_dtype(dtype) -> bool:
    """Whether the Triton kernels take operands of this dtype (float32 and 16-bit floats;
    float64 keeps its own format in the PyTorch form)."""
    return dtype in (torch.float32, torch.float16, torch.bfloat16)


class LMulFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, m, kernel):
        dtype = torch.promote_types(x.dtype, y.dtype)
        if kernel:
            from .kernels import lmul_elementwise

            out = lmul_elementwise(*torch.broadcast_tensors(x, y), m, dtype)
        else:
            xs, ys = (_as_format(v.to(dtype), "lmul") for v in (x, y))  # one format for both
            xs, ys = torch.broadcast_tensors(xs, ys)
            out = _combine(_Parts.of(xs, m), _Parts.of(ys, m), m, xs.dtype, lambda: xs * ys)
        ctx.save_for_backward(x, y)
        return out.to(dtype)

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        gx = gy = None
        if ctx.needs_input_grad[0]:
            gx = _unbroadcast(g * y, x.shape)
        if ctx.needs_input_grad[1]:
            gy = _unbroadcast(g * x, y.shape)
        return gx, gy, None, None


def _unbroadcast(g, shape):
    while g.dim() > len(shape):
        g = g.sum(0)
    for i, n in enumerate(shape):
        if n == 1 and g.shape[i] != 1:
            g = g.sum(i, keepdim=True)
    return g


def lmul(x, y, mantissa_bits=4, backend="auto"):
    """Elementwise L-Mul: x · y approximated by one integer addition of the bit patterns
    (Luo & Sun 2024, eq. 3), mantissas truncated to `mantissa_bits` bits.

    x, y: broadcastable float tensors -> their broadcast shape, in their promoted dtype.
    float32 and float64 are worked on in their own format; float16 and bfloat16 in float32
    (8 exponent bits), then rounded back (the result has mantissa_bits + 1 significant bits,
    so only the range can round). Backward: that of x · y (straight-through).
    backend: "auto" (the Triton kernel on CUDA tensors, PyTorch integer arithmetic on the
    CPU), "triton" or "reference" (the PyTorch form); float64 always takes the PyTorch form.

    >>> lmul(torch.tensor([1.5]), torch.tensor([1.5]), 3)  # (1 + .5 + .5 + 1/8) carries
    tensor([2.2500])
    """
    check(mantissa_bits in MANTISSA_BITS, "lmul", "mantissa_bits", MANTISSA_BITS,
          mantissa_bits)  # fmt: skip
    check(isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor), "lmul", "x, y",
          "tensors", (type(x).__name__, type(y).__name__))  # fmt: skip
    try:
        torch.broadcast_shapes(x.shape, y.shape)
    except RuntimeError:
        check(False, "lmul", "x.shape, y.shape", "shapes that broadcast together",
              (tuple(x.shape), tuple(y.shape)))  # fmt: skip
    kernel = use_triton(x, backend, "lmul")
    if kernel:
        for name, v in (("x", x), ("y", y)):
            check(v.is_floating_point(), "lmul", f"{name}.dtype", "a floating point dtype",
                  v.dtype)  # fmt: skip
        check(y.device == x.device, "lmul", "y.device", f"{x.device} (x's)", y.device)
        kernel = _kernel_dtype(x.dtype) and _kernel_dtype(y.dtype)
    return LMulFunction.apply(x, y, mantissa_bits, kernel)


class LMulLinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, m, kernel):
        # x: [n, K]; weight: [J, K]
        dtype = torch.promote_types(x.dtype, weight.dtype)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        if kernel:
            from .kernels import lmul_matmul

            return lmul_matmul(x, weight, bias, m, dtype)
        xs, ws = _as_format(x.to(dtype), "lmul_linear"), _as_format(weight.to(dtype), "lmul_linear")
        pw = _Parts.of(ws, m)[None]  # [1, J, K]
        n, J, K = xs.shape[0], ws.shape[0], ws.shape[1]
        rows = max(1, CHUNK_ELEMENTS // max(1, J * K))
        out = xs.new_empty(n, J)
        for start in range(0, n, rows):
            xc = xs[start : start + rows]
            px = _Parts.of(xc, m)[:, None, :]  # [r, 1, K]
            prod = _combine(px, pw, m, xs.dtype, lambda xc=xc: xc[:, None, :] * ws[None])
            out[start : start + rows] = prod.sum(-1)
        if bias is not None:
            out = out + bias.to(out.dtype)
        return out.to(dtype)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = dy @ weight.to(dy.dtype)
        if ctx.needs_input_grad[1]:
            dw = dy.transpose(0, 1) @ x.to(dy.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dy.sum(0)
        return dx, dw, db, None, None


def lmul_linear(x, weight, bias=None, mantissa_bits=4, backend="auto"):
    """y[..., j] = Σ_k L-Mul(x[..., k], weight[j, k]) + bias[j]: a linear map whose products
    are L-Mul's integer additions; the sum over k in x's format (float32 or float64).

    x: [..., K]; weight: [J, K]; bias: [J] or None -> y: [..., J].
    Backward: that of the exact linear map (straight-through), dx = dy W, dW = dyᵀ x.
    backend: "auto" (on CUDA tensors the Triton kernel, a tiled product summing the L-Mul
    products in float32; on the CPU PyTorch integer arithmetic on a chunk of rows at a time,
    at most CHUNK_ELEMENTS products, summed in x's format), "triton" or "reference" (the
    PyTorch form); float64 always takes the PyTorch form.

    >>> lmul_linear(torch.ones(2, 3), torch.ones(4, 3), mantissa_bits=3).shape
    torch.Size([2, 4])
    """
    op = "lmul_linear"
    check(mantissa_bits in MANTISSA_BITS, op, "mantissa_bits", MANTISSA_BITS, mantissa_bits)
    check(
        weight.dim() == 2 and x.dim() >= 1 and weight.shape[1] == x.shape[-1],
        op,
        "weight",
        f"[J, {x.shape[-1] if x.dim() else '?'}] (K of x [..., K])",
        tuple(weight.shape),
    )
    check(
        bias is None or tuple(bias.shape) == (weight.shape[0],),
        op,
        "bias",
        f"[{weight.shape[0]}]",
        None if bias is None else tuple(bias.shape),
    )
    kernel = use_triton(x, backend, op)
    if kernel:
        for name, v in (("x", x), ("weight", weight), ("bias", bias)):
            check(v is None or v.is_floating_point(), op, f"{name}.dtype",
                  "a floating point dtype", None if v is None else v.dtype)  # fmt: skip
            check(v is None or v.device == x.device, op, f"{name}.device", f"{x.device} (x's)",
                  None if v is None else v.device)  # fmt: skip
        kernel = _kernel_dtype(torch.promote_types(x.dtype, weight.dtype))
    lead = x.shape[:-1]
    x2 = x.reshape(math.prod(lead), x.shape[-1])
    y = LMulLinearFunction.apply(x2, weight, bias, mantissa_bits, kernel)
    return y.reshape(*lead, weight.shape[0])
