"""What a box's drawing claims about the operation, read back from the SVG: which axes are
broadcast past it, whether it is learned (bold), what its wires hold, what its ports are.

The expectations are written from the operations' definitions (batch norm's statistics, which
boxes hold weights, the sizes a convolution's padding makes), not from the renderer's code."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from ncd import gallery
from ncd.circuits.builder import Builder
from ncd.circuits.draw import render

SVG = "{http://www.w3.org/2000/svg}"
_EDGE_TITLE = re.compile(r"^(n\d+):e->(n\d+):w$")


class Figure:
    """The SVG as boxes (by `box:path` id) and wires (tail box, head box, ports, label)."""

    def __init__(self, svg: str):
        root = ET.fromstring(svg)
        self.nodes: dict[str, ET.Element] = {}
        gv: dict[str, str] = {}
        self.wires: list[dict] = []
        for g in root.iter(SVG + "g"):
            cls = g.get("class", "").split()
            if "node" in cls:
                self.nodes[g.get("id")] = g
                gv[g.find(SVG + "title").text] = g.get("id")
            elif "wire" in cls:
                tail, head = _EDGE_TITLE.match(g.find(SVG + "title").text).groups()
                self.wires.append(
                    {"tail": tail, "head": head,
                     "tport": next(c[5:] for c in cls if c.startswith("from-")),
                     "hport": next(c[3:] for c in cls if c.startswith("to-")),
                     "label": "".join("".join(t.itertext()) for t in g.iter(SVG + "text"))}
                )  # fmt: skip
        for w in self.wires:
            w["tail"], w["head"] = gv[w["tail"]], gv[w["head"]]

    def into(self, box: str) -> list[dict]:
        return [w for w in self.wires if w["head"] == f"box:{box}"]

    def out_of(self, box: str) -> list[dict]:
        return [w for w in self.wires if w["tail"] == f"box:{box}"]

    def texts(self, box: str) -> list[ET.Element]:
        return list(self.nodes[f"box:{box}"].iter(SVG + "text"))

    def text(self, box: str) -> str:
        return "".join("".join(t.itertext()) for t in self.texts(box))

    def bold(self, box: str) -> str:
        """The text of the box set in bold."""
        return "".join(t.text or "" for t in self.texts(box) if t.get("font-weight") == "bold")


def figure(circuit, **kw) -> Figure:
    return Figure(render(circuit, **kw))


# ---------------------------------------------------------------- 1. what is broadcast
def _channel_norms() -> Builder:
    b = Builder("norms")
    x = b.input("x", "B C Y X")
    b.output("y_bn", b.batchnorm(x, "C", name="bn"))
    b.output("y_un", b.unifiednorm(x, "C", name="un"))
    b.output("y_gn", b.groupnorm(x, "C", 2, "Y X", name="gn"))
    return b


def test_batch_and_unified_norm_take_the_whole_bundle_into_the_box():
    # Batch (and unified) norm: per channel, statistics over every other axis, B included. No
    # axis is applied to position by position, so none passes the box by on a pass-through
    # row (t*): every wire enters the body on an input row (i*) and leaves on an output row.
    f = figure(_channel_norms().build())
    for box in ("bn", "un"):
        assert sorted((w["label"], w["hport"][0]) for w in f.into(box)) == [
            ("B", "i"), ("C", "i"), ("X", "i"), ("Y", "i")
        ]  # fmt: skip
        assert {w["tport"][0] for w in f.out_of(box)} == {"o"}
    # Group norm is per sample: B is broadcast (passes by), C Y X enter.
    gn = {w["label"]: w["hport"][0] for w in f.into("gn")}
    assert gn == {"B": "t", "C": "i", "Y": "i", "X": "i"}


def test_resnet_batch_norms_take_the_whole_bundle():
    f = figure(gallery.get("resnet_block"))
    for box in ("bn1", "bn2"):
        assert sorted(w["label"] for w in f.into(box)) == sorted("BCYX")
        assert all(w["hport"].startswith("i") for w in f.into(box))


def test_layer_norm_still_broadcasts_over_the_positions():
    b = Builder("ln")
    b.output("y", b.layernorm(b.input("x", "B T D"), "D", name="ln"))
    ln = {w["label"]: w["hport"][0] for w in figure(b.build()).into("ln")}
    assert ln == {"B": "t", "T": "t", "D": "i"}
