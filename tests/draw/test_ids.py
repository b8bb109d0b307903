"""Every element of an exported figure has an id of its own, `ROLE:PATH` (circuits/ids.py):
an output named like its box is `output:y` beside `box:y`, so the SVG is valid and a script
that reads it can tell the two apart. Expectations come from the circuits' own names."""

from __future__ import annotations

import html
import re
import warnings
from collections import Counter

import pytest

from ncd import gallery
from ncd.circuits.draw import render
from ncd.circuits.draw.api import RenderNote

ID = re.compile(r'\sid="([^"]*)"')
NODE = re.compile(r'<g id="([^"]*)" class="node [^"]*role&#45;(\w+)')


def exported(name: str) -> str:
    """The figure `ncd render NAME` writes (fitted to a page, its note silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RenderNote)
        return render(gallery.get(name))


@pytest.mark.parametrize("name", gallery.names())
def test_every_id_of_a_gallery_figure_is_unique(name):
    ids = Counter(html.unescape(i) for i in ID.findall(exported(name)))
    assert [i for i, n in ids.items() if n > 1] == []


def test_an_output_named_like_its_box_has_an_id_of_its_own():
    # convolutions names each output like the box it takes (strided, dilated, ...): both
    # were drawn with the id `box:strided`.
    c = gallery.get("convolutions")
    boxes = {b.name for b in c.boxes}
    shared = [o.name for o in c.outputs if o.name in boxes]
    assert shared
    roles = dict(NODE.findall(exported("convolutions")))
    for name in shared:
        assert roles[f"output:{name}"] == "output" and roles[f"box:{name}"] != "output"
    for i in c.inputs:
        assert roles[f"input:{i.name}"] == "input"


def test_a_wrapped_figure_s_connectors_are_links():
    roles = dict(NODE.findall(exported("transformer_block")))
    assert roles["link:1 out"] == "output" and roles["link:1 in"] == "input"
    assert not [i for i in roles if i.startswith(("input:link", "output:link", "box:link"))]
