"""Empty axes through the op library's linear maps and norms: results of the right (empty)
shape, as torch's own layers give, and a backward that runs. (The integer ops' and the gated
families' empty inputs are tested with them.)"""

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
