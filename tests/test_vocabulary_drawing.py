"""Every kind of the vocabulary has a drawing, and it is the pictogram NOTATION.md gives it.

The table below is written from NOTATION.md, not from the renderer: a kind added to KINDS
without a row here fails, and a drawing that loses its glyph fails.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ncd.circuits.builder import Builder
from ncd.circuits.draw import GLYPHS, render
from ncd.circuits.kinds import KINDS

SVG = "{http://www.w3.org/2000/svg}"


def _double():
    b = Builder("double", title="Doubling")
    x = b.input("x", "B T D")
    b.output("y", b.scale(x, 2))
    return b.build()


# kind -> (inputs {name: "axes[:dtype]"}, builder call, text the box must show)
CASES = {
    "linear": ({"x": "B T D"}, lambda b, w: b.linear(w["x"], "D", "H K", label="L^Q"), "LQ"),
    "param": ({}, lambda b, w: b.param("T D", label="E^pos"), "Epos"),
    "embedding": ({"x": "B T:int64"}, lambda b, w: b.embedding(w["x"], "W", "D"), "E"),
    "contract": ({"q": "B T K", "k": "B S K"}, lambda b, w: b.contract(w["q"], w["k"], over="K"),
                 "◗"),
    "diagonal": ({"x": "B T S"}, lambda b, w: b.diagonal(w["x"], "T S", "U"), "●"),
    "unary": ({"x": "B T"}, lambda b, w: b.relu(w["x"]), "➤R➤"),
    "binary": ({"x": "B T", "y": "T"}, lambda b, w: b.add(w["x"], w["y"]), "+"),
    "scale": ({"x": "B T"}, lambda b, w: b.scale(w["x"], "K**-0.5"), "∗K−1/2"),
    "cast": ({"x": "B T"}, lambda b, w: b.cast(w["x"], "bfloat16"), "⇢"),
    "dropout": ({"x": "B T"}, lambda b, w: b.dropout(w["x"], 0.5), "Drop"),
    "mask": ({"x": "T S"}, lambda b, w: b.mask(w["x"], "T", "S"), "◣"),
    "softmax": ({"x": "B T S"}, lambda b, w: b.softmax(w["x"], "S"), "◁"),
    "layernorm": ({"x": "B T D"}, lambda b, w: b.layernorm(w["x"], "D"), "○"),
    "rmsnorm": ({"x": "B T D"}, lambda b, w: b.rmsnorm(w["x"], "D"), "○"),
    "batchnorm": ({"x": "B C X"}, lambda b, w: b.batchnorm(w["x"], "C"), "○"),
    "groupnorm": ({"x": "B C X"}, lambda b, w: b.groupnorm(w["x"], "C", 2, "X"), "○"),
    "unifiednorm": ({"x": "B C X"}, lambda b, w: b.unifiednorm(w["x"], "C"), "○"),
    "normalize": ({"x": "B T K"}, lambda b, w: b.normalize(w["x"], "K"), "○"),
    "reduce": ({"x": "B T D"}, lambda b, w: b.reduce(w["x"], "T", "sum"), "Σ"),
    "scan": ({"x": "B T D"}, lambda b, w: b.scan(w["x"], "T"), "Σ"),
    "topk": ({"x": "B T"}, lambda b, w: b.topk(w["x"], "T", 3), "top"),
    "split_axis": ({"x": "B D"}, lambda b, w: b.split_axis(w["x"], "D", "H K"), "≺"),
    "merge_axes": ({"x": "B H K"}, lambda b, w: b.merge_axes(w["x"], "H K", "D"), "≻"),
    "permute": ({"x": "B T D"}, lambda b, w: b.permute(w["x"], "D B T"), "╳"),
    "rename": ({"x": "B T D"}, lambda b, w: b.rename(w["x"], T="S"), "↦"),
    "copy": ({"x": "B T"}, lambda b, w: b.box("copy", {"x": w["x"]}), ""),
    "pack": ({"x": "B T", "y": "B D"}, lambda b, w: b.pack(a=w["x"], b=w["y"]), "(,)"),
    "unpack": ({"x": "B T", "y": "B D"}, lambda b, w: b.unpack(b.pack(a=w["x"], b=w["y"])),
               ")("),
    "concat": ({"x": "B T", "y": "B T"}, lambda b, w: b.concat(w["x"], w["y"], axis="T"), "‖"),
    "split": ({"x": "B T"}, lambda b, w: b.box("split", {"x": w["x"]}, axis="T",
              sizes=("T-1", "1")), "⋔"),
    "index": ({"x": "B T D"}, lambda b, w: b.index(w["x"], "T", -1), "⬠"),
    "slice": ({"x": "B T D"}, lambda b, w: b.slice(w["x"], "T", 1, None, 2), "⬠"),
    "conv": ({"x": "B C Y X"}, lambda b, w: b.conv(w["x"], "Y X", "C", "O", 3, padding=1), "★3"),
    "pool": ({"x": "B C Y X"}, lambda b, w: b.pool(w["x"], "Y X", 2), "Max"),
    "upsample": ({"x": "B C X"}, lambda b, w: b.upsample(w["x"], "X"), "↑2"),
    "attention": ({"q": "B T K", "k": "B S K", "v": "B S V"},
                  lambda b, w: b.attention(w["q"], w["k"], w["v"]), "◗◁◗"),
    "linear_attention": ({"q": "B T K", "k": "B T K", "v": "B T V"},
                         lambda b, w: b.linear_attention(w["q"], w["k"], w["v"], key="T"), "◗◗"),
    "call": ({"x": "B T D"}, lambda b, w: b.call(_double(), x=w["x"], repeat=3), "Doubling"),
    "opaque": ({"x": "B T"}, lambda b, w: b.box("opaque", {"x": w["x"]}, target="torch.nn.GRU",
               outputs={"y": "B T H"}), "?"),
}  # fmt: skip


def one_box(kind: str):
    """A circuit holding one box of `kind` (plus a pack where unpack needs one)."""
    ins, call, _ = CASES[kind]
    b = Builder(f"one_{kind}", sizes={"K": 4})
    wires = {}
    for name, text in ins.items():
        axes, _, dtype = text.partition(":")
        wires[name] = b.input(name, axes, dtype=dtype or "float32")
    out = call(b, wires)
    outs = out if isinstance(out, dict) else {"out": out}
    for port, wire in outs.items():
        b.output(f"y_{port}", wire)
    return b.build()


def node_texts(svg: str, box_id: str) -> str:
    root = ET.fromstring(svg)
    for g in root.iter(SVG + "g"):
        if g.get("id") == box_id:
            return "".join("".join(t.itertext()) for t in g.iter(SVG + "text"))
    raise AssertionError(f"no node {box_id}")


def test_every_kind_has_a_drawing_and_a_case():
    assert set(GLYPHS) == set(KINDS), "kinds without a drawing: " + str(set(KINDS) - set(GLYPHS))
    assert set(CASES) == set(KINDS), "kinds without a drawing case: " + str(set(KINDS) - set(CASES))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_kind_draws_its_glyph(kind):
    c = one_box(kind)
    box = next(b for b in c.boxes if b.kind == kind)
    # Calls are drawn collapsed here, so that the call itself is one box.
    svg = render(c, depth=0)
    root = ET.fromstring(svg)
    classes = {g.get("id"): g.get("class", "") for g in root.iter(SVG + "g")}
    assert f"kind-{kind}" in classes[f"box:{box.name}"]
    want = CASES[kind][2]
    assert want in node_texts(svg, f"box:{box.name}")
    # Every wire of every input and output is drawn (one edge per axis).
    checked = c.check()
    n_wires = sum(len(t.axes) for t in checked.inputs.values())
    n_wires += sum(len(t.axes) for t in checked.outputs.values() if hasattr(t, "axes"))
    drawn = sum(1 for g in root.iter(SVG + "g") if "wire" in g.get("class", "").split())
    assert drawn >= n_wires
    # The body is touched by a wire: one enters it (to-i*) or leaves it (from-o*), not only
    # pass-through rows (t*) going by; an elementwise kind has every wire enter its body.
    gv = {g.find(SVG + "title").text: g.get("id") for g in root.iter(SVG + "g")
          if "node" in g.get("class", "").split()}  # fmt: skip
    ports = []
    for g in root.iter(SVG + "g"):
        cls = g.get("class", "").split()
        if "wire" in cls:
            tail, head = (t.split(":")[0] for t in g.find(SVG + "title").text.split("->"))
            to = next(c[3:] for c in cls if c.startswith("to-"))
            fr = next(c[5:] for c in cls if c.startswith("from-"))
            if gv[head] == f"box:{box.name}":
                ports.append(("in", to))
            if gv[tail] == f"box:{box.name}":
                ports.append(("out", fr))
    assert any(p[0] in "io" for _, p in ports), ports
    if KINDS[kind].family == "elementwise":
        assert all(p.startswith("i") for d, p in ports if d == "in"), ports
