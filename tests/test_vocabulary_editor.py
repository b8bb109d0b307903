"""Every box kind can be made and edited in the Studio: it is in the palette, its form shows
every field, and a box shown in its form and built again is the same box (every gallery box)."""

from __future__ import annotations

from ncd import gallery
from ncd.circuits.kinds import KINDS
from ncd.widgets.forms import BoxForm, palette_options

from .vocabulary import CASES


def _boxes(circuit):
    yield from circuit.boxes
    for sub in circuit.subcircuits.values():
        yield from _boxes(sub)


def test_every_kind_has_a_form():
    assert sorted(k for _, k in palette_options()) == sorted(KINDS)
    for kind, cls in KINDS.items():
        shown = set(BoxForm(kind).fields)
        assert shown == set(cls.model_fields) - {"kind", "name", "inputs"}, kind


def test_every_kind_round_trips_through_its_form():
    boxes = [(name, box) for name in gallery.names() for box in _boxes(gallery.get(name))]
    for kind, fields in ((k, c.form) for k, c in CASES.items() if c.form is not None):
        data = {"kind": kind, "name": f"a {kind}", "label": "L", "group": "G", **fields}
        boxes.append(("example", KINDS[kind].model_validate(data)))
    # a kind no gallery circuit uses needs `form=` in its case (tests/vocabulary.py)
    assert {box.kind for _, box in boxes} == set(KINDS)
    for name, box in boxes:
        form = BoxForm(box.kind)
        form.fill(box)
        again = form.build(box.name, dict(box.inputs))
        assert again.model_dump() == box.model_dump(), (name, box.name)
