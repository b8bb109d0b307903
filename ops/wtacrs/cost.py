"""FLOP and memory formulas of the WTA-CRS linear map, for the cost model.

Plain functions of the sizes (numbers or sympy symbols). ``n`` rows (batch · tokens), ``D``
input and ``J`` output features, ``k`` sampled rows (`kept_rows`). A multiply-add counts 2 FLOPs.
"""

import math


def kept_rows(n: int, budget: float) -> int:
    """k, the number of sampled rows: ceil(budget · n), at least 1 and at most n (the cost
    model writes it ceiling(budget · n) for a symbolic n)."""
    return max(1, min(n, math.ceil(budget * n - 1e-9)))


def flops_forward(n, D, J, bias=True):
    """The exact product x Wᵀ (+ b); the row norms and the sampling are O(n D) and not
    counted."""
    return 2 * n * D * J + (n * J if bias else 0)


def flops_backward(n, D, J, k, grad_x=True, bias=True):
    """dW from the k sampled rows (2 k D J); dx = dy W exact (2 n J D); db = Σ dy."""
    return 2 * k * D * J + (2 * n * J * D if grad_x else 0) + (n * J if bias else 0)


def kept_bytes(k, D, bytes_per=4, index_bytes=8):
    """The k sampled rows of x, scaled by their weights, and their k row indices (int64)."""
    return k * D * bytes_per + k * index_bytes
