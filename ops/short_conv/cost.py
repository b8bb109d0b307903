"""FLOP and HBM-traffic formulas of the short convolution (kernels.py), for the cost model.

Plain functions of the sizes (numbers or sympy symbols): ``M`` tokens (B T), ``C`` channels,
``W`` the kernel width, ``bytes_per`` the bytes of an element of x (and y, dx),
``w_bytes`` those of the weight and bias. ``silu`` when SiLU follows the convolution,
``bias`` with a bias. The backward's partial sums are float32 rows of ``W + 1`` channels
vectors, one per ``SPAN`` tokens.
"""

MAX_WIDTH = 8
"""The widest filter the Triton kernels take (kernels.py; wider ones run the PyTorch
reference): the dy kernel's accumulator holds W rounded up to a power of two rows of its tile."""

SPAN = 256
"""Tokens per program of the backward's first kernel (kernels.py takes it from here): one
float32 row of partial sums each."""

SILU_FLOPS = 4
"""SiLU counted as 4 operations per element (exp, add, divide, multiply)."""


def flops_forward(M, C, W, silu=False, bias=False):
    """Per element: W multiply-adds, the bias's add, SiLU."""
    return M * C * (2 * W + (1 if bias else 0) + (SILU_FLOPS if silu else 0))


def flops_backward(M, C, W, silu=False, bias=False):
    """Per element: dx's W multiply-adds, dw's W, db's add; with SiLU the pre-activation
    recomputed (W multiply-adds, the bias) and SiLU's derivative (about 6 operations)."""
    per = 4 * W + (1 if bias else 0)
    if silu:
        per += 2 * W + (1 if bias else 0) + SILU_FLOPS + 2
    return M * C * per


def io_forward(M, C, W, bytes_per=2, bias=False, w_bytes=None):
    """x read once (the halo of W - 1 tokens per block comes from the cache) and y written;
    the weight (and bias) once."""
    w_bytes = bytes_per if w_bytes is None else w_bytes
    return 2 * M * C * bytes_per + C * (W + (1 if bias else 0)) * w_bytes


def _blocks(M):
    """Programs along the tokens of the backward's first kernel: ceil(M / SPAN) for a number,
    M / SPAN for a symbol."""
    return -(-M // SPAN) if isinstance(M, int) else M / SPAN


def io_backward(M, C, W, bytes_per=2, bias=False, w_bytes=None, silu=False):
    """First kernel: x and dout read, with SiLU dy written; second: dy (dout without an
    activation) read, dx written. The float32 partial sums written and read back once by
    their sum; dw (and db) written."""
    w_bytes = bytes_per if w_bytes is None else w_bytes
    partial = _blocks(M) * (W + 1) * C * 4
    params = C * (W + (1 if bias else 0)) * w_bytes
    passes = 5 if silu else 4
    return passes * M * C * bytes_per + 2 * partial + 2 * params


def kept_bytes(M, C, bytes_per=2):
    """What the backward keeps: x (the weight and bias are parameters, kept anyway)."""
    return M * C * bytes_per


def workspace_backward(M, C, W, bytes_per=2, silu=False):
    """The backward's float32 partial sums (freed after their sum) and, with SiLU, dy in x's
    dtype (freed after dx)."""
    return _blocks(M) * (W + 1) * C * 4 + (M * C * bytes_per if silu else 0)
