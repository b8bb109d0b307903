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
    if kinds_after is not None:
        assert [b.kind for b in small.boxes] == kinds_after
    fused = ncd_compile(small, dtype=torch.float64).eval()
    fused.load_state_dict(weights)  # strict: every key, nothing more
    xs = example_inputs(circuit.check())
    torch.testing.assert_close(fused(*xs), model(*xs), rtol=1e-10, atol=1e-10)
    return small


def test_sesr_block_collapses_to_one_convolution():
    """expand ★3 → project ★1 → + x: one 3×3 convolution, the residual in its centre tap."""
    small = _check(gallery.get("sesr_block"), ["conv", "unary"])
    conv = small.boxes[0]
    assert conv.name == "project" and tuple(conv._norm("kernel")) == (3, 3)
    assert small.boxes[1].inputs == {"x": "project"}


def test_residual_folds_into_a_dilated_convolution():
    b = Builder("dilated", sizes={"B": 2, "C": 3, "Y": 9, "X": 8})
    x = b.input("x", "B C Y X")
    h = b.conv(x, "Y X", "C", "C", (3, 5), padding=(2, 4), dilation=2, name="conv")
    b.output("y", b.add(x, h, name="res"))  # x first: the sum keeps x's axis order
    small = _check(b.build(), ["conv"])
    assert small.outputs[0].source == "conv"


def test_residual_folds_into_a_multi_axis_linear_map():
    b = Builder("lin_res", sizes={"B": 2, "T": 3, "H": 2, "K": 3})
    x = b.input("x", "B T H K")
    h = b.linear(x, "H K", "H K", bias=False, name="a")
    h = b.linear(h, "K H", "H K", name="b")  # reads the middle axes in another order
    b.output("y", b.relu(b.add(h, x, name="res")))
    _check(b.build(), ["linear", "unary"])


def test_residual_folds_into_a_map_that_reads_its_axes_in_another_order():
    """W + I where W [(H K), (K H)] reads K H: the identity pairs H with H and K with K."""
    b = Builder("lin_res_perm", sizes={"B": 2, "T": 3, "H": 2, "K": 3})
    x = b.input("x", "B T H K")
    b.output("y", b.add(b.linear(x, "K H", "H K", name="m"), x, name="res"))
    _check(b.build(), ["linear"])


def test_residuals_that_are_not_an_identity_stay():
    b = Builder("kept", sizes={"B": 2, "C": 3, "E": 4, "Y": 6, "X": 6})
    x = b.input("x", "B C Y X")
    strided = b.conv(x, "Y X", "C", "C", 3, padding=1, stride=2, name="strided")
    unpadded = b.conv(x, "Y X", "C", "C", 1, name="pointwise")  # 1×1: folds
    read_twice = b.conv(x, "Y X", "C", "C", 3, padding=1, name="read_twice")
    b.output("y0", b.add(b.pool(x, "Y X", 3, "avg", stride=2, padding=1), strided))
    b.output("y1", b.add(unpadded, x, name="res1"))
    b.output("y2", b.add(read_twice, x, name="res2"))
    b.output("y3", b.relu(read_twice))
    kinds = [b.kind for b in _check(b.build(), None).boxes]
    assert kinds.count("binary") == 2 and kinds.count("conv") == 3


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


def test_maps_with_sampled_gradients_or_approximate_products_stay():
    """Merging a WTA-CRS or L-Mul map into its neighbour or its residual would silently drop its
    option: a chain and a residual around such a map are both kept."""
    for option in ({"backward": "wtacrs"}, {"product": "lmul4"}):
        b = Builder("options", sizes={"B": 2, "D": 4, "E": 6})
        x = b.input("x", "B D")
        h = b.linear(x, "D", "E", name="a", **option)
        b.output("y", b.linear(h, "E", "D", name="b"))
        b.output("z", b.add(b.linear(x, "D", "D", name="c", **option), x, name="res"))
        circuit = b.build()
        model = randomise(ncd_compile(circuit, dtype=torch.float64))
        small, _ = collapse(circuit, model.state_dict())
        assert [bx.kind for bx in small.boxes] == ["linear", "linear", "linear", "binary"], option
        ((field, value),) = option.items()
        assert [getattr(bx, field) for bx in small.boxes if bx.name in ("a", "c")] == [value] * 2
