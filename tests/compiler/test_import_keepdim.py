"""Reductions with keepdim=True, as hand-written norms and softmaxes use them: the imported
module runs at batch and sequence sizes other than the example's and gives the original
module's outputs there.

The language's reduce drops the axes it reduces; the size-1 dims torch keeps stay off the wire
(a binary box broadcasts by name), and where a box or an output needs torch's shape, a unit
axis is split off a neighbour, which the compiled module does not fix (it infers that size)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ncd.compiler import compile as ncd_compile
from ncd.compiler import from_torch


class HandWritten(nn.Module):
    """An RMS norm and a layer norm written out, a softmax made stable by its row maximum
    (`max(dim, keepdim=True).values`), and the RMS norm's 1/rms returned too (`[..., 1]`)."""

    def __init__(self, d=8):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(d) + 0.5)
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
        h = self.lin(x * rstd * self.weight)
        mu = h.mean(-1, keepdim=True)
        h = (h - mu) / torch.sqrt((h - mu).pow(2).mean(-1, keepdim=True) + 1e-5)
        e = torch.exp(h - h.max(-1, keepdim=True).values)
        return e / e.sum(-1, keepdim=True), rstd


@pytest.mark.parametrize(
    "example, others",
    [((2, 8), [(5, 8), (1, 8)]), ((2, 5, 8), [(5, 5, 8), (3, 7, 8)])],
    ids=["B D", "B T D"],
)
def test_keepdim_reductions_run_at_other_batch_sizes(example, others):
    torch.manual_seed(0)
    model = HandWritten().double().eval()
    circuit = from_torch(model, (torch.randn(*example, dtype=torch.float64),))
    kinds = [b.kind for b in circuit.boxes]
    assert "opaque" not in kinds and {"rmsnorm", "layernorm", "reduce"} <= set(kinds), kinds
    # a unit axis only where torch's shape leaves the circuit (the returned 1/rms), none for
    # the maximum that the softmax subtracts
    assert [k for k in kinds if k in ("split_axis", "index")] == ["split_axis"], kinds
    compiled = ncd_compile(circuit, dtype=torch.float64).eval()
    for shape in [example, *others]:
        x = torch.randn(*shape, dtype=torch.float64)
        with torch.no_grad():
            got, want = compiled(x), model(x)
        got = list(got.values()) if isinstance(got, dict) else list(got)
        assert [tuple(t.shape) for t in got] == [tuple(t.shape) for t in want], shape
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)
