"""Collapsing blocks and calls by the names the figure shows: a call box by its name or by the
title it is drawn with, and an error that lists what is accepted."""

from __future__ import annotations

import re

import pytest

from ncd.circuits.builder import Builder
from ncd.circuits.draw import RenderError, render


def _circuit():
    inner = Builder("inner", title="Inner Title")
    u = inner.input("u", "B D")
    with inner.group("Core"):
        inner.output("v", inner.unary(u, "exp", name="e"))
    sub = inner.build()
    b = Builder("outer")
    x = b.input("x", "B D")
    y = b.call(sub, name="plain", u=x)
    y = b.call(sub, name="tagged", label="Shown", u=y)
    b.output("y", y)
    return b.build()


def _ids(svg: str) -> set[str]:
    return set(re.findall(r'<g id="((?:box|block):[^"]+)"', svg))


def test_a_call_collapses_by_its_name_or_the_title_it_is_drawn_with():
    c = _circuit()
    full = _ids(render(c))
    assert {"block:plain", "block:tagged", "box:plain/e", "box:tagged/e"} <= full
    # `tagged` is drawn titled "Shown" (its label), `plain` "Inner Title" (its circuit's).
    shown = _ids(render(c, collapse=["Shown"]))
    assert "box:tagged" in shown and "box:tagged/e" not in shown and "block:plain" in shown
    titled = _ids(render(c, collapse=["Inner Title"]))
    assert "box:plain" in titled and "box:plain/e" not in titled and "block:tagged" in titled
    assert _ids(render(c, collapse=["tagged"])) == shown


def test_an_unknown_name_is_refused_with_every_accepted_name():
    with pytest.raises(RenderError) as e:
        render(_circuit(), collapse=["Nope"])
    msg = str(e.value)
    assert "cannot collapse 'Nope'" in msg
    assert "a block title: 'Core'" in msg
    assert "'plain' or 'Inner Title'" in msg and "'tagged' or 'Shown'" in msg


def test_a_circuit_without_blocks_says_so():
    b = Builder("flat")
    b.output("y", b.unary(b.input("x", "B"), "exp", name="e"))
    with pytest.raises(RenderError, match="this circuit has no blocks or calls"):
        render(b.build(), collapse=["MLP"])


def test_ivit_shiftmax_collapses_by_the_title_on_the_figure():
    from ncd import gallery

    ids = _ids(render(gallery.get("ivit_block"), collapse=["Shiftmax"]))
    assert "box:softmax" in ids and "block:softmax" not in ids
    assert not any(i.startswith("box:softmax/") for i in ids)
