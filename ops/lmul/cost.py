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


def temp_bytes(rows, K, J, bytes_per=4):
    """The forward's largest temporaries for a chunk of `rows` rows, per product: the integer
    sum and the exponent (int64, 2 x 8 bytes), the overflow and underflow masks, the float
    pattern and its signed copy (about 8 bytes more; checked against the CPU allocator's peak
    by tests/cost/test_measure.py), and the products before the sum over K. `rows` is
    min(n, CHUNK_ELEMENTS // (J K)); the cost model passes n (exact while n J K is at most
    CHUNK_ELEMENTS, an overestimate above)."""
    return rows * J * K * (3 * 8 + bytes_per)
