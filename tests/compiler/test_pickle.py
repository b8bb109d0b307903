"""Pickling a compiled module (pickle, torch.save) gives back what pickling any nn.Module
does: each parameter and buffer with its own dtype, device and requires_grad flag, each
submodule's training flag, the same outputs, and the input check; deep copies too."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch

from ncd import gallery
from ncd.compiler import compile as ncd_compile
from ncd.compiler.errors import InputError


def _saved(module):
    buf = io.BytesIO()
    torch.save(module, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def _tensors(module):
    """name -> (dtype, device, requires_grad, value) of every parameter and buffer."""
    out = {}
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        out[name] = (t.dtype, t.device, t.requires_grad, t.detach().clone())
    return out


def _same_tensors(got, want):
    assert sorted(got) == sorted(want)
    for name, (dtype, device, grad, value) in want.items():
        assert got[name][:3] == (dtype, device, grad), name
        assert torch.equal(got[name][3], value), name


def _mixed(module):
    """A mixed-precision, partly frozen setup: the body in float16, ff_down kept float32
    with values float16 cannot hold, ln1 frozen, ln2 in eval mode."""
    module.half()
    module.ff_down.float()
    with torch.no_grad():
        module.ff_down.weight.copy_(torch.randn_like(module.ff_down.weight) / 3)
    module.ln1.requires_grad_(False)
    module.ln2.eval()
    return module


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_each_tensor_keeps_its_dtype_and_flags_as_in_a_plain_module(how):
    torch.manual_seed(0)
    m = _mixed(ncd_compile(gallery.get("transformer_block")))
    # the expectation, from torch itself: a plain nn.Module of the same submodules
    plain = _mixed(
        torch.nn.ModuleDict(
            {
                "ln1": torch.nn.LayerNorm(32),
                "ln2": torch.nn.LayerNorm(32),
                "ff_down": torch.nn.Linear(64, 32),
            }  # fmt: skip
        )
    )
    back = pickle.loads(pickle.dumps(m)) if how == "pickle" else _saved(m)
    plain_back = pickle.loads(pickle.dumps(plain)) if how == "pickle" else _saved(plain)
    assert plain_back.ff_down.weight.dtype == torch.float32
    assert not plain_back.ln1.weight.requires_grad and not plain_back.ln2.training
    _same_tensors(_tensors(back), _tensors(m))
    for name in ("ln1", "ln2", "ff_down"):
        got, want = back.get_submodule(name), plain_back[name]
        assert got.weight.dtype == want.weight.dtype
        assert got.weight.requires_grad == want.weight.requires_grad
        assert got.training == want.training
    assert back.q_proj.weight.dtype == torch.float16 and back.training


def test_frozen_float32_module_gives_the_same_outputs_and_gradients_after_reload():
    torch.manual_seed(0)
    m = ncd_compile(gallery.get("transformer_block"))
    m.ln1.requires_grad_(False)
    m.q_proj.requires_grad_(False)
    back = _saved(m)
    x = torch.randn(2, 16, 32)
    torch.testing.assert_close(back(x), m(x), rtol=0, atol=0)
    back(x).sum().backward()
    trained = {n for n, p in back.named_parameters() if p.grad is not None}
    assert trained == {n for n, p in m.named_parameters() if p.requires_grad}
    with pytest.raises(InputError, match="expected 3 axes"):
        back(x[None])


def test_a_module_moved_to_float64_reloads_in_float64():
    m = ncd_compile(gallery.get("transformer_block")).double()
    back = _saved(m)
    _same_tensors(_tensors(back), _tensors(m))
    x = torch.randn(2, 16, 32, dtype=torch.float64)
    torch.testing.assert_close(back(x), m(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["transformer", "gla_block", "mamba_block", "transformer_block"])
def test_a_deep_copy_saves_and_reloads_like_the_original(name):
    torch.manual_seed(0)
    m = ncd_compile(gallery.get(name))
    copied = copy.deepcopy(m)
    copied.requires_grad_(False)
    back = _saved(copied)
    again = pickle.loads(pickle.dumps(copy.deepcopy(back)))  # a copy of a reloaded one, too
    _same_tensors(_tensors(back), _tensors(copied))
    _same_tensors(_tensors(again), _tensors(copied))
    inputs = [_example(dt, axes) for dt, axes in _inputs(m)]
    want = m(*inputs)
    for module in (back, again):
        got = module(*inputs)
        if isinstance(want, dict):
            for k in want:
                torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)
        else:
            torch.testing.assert_close(got, want, rtol=0, atol=0)
        with pytest.raises(InputError):
            module(*[x[None] for x in inputs])


def _inputs(module):
    """(dtype name, {axis: size}) of the module's inputs, from its input check."""
    (check,) = module._forward_pre_hooks.values()
    return list(check.expected.values())


def _example(dtype: str, axes: dict):
    """An input: bound sizes as the circuit has them, a free size (a batch) 2."""
    shape = tuple(n if isinstance(n, int) else 2 for n in axes.values())
    return torch.randint(0, 8, shape) if "int" in dtype else torch.randn(shape)
