"""Empty axes through the op library's linear maps and norms: results of the right (empty)
shape, as torch's own layers give, and a backward that runs; keys of no features through the
attention-like ops and their one-token steps. (The integer ops' and the gated families' other
empty inputs are tested with them.)"""

import pytest
import torch
import torch.nn.functional as F

from ncd import ops

# On a GPU the same shapes go through the CUDA paths (the kernels, where the op has them).
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))]  # fmt: skip


def _leaf(*shape, device="cpu"):
    return torch.randn(*shape, device=device, requires_grad=True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", ["wtacrs_linear", "lmul_linear"])
@pytest.mark.parametrize("shape", [(0, 8), (2, 3, 0), (4, 0)], ids=str)
def test_linear_maps(op, shape, device):
    """No rows, or no features (K = 0: the output is the bias, as F.linear gives)."""
    x, w, b = (_leaf(*s, device=device) for s in (shape, (5, shape[-1]), (5,)))
    y = getattr(ops, op)(x, w, b)
    want = F.linear(x, w, b)
    assert y.shape == want.shape
    torch.testing.assert_close(y, want)
    y.sum().backward()
    assert b.grad is not None and w.grad.shape == w.shape


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", ["layer_norm", "rms_norm", "add_layer_norm", "add_rms_norm"])
@pytest.mark.parametrize("shape", [(0, 8), (3, 0)], ids=str)
def test_norms(op, shape, device):
    x = _leaf(*shape, device=device)
    args = (x, torch.randn(shape, device=device)) if op.startswith("add") else (x,)
    y = getattr(ops, op)(*args)
    y = y[0] if isinstance(y, tuple) else y
    assert y.shape == shape
    y.sum().backward()
    assert x.grad.shape == shape


@pytest.mark.interpret
def test_norms_of_no_features_on_the_kernel_path():
    """Rows of no features never reach the kernels (which tile at least 16 features)."""
    x = _leaf(2, 3, 0)
    y, s = ops.add_rms_norm(x, torch.randn(2, 3, 0), backend="triton")
    assert y.shape == s.shape == (2, 3, 0)
    assert ops.layer_norm(x, backend="triton").shape == (2, 3, 0)


# Keys of no features (K = 0) with the default scale K^-0.5: every score is 0 whatever the scale.
_NO_KEYS = {
    "linear_attention": lambda q, v, z: ops.linear_attention(q, q, v),
    "simple_gla": lambda q, v, z: ops.simple_gla(q, q, v, z[..., 0]),
    "gla": lambda q, v, z: ops.gla(q, q, v, z[..., :0]),
    "delta_rule": lambda q, v, z: ops.delta_rule(q, q, v, z[..., 0] + 0.5),
    "gated_delta_rule": lambda q, v, z: ops.gated_delta_rule(q, q, v, z[..., 0], z[..., 0] + 0.5),
    "softmax_attention": lambda q, v, z: ops.softmax_attention(q, q, v, causal=True),
}


@pytest.mark.parametrize("op", list(_NO_KEYS))
def test_keys_of_no_features_with_the_default_scale(op):
    """The linear family reads a state of no rows (outputs 0); softmax attention weighs every
    key alike (each query's output is the mean of the values up to it)."""
    B, T, H, V = 2, 5, 3, 4
    q = _leaf(B, T, H, 0)
    v = _leaf(B, T, H, V)
    z = torch.zeros(B, T, H, 1)
    o = _NO_KEYS[op](q, v, z)
    o = o[0] if isinstance(o, tuple) else o
    if op == "softmax_attention":
        want = v.cumsum(1) / torch.arange(1, T + 1).view(1, T, 1, 1)
    else:
        want = torch.zeros(B, T, H, V)
    torch.testing.assert_close(o, want)
    o.sum().backward()
    assert v.grad.shape == v.shape


_NO_KEYS_STEP = {
    "simple_gla_step": lambda q, v, z: ops.simple_gla_step(q, q, v, z[..., 0], None),
    "gla_step": lambda q, v, z: ops.gla_step(q, q, v, z[..., :0], None),
    "delta_rule_step": lambda q, v, z: ops.delta_rule_step(q, q, v, z[..., 0] + 0.5),
    "gated_delta_rule_step": lambda q, v, z: ops.gated_delta_rule_step(
        q, q, v, z[..., 0], z[..., 0] + 0.5
    ),
}


@pytest.mark.parametrize("op", list(_NO_KEYS_STEP))
def test_one_token_steps_with_keys_of_no_features(op):
    B, H, V = 2, 3, 4
    o, state = _NO_KEYS_STEP[op](torch.randn(B, H, 0), torch.randn(B, H, V), torch.zeros(B, H, 1))
    torch.testing.assert_close(o, torch.zeros(B, H, V))
    assert state.shape == (B, H, 0, V)
