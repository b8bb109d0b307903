"""Block titles stay clear of wires. The figure's DOT source is laid out again by Graphviz as
JSON, which gives each block's title box as Graphviz placed and measured it (`lp`, `lwidth`,
`lheight`) and each wire's spline; no wire may pass through a title box."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import graphviz
import numpy as np
import pytest

from ncd import gallery
from ncd.circuits.draw import render
from ncd.circuits.draw.order import _bezier  # the renderer's own sampling of a wire


def layout(circuit, **kw) -> dict:
    """Graphviz's JSON layout of the DOT source `render` draws."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.dot"
        render(circuit, path, **kw)
        return json.loads(graphviz.pipe("dot", "json", path.read_bytes(), quiet=True))


def through_titles(data: dict) -> list[tuple[str, str]]:
    """(title, wire id) of each wire passing through a block's title (its box shrunk by the
    padding Graphviz adds around the text)."""
    wires = []
    for e in data.get("edges", []):
        if e.get("id", "").startswith("wire:"):
            pts = [p for p in e["pos"].split() if not p.startswith(("s,", "e,"))]
            xy = np.array([[float(v) for v in p.split(",")[:2]] for p in pts])
            wires.append((e["id"], _bezier(xy, 16)))
    hits = []
    for o in data.get("objects", []):
        if "lp" not in o or "bb" not in o:
            continue
        x, y = map(float, o["lp"].split(","))
        w, h = float(o["lwidth"]) * 72, float(o["lheight"]) * 72
        x0, y0, x1, y1 = x - w / 2 + 3, y - h / 2 + 2, x + w / 2 - 3, y + h / 2 - 2
        for wid, line in wires:
            inside = (line[:, 0] > x0) & (line[:, 0] < x1) & (line[:, 1] > y0) & (line[:, 1] < y1)
            if inside.any():
                hits.append((o["label"], wid))
    return hits


def test_the_check_sees_a_wire_through_a_title():
    data = {
        "objects": [
            {
                "name": "cluster_0",
                "bb": "0,0,100,100",
                "lp": "30,90",
                "lwidth": "0.5",
                "lheight": "0.2",
                "label": "<B>T</B>",
            }
        ],  # fmt: skip
        "edges": [{"id": "wire:w0", "pos": "30,120 30,100 30,80 30,60"}],
    }
    assert through_titles(data) == [("<B>T</B>", "wire:w0")]
    data["edges"][0]["pos"] = "80,120 80,100 80,80 80,60"
    assert through_titles(data) == []


@pytest.mark.parametrize("name", gallery.names())
def test_no_wire_runs_through_a_block_title(name):
    # Before: the wires from q and k through both "Feature map" titles (hedgehog_attention),
    # from the shared copy through "Memories (routed tokens only)" (mom_block), into
    # "Hash h(q)" (ecoformer_attention), over "× 1.702" and "ShiftExp" (ivit_block).
    assert through_titles(layout(gallery.get(name))) == []


@pytest.mark.parametrize("name", ["hedgehog_attention", "mom_block", "ecoformer_attention"])
def test_no_wire_runs_through_a_title_in_the_notebook_theme(name):
    assert through_titles(layout(gallery.get(name), theme="notebook")) == []


def test_a_title_s_space_widens_its_block_s_first_column_to_the_title():
    # ecoformer_attention: the wires from the anchors' copy bar enter "Hash h(q)" between
    # its first two columns. The first column (a copy bar of q, narrower than the title)
    # is widened by an invisible node of the block, so that the second column starts right
    # of the title's end. (hedgehog_attention's feature maps were the example, until their
    # weights got a column of their own, beside the contraction: their titles now go to
    # the top right, where no wire reaches.)
    data = layout(gallery.get("ecoformer_attention"), max_width=None)
    objects = {o["name"]: o for o in data["objects"]}
    names = {o["_gvid"]: o["name"] for o in data["objects"]}

    def x(name: str) -> float:
        return float(objects[name]["pos"].split(",")[0])

    blocks = [o["name"] for o in data["objects"] if o.get("id", "").startswith("block:Hash h(")]
    assert len(blocks) == 2
    for block in blocks:
        members = {names[i] for i in objects[block]["nodes"]}
        space = next(m for m in members if m.startswith("title_"))
        beside = [m for m in members if m != space and abs(x(m) - x(space)) < 1]
        assert beside  # in one of the block's columns
        assert x(space) <= min(x(m) for m in members) + 1  # its first
        title_end = float(objects[block]["lp"].split(",")[0]) + float(objects[block]["lwidth"]) * 36
        assert x(space) + float(objects[space]["width"]) * 36 >= title_end - 3
