"""FLOP and HBM-traffic formulas of the row normalisations (rowwise.py), for the cost model.

Plain functions of the sizes (numbers or sympy symbols): ``M`` rows, ``N`` features,
``bytes_per`` the bytes of an element of x (and y, the residual and the sum), ``w_bytes``
those of the weight and bias. ``rms`` for RMSNorm (no mean, no bias; L2 normalisation is
``rms`` without ``affine``), ``residual`` for the add forms (x + residual normalised, the sum
written too), ``affine`` with weight (and bias for LayerNorm). Statistics are float32: rstd
per row, and the mean for LayerNorm.
"""

PROGRAMS = 528
"""The backward's programs G (4 per multiprocessor of a 132-SM H100/H200): each writes one
float32 row of partial sums per affine parameter, which one sum over G reduces."""


def _params(rms, affine):
    """How many [N] parameters: weight (and bias for LayerNorm)."""
    return 0 if not affine else (1 if rms else 2)


def flops_forward(M, N, rms=False, residual=False, affine=True):
    """Per element: the add (residual), the sum for the mean and the centring (LayerNorm),
    square and sum, the product by rstd, the weight's product and the bias's add."""
    per = 3 + (0 if rms else 2) + (1 if residual else 0) + _params(rms, affine)
    return M * N * per


def flops_backward(M, N, rms=False, residual=False, affine=True):
    """Per element, LayerNorm: xhat (2), w dy (1), the row sums of xhat w dy (2) and w dy
    (1), dx (4), the partial sums of dy xhat (2) and dy (1): 13, or 9 without weight and
    bias. RMSNorm: xhat (1), w dy (1), one row sum (2), dx (3), dy xhat (2): 9, or 6. The
    residual forms add the sum's cotangent (1)."""
    if rms:
        per = 9 if affine else 6
    else:
        per = 13 if affine else 9
    return M * N * (per + (1 if residual else 0))


def io_forward(M, N, bytes_per=2, rms=False, residual=False, affine=True, w_bytes=None):
    """x read and y written (also the residual read and the sum written), the parameters
    once, the float32 statistics written. Rows wider than one tile (16384) read x twice
    more; not counted here."""
    w_bytes = bytes_per if w_bytes is None else w_bytes
    rows = M * N * bytes_per * (2 + (2 if residual else 0))
    stats = 4 * M * (1 if rms else 2)
    return rows + N * w_bytes * _params(rms, affine) + stats


def io_backward(M, N, bytes_per=2, rms=False, residual=False, affine=True, w_bytes=None,
                programs=PROGRAMS):  # fmt: skip
    """The normalised input (x, or the sum) and dy read, dx written (and the sum's cotangent
    read), the statistics and parameters read; each program's float32 partial sums written
    and read back by the reduction, the parameter gradients written."""
    w_bytes = bytes_per if w_bytes is None else w_bytes
    rows = M * N * bytes_per * (3 + (1 if residual else 0))
    stats = 4 * M * (1 if rms else 2)
    p = _params(rms, affine)
    return rows + stats + p * N * (w_bytes * 2 + 4 * 2 * programs)


def io_unfused_forward(M, N, bytes_per=2, rms=False, affine=True, w_bytes=None):
    """The same step as two ops (`s = x + residual`, then the norm): the sum written by the
    add and read again by the norm, for the fused op's saving."""
    return M * N * bytes_per * 3 + io_forward(M, N, bytes_per, rms, False, affine, w_bytes)


def activation_bytes(M, N, bytes_per=2, rms=False):
    """Kept for the backward: the normalised input (x, or the residual sum: the summands are
    not kept) and the float32 statistics; the parameters are the module's own."""
    return M * N * bytes_per + 4 * M * (1 if rms else 2)


def backward_temp_bytes(M, N, rms=False, affine=True, programs=PROGRAMS):
    """The float32 partial sums, [G, N] per parameter with a gradient, beyond the gradients
    returned (the weight's partials are written whenever there is a weight)."""
    return 4 * programs * N * _params(rms, affine)
