"""Wire labels where the reader looks for them: a wire that skips columns is labelled near its
start, as a wire to the next column is, not halfway along (where Graphviz puts an edge's
label). Read back from the SVG: each label's text against its wire's curve."""

from __future__ import annotations

import re
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from ncd import gallery
from ncd.circuits.draw import render
from ncd.circuits.draw.api import RenderNote

SVG = "{http://www.w3.org/2000/svg}"
NEAR = 60.0  # points from a wire's start within which its label reads as its own there


def curve(d: str) -> np.ndarray:
    """A wire's path (M p C c c p …) as points along its Bézier pieces."""
    pts = np.array([float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", d)]).reshape(-1, 2)
    t = np.linspace(0, 1, 9)[:, None]
    out = [pts[:1]]
    for i in range(1, len(pts) - 2, 3):
        p0, p1, p2, p3 = pts[i - 1 : i + 3]
        out.append(
            (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3
        )
    return np.concatenate(out)


def skip_wires(svg: str, copies: set[str]) -> list[tuple[str, np.ndarray, tuple[float, float]]]:
    """(axis, curve, label position) of each wire leaving the copy boxes `copies` that goes
    further than the box after them (their skips: to a concatenation, or to a connector at
    the end of a row)."""
    root = ET.fromstring(svg)
    name = {
        g.find(SVG + "title").text: g.get("id")
        for g in root.iter(SVG + "g")
        if "node" in g.get("class", "").split()
    }
    out = []
    for g in root.iter(SVG + "g"):
        cls = g.get("class", "").split()
        if "wire" not in cls:
            continue
        tail, head = (s.split(":")[0] for s in g.find(SVG + "title").text.split("->"))
        if name[tail] not in copies or "pool" in name[head]:
            continue
        text = g.find(SVG + "text")
        label = (float(text.get("x")), float(text.get("y")))
        axis = next(c[5:] for c in cls if c.startswith("axis"))
        out.append((axis, curve(g.find(SVG + "path").get("d")), label))
    return out


@pytest.mark.parametrize("max_width", [None, "page"])
def test_unet_skips_are_labelled_at_their_copy_bar(max_width):
    # Before: the skips from skip1 and skip2 to the concatenations of the up blocks were
    # labelled far right (halfway to the concatenation), none near their copy bars.
    kw = {} if max_width == "page" else {"max_width": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RenderNote)
        svg = render(gallery.get("unet"), **kw)
    wires = skip_wires(svg, {"box:skip1", "box:skip2"})
    assert sorted(a for a, _, _ in wires) == sorted(["B", "F1", "Y", "X", "B", "F2", "Y", "X"])
    for axis, line, (x, y) in wires:
        assert x - line[0, 0] < NEAR, axis  # near the start
        i = np.argmin(np.abs(line[:, 0] - x))
        assert abs(line[i, 1] - y) < 12, axis  # beside its own wire there
