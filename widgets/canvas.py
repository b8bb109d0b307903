"""`Canvas`: the diagram as an anywidget front end (front/canvas.js, plain ES module).

The canvas only draws and reports: the Python side sends it the renderer's SVG, the ports each
box has, problem marks, the palette and the breadcrumb; the page sends back intents
(`{"op": "connect", ...}`) that the Studio turns into edits. No state of the circuit lives in
the page.

Every node, block and wire of the drawing is known by its id, `ROLE:PATH`, in the page and in
the intents alike: `box:blocks/ln1` (a box, a call or a copy), `input:x`, `output:y`,
`group:MLP` (a collapsed block), `block:MLP` (a block drawn open), `wire:w3`. The role is the
text before the first `:` (a name may hold `:` itself), so an output named like a box or an
input is a node of its own (`output:y` beside `box:y`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import anywidget
import traitlets as t

from ncd.circuits.errors import SchemaError

FRONT = Path(__file__).resolve().parent / "front"
ROLES = ("box", "input", "output", "group", "block", "wire")
# The renderer writes every node as `box:PATH` with its role among its classes (Graphviz
# escapes the class's '-' as `&#45;`); the Studio's drawing gives inputs, outputs and
# collapsed blocks ids of their own role.
_NODE = re.compile(r'<g id="box:([^"]*)" class="(node [^"]*?\brole(?:-|&#45;)(\w+)[^"]*)"')
_OWN_ROLE = {"input", "output", "group"}


def node_ids(svg: str) -> str:
    """The renderer's SVG with each node's id namespaced by its role (`output:y`, not
    `box:y`): two nodes of one name and different roles have two ids."""

    def one(m: re.Match) -> str:
        role = m.group(3) if m.group(3) in _OWN_ROLE else "box"
        return f'<g id="{role}:{m.group(1)}" class="{m.group(2)}"'

    return _NODE.sub(one, svg)


def node_id(role: str, path: str) -> str:
    """The id the page knows a node by: `node_id("output", "y")` -> `output:y`."""
    return f"{role}:{path}"


def split_id(key: str) -> tuple[str, str]:
    """`output:y` -> ("output", "y"); "" (nothing) -> ("", ""). An id of no known role is a
    SchemaError that says so."""
    if not key:
        return "", ""
    role, sep, path = key.partition(":")
    if not sep or role not in ROLES:
        raise SchemaError(
            f"diagram: {key!r} is not a node of the drawing (expected ROLE:PATH, a role one of "
            f"{', '.join(ROLES)}, e.g. box:linear or output:y)"
        )
    return role, path


class Canvas(anywidget.AnyWidget):
    """The interactive diagram. `on_intent(fn)`: fn(dict) is called for every intent."""

    _esm = (FRONT / "canvas.js").read_text(encoding="utf-8")
    _css = (FRONT / "canvas.css").read_text(encoding="utf-8")

    svg = t.Unicode("").tag(sync=True)
    """The drawing (the renderer's SVG, its node ids namespaced by `node_ids`); empty with
    `placeholder` shown instead."""
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
