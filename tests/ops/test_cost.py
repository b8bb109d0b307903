"""The op families' cost formulas: numbers, sympy symbols, and FLOPs against PyTorch's own
count of the reference."""

import sympy
import torch
from torch.utils.flop_counter import FlopCounterMode

from ncd.ops import attention_cost, linear_attention_cost
from ncd.ops.attention.reference import softmax_attention_reference

FUNCS = [
    attention_cost.flops_forward,
    attention_cost.flops_backward,
    attention_cost.io_forward,
    attention_cost.io_backward,
    attention_cost.activation_bytes,
    linear_attention_cost.flops_forward,
    linear_attention_cost.flops_backward,
    linear_attention_cost.flops_minimal,
    linear_attention_cost.io_forward,
    linear_attention_cost.io_backward,
    linear_attention_cost.activation_bytes,
]


def test_symbols_and_numbers_agree():
    B, T, H, K = sympy.symbols("B T H K", positive=True)
    sizes = {B: 4, T: 1024, H: 16, K: 128}
    for f in FUNCS:
        expr = f(B, T, H, K)
        number = f(4, 1024, 16, 128)
        assert number > 0
        assert abs(float(expr.subs(sizes)) - number) <= 1e-9 * number, f.__name__


def test_attention_flops_match_pytorch_count():
    B, T, S, H, D = 2, 24, 40, 3, 16
    q, k, v = torch.randn(B, T, H, D), torch.randn(B, S, H, D), torch.randn(B, S, H, D)
    with FlopCounterMode(display=False) as count:
        softmax_attention_reference(q, k, v)
    assert count.get_total_flops() == attention_cost.flops_forward(B, T, H, D, S=S, causal=False)


def test_linear_attention_is_linear_in_T():
    f = linear_attention_cost.flops_forward
    assert f(4, 2048, 16, 128) == 2 * f(4, 1024, 16, 128)
    assert linear_attention_cost.io_forward(4, 2048, 16, 128) == 2 * (
        linear_attention_cost.io_forward(4, 1024, 16, 128)
    )
