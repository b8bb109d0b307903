"""Linear chains collapse to one map with the same outputs (SESR's inference-time trick)."""

from __future__ import annotations

import torch

from ncd import gallery
from ncd.circuits.builder import Builder
from ncd.compiler import compile as ncd_compile
from ncd.compiler.collapse import collapse

from .helpers import example_inputs, randomise


def _check(circuit, kinds_after):
    model = randomise(ncd_compile(circuit, dtype=torch.float64)).eval()
    small, weights = collapse(circuit, model.state_dict())
    assert [b.kind for b in small.boxes] == kinds_after
    fused = ncd_compile(small, dtype=torch.float64).eval()
    fused.load_state_dict(weights)  # strict: every key, nothing more
    xs = example_inputs(circuit.check())
    torch.testing.assert_close(fused(*xs), model(*xs), rtol=1e-10, atol=1e-10)
    return small


def test_sesr_block_collapses_to_one_convolution():
    small = _check(gallery.get("sesr_block"), ["conv", "binary", "unary"])
    conv = small.boxes[0]
    assert conv.name == "project" and tuple(conv._norm("kernel")) == (3, 3)


def test_linear_chain_with_multi_axis_maps():
    b = Builder("chain", sizes={"B": 2, "T": 3, "D": 4, "H": 2, "K": 3, "F": 5})
    x = b.input("x", "B T D")
    h = b.linear(x, "D", "H K", name="a")
    h = b.linear(h, "K H", "F", bias=False, name="b")  # reads the middle axes in another order
    h = b.linear(h, "F", "D", name="c")
    b.output("y", b.relu(h))
    _check(b.build(), ["linear", "unary"])


def test_a_map_read_twice_is_kept():
    b = Builder("shared", sizes={"B": 2, "D": 4, "F": 5})
    x = b.input("x", "B D")
    h = b.linear(x, "D", "F", name="a")
    b.output("y", b.linear(h, "F", "D", name="b"))
    b.output("z", b.relu(h))
    _check(b.build(), ["linear", "linear", "unary"])
