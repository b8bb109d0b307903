"""Figures fit a page: a page's text (about 7 × 9.7 in) at half size, 1000 × 1400 pt, the
smallest at which 8 pt wire labels still read. A figure too wide is wrapped into rows joined
by numbered connectors, which hides nothing; where the rows would be too tall, calls and then
blocks are drawn collapsed; `max_width=None` draws the figure whole. Sizes and structure are
read from the SVG."""

from __future__ import annotations

import re
import warnings
import xml.etree.ElementTree as ET

import pytest

from ncd import gallery
from ncd.circuits.draw import render
from ncd.circuits.draw.api import RenderNote

SVG = "{http://www.w3.org/2000/svg}"
PAGE = (1000.0, 1400.0)  # points


def size(svg: str) -> tuple[float, float]:
    m = re.search(r'<svg width="([\d.]+)pt" height="([\d.]+)pt"', svg)
    return float(m.group(1)), float(m.group(2))


def quiet(circuit, **kw) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RenderNote)
        return render(circuit, **kw)


class Parts:
    """The SVG's boxes (id -> classes, by Graphviz name) and wires (id, tail box, head box,
    axis, y of their ends)."""

    def __init__(self, svg: str):
        root = ET.fromstring(svg)
        self.classes: dict[str, list[str]] = {}
        name: dict[str, str] = {}
        for g in root.iter(SVG + "g"):
            cls = g.get("class", "").split()
            if "node" in cls:
                self.classes[g.get("id")] = cls
                name[g.find(SVG + "title").text] = g.get("id")
        self.wires = {}
        for g in root.iter(SVG + "g"):
            cls = g.get("class", "").split()
            if "wire" in cls:
                tail, head = (s.split(":")[0] for s in g.find(SVG + "title").text.split("->"))
                axis = next(c[5:] for c in cls if c.startswith("axis"))
                self.wires[g.get("id")] = (name[tail], name[head], axis)
        self.texts = {
            g.get("id"): "".join(t.text or "" for t in g.iter(SVG + "text"))
            for g in root.iter(SVG + "g")
            if "node" in g.get("class", "").split()
        }

    def links(self, role: str) -> dict[str, str]:
        """Connector id -> its number, of the exits (role output) or entries (role input)."""
        return {
            i: self.texts[i]
            for i, cls in self.classes.items()
            if "kind-link" in cls and f"role-{role}" in cls
        }


@pytest.mark.parametrize("name", gallery.names())
def test_every_gallery_figure_fits_a_page(name):
    # Before: ivit_block 8,561 pt wide (119 in), unet 2,854, lightning_block 2,196 pt, and
    # 14 entries in all wider than the page.
    width, height = size(quiet(gallery.get(name)))
    assert width <= PAGE[0] and height <= PAGE[1]


@pytest.mark.parametrize("name", ["transformer_block", "unet", "lightning_block"])
def test_a_wrapped_figure_hides_nothing_and_joins_each_cut_at_one_number(name):
    c = gallery.get(name)
    whole, wrapped = Parts(quiet(c, max_width=None)), Parts(quiet(c))
    exits, entries = wrapped.links("output"), wrapped.links("input")
    assert exits and sorted(exits.values()) == sorted(entries.values())  # one number each
    assert len(set(exits.values())) == len(exits)
    boxes = {i for i in wrapped.classes if i not in exits and i not in entries}
    assert boxes == set(whole.classes)
    # Each wire of the whole figure is drawn: as it is, or cut in two at a connector pair
    # of one number, its two parts carrying its axis.
    for wid, (tail, head, axis) in whole.wires.items():
        if wid in wrapped.wires and wrapped.wires[wid][1] == head:
            assert wrapped.wires[wid] == (tail, head, axis)
            continue
        t, out, a = wrapped.wires[wid]
        into, h, b = next(w for w in wrapped.wires.values() if w[1] == head and w[0] in entries
                          and w[2] == axis and entries[w[0]] == exits.get(out))  # fmt: skip
        assert (t, a, h, b) == (tail, axis, head, axis)


def test_ivit_block_draws_its_calls_as_boxes_and_keeps_its_blocks():
    # Wrapped whole, I-ViT is 9 rows and twice a page tall: its calls (I-LayerNorm,
    # Shiftmax, ShiftGELU) are drawn as boxes, its own blocks stay open.
    c = gallery.get("ivit_block")
    with pytest.warns(RenderNote, match=r"rows with every call drawn as a box"):
        svg = render(c)
    ids = {g.get("id") for g in ET.fromstring(svg).iter(SVG + "g")}
    assert {"box:softmax", "box:act", "box:ln1", "box:ln2"} <= ids
    assert not any(i.startswith("block:softmax") for i in ids)
    assert {"block:Multi-Head Attention", "block:MLP"} <= ids
    assert size(quiet(c, max_width=None))[0] > 8000  # drawn whole on request, as before


def test_a_figure_that_fits_is_drawn_as_it_was():
    c = gallery.get("attention")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RenderNote)  # no note either
        assert render(c) == render(c, max_width=None)


def test_a_figure_past_the_fitting_limit_is_drawn_as_wide_as_it_comes():
    """Fitting lays a figure out again for each try: one of more than MAX_FITTED_BOXES boxes
    (a chain of 210 maps) is drawn whole, in one layout, with no note of rows."""
    from ncd import Builder
    from ncd.circuits.limits import MAX_FITTED_BOXES

    b = Builder("chain", sizes={"B": 2, "D": 4})
    x = b.input("x", "B D")
    for i in range(MAX_FITTED_BOXES + 10):
        x = b.unary(x, "relu", name=f"r{i}")
    b.output("y", x)
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always", RenderNote)
        svg = render(b.build())
    assert size(svg)[0] > PAGE[0] * 5
    assert not [n for n in notes if "rows" in str(n.message)]


def _mamba1():
    """Mamba-1 as gated linear attention, one head per channel E (state N, one value feature
    V), as a newcomer drew it: two rows at the page's width."""
    from ncd import Builder

    b = Builder("mamba1", sizes={"B": 2, "T": 16, "D": 16, "E": 32, "N": 8, "R": 4, "V": 1})
    x = b.input("x", "B T D")
    h = b.rmsnorm(x, "D", name="norm")
    u = b.linear(h, "D", "E", bias=False, name="in_x", label="L^x")
    z = b.linear(h, "D", "E", bias=False, name="in_z", label="L^z")
    u = b.box("short_conv", {"x": u}, "conv", axis="T", channel="E", kernel=4,
              activation="silu")  # fmt: skip
    dt = b.linear(b.linear(u, "E", "R", bias=False, name="dt_low"), "R", "E", name="dt_proj")
    dt = b.unary(dt, "softplus", name="delta", label="Δ")
    k = b.linear(u, "E", "N", bias=False, name="B_proj", label="L^B")
    q = b.linear(u, "E", "N", bias=False, name="C_proj", label="L^C")
    a = b.unary(b.unary(b.param("E N", name="A_log"), "exp", name="A_exp"), "neg", name="A")
    v = b.rearrange(b.mul(dt, u, name="dt_u"), "B T E -> B T E V")
    y = b.linear_attention(q, k, v, key="T", head="N", value="V", variant="gla",
                           g=b.mul(dt, a, name="dA"), heads="E", name="ssm")  # fmt: skip
    y = b.rearrange(y, "B T E V -> B T E")
    y = b.add(y, b.mul(u, b.param("E", name="D_skip", label="D"), name="skip"))
    y = b.mul(y, b.silu(z, name="z_act"), name="gate")
    b.output("y", b.add(x, b.linear(y, "E", "D", bias=False, name="out_proj"), name="res"))
    return b.build()


@pytest.mark.parametrize("name", ["mamba1", "mamba_block", "lightning_block"])
def test_connectors_are_numbered_in_reading_order(name):
    """Rows are read top to bottom, and each row's end from the top down: that is where a
    connector is first met, so its exits there read ①, ②, ③, … (they were numbered before
    the rows were laid out, and read ②④③①⑤⑥ at the end of a Mamba block's first row).
    Rows stack downwards, so the exits of all rows in the figure's top-to-bottom order."""
    c = _mamba1() if name == "mamba1" else gallery.get(name)
    svg = quiet(c)
    marks = []
    for g in ET.fromstring(svg).iter(SVG + "g"):
        cls = g.get("class", "").split()
        if "kind-link" in cls and "role-output" in cls:
            t = next(g.iter(SVG + "text"))
            marks.append((float(t.get("y")), t.text))
    assert len(marks) > 1
    assert [m for _, m in sorted(marks)] == [chr(0x2460 + k) for k in range(len(marks))]


def test_every_connector_number_is_a_glyph_of_the_font_it_is_set_in():
    """The circled numbers past ⑩ are in no font the set-up installs (DejaVu Sans has ① to
    ⑩): a PNG or PDF drew them as empty boxes."""
    import shutil
    import subprocess

    from ncd.circuits.draw.dot import GLYPH_FONT
    from ncd.circuits.draw.wrap import mark

    ttlib = pytest.importorskip("fontTools.ttLib")
    if shutil.which("fc-match") is None:
        pytest.skip("fontconfig's fc-match is not installed")
    found = subprocess.run(
        ["fc-match", "-f", "%{family}\n%{file}", GLYPH_FONT], capture_output=True, text=True
    ).stdout.split("\n")
    if GLYPH_FONT not in found[0]:
        pytest.skip(f"{GLYPH_FONT} is not installed")
    cmap = ttlib.TTFont(found[1], fontNumber=0).getBestCmap()
    missing = {k: mark(k) for k in range(1, 41) if any(ord(c) not in cmap for c in mark(k))}
    assert not missing, missing
