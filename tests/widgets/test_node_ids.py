"""Every node of the Studio's drawing has an id of its own, namespaced by its role
(`input:x`, `box:x`, `output:y`; widgets/canvas.py): an output named like a box or an input
is a node apart, selected, wired and deleted as itself.

Expectations come from the circuits' own names (each input and output is one node of its
role) and from circuits written with the Builder, not from the Studio's drawing code.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter

from ncd import Builder, gallery
from ncd.circuits import io
from ncd.spec import studio as Studio  # noqa: N812 - ncd.Studio, names and paths alike
from ncd.widgets import panels

NODE = re.compile(r'<g id="([^"]*)" class="node [^"]*role&#45;(\w+)')
# The id's role for each role class the renderer writes (a call and a copy are boxes).
ROLE = {"input": "input", "output": "output", "group": "group", "box": "box", "call": "box",
        "copy": "box"}  # fmt: skip


def nodes(svg: str) -> list[tuple[str, str]]:
    """(id, role class) of every node of a drawing."""
    return [(html.unescape(i), role) for i, role in NODE.findall(svg)]


def circuits(c, where=""):
    """A circuit and each subcircuit, as the Studio opens them: (where, circuit)."""
    yield where or c.name, c
    for key, sub in c.subcircuits.items():
        yield from circuits(sub, f"{where or c.name} > {key}")


def test_every_gallery_drawing_has_one_node_per_id():
    """Review 3: `convolutions` names outputs like their boxes (`strided`), and two nodes
    were drawn with the id `box:strided`: a click on the output selected the box. Each
    gallery entry and each of its subcircuits, drawn as the Studio draws it: ids unique,
    each input and output a node of its own role under its name."""
    clashing = []
    for name in gallery.names():
        for where, c in circuits(gallery.get(name)):
            checked = panels.check_draft(c)
            drawn, typed = panels.drawing(c, checked)
            found = nodes(panels.diagram_svg(drawn, "paper", (), checked=typed))
            ids = Counter(i for i, _ in found)
            assert [i for i, n in ids.items() if n > 1] == [], where
            for i, role in found:
                assert i.partition(":")[0] == ROLE[role], (where, i, role)
            for kind, names in (("input", c.inputs), ("output", drawn.outputs)):
                for x in names:
                    assert f"{kind}:{x.name}" in ids, (where, kind, x.name)
            boxes = {b.name for b in c.boxes}
            clashing += [where for o in c.outputs if o.name in boxes | {i.name for i in c.inputs}]
    # the names that drew two nodes under one id: outputs named like a box or an input
    nested = "ivit_block > ilayernorm > isqrt_step"
    assert {"convolutions", "soft_attention > newton_step", nested} <= set(clashing)


def test_an_output_named_like_its_box_is_selected_and_deleted_as_itself():
    studio = Studio("convolutions")
    cv = studio.canvas
    assert {"box:strided", "output:strided"} <= {i for i, _ in nodes(cv.svg)}
    assert cv.ports["output:strided"] == {"in": ["source"]}
    assert cv.ports["box:strided"]["out"] == ["strided"]
    cv.intent("select", path="output:strided")
    assert cv.selected == "output:strided" and studio.box_select.value is None
    assert cv.status.startswith("output strided, taken from strided; not a box")
    cv.intent("select", path="box:strided")
    assert studio.form_title.value == "<b>The selected box: strided</b>"
    cv.intent("delete", path="output:strided")
    assert cv.status_ok, cv.status
    assert "strided" not in {o.name for o in studio.circuit.outputs}
    assert "strided" in {b.name for b in studio.circuit.boxes}
    cv.intent("connect", ref="dilated", node="output:depthwise")  # a drop on the output
    assert dict((o.name, o.source) for o in studio.circuit.outputs)["depthwise"] == "dilated"


def test_an_output_may_take_an_input_or_box_name_on_every_path():
    """Review 2 refused such names (they drew one id twice); with ids by role, the Studio
    takes what the language takes, from the form, the diagram, the text and the JSON."""

    def want(*outputs):
        b = Builder("block")
        x = b.input("x", "B T D")
        proj = b.linear(x, over="D", out="F", name="proj")
        for name in outputs:
            b.output(name, proj)
        return io.to_dict(b.build())

    studio = Studio()
    studio.text.value = (
        'b = Builder("block")\nx = b.input("x", "B T D")\n'
        'proj = b.linear(x, "D", "F", name="proj")\nb.output("y", proj)\nblock = b.build()\n'
    )
    assert studio.canvas.status_ok, studio.canvas.status
    studio.output_name.value, studio.output_source.value = "x", "proj"
    studio.set_output_button.click()  # the form
    studio.canvas.intent("add_output", name="proj", path="box:proj")  # the diagram
    assert io.to_dict(studio.circuit) == want("y", "x", "proj"), studio.canvas.status
    assert {"input:x", "output:x", "box:proj", "output:proj"} <= {
        i for i, _ in nodes(studio.canvas.svg)
    }
    studio.canvas.intent("select", path="output:x")
    assert studio.canvas.status.startswith("output x, taken from proj")
    studio.canvas.intent("select", path="input:x")
    assert studio.canvas.status.startswith("input x: B T D")
    studio.canvas.intent("delete", path="output:x")
    assert io.to_dict(studio.circuit) == want("y", "proj")
    studio.text.value = studio.text.value.replace('b.output("y"', 'b.output("x"')  # the text
    assert io.to_dict(studio.circuit) == want("x", "proj"), studio.canvas.status
    data = json.loads(io.dumps(studio.circuit))
    data["outputs"] = [{"name": "proj", "source": "proj"}]
    studio.json_text.value = json.dumps(data)
    studio.apply_json_button.click()  # the JSON
    assert io.to_dict(studio.circuit) == want("proj"), studio.canvas.status


def test_an_id_of_no_role_is_refused_saying_what_an_id_is():
    studio = Studio("convolutions")
    studio.canvas.intent("select", path="strided")
    assert not studio.canvas.status_ok
    assert "'strided' is not a node of the drawing (expected ROLE:PATH" in studio.canvas.status
