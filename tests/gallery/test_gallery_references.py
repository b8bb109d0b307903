"""Gallery circuits, compiled, agree with hand-written PyTorch references in float64: outputs
and the gradients of every input and parameter (weights mapped by name)."""

from __future__ import annotations

import pytest
import torch

from ncd import gallery
from ncd.compiler import compile as ncd_compile

from .references import REFERENCES

DTYPES = {"float32": torch.float64, "int64": torch.int64}


def _inputs(checked, gen):
    out = {}
    for name, t in checked.inputs.items():
        shape = [checked.number(a.size) for a in t.axes]
        out[name] = torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)
    return out


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_compiled_matches_reference(name):
    circuit = gallery.get(name)
    checked = circuit.check()
    gen = torch.Generator().manual_seed(0)
    model = ncd_compile(circuit, dtype=torch.float64)
    with torch.no_grad():  # random non-trivial values everywhere (norms init to 1/0 otherwise)
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3 + 0.1)
    params = dict(model.named_parameters())
    xs = _inputs(checked, gen)
    got = model(*xs.values())
    got = got if isinstance(got, dict) else {next(iter(checked.outputs)): got}
    want = REFERENCES[name](params, **xs)
    assert set(got) == set(want)
    for k in want:
        assert got[k].shape == want[k].shape, k
        torch.testing.assert_close(got[k], want[k], rtol=1e-9, atol=1e-9)
    # gradients of a random projection of the outputs, through both
    weights = {k: torch.randn(want[k].shape, generator=gen, dtype=torch.float64) for k in want}
    leaves = [*xs.values(), *params.values()]
    g_got = torch.autograd.grad(sum((got[k] * weights[k]).sum() for k in got), leaves,
                                allow_unused=True)  # fmt: skip
    g_want = torch.autograd.grad(sum((want[k] * weights[k]).sum() for k in want), leaves,
                                 allow_unused=True)  # fmt: skip
    names = [*xs, *params]
    for n, a, b in zip(names, g_got, g_want, strict=True):
        assert (a is None) == (b is None), n
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9, msg=lambda m, n=n: f"{n}: {m}")
