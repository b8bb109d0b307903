"""Work and memory formulas of L-Mul, for the cost model.

Plain functions of the sizes (numbers or sympy symbols). One L-Mul is one integer addition
of the exponent-and-mantissa fields (the paper's count); the PyTorch form also splits each
operand into its fields once. None of it is matrix-engine work: a matrix product of n rows,
K inputs and J outputs costs n J K L-Muls and n J K additions, and 0 `mm` FLOPs forward.
The backward is the exact linear map's (straight-through): 2 n J K each for dx and dW.
"""

CHUNK_ELEMENTS = 1 << 20  # product.py: the products of one chunk of rows


def flops_forward(n, K, J, bias=True):
    """One L-Mul and one addition per product, one addition per output for the bias."""
    return 2 * n * J * K + (n * J if bias else 0)


def flops_backward(n, K, J, grad_x=True, bias=True):
    return 2 * n * J * K * (2 if grad_x else 1) + (n * J if bias else 0)


def kept_bytes(n, K, bytes_per=4):
    """x, for dW = dyᵀ x (the weight is a parameter)."""
    return n * K * bytes_per


def temp_bytes(n, K, J, bytes_per=4, maximum=max, minimum=min):
    """The PyTorch form's largest forward temporaries beyond its output, for n rows, K inputs
    and J outputs (checked against the CPU allocator's peak, tests/cost/test_measure_sizes.py).

    It works in the operands' format, float64's own, else float32 (w = 4 or 8 bytes), on
    chunks of min(n, max(1, CHUNK_ELEMENTS // (J K))) rows. Per product of a chunk, at its
    peak (the sign applied): the int64 exponent field, the sign test (1 byte), the product's
    pattern (a new w-byte tensor, except in float64 where it is the int64 field itself), its
    negation and the selected one (w each): 21 bytes, 25 in float64. From the second chunk on,
    the chunk before's products (w each) are still held. Each element of x's chunk and of W
    split into three int64 fields and a flag: 25 bytes. 16-bit operands add their float32
    copies and the float32 output summed into (less the output itself). `maximum`, `minimum`:
    of two sizes (the cost model passes sympy's Max and Min for symbolic sizes; ops imports
    no sympy)."""
    w = 8 if bytes_per == 8 else 4
    per = 9 + 2 * w + (0 if w == 8 else w)
    rows = minimum(n, maximum(J * K, CHUNK_ELEMENTS) // (J * K))  # max(1, CHUNK_ELEMENTS // (J K))
    products = J * K * maximum(rows * per, rows * w + per * minimum(rows, n - rows))
    fields = 25 * (rows + J) * K
    wider = 4 * (n + J) * K + (4 - bytes_per) * n * J if bytes_per < 4 else 0
    return products + fields + wider
