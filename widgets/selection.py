"""The Studio's selection and navigation: what is selected, what it sends, where one is.

A click on a node selects it (a box is shown in the form to be edited); a double click opens a
call (the scope goes one subcircuit in), the breadcrumb goes back out, a block's toggle
collapses or expands it. None of these edits the circuit. The diagram's edits (intents.py)
read the selection here: the value a node sends (`_ref_of`) and that value's type.
"""

from __future__ import annotations

import html

from ncd.circuits.ids import node_id, split_id
from ncd.circuits.types import TensorType

from . import edits, panels


class Selection:
    """Selecting, collapsing, opening and leaving (a part of `Studio`, widgets/studio.py)."""

    def _on_select(self, path: str = "") -> None:
        """The selection (`path`: a node's or a wire's id, `box:linear`, `output:y`), and the
        form with it: a box is shown in the form to be edited; anything else (an input, an
        output, a wire, nothing) leaves the form for a new box."""
        loose = self._loose_end(path)
        if loose is not None:  # a loose end of a box being wired selects that box
            path = node_id("box", loose[0])
        role, name = split_id(path)
        self.canvas.selected = path
        self.canvas.marks = {}  # the marks of a refused edit go with its message
        c = self.view
        if role == "box" and name in {b.name for b in c.boxes}:
            self.box_select.value = name
            self._edit_box()
            return
        if self._editing:
            self._leave_box()
        self.box_select.value = None
        kind = html.escape(self.palette.value)
        self.form_title.value = self._draft_title()
        inputs = {i.name: i for i in c.inputs}
        outputs = {o.name: o for o in c.outputs}
        if role == "input" and name in inputs:
            i = inputs[name]
            about = f"input {name}: {' '.join(i.axes) or 'a scalar'}, {i.dtype}"
        elif role == "output" and name in outputs:
            about = f"output {name}, taken from {outputs[name].source}"
        else:
            return
        self.form_title.value = (
            f"<b>Selected: {html.escape(about)}</b> (not a box: nothing to edit in the form; "
            f"below, a new {kind} box)"
        )
        self._show([], f"{about}; not a box: the form makes a new {self.palette.value} box")

    def _loose_end(self, key: str) -> tuple[str, str] | None:
        """(box, port) when node `key` is the loose end drawn for a port that reads nothing
        yet (a stand-in box `…box:port`)."""
        role, path = split_id(key)
        if role != "box" or not path.startswith(panels.DANGLING):
            return None
        box, _, port = path[1:].rpartition(":")
        b = next((b for b in self.view.boxes if b.name == box), None)
        return (box, port) if b is not None and port in edits.open_ports(b) else None

    def _ref_of(self, key: str) -> str:
        """The value node `key` sends (an input, a box's result, what an output takes), or,
        for anything else (a wire, nothing), the last value."""
        c, checked = self.view, self._checked
        role, path = split_id(key)
        if role == "input" and path in {i.name for i in c.inputs}:
            return path
        if role == "output" and path in {o.name for o in c.outputs}:
            return next(o.source for o in c.outputs if o.name == path)
        if role == "output" and path.startswith(panels.DANGLING):  # a value nothing reads
            return path[1:].replace(":", ".")
        if role == "box" and path in edits.open_boxes(c):  # read it, to be told it is not done
            return path
        if role == "box" and checked is not None and path in checked.outs:
            outs = list(checked.outs[path])
            return path if len(outs) == 1 else f"{path}.{outs[0]}"
        if checked is not None and checked.order:
            return self._ref_of(node_id("box", checked.order[-1]))
        return c.inputs[-1].name if c.inputs else ""

    def _sent_by(self, name: str) -> str:
        """The value a node of the drawing named `name` sends: the input of that name, else
        the box (a copy dot's `x/copy` is the copy of input or box `x`)."""
        inputs = {i.name for i in self.view.inputs}
        return self._ref_of(node_id("input" if name in inputs else "box", name))

    def _value_of(self, ref: str):
        """The type of the value `ref` (an input, `box` or `box.port`) in the last valid
        circuit, or None."""
        if not ref or self._checked is None:
            return None
        box, _, port = ref.partition(".")
        try:
            if box in self._checked.inputs:
                return self._checked.inputs[box]
            outs = self._checked.outs[box]
            return outs[port] if port else next(iter(outs.values()))
        except (KeyError, StopIteration):
            return None

    def _axes_of(self, ref: str) -> tuple[str, ...]:
        v = self._value_of(ref)
        return v.names if isinstance(v, TensorType) else ()

    def _dtype_of(self, ref: str) -> str:
        return getattr(self._value_of(ref), "dtype", "float32")

    def _on_toggle(self, path: str) -> None:
        """Collapse or expand the block or call whose node or frame `path` is the id of."""
        name = split_id(path)[1].rsplit("/", 1)[-1]
        self._collapsed ^= {name}
        self._refresh_diagram()
        shown = "collapsed" if name in self._collapsed else "expanded"
        self._show([], f"{shown} {name}")

    def _on_enter(self, path: str) -> None:
        """Open the call whose node or frame `path` is the id of (a box inside an open call:
        that call, with the box selected); another box is selected."""
        role, path = split_id(path)
        if role not in ("box", "block"):
            return
        first, _, rest = path.partition("/")
        c = self.view
        box = next((b for b in c.boxes if b.name == first), None)
        if box is None or box.kind != "call":
            if box is not None:
                self._on_select(node_id("box", first))
            return
        self.scope = (*self.scope, first)
        self.canvas.selected = ""
        self._refresh(f"editing {box.circuit} (called by {first}); the breadcrumb goes back")
        if rest and "/" not in rest:
            self._on_select(node_id("box", rest))

    def _on_crumb(self, index: int = 0) -> None:
        self.scope = self.scope[: max(int(index), 0)]
        self.canvas.selected = ""
        self._refresh(f"editing {self.view.name}")
