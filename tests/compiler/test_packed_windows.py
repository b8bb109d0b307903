"""linear_attention, packed and non-causal: each token attends to every token of its own
window (variable lengths, the `cu_seqlens` packing). Compiled module against the interpreter
and against a window-by-window loop, outputs and gradients in float64; the shape rule."""

from __future__ import annotations

import pytest
import torch

from ncd.circuits.builder import Builder
from ncd.circuits.errors import BuildError
from ncd.compiler import compile as ncd_compile
from ncd.compiler import interpret

OFFSETS = [0, 3, 3, 8, 9, 16]  # windows of 3, 0, 5, 1 and 7 tokens


def _circuit(normalize, heads):
    b = Builder("windows", sizes={"T": 16, "W": len(OFFSETS), "H": 2, "K": 4, "V": 3})
    lead = "T H" if heads else "T"
    q, k = b.input("q", f"{lead} K"), b.input("k", f"{lead} K")
    v, off = b.input("v", f"{lead} V"), b.input("offsets", "W", dtype="int64")
    b.output("y", b.linear_attention(q, k, v, key="T", causal=False, normalize=normalize,
                                     offsets=off, scale="1/2"))  # fmt: skip
    return b.build()


def _by_window(q, k, v, normalize):
    ys = []
    for start, stop in zip(OFFSETS[:-1], OFFSETS[1:]):
        qw, kw, vw = q[start:stop] / 2, k[start:stop], v[start:stop]
        a = torch.einsum("t...k,s...k->...ts", qw, kw)
        y = torch.einsum("...ts,s...v->t...v", a, vw)
        if normalize:
            y = y / (a.sum(-1).movedim(-1, 0)[..., None] + 1e-10)
        ys.append(y)
    return torch.cat(ys)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("heads", [True, False])
def test_windows_match_interpreter_and_loop(normalize, heads):
    c = _circuit(normalize, heads)
    g = torch.Generator().manual_seed(0)
    lead = (16, 2) if heads else (16,)
    q, k = (torch.rand(*lead, 4, generator=g, dtype=torch.float64) for _ in "qk")
    v = torch.randn(*lead, 3, generator=g, dtype=torch.float64)
    xs = [t.requires_grad_() for t in (q, k, v)] + [torch.tensor(OFFSETS)]
    got = ncd_compile(c, dtype=torch.float64)(*xs)
    for want in (interpret(c, xs, {}), _by_window(q, k, v, normalize)):
        want = want["y"] if isinstance(want, dict) else want
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
        w = torch.randn(got.shape, generator=g, dtype=torch.float64)
        ga = torch.autograd.grad((got * w).sum(), xs[:3], retain_graph=True)
        gb = torch.autograd.grad((want * w).sum(), xs[:3])
        for a, b in zip(ga, gb, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_shape_rule():
    b = Builder("bad", sizes={"T": 8, "S": 6, "W": 3, "H": 2, "K": 4})
    q = b.input("q", "T H K")
    off = b.input("offsets", "W", dtype="int32")
    with pytest.raises(BuildError, match="non-causal `linear`"):
        b.linear_attention(q, q, q, key="T", value="K", variant="lightning", causal=False,
                           offsets=off)  # fmt: skip
    with pytest.raises(BuildError, match="causal without the normaliser"):
        b.linear_attention(q, q, q, key="T", value="K", normalize=True, offsets=off)
    s = b.input("s", "S H K")
    with pytest.raises(BuildError, match="size of S = size of T"):
        b.linear_attention(q, s, s, key="S", value="K", causal=False, offsets=off)
