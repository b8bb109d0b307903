"""Columns of the drawing, read back from the DOT source (`{rank=same …}` lines, one per
column, left to right): boxes that no circuit input reaches sit just before their first
consumer, and a block does not stretch over columns where it holds nothing. Expected columns
are counted by hand on small circuits; gallery figures are checked by their SVG's extent."""

from __future__ import annotations

import re
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from ncd import gallery
from ncd.circuits.builder import Builder
from ncd.circuits.draw import render

SVG = "{http://www.w3.org/2000/svg}"


def read_dot(source: str) -> tuple[dict[str, int], dict[str, str]]:
    """(node path -> column, node path -> Graphviz node id) of a DOT source (boxes, inputs,
    outputs: `box:x/copy`, `input:x`)."""
    ids = dict(re.findall(r'^\s*(n\d+) \[id="[a-z]+:([^"]+)"', source, re.M))
    column = {}
    for k, line in enumerate(re.findall(r"^\s*\{rank=same ([^}]*)\}", source, re.M)):
        for nid in line.split():
            if nid in ids:
                column[ids[nid]] = k
    return column, {path: nid for nid, path in ids.items()}


def columns_of(circuit, **kw) -> dict[str, int]:
    return read_dot(render_dot(circuit, **kw))[0]


def render_dot(circuit, **kw) -> str:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.dot"
        render(circuit, path, **kw)
        return path.read_text()


def _chain(b: Builder, x, n: int):
    for i in range(n):
        x = b.unary(x, "relu", name=f"r{i}")
    return x


def test_a_parameter_and_what_is_computed_from_it_alone_sit_before_their_consumer():
    # x → r0 … r4 → mul ← exp ← P: x col 0, r0…r4 cols 1…5; P's exp (fed by P alone)
    # just before mul, P before it, not in columns 0 and 1; mul two columns after r4 (col
    # 7), so that exp has column 6 to itself rather than stacking above or below r4.
    b = Builder("decay")
    x = b.input("x", "B H")
    p = b.param("H", name="P")
    y = b.mul(_chain(b, x, 5), b.unary(p, "exp", name="e"), name="mul")
    b.output("y", y)
    col = columns_of(b.build())
    assert col["x"] == 0 and col["r4"] == 5 and col["mul"] == 7
    assert col["e"] == 6 and col["P"] == 5


def test_a_constant_feeding_a_copy_sits_just_before_the_copy_and_its_first_consumer():
    # The constant c is used by m1 (col 3) and m2 (col 6): a copy bar splits it, placed just
    # before m1 (col 2), and c before the copy (col 1).
    b = Builder("consts")
    x = b.input("x", "B", dtype="int32")
    c = b.box("constant", {}, "c", value=3)
    h = b.mul(_chain(b, x, 2), c, name="m1")  # r0 col 1, r1 col 2, m1 col 3
    h = b.mul(_chain_from(b, h, 2), c, name="m2")  # s0 col 4, s1 col 5, m2 col 6
    b.output("y", h)
    col = columns_of(b.build())
    assert (col["r1"], col["m1"], col["m2"]) == (2, 3, 6)
    assert col["c/copy"] == 2 and col["c"] == 1


def _chain_from(b: Builder, x, n: int):
    for i in range(n):
        x = b.unary(x, "neg", name=f"s{i}")
    return x


def test_gated_deltanet_decay_parameter_is_next_to_its_use():
    # log A → exp → ⊙ Δ (dt_A): exp is fed by the parameter alone, so both sit in the two
    # columns before the product, not at the figure's left edge.
    col = columns_of(gallery.get("gated_deltanet_block"))
    assert col["A_exp"] == col["dt_A"] - 1 and col["A_log"] == col["dt_A"] - 2
    assert col["A_log"] > col["norm"] + 1


def _extent(svg: str, block: str) -> tuple[float, float]:
    """x from and to of a block's frame in the SVG."""
    root = ET.fromstring(svg)
    g = next(g for g in root.iter(SVG + "g") if g.get("id") == "block:" + block)
    d = g.find(SVG + "path").get("d")
    xs = [float(x) for x in re.findall(r"(-?\d+(?:\.\d+)?),", d)]
    return min(xs), max(xs)


def test_ivit_block_mlp_does_not_stretch_over_the_attention():
    # ShiftGELU's constants (4, x₀, 23, 1) sat in column 0 while the boxes using them were
    # in columns 85 to 103, so the MLP block began at the figure's left edge and the figure
    # was 2,375 pt high. Now the MLP begins right of the attention block.
    svg = render(gallery.get("ivit_block"), max_width=None)  # the whole figure, one row
    height = float(re.search(r'<svg width="[\d.]+pt" height="([\d.]+)pt"', svg).group(1))
    assert height < 1000
    mha, mlp = _extent(svg, "Multi-Head Attention"), _extent(svg, "MLP")
    assert mlp[0] > mha[1]


def test_a_block_s_straggler_moves_next_to_the_rest_of_its_block():
    # x is copied to a chain r0 … r3 (outside the block) and to the block's skip s; the
    # block holds s and the add. s could sit in column 2 (x 0, copy 1), but the rest of its
    # block is in column 6 (r3 in 5): it goes to column 5, so the block spans 5 … 6.
    b = Builder("straggler")
    x = b.input("x", "B D")
    h = _chain(b, x, 4)
    with b.group("Residual"):
        y = b.add(h, b.unary(x, "neg", name="s"), name="add")
    b.output("y", y)
    col = columns_of(b.build())
    assert (col["x"], col["x/copy"], col["r3"], col["add"]) == (0, 1, 5, 6)
    assert col["s"] == 5


def test_ivit_residual_adds_at_depth_0_are_not_bands_over_the_figure():
    # At depth 0 the residual adds' skips were requantised in column 2, so each residual-add
    # block was a grey band from the figure's left edge to its add. Now each begins past the
    # middle of the block before it (attention, MLP).
    svg = render(gallery.get("ivit_block"), depth=0, max_width=None)
    for before, add in (("Multi-Head Attention", "Residual add (attention)"),
                        ("MLP", "Residual add (MLP)")):  # fmt: skip
        b0, b1 = _extent(svg, before)
        assert _extent(svg, add)[0] > (b0 + b1) / 2
