"""Every gallery entry traces whole: torch.compile(fullgraph=True) and torch.export give the
eager module's outputs. The packed-sequence entries (offsets as cu_seqlens) trace to graphs
whose shapes do not depend on the offsets: run on offsets other than those they were traced
with (by torch.compile, torch.export and torch.jit.trace), they still give the eager
module's outputs, and the exported program still refuses offsets that are no packing of T
(CPU offsets are checked inside the graph)."""

from __future__ import annotations

import pytest
import torch

from ncd import gallery
from ncd.compiler import compile as ncd_compile

from .helpers import as_dict, example_inputs

TOL = {"rtol": 1e-4, "atol": 1e-5}  # float32; the packed graphs restart by a log-decay of -64


def _close(got, want, checked):
    got, want = as_dict(got, checked), as_dict(want, checked)
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], **TOL)


@pytest.mark.parametrize("name", gallery.names())
def test_compile_fullgraph_and_export_give_the_eager_outputs(name):
    c = gallery.get(name)
    checked = c.check()
    torch.manual_seed(0)
    m = ncd_compile(c).eval()
    xs = tuple(example_inputs(checked, dtype=torch.float32))
    torch._dynamo.reset()  # each entry's own compile, not a recompile of the last one's
    with torch.no_grad():
        want = m(*xs)
        _close(torch.compile(m, backend="eager", fullgraph=True)(*xs), want, checked)
        _close(torch.export.export(m, xs).module()(*xs), want, checked)


# Offsets other than the example inputs' (those of compiler/examples.py), empty sequences too.
PACKED = {
    "deltanet_packed": [[0, 5, 5, 48], [0, 1, 2, 48], [0, 40, 47, 48], [0, 48, 48, 48]],
    "scatterformer_attention": [[0, 1, 2, 3, 16], [0, 16, 16, 16, 16], [0, 3, 9, 10, 16]],
}


@pytest.fixture(scope="module", params=sorted(PACKED))
def packed(request):
    """A packed entry's module, its input x, and the module compiled, exported and traced
    with the example offsets."""
    c = gallery.get(request.param)
    torch.manual_seed(0)
    m = ncd_compile(c).eval()
    xs = tuple(example_inputs(c.check(), dtype=torch.float32))
    torch._dynamo.reset()
    compiled = torch.compile(m, backend="aot_eager", fullgraph=True)
    exported = torch.export.export(m, xs).module()
    with pytest.warns(torch.jit.TracerWarning):  # the input check reads sizes as numbers
        traced = torch.jit.trace(m, xs, check_trace=False)
    return request.param, m, xs[0], compiled, exported, traced


def test_packed_graphs_do_not_keep_the_offsets_they_were_traced_with(packed):
    name, m, x, compiled, exported, traced = packed
    for offsets in PACKED[name]:
        o = torch.tensor(offsets, dtype=torch.int32)
        with torch.no_grad():
            want = m(x, o)
            for run in (compiled, exported, traced):
                torch.testing.assert_close(run(x, o), want, **TOL)


def test_packed_gradients_when_compiled(packed):
    name, m, x, compiled, _, _ = packed
    o = torch.tensor(PACKED[name][0], dtype=torch.int32)
    x = x.clone().requires_grad_(True)
    want = torch.autograd.grad(m(x, o).square().sum(), [x, *m.parameters()])
    got = torch.autograd.grad(compiled(x, o).square().sum(), [x, *m.parameters()])
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_the_exported_program_refuses_offsets_that_are_no_packing(packed):
    name, m, x, _, exported, _ = packed
    T = x.shape[0]
    bad = torch.tensor([0, 3, 2, *[T] * (len(PACKED[name][0]) - 3)], dtype=torch.int32)
    with pytest.raises(ValueError, match=rf"offsets: expected non-decreasing from 0 to T={T}"):
        m(x, bad)  # eager: the ValueError of test_packed_offsets.py
    with pytest.raises(RuntimeError, match=rf"offsets: expected non-decreasing from 0 to T={T}"):
        exported(x, bad)
    with pytest.raises(RuntimeError, match=rf"offsets: expected non-decreasing from 0 to T={T}"):
        torch.compile(m, backend="aot_eager")(x, bad)


def test_a_module_traced_by_torch_jit_still_compiles_whole():
    """torch.jit.trace runs the input check with traced sizes, which it must not keep."""
    c = gallery.get("mlp")
    m = ncd_compile(c).eval()
    xs = tuple(example_inputs(c.check(), dtype=torch.float32))
    with pytest.warns(torch.jit.TracerWarning):
        torch.jit.trace(m, xs, check_trace=False)
    torch._dynamo.reset()
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(m, backend="eager", fullgraph=True)(*xs), m(*xs))
