"""What a redraw does again and what it keeps: Graphviz runs and validations counted.

The drawings compared are ncd.render's (the figure), and checks are compared with a full
validation of the drawn circuit.
"""

from __future__ import annotations

import re

import pytest

from ncd import Builder
from ncd.circuits.draw import api, layout_svg, render
from ncd.spec import studio as Studio  # noqa: N812 - ncd.Studio, names and paths alike
from ncd.widgets import panels


def chain(n: int):
    """Blocks of linear, GELU, linear and a residual add (bench/studio_speed.py's circuit)."""
    b = Builder(f"chain{n}", sizes={"B": 2, "T": 16, "D": 32, "F": 64})
    x = b.input("x", "B T D")
    for k in range(0, n, 4):
        with b.group(f"block {k // 4}"):
            h = b.linear(x, over="D", out="F", name=f"up{k}")
            h = b.gelu(h, name=f"act{k}")
            h = b.linear(h, over="F", out="D", name=f"down{k}")
        x = b.add(x, h, name=f"res{k}")
    b.output("y", x)
    return b.build()


@pytest.fixture
def counted(monkeypatch):
    """Counts of Graphviz runs and of validations while a test runs."""
    counts = {"layouts": 0, "checks": 0}
    real_run, real_check = api._run, panels.check_draft

    def run(src, fmt):
        counts["layouts"] += 1
        return real_run(src, fmt)

    def check(c):
        counts["checks"] += 1
        return real_check(c)

    monkeypatch.setattr(api, "_run", run)
    monkeypatch.setattr(panels, "check_draft", check)
    monkeypatch.setattr(api, "_layouts", type(api._layouts)())
    return counts


def boxes(svg: str) -> list[str]:
    return sorted(re.findall(r'<g id="((?:box|output):[^"]*)"', svg))


def test_an_edit_validates_once_and_lays_out_once(counted):
    s = Studio(chain(12))
    counted.update(layouts=0, checks=0)
    s.canvas.intent("add", kind="dropout", after="box:act4")
    assert counted == {"layouts": 1, "checks": 1}, s.messages.value
    assert "output:…dropout" in boxes(s.canvas.svg)


def test_undo_redo_and_expand_lay_nothing_out_again(counted):
    s = Studio(chain(12))
    s.canvas.intent("add", kind="dropout", after="box:act4")
    after_add = s.canvas.svg
    s.canvas.intent("toggle", path="block:block 1")
    counted.update(layouts=0, checks=0)
    s.canvas.intent("toggle", path="group:block 1")  # expanded again: drawn before
    s.canvas.intent("undo")
    s.canvas.intent("redo")
    assert s.canvas.svg == after_add
    assert counted == {"layouts": 0, "checks": 0}


def test_the_drawn_circuit_is_checked_as_a_full_validation_checks_it():
    """panels.drawing derives the drawn circuit's check from the draft's; a full validation
    of the drawn circuit gives the same outputs, and the same drawing."""
    b = Builder("draft")
    x = b.input("x", "B T D")
    b.input("unused", "B K")
    h = b.linear(x, over="D", out="F", name="up")
    b.output("y", b.gelu(h, name="act"))
    b.softmax(h, over="F", name="probs")
    c = b.build().model_copy(update={"outputs": []})  # no outputs yet: a draft
    drawn, checked = panels.drawing(c, panels.check_draft(c))
    full = drawn.check()
    assert [o.name for o in drawn.outputs] == ["…unused", "…act", "…probs"]
    assert checked.output_sources == full.output_sources
    assert {k: str(v) for k, v in checked.outputs.items()} == {
        k: str(v) for k, v in full.outputs.items()
    }
    loose = [o.name for o in drawn.outputs]
    assert layout_svg(drawn, loose=loose, checked=checked) == layout_svg(drawn, loose=loose)
    assert boxes(layout_svg(drawn, loose=loose, checked=checked)) == boxes(render(drawn))
