"""Work and HBM-traffic formulas of the integer-only ViT ops, for the cost model.

Plain functions of the sizes (numbers or sympy symbols; only + - * /). ``rows`` is the
number of rows (tokens, or tokens x heads for attention scores) and ``D`` the length of the
axis an op normalises over (features or keys). None of these ops has a backward (inference
only).

Work is counted in integer operations (an addition, shift, comparison, selection or
multiplication counts 1, an integer division 1) as the kernels perform them per element,
``ops_*`` below; the int8 matrix product counts a multiply-add as 2, as FLOPs elsewhere, and
runs on the tensor cores. ``x_bytes`` is 1 for int8 inputs, 4 for int32.
"""

# Integer operations per element, counted from the kernels (nonlinear.py, matmul.py):
OPS_SHIFT_EXP = 17  # clamp, d log2 e by two shifts and two additions, q and r, the shifts
OPS_SHIFTMAX = OPS_SHIFT_EXP + 7  # row max, difference, clamp, row sum, product, shift, cap
OPS_SHIFTGELU = OPS_SHIFT_EXP + 15  # 1.702 x by shifts, |p|, IntDiv, x s, requantisation
OPS_LAYERNORM = 16  # sum, centring, square and sum, normalisation, affine map, rounding, clamp
OPS_LAYERNORM_ROW = 6 * 3 + 10 * 4 + 8  # per row: bit length, 10 Newton steps, mean, variance
OPS_REQUANTIZE = 6  # product, rounding addition, shift, clamp (2), channel index


def flops_shiftmax(rows, D):
    return rows * D * OPS_SHIFTMAX


def io_shiftmax(rows, D, x_bytes=1):
    """x read once, y (int8) written once."""
    return rows * D * (x_bytes + 1)


def flops_shiftgelu(n):
    """n elements."""
    return n * OPS_SHIFTGELU


def io_shiftgelu(n, x_bytes=1):
    return n * (x_bytes + 1)


def flops_i_layernorm(rows, D):
    return rows * (D * OPS_LAYERNORM + OPS_LAYERNORM_ROW)


def io_i_layernorm(rows, D, x_bytes=1):
    """x read, y (int8) written; the per-channel multipliers and offsets (2 x int64 [D]) read
    once per row program, from L2 after the first."""
    return rows * D * (x_bytes + 1) + 16 * D


def flops_requantize(n):
    return n * OPS_REQUANTIZE


def io_requantize(n, N, bits=8):
    """The int32 accumulator read, the output (int8, or int32 above 8 bits) written, the
    per-channel multiplier and shift (2 x int64 [N])."""
    return n * (4 + (1 if bits <= 8 else 4)) + 16 * N


def flops_int8_matmul(M, K, N, bias=False, requant=False):
    """2 M N K on the tensor cores; the epilogue's bias (1) and requantisation per output."""
    return 2 * M * N * K + M * N * ((1 if bias else 0) + (OPS_REQUANTIZE if requant else 0))


def io_int8_matmul(M, K, N, bias=False, requant=False, block_m=128, block_n=128):
    """a read once per column block of block_n outputs and b once per row block of block_m
    (the L2 reuse of grouped tiles not counted), the output written once (int32, or int8
    with requantisation), bias (int32 [N]) and multiplier and shift (2 x int64 [N])."""
    reads = M * K * (N / block_n) + K * N * (M / block_m)
    out = M * N * (1 if requant else 4)
    return reads + out + (4 * N if bias else 0) + (16 * N if requant else 0)


def io_int8_matmul_min(M, K, N, requant=False):
    """Each operand read once and the output written once: the traffic floor."""
    return M * K + K * N + M * N * (1 if requant else 4)
