"""`layout_svg`: render's drawing laid out in one pass, for the Studio.

Compared with `render`'s own figure (the same boxes and wires), with positions read from the
SVG (loose ends next to their box), and with Graphviz runs counted (kept drawings).
"""

from __future__ import annotations

import re

import pytest

from ncd import Builder, gallery
from ncd.circuits.draw import RenderError, api, layout_svg, render


def drawn(svg: str) -> tuple[list[str], list[str]]:
    """Nodes (ids with classes) and wires (axis classes) of a drawing, sorted."""
    boxes = sorted(re.findall(r'<g id="((?:box|input|output|group):[^"]*)" class="([^"]*)"', svg))
    wires = sorted(re.findall(r'<g id="wire:[^"]*" class="edge wire ([^ "]*)', svg))
    return boxes, wires


def x_span(svg: str, node_id: str) -> tuple[float, float]:
    """Leftmost and rightmost x of the shapes and text of one node group of the SVG."""
    start = svg.index(f'<g id="{node_id}"')
    body = svg[start : svg.index("<!--", start)]
    xs = [float(x) for x in re.findall(r'points="([-0-9.]+),', body)]
    xs += [float(x) for x in re.findall(r'<text[^>]* x="([-0-9.]+)"', body)]
    xs += [float(x) for x in re.findall(r"[ \"]([-0-9.]+),[-0-9.]+", body)]
    assert xs, f"no coordinates in {node_id}"
    return min(xs), max(xs)


def side_branch():
    """x -> l1 -> ... -> l8 -> y, and `side` reading l1, which nothing reads: the editor
    draws it leaving by an output named `…side`."""
    b = Builder("side_branch", sizes={"B": 2, "D": 8})
    h = b.input("x", "B D")
    for k in range(1, 9):
        h = b.linear(h, over="D", out="D", name=f"l{k}")
        if k == 1:
            b.output("…side", b.gelu(h, name="side"))
    b.output("y", h)
    return b.build()


@pytest.mark.parametrize("name", ["transformer_block", "attention", "transformer"])
def test_the_same_boxes_and_wires_as_render(name):
    c = gallery.get(name)
    # layout_svg draws the whole figure: render's, not wrapped to fit a page
    assert drawn(layout_svg(c)) == drawn(render(c, max_width=None))
    notebook = render(c, theme="notebook", max_width=None)
    assert drawn(layout_svg(c, "notebook", quick=False)) == drawn(notebook)


def test_collapse_draws_a_block_as_one_box():
    c = gallery.get("transformer_block")
    svg = layout_svg(c, collapse=["MLP"])
    assert drawn(svg) == drawn(render(c, collapse=["MLP"]))
    assert 'id="group:MLP"' in svg and 'id="box:ff_up"' not in svg


def test_a_loose_output_is_drawn_next_to_its_box():
    c = side_branch()
    svg = layout_svg(c, loose=["…side"])
    side = x_span(svg, "output:…side")
    assert x_span(svg, "box:side")[1] <= side[0] + 1  # right of the box it comes from
    assert side[1] < x_span(svg, "box:l4")[0]  # not dragged to the last column
    # render draws it with the other outputs, in the last column
    figure = render(c)
    assert x_span(figure, "output:…side")[0] > x_span(figure, "box:l8")[1]


def test_loose_names_an_output():
    with pytest.raises(RenderError, match="'nope' is not an output"):
        layout_svg(side_branch(), loose=["nope"])


def test_bad_theme_and_collapse_are_refused_as_render_refuses_them():
    c = gallery.get("attention")
    with pytest.raises(RenderError, match="unknown theme"):
        layout_svg(c, theme="dark")
    with pytest.raises(RenderError, match="cannot collapse 'nope'"):
        layout_svg(c, collapse=["nope"])


def test_a_drawing_laid_out_before_is_not_laid_out_again(monkeypatch):
    runs = []
    real = api._run
    monkeypatch.setattr(api, "_run", lambda src, fmt: runs.append(fmt) or real(src, fmt))
    monkeypatch.setattr(api, "_layouts", type(api._layouts)())
    c = gallery.get("attention")
    first = layout_svg(c)
    assert layout_svg(c) == first and len(runs) == 1
    assert layout_svg(c, "notebook") != first and len(runs) == 2
    monkeypatch.setattr(api, "LAYOUT_CACHE_ENTRIES", 0)
    layout_svg(gallery.get("mlp"))
    layout_svg(gallery.get("mlp"))
    assert len(runs) == 4  # nothing kept


def test_checked_is_not_checked_again(monkeypatch):
    c = gallery.get("attention")
    checked, figure = c.check(), render(c)
    monkeypatch.setattr(type(c), "check", lambda *a, **k: pytest.fail("checked again"))
    assert drawn(layout_svg(c, checked=checked)) == drawn(figure)
