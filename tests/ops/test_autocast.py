"""The ops under torch.autocast: their operands are cast as torch casts those of its own
attention (scaled_dot_product_attention) and linear maps, so a model trained under autocast
with float32 parameters runs them, whatever mix of dtypes its layers hand over."""

import pytest
import torch
import torch.nn.functional as F

from ncd import ops

B, T, H, K = 2, 20, 3, 16
BF = torch.bfloat16
# On a GPU the same checks run under CUDA's autocast, where the ops take their kernels.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))]  # fmt: skip


def _inputs(seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=g, dtype=BF)  # a linear map's output under autocast
    k = F.normalize(torch.randn(B, T, H, K, generator=g), dim=-1).to(BF)
    v = torch.randn(B, T, H, K, generator=g)  # float32: another path's output
    gates = {
        "g": -torch.rand(B, T, H, generator=g) / 4,
        "beta": torch.rand(B, T, H, generator=g),
        "gk": -torch.rand(B, T, H, K, generator=g) / 4,
    }
    q, k, v = (x.to(device) for x in (q, k, v))
    return q, k, v.requires_grad_(), {n: x.to(device) for n, x in gates.items()}


OPS = {
    "linear_attention": lambda q, k, v, a: ops.linear_attention(q, k, v)[0],
    "simple_gla": lambda q, k, v, a: ops.simple_gla(q, k, v, a["g"])[0],
    "gla": lambda q, k, v, a: ops.gla(q, k, v, a["gk"])[0],
    "delta_rule": lambda q, k, v, a: ops.delta_rule(q, k, v, a["beta"])[0],
    "gated_delta_rule": lambda q, k, v, a: ops.gated_delta_rule(q, k, v, a["g"], a["beta"])[0],
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", list(OPS))
def test_mixed_operands_under_autocast(op, device):
    """q, k bfloat16 and v float32: refused outside autocast (as torch's attention refuses
    them); under autocast the output is bfloat16 and equals the op on bfloat16 operands,
    computed in float32 from them, within bfloat16's rounding; v's gradient is float32."""
    q, k, v, a = _inputs(device=device)
    with pytest.raises(ValueError, match="dtypes"):
        OPS[op](q, k, v, a)
    with torch.autocast(device, dtype=BF):
        o = OPS[op](q, k, v, a)
    assert o.dtype == BF
    want = OPS[op](q.float(), k.float(), v.detach().to(BF).float(), a)
    torch.testing.assert_close(o.float(), want, rtol=2e-2, atol=2e-2)
    o.float().sum().backward()
    assert v.grad.dtype == torch.float32 and torch.isfinite(v.grad).all()


@pytest.mark.parametrize("device", DEVICES)
def test_softmax_attention_casts_as_torch_does(device):
    """float32 q, k, v under autocast: bfloat16 out, as torch's scaled_dot_product_attention
    gives under autocast, and close to it."""
    q, k, v, _ = _inputs(1, device)
    q, k, v = q.float(), k.float(), v.detach()
    with torch.autocast(device, dtype=BF):
        o = ops.softmax_attention(q, k, v, causal=True)
        ref = F.scaled_dot_product_attention(*(x.transpose(1, 2) for x in (q, k, v)),
                                             is_causal=True).transpose(1, 2)  # fmt: skip
    assert o.dtype == ref.dtype == BF
    torch.testing.assert_close(o.float(), ref.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("device", DEVICES)
def test_wtacrs_linear_casts_as_a_linear_map(device):
    """bfloat16 x with a float32 weight: a clear error outside autocast, and under it the
    output F.linear gives there (the forward is exact); the weight's gradient float32."""
    x = torch.randn(4, 6, 8, dtype=BF, device=device)
    w = torch.randn(5, 8, device=device, requires_grad=True)
    b = torch.randn(5, device=device, requires_grad=True)
    with pytest.raises(ValueError, match="weight.dtype: expected torch.bfloat16 as x"):
        ops.wtacrs_linear(x, w, b)
    with torch.autocast(device, dtype=BF):
        y = ops.wtacrs_linear(x, w, bias=b)
        ref = F.linear(x, w, b)
    assert y.dtype == ref.dtype == BF
    torch.testing.assert_close(y, ref)
    y.float().sum().backward()
    assert w.grad.dtype == torch.float32 and b.grad.dtype == torch.float32
