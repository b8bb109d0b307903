"""Nested blocks: a group opened inside another is drawn as a cluster inside that one's cluster
(read back from the DOT source's braces), collapses inside it, and hides with it; old specs,
whose groups are flat titles, mean what they meant. Expectations are written by hand."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest

from ncd import gallery
from ncd.circuits import io
from ncd.circuits.builder import Builder
from ncd.circuits.draw import render
from ncd.circuits.draw.scene import Options, build
from ncd.circuits.errors import BuildError, SchemaError
from ncd.circuits.script import from_script, to_script


def dot_of(circuit, **kw) -> str:
    """The DOT source of the circuit's whole figure (not wrapped to fit a page)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.dot"
        render(circuit, path, **{"max_width": None, **kw})
        return path.read_text()


def nesting(source: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """From a DOT source: block title -> titles of the blocks around it (outermost first),
    and box path -> titles of the blocks around it."""
    stack: list[str] = []
    blocks: dict[str, list[str]] = {}
    boxes: dict[str, list[str]] = {}
    for line in source.splitlines():
        s = line.strip()
        if s.startswith("subgraph cluster_"):
            stack.append("?")
        elif s == "}" and stack:
            stack.pop()
        elif stack and stack[-1] == "?" and s.startswith("graph [id="):
            title = re.search(r"label=<<B>(.*?)(?:  <FONT|</B>)", s).group(1)
            stack[-1] = title
            blocks[title] = stack[:-1]
        m = re.match(r'(n\d+) \[id="[a-z]+:([^"]+)"', s)
        if m:
            boxes[m.group(2)] = list(stack)
    return blocks, boxes


def _nested():
    """x → (Outer: a, (Inner: e, sub-call c), b) → y, with a call inside the inner block."""
    inner = Builder("twice", title="Twice")
    u = inner.input("u", "B D")
    inner.output("v", inner.add(u, u, name="sum"))
    b = Builder("nested")
    x = b.input("x", "B D")
    with b.group("Outer"):
        h = b.unary(x, "neg", name="a")
        with b.group("Inner"):
            h = b.unary(h, "exp", name="e")
            h = b.call(inner.build(), name="c", u=h)
        h = b.unary(h, "neg", name="b")
    b.output("y", h)
    return b.build()


def test_the_builder_records_a_group_opened_inside_another():
    c = _nested()
    assert c.groups == {"Inner": "Outer"}
    assert {bx.name: bx.group for bx in c.boxes} == {
        "a": "Outer", "e": "Inner", "c": "Inner", "b": "Outer"
    }  # fmt: skip
    assert c.group_path("Inner") == ("Outer", "Inner") and c.group_path("") == ()


def test_a_title_names_one_block_so_it_cannot_be_opened_in_two_places():
    b = Builder("twice")
    x = b.input("x", "B")
    with b.group("A"):
        x = b.unary(x, "neg", name="n1")
    refused = pytest.raises(BuildError, match="group 'A': opened inside 'B'")
    with b.group("B"), refused, b.group("A"):  # A was at the top level
        pass
    with b.group("A"), b.group("A"):  # the current block again: nothing changes
        b.unary(x, "neg", name="n3")


def test_nested_blocks_are_nested_subgraphs_in_the_dot():
    blocks, boxes = nesting(dot_of(_nested()))
    assert blocks["Outer"] == [] and blocks["Inner"] == ["Outer"]
    assert blocks["Twice"] == ["Outer", "Inner"]  # the expanded call, inside Inner
    assert boxes["a"] == boxes["b"] == ["Outer"]
    assert boxes["e"] == ["Outer", "Inner"] and boxes["c/sum"] == ["Outer", "Inner", "Twice"]
    # depth 0: the call is one box, still inside Inner.
    blocks, boxes = nesting(dot_of(_nested(), depth=0))
    assert boxes["c"] == ["Outer", "Inner"] and "Twice" not in blocks


def test_collapsing_the_inner_block_keeps_it_inside_the_outer_one():
    blocks, boxes = nesting(dot_of(_nested(), collapse=["Inner"]))
    assert "Inner" not in blocks and boxes["Inner"] == ["Outer"]
    assert "e" not in boxes and "c/sum" not in boxes and boxes["a"] == ["Outer"]


def test_collapsing_the_outer_block_hides_the_inner_one():
    for collapse in (["Outer"], ["Outer", "Inner"]):
        blocks, boxes = nesting(dot_of(_nested(), collapse=collapse))
        assert blocks == {} and boxes["Outer"] == []
        assert not {"a", "b", "e", "Inner", "c", "c/sum"} & set(boxes)


def test_a_collapsed_outer_block_takes_the_shares_of_the_blocks_inside():
    # (A call's share is under its own name, as the cost overlay gives it.)
    c = _nested()
    scene = build(c.check(), Options(collapse=frozenset({"Outer"}),
                                     overlay={"a": 0.1, "e": 0.2, "c": 0.05}))  # fmt: skip
    node = next(n for n in scene.nodes if n.path == "Outer")
    assert node.share == pytest.approx(0.35)


def test_gated_deltanet_decay_is_drawn_inside_gated_deltanet():
    c = gallery.get("gated_deltanet_block")
    blocks, boxes = nesting(dot_of(c))
    assert blocks["Decay"] == ["Gated DeltaNet"]
    assert boxes["A_exp"] == ["Gated DeltaNet", "Decay"] and boxes["mixer"] == ["Gated DeltaNet"]
    blocks, boxes = nesting(dot_of(c, collapse=["Decay"]))
    assert boxes["Decay"] == ["Gated DeltaNet"]
    m = nesting(dot_of(gallery.get("mamba_block")))[0]
    assert m["Decay"] == ["Selective SSM"]


def test_an_old_spec_s_group_keeps_its_meaning():
    # A spec written before nesting: flat titles, one of them with a slash. Each is one
    # block at the top level; the slash is part of the title.
    spec = {
        "name": "old",
        "inputs": [{"name": "x", "axes": "B D"}],
        "boxes": [
            {"kind": "unary", "name": "a", "fn": "neg", "inputs": {"x": "x"}, "group": "A/B"},
            {"kind": "unary", "name": "b", "fn": "exp", "inputs": {"x": "a"}, "group": "C"},
        ],
        "outputs": [{"name": "y", "source": "b"}],
    }
    c = io.loads(json.dumps(spec))
    assert c.groups == {} and c.group_path("A/B") == ("A/B",)
    blocks, boxes = nesting(dot_of(c))
    assert blocks == {"A/B": [], "C": []} and boxes["a"] == ["A/B"]
    assert "groups" not in io.dumps(c)  # written back as it was


def test_a_block_inside_itself_is_refused():
    spec = {"name": "loop", "groups": {"A": "B", "B": "A"}}
    with pytest.raises(SchemaError, match="a block cannot be inside itself"):
        io.loads(json.dumps(spec))


def test_the_script_writes_nested_blocks_as_nested_with():
    c = _nested()
    text = to_script(c)
    assert re.search(r'^with b\.group\("Outer"\):\n(    .*\n)*    with b\.group\("Inner"\):\n'
                     r"        e = ", text, re.M)  # fmt: skip
    back = from_script(text)
    assert back.groups == c.groups and [x.group for x in back.boxes] == [x.group for x in c.boxes]
