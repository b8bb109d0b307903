"""Random valid circuits (random walks of boxes, values reused, some boxes grouped) always draw:
the SVG parses, every output receives one wire per axis with the axis' name, and collapsing a
block keeps the wires that cross its border."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ncd.circuits.builder import Builder
from ncd.circuits.draw import render

SVG = "{http://www.w3.org/2000/svg}"
AXES = ["B", "T", "D", "H", "K", "S", "C", "E", "F"]


@st.composite
def circuits(draw):
    b = Builder("random")
    first = draw(st.permutations(AXES))[: draw(st.integers(1, 4))]
    values = [b.input("x", " ".join(first))]
    used = set(first)
    for i in range(draw(st.integers(1, 10))):
        x = draw(st.sampled_from([v for v in values if v.axes]))  # the input always has axes
        axes = list(x.axes)
        free = [a for a in AXES if a not in used]
        op = draw(st.sampled_from(["unary", "softmax", "linear", "reduce", "permute", "add",
                                   "contract", "rename"]))  # fmt: skip
        group = draw(st.sampled_from(["", "", "Block A", "Block B"]))
        with b.group(group):
            if op == "unary":
                y = b.relu(x, name=f"b{i}")
            elif op == "softmax":
                y = b.softmax(x, draw(st.sampled_from(axes)), name=f"b{i}")
            elif op == "linear" and free:
                y = b.linear(x, draw(st.sampled_from(axes)), free[0], name=f"b{i}", label="L^W")
                used.add(free[0])
            elif op == "reduce" and len(axes) > 1:
                y = b.reduce(x, draw(st.sampled_from(axes)), name=f"b{i}")
            elif op == "permute":
                y = b.permute(x, draw(st.permutations(axes)), name=f"b{i}")
            elif op == "add":
                y = b.add(x, draw(st.sampled_from(values)), name=f"b{i}")
            elif op == "contract":
                other = draw(st.sampled_from(values))
                shared = sorted(set(axes) & set(other.axes))
                y = b.contract(x, other, over=" ".join(shared[:1]), name=f"b{i}")
            elif op == "rename" and free:
                y = b.rename(x, {draw(st.sampled_from(axes)): free[0]}, name=f"b{i}")
                used.add(free[0])
            else:
                continue
        values.append(y)
    outs = draw(st.lists(st.sampled_from(values[1:] or values), min_size=1, max_size=2))
    for k, y in enumerate(outs):
        b.output(f"y{k}", y)
    return b.build(), {f"y{k}": y.axes for k, y in enumerate(outs)}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(circuits())
def test_random_circuits_draw_with_one_wire_per_axis(case):
    c, outputs = case
    root = ET.fromstring(render(c))
    names = {}
    into: dict[str, list[str]] = {}
    for g in root.iter(SVG + "g"):
        cls = g.get("class", "").split()
        if "node" in cls:
            names[g.find(SVG + "title").text] = g.get("id")
    for g in root.iter(SVG + "g"):
        if "wire" in g.get("class", "").split():
            head = g.find(SVG + "title").text.split("->")[1].split(":")[0]
            label = "".join(t.text or "" for t in g.iter(SVG + "text"))
            into.setdefault(names[head], []).append(label)
    for name, axes in outputs.items():
        # a scalar output gets its one unlabelled dotted wire
        assert sorted(into[f"output:{name}"]) == (sorted(axes) if axes else [""])
    groups = sorted({b.group for b in c.boxes if b.group})
    if groups:
        collapsed = ET.fromstring(render(c, collapse=groups))
        ids = {g.get("id") for g in collapsed.iter(SVG + "g")}
        assert all(f"group:{t}" in ids for t in groups)
        assert not any(f"box:{b.name}" in ids for b in c.boxes if b.group)
