"""Every box kind can be made and edited in the Studio: it is in the palette, its form shows
every field, and a box shown in its form and built again is the same box (every gallery box)."""

from __future__ import annotations

from ncd import gallery
from ncd.circuits.kinds import KINDS
from ncd.widgets.forms import BoxForm, palette_options


def _boxes(circuit):
    yield from circuit.boxes
    for sub in circuit.subcircuits.values():
        yield from _boxes(sub)


def test_every_kind_has_a_form():
    assert sorted(k for _, k in palette_options()) == sorted(KINDS)
    for kind, cls in KINDS.items():
        shown = set(BoxForm(kind).fields)
        assert shown == set(cls.model_fields) - {"kind", "name", "inputs"}, kind


# Kinds the gallery does not use, with non-default values wherever a field allows one.
EXAMPLES = {
    "attention": {"causal": True, "scale": "K**-0.5", "query": "Q"},
    "cast": {"dtype": "bfloat16"},
    "concat": {"axis": "T", "operands": ["a", "b", "c"]},
    "copy": {"n": 3},
    "diagonal": {"axes": ["S", "T"], "into": "T"},
    "dropout": {"p": 0.25},
    "groupnorm": {"channel": "C", "over": ["X", "Y"], "groups": 4, "eps": 1e-6, "affine": False},
    "index": {"axis": "T", "index": -1},
    "mask": {"query": "T", "key": "S", "pattern": "window", "window": 4, "fill": "0"},
    "opaque": {"target": "mylib.op", "in_ports": ["x", "y"], "outputs": {"out": ["B", "T"]}},
    "pack": {"items": ["a", "b"]},
    "pool": {"spatial": ["X", "Y"], "op": "avg", "window": [2, 2], "stride": [2, 2]},
    "slice": {"axis": "T", "start": 1, "stop": "T - 1", "step": 2},
    "split": {"axis": "D", "sizes": ["4", "H*K"], "names": ["a", "b"]},
    "topk": {"over": "S", "k": 5, "into": "j"},
    "unifiednorm": {"channel": "C", "momentum": 0.2},
    "unpack": {},
    "upsample": {"spatial": ["X"], "factor": 3, "mode": "linear"},
}


def test_every_kind_round_trips_through_its_form():
    boxes = [(name, box) for name in gallery.names() for box in _boxes(gallery.get(name))]
    for kind, fields in EXAMPLES.items():
        data = {"kind": kind, "name": f"a {kind}", "label": "L", "group": "G", **fields}
        boxes.append(("example", KINDS[kind].model_validate(data)))
    assert {box.kind for _, box in boxes} == set(KINDS)  # a new kind needs an example here
    for name, box in boxes:
        form = BoxForm(box.kind)
        form.fill(box)
        again = form.build(box.name, dict(box.inputs))
        assert again.model_dump() == box.model_dump(), (name, box.name)
