"""Every kind of the vocabulary draws the pictogram docs/notation.md gives it.

The text each box must show is in the shared table (tests/vocabulary.py), written from
docs/notation.md, not from the renderer: a drawing that loses its glyph fails.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ncd.circuits.draw import render
from ncd.circuits.kinds import KINDS

from .vocabulary import CASES, one_box

SVG = "{http://www.w3.org/2000/svg}"


def node_texts(svg: str, box_id: str) -> str:
    root = ET.fromstring(svg)
    for g in root.iter(SVG + "g"):
        if g.get("id") == box_id:
            return "".join("".join(t.itertext()) for t in g.iter(SVG + "text"))
    raise AssertionError(f"no node {box_id}")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_kind_draws_its_glyph(kind):
    c = one_box(kind, sizes={"K": 4})
    box = next(b for b in c.boxes if b.kind == kind)
    # Calls are drawn collapsed here, so that the call itself is one box.
    svg = render(c, depth=0)
    root = ET.fromstring(svg)
    classes = {g.get("id"): g.get("class", "") for g in root.iter(SVG + "g")}
    assert f"kind-{kind}" in classes[f"box:{box.name}"]
    want = CASES[kind].glyph
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


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_label_field_says_what_the_drawing_does_with_a_label(kind):
    """`label` was documented as "what the drawing prints on the box; the name when empty"
    for every kind, though a softmax without one draws ◁ and a reduction prints none. Each
    kind's description now says which: where it says a label is not drawn, a labelled box
    shows no label; elsewhere it shows it; and "the box's name when empty" is said only
    where an unlabelled box shows its name."""
    from ncd.circuits.fielddocs import attach

    attach()
    doc = KINDS[kind].model_fields["label"].description
    c = one_box(kind, sizes={"K": 4})
    box = next(b for b in c.boxes if b.kind == kind)
    plain = c.model_copy(update={"boxes": [b.model_copy(update={"label": ""}) if b is box
                                           else b for b in c.boxes]})  # fmt: skip
    labelled = c.model_copy(update={"boxes": [b.model_copy(update={"label": "Zq"}) if b is box
                                              else b for b in c.boxes]})  # fmt: skip
    shown = "Zq" in node_texts(render(labelled, depth=0), f"box:{box.name}")
    assert "In the drawing: " in doc, doc  # a sentence of its own for each kind
    assert shown == ("not drawn" not in doc), doc
    names_itself = box.name in node_texts(render(plain, depth=0), f"box:{box.name}")
    assert ("the box's name when empty" in doc) == names_itself, doc
