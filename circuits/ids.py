"""The ids of a drawing's nodes, blocks and wires: `ROLE:PATH`.

The renderer writes them into the SVG, and the Studio (widgets/canvas.py) knows nodes by them
in the page and in its intents alike: `box:blocks/ln1` (a box, a call drawn as a box, a copy),
`input:x`, `output:y`, `group:MLP` (a collapsed block), `block:MLP` (a block drawn open),
`wire:w3`, `link:1 out` (a connector of a wrapped figure, render's only). The role is the text
before the first `:` (a name may hold `:` itself), so an output named like a box or an input is
a node of its own (`output:y` beside `box:y`). Here rather than in circuits/draw, whose package
loads the whole renderer, so that the Studio reads ids without importing it.
"""

from __future__ import annotations

from .errors import SchemaError

ROLES = ("box", "input", "output", "group", "block", "wire", "link")
# A scene node's role (scene.Node.role) -> the role of its id: calls and copies are boxes.
_NODE_ROLES = {
    "box": "box",
    "call": "box",
    "copy": "box",
    "input": "input",
    "output": "output",
    "group": "group",
}


def node_id(role: str, path: str) -> str:
    """`node_id("output", "y")` -> `output:y`."""
    return f"{role}:{path}"


def scene_id(node) -> str:
    """The id of a scene node (draw/scene.py's Node) by its role, kind and path: `box:blocks/ln1`,
    `output:y`, `link:1 in`."""
    role = "link" if node.kind == "link" else _NODE_ROLES[node.role]
    return node_id(role, node.path)


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
