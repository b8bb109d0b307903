"""`Canvas`: the diagram as an anywidget front end (front/canvas.js, plain ES module).

The canvas only draws and reports: the Python side sends it the renderer's SVG, the ports each
box has, problem marks, the palette and the breadcrumb; the page sends back intents
(`{"op": "connect", ...}`) that the Studio turns into edits. No state of the circuit lives in
the page.

Every node, block and wire of the drawing is known by the id the renderer gives it, `ROLE:PATH`
(circuits/ids.py), in the page and in the intents alike: `box:blocks/ln1` (a box, a call
or a copy), `input:x`, `output:y`, `group:MLP` (a collapsed block), `block:MLP` (a block drawn
open), `wire:w3`. The role is the text before the first `:` (a name may hold `:` itself), so an
output named like a box or an input is a node of its own (`output:y` beside `box:y`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import anywidget
import traitlets as t

FRONT = Path(__file__).resolve().parent / "front"


class Canvas(anywidget.AnyWidget):
    """The interactive diagram. `on_intent(fn)`: fn(dict) is called for every intent."""

    _esm = (FRONT / "canvas.js").read_text(encoding="utf-8")
    _css = (FRONT / "canvas.css").read_text(encoding="utf-8")

    svg = t.Unicode("").tag(sync=True)
    """The drawing (the renderer's SVG, its ids `ROLE:PATH`); empty with `placeholder` shown
    instead."""
    placeholder = t.Unicode("").tag(sync=True)
    ports = t.Dict().tag(sync=True)
    """Node id -> {"in": [input port names], "out": [refs it sends]} for the boxes, inputs
    and outputs of the circuit being edited (not for boxes inside an expanded call)."""
    selected = t.Unicode("").tag(sync=True)
    """The id of the selected node or wire (`box:linear`, `output:y`, `wire:w3`), or ""."""
    marks = t.Dict().tag(sync=True)
    """Node id -> the problems located at it (shown on hover)."""
    palette = t.List().tag(sync=True)
    """[{"kind", "family", "doc"}] in palette order."""
    crumbs = t.List().tag(sync=True)
    """Circuit names from the top circuit to the one being edited."""
    axis_sizes = t.Dict().tag(sync=True)
    """Axis -> its size as text (`T = 128`, `D = H*K`)."""
    status = t.Unicode("").tag(sync=True)
    status_ok = t.Bool(True).tag(sync=True)
    name = t.Unicode("").tag(sync=True)
    title = t.Unicode("").tag(sync=True)
    can_undo = t.Bool(False).tag(sync=True)
    can_redo = t.Bool(False).tag(sync=True)
    version = t.Int(0).tag(sync=True)
    """Counts drawings; the page echoes it when drawn (benchmarks wait for it)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._handlers: list[Callable[[dict], None]] = []
        self.on_msg(self._receive)
        self.last_intent_s = 0.0

    def on_intent(self, fn: Callable[[dict], None]) -> None:
        self._handlers.append(fn)

    def intent(self, op: str, **args) -> None:
        """What the page would send: for tests and for the Studio's own buttons."""
        self._receive(self, {"op": op, **args}, [])

    def _receive(self, _widget, content, _buffers) -> None:
        if not isinstance(content, dict) or not isinstance(content.get("op"), str):
            return
        t0 = time.perf_counter()
        for fn in self._handlers:
            fn(content)
        self.last_intent_s = time.perf_counter() - t0
