"""A compiled circuit is a plain nn.Module: torch.compile, torch.func, autocast, state_dict
and pickling work on it; parameters are named and initialised like PyTorch's layers."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

from ncd import gallery
from ncd.circuits.errors import NcdError
from ncd.compiler import compile as ncd_compile

from .helpers import as_dict, example_inputs


@pytest.fixture(scope="module")
def block():
    c = gallery.get("transformer_block")
    return c, ncd_compile(c), example_inputs(c.check(), dtype=torch.float32)[0]


def test_parameter_names_follow_boxes():
    m = ncd_compile(gallery.get("transformer"))
    keys = list(m.state_dict())
    assert keys[:3] == ["embed.weight", "blocks.0.ln1.weight", "blocks.0.ln1.bias"]
    assert "blocks.1.ff_up.weight" in keys and "unembed.weight" in keys
    assert isinstance(m.blocks, nn.ModuleList) and len(m.blocks) == 2
    q_proj = m.get_submodule("blocks.0.q_proj")  # D -> H K: nn.Linear(D, H*K)'s parameters
    assert q_proj.weight.shape == (32, 32) and q_proj.bias.shape == (32,)


def test_initialisation_like_pytorch():
    torch.manual_seed(0)
    m = ncd_compile(gallery.get("transformer_block"))
    w = m.ff_up.weight  # [F D]: nn.Linear(D, F) draws from U(-1/sqrt(D), 1/sqrt(D))
    bound = 1 / math.sqrt(32)
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert abs(w.std().item() - bound / math.sqrt(3)) < 0.1 * bound
    assert torch.equal(m.ln1.weight, torch.ones(32)) and torch.equal(m.ln1.bias, torch.zeros(32))


def test_torch_compile(block):
    c, m, x = block
    compiled = torch.compile(m, backend="aot_eager", fullgraph=True)
    y = compiled(x)
    torch.testing.assert_close(y, m(x))
    y.sum().backward()
    assert m.q_proj.weight.grad is not None


@pytest.mark.parametrize("name", ["gla_block", "deltanet_block", "lightning_block", "lmul_linear"])
def test_blocks_on_ncd_ops_trace_whole(name):
    """Blocks on ncd.ops' CPU forms under torch.compile (fullgraph: no graph break; the host
    reads of GLA's choice of form, of the decay check and of L-Mul's special values are
    skipped when traced) and torch.export: the eager outputs."""
    c = gallery.get(name)
    m = ncd_compile(c).eval()
    xs = tuple(example_inputs(c.check(), dtype=torch.float32))
    want = m(*xs)
    compiled = torch.compile(m, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(*xs), want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.export.export(m, xs).module()(*xs), want, rtol=1e-4,
                               atol=1e-5)  # fmt: skip


def test_torch_func(block):
    c, m, x = block
    params = {k: v.detach() for k, v in m.named_parameters()}

    def loss(p):
        return torch.func.functional_call(m, p, (x,)).square().mean()

    grads = torch.func.grad(loss)(params)
    ref = torch.autograd.grad(m(x).square().mean(), list(m.parameters()))
    for (name, g), r in zip(grads.items(), ref, strict=True):
        torch.testing.assert_close(g, r, msg=name)
    batched = torch.func.vmap(lambda xi: m(xi[None])[0])(x)
    torch.testing.assert_close(batched, m(x), rtol=1e-5, atol=1e-5)


def test_autocast(block):
    c, m, x = block
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    assert y.dtype in (torch.bfloat16, torch.float32)
    torch.testing.assert_close(y.float(), m(x), rtol=0.05, atol=0.05)


def test_state_dict_and_pickle_round_trip(block):
    c, m, x = block
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    fresh = ncd_compile(c)
    assert not torch.equal(fresh(x), m(x))
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf))
    assert torch.equal(fresh(x), m(x))
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    again = torch.load(buf, weights_only=False)
    assert torch.equal(again(x), m(x))
    assert torch.equal(copy.deepcopy(m)(x), m(x))


def test_dtype_and_sizes():
    c = gallery.get("transformer")
    m = ncd_compile(c, sizes={"N": 3, "T": 5}, dtype=torch.float64)
    assert len(m.blocks) == 3 and m.embed.weight.dtype == torch.float64
    assert m(torch.zeros(2, 5, dtype=torch.long)).shape == (2, 5, 50)


@pytest.mark.parametrize("name", gallery.names())
def test_every_gallery_entry_runs_in_bfloat16(name):
    """compile(dtype=bfloat16) as a GPU user builds a model: a training step runs and every
    output is bfloat16 within bfloat16's rounding of the float32 module's (the same weights);
    integer outputs equal. (A float32 one-hot once promoted the routed keys of mom_block to
    float32, which the linear-attention kernel refuses.)"""
    c = gallery.get(name)
    ref = ncd_compile(c)
    m = ncd_compile(c, dtype=torch.bfloat16)
    m.load_state_dict(ref.state_dict())
    xs = example_inputs(c.check(), dtype=torch.float32)
    ys = [as_dict(y, c.check()) for y in (ref(*xs), m(*[_bf16(x) for x in xs]))]
    for out, y in ys[1].items():
        want = ys[0][out]
        if not want.is_floating_point():
            assert torch.equal(y, want), out
            continue
        assert y.dtype == torch.bfloat16, out
        y, want = y.detach().float(), want.detach()
        assert float((y - want).norm() / want.norm()) < 0.05, out
    floats = [y for y in ys[1].values() if y.is_floating_point()]
    if floats and any(p.requires_grad for p in m.parameters()):
        sum(y.float().square().mean() for y in floats).backward()
        assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


# SOFT's Newton iterations for the landmarks' pseudo-inverse amplify bfloat16's rounding of
# their matrix products (8e-2 where the other entries stay under 1e-2).
LOOSE = {"soft_attention": 0.15}


@pytest.mark.parametrize("name", gallery.names())
def test_every_gallery_entry_trains_under_autocast(name):
    """float32 parameters under torch.autocast(bfloat16), the usual mixed-precision step:
    every entry runs forward and backward, its outputs within bfloat16's rounding of the
    float32 module's, its parameters' gradients float32 and finite. (The gated blocks' ops
    once refused the mixed dtypes autocast hands them: mamba_block, mom_block, wtacrs.)"""
    c = gallery.get(name)
    m = ncd_compile(c)
    xs = example_inputs(c.check(), dtype=torch.float32)
    want = as_dict(m(*xs), c.check())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = as_dict(m(*xs), c.check())
    for out, y in got.items():
        if not want[out].is_floating_point():
            assert torch.equal(y, want[out]), out
            continue
        y, w = y.detach().float(), want[out].detach()
        assert float((y - w).norm() / w.norm()) < LOOSE.get(name, 0.05), out
    floats = [y for y in got.values() if y.is_floating_point() and y.requires_grad]
    if floats:
        sum(y.float().square().mean() for y in floats).backward()
        grads = [p.grad for p in m.parameters() if p.grad is not None]
        assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def _bf16(x):
    return x.to(torch.bfloat16) if x.is_floating_point() else x


def test_dtype_by_name_and_bad_dtypes_or_devices_are_clear_errors():
    c = gallery.get("deltanet_block")
    assert next(ncd_compile(c, dtype="bfloat16").parameters()).dtype == torch.bfloat16
    with pytest.raises(NcdError, match=r"dtype.*expected a float dtype.*found torch.int8"):
        ncd_compile(c, dtype=torch.int8)
    with pytest.raises(NcdError, match=r"device.*expected 'cpu', 'cuda'.*found 'tpu'"):
        ncd_compile(c, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(NcdError, match=r"device 'cuda:1' is not available.*found no CUDA"):
            ncd_compile(c, device="cuda:1")


def test_unknown_gallery_names_and_non_modules_are_clear_errors():
    with pytest.raises(KeyError, match=r"no gallery entry 'deltanet'; did you mean deltanet_block"):
        gallery.get("deltanet")
    from ncd import from_torch

    with pytest.raises(NcdError, match="model: expected a torch.nn.Module, found int"):
        from_torch(5, torch.randn(2))
    with pytest.raises(NcdError, match="example_inputs: expected a tensor or a tuple"):
        from_torch(nn.Linear(2, 2), 5)


def test_unbound_sizes_are_a_clear_error():
    c = gallery.get("attention").model_copy(update={"sizes": {}})
    with pytest.raises(NcdError, match="not bound"):
        ncd_compile(c)


def test_pickle_of_a_module_with_fused_kernels():
    c = gallery.get("transformer")
    m = ncd_compile(c, rewrites=True, dtype=torch.float64).eval()
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    again = torch.load(buf, weights_only=False)
    tokens = torch.randint(0, 50, (2, 16))
    assert torch.equal(again(tokens), m(tokens)) and not again.training
