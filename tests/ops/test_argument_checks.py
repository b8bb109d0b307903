"""Arguments the op library refuses with one ValueError that names them, where it used to
give a cryptic error or a silently wrong result: the one-token steps' dtypes, shapes and
scales, values only a host check can see (int32 ranges, negative norms) and a few flags of
the wrong kind. Also parameters of other float dtypes than x in the norms' CPU form, which the
documentation accepts."""

import re

import pytest
import torch

from ncd import ops
from ncd.ops.delta_rule import delta_rule, delta_rule_step
from ncd.ops.linear_attention import linear_attention_step
from ncd.ops.short_conv import short_conv_step

B, H, K, V = 2, 3, 4, 5
q3, v3 = torch.randn(B, H, K), torch.randn(B, H, V)
x4 = torch.randn(1, 6, 2, K)

CASES = {
    "step of integer inputs": (
        lambda: ops.simple_gla_step(q3.long(), q3.long(), v3.long(), -torch.rand(B, H), None),
        "q.dtype: expected float16, bfloat16, float32 or float64",
    ),
    "step of mixed dtypes": (
        lambda: ops.gla_step(q3, q3.double(), v3, -torch.rand(B, H, K), None),
        "dtypes",
    ),
    "step's scale": (lambda: linear_attention_step(q3, q3, v3, None, scale=None), "scale"),
    "step's decay out of range": (
        lambda: linear_attention_step(q3, q3, v3, None, decay=torch.tensor([2.0, -1.0, 0.5])),
        "decay values: expected in (0, 1]",
    ),
    "step's decay a float": (
        lambda: linear_attention_step(q3, q3, v3, None, decay=0.5),
        "decay.shape",
    ),
    "step's z": (
        lambda: linear_attention_step(
            q3, q3, v3, (torch.zeros(B, H, K, V), torch.zeros(B, H, V)), normalize=True
        ),  # fmt: skip
        "state's z shape",
    ),
    "conv step's activation": (
        lambda: short_conv_step(torch.randn(2, 4), None, torch.randn(4, 3), activation="relu"),
        "activation: expected None or 'silu'",
    ),
    "conv step's cache": (
        lambda: short_conv_step(torch.randn(2, 4), torch.randn(2, 3, 4), torch.randn(4, 3)),
        "cache.shape: expected (2, 2, 4)",
    ),
    "conv step's weight": (
        lambda: short_conv_step(torch.randn(2, 4), None, torch.randn(5, 3)),
        "weight.shape",
    ),
    "conv's backend": (
        lambda: ops.short_conv(torch.randn(1, 5, 4), torch.randn(4, 9), backend="bogus"),
        "backend must be one of",
    ),
    "boolean offsets": (
        lambda: ops.simple_gla(
            x4, x4, x4, torch.zeros(1, 6, 2), cu_seqlens=torch.tensor([False, True])
        ),  # fmt: skip
        "cu_seqlens: expected a 1-D integer tensor",
    ),
    "gated rule without gates": (
        lambda: ops.gated_delta_rule(x4, x4, x4, None, torch.rand(1, 6, 2)),
        "g.shape",
    ),
    "keys of no heads": (lambda: ops.softmax_attention(x4, x4[:, :, :0], x4[:, :, :0]), "heads"),
    "a boolean multiplier": (
        lambda: ops.int8_matmul(
            torch.ones(2, 3, dtype=torch.int8), torch.ones(3, 2, dtype=torch.int8), None, True, 1
        ),  # fmt: skip
        "multiplier: expected an int or an integer tensor",
    ),
    "negative gradient norms": (
        lambda: ops.wtacrs_linear(
            torch.randn(8, 4), torch.randn(3, 4, requires_grad=True), grad_norms=-torch.ones(8)
        ),  # fmt: skip
        "grad_norms: expected norms (>= 0)",
    ),
    "ShiftGELU's int32 range": (
        lambda: ops.shiftgelu(torch.tensor([2**30], dtype=torch.int32), 2**-10),
        "int32 x values: expected within +-2^24",
    ),
    "I-LayerNorm's int32 range": (
        lambda: ops.i_layernorm(torch.tensor([[0, 2**30, -(2**30), 5]], dtype=torch.int32)),
        "int32 x values: expected within +-2^15",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_refused_with_a_message_naming_the_argument(name):
    call, message = CASES[name]
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


F32, F64, BF16 = torch.float32, torch.float64, torch.bfloat16


@pytest.mark.parametrize(
    "dtypes", [(F32, BF16, BF16), (F32, F64, None), (BF16, F64, F64), (BF16, F32, BF16)], ids=str
)
def test_norm_parameters_of_another_dtype(dtypes):
    """Parameters are read in float32 (float64 with a float64 x), whatever their own dtype:
    against the float64 formula, to x's rounding."""
    xd, wd, bd = dtypes
    g = torch.Generator().manual_seed(0)
    x, w, b = (
        torch.randn(4, 16, generator=g),
        torch.randn(16, generator=g),
        torch.randn(16, generator=g),
    )
    x, w, b = x.to(xd), w.to(wd), None if bd is None else b.to(bd)
    xf = x.double()
    want = (xf - xf.mean(-1, keepdim=True)) / torch.sqrt(
        xf.var(-1, unbiased=False, keepdim=True) + 1e-5
    )
    want = want * w.double() + (0 if b is None else b.double())
    got = ops.layer_norm(x, w, b)
    assert got.dtype == xd
    tol = 1e-2 if xd == torch.bfloat16 else 1e-5
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)
    rms = xf / torch.sqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6) * w.double()
    torch.testing.assert_close(ops.rms_norm(x, w).double(), rms, rtol=tol, atol=tol)


def test_delta_step_normalises_as_the_whole_op():
    """With use_qk_l2norm in bfloat16, steps continuing a prompt keep the state the whole op
    reaches: both round the normalised q and k to bfloat16."""
    g = torch.Generator().manual_seed(1)
    T = 12
    q, k = (torch.randn(1, T, 2, 8, generator=g).bfloat16() for _ in range(2))
    v = torch.randn(1, T, 2, 8, generator=g).bfloat16()
    beta = torch.rand(1, T, 2, generator=g).bfloat16()
    _, whole = delta_rule(q, k, v, beta, output_final_state=True, use_qk_l2norm=True)
    _, s = delta_rule(q[:, :4], k[:, :4], v[:, :4], beta[:, :4], output_final_state=True,
                      use_qk_l2norm=True)  # fmt: skip
    for t in range(4, T):
        _, s = delta_rule_step(q[:, t], k[:, t], v[:, t], beta[:, t], s, use_qk_l2norm=True)
    torch.testing.assert_close(s, whole, rtol=1e-5, atol=1e-5)
