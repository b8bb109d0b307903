"""The diagram's intents: what the page sends (`{"op": "connect", ...}`) becomes an edit.

`_intent` calls `_on_<op>` with the intent's arguments; an intent that fails is refused and
located, never raised. The edits are: add a box from the palette (reading the selection),
wire a value to a port, splice a box onto a wire, delete, add an input, an output or a
subcircuit, rename or retitle the circuit, undo and redo. Selection and navigation intents
(`select`, `toggle`, `enter`, `crumb`) are selection.py's. Each edit is a pure function of
edits.py, applied to the circuit being edited (`edit_here`).
"""

from __future__ import annotations

from ncd.circuits.errors import SchemaError
from ncd.circuits.ids import node_id, split_id

from . import edits, panels
from .notes import _need_axes, _open_note


class DiagramIntents:
    """The edits the diagram asks for (a part of `Studio`, widgets/studio.py)."""

    def _intent(self, msg: dict) -> None:
        op = msg.get("op", "")
        handler = getattr(self, f"_on_{op}", None)
        if handler is None:
            self._show([], f"unknown action {op!r} from the diagram", ok=False)
            return
        try:
            handler(**{k: v for k, v in msg.items() if k != "op"})
        except Exception as e:  # noqa: BLE001 - the diagram's actions never raise
            what = op.replace("_", " ")
            self._refuse(panels.problems_of(e), what)

    def _on_undo(self) -> None:
        self.undo()

    def _on_redo(self) -> None:
        self.redo()

    def _on_add(
        self, kind: str, after: str | None = None, fields: dict | None = None, beside=False
    ) -> None:
        """A box of `kind` reading the value node `after` sends (its id; None: the selection;
        "": the last value), with `fields`
        (a choice found by the palette's search, e.g. {"fn": "relu"}) and the rest guessed.
        Every input port reads that value, or, where that does not validate (a linear
        attention reads its queries there, not its keys and values), the first port alone:
        the others are left to wire, drawn as loose ends.

        `beside` (a Shift+click in the palette): where `after` is a box, the new box reads
        what that box reads (its first port's value) instead of its result, and one of the
        same kind takes its fields too: q's projection selected, Shift+click `linear` makes
        k's. The new box is selected, so the next Shift+click adds another beside it: several
        boxes that read one value, without a click on that value before each."""
        if self._text_waits(f"add {kind}"):
            return
        after = self.canvas.selected if after is None else after
        given = {k: v for k, v in (fields or {}).items() if k not in {"kind", "name", "inputs"}}
        fields = given
        like = self._beside(after) if beside else None
        if like is not None:  # the value `like` reads
            ref = next(r for p in edits.input_ports(like) if (r := like.inputs.get(p)))
            if like.kind == kind:  # a box like it: its fields, then those the search chose
                own = {"kind", "name", "inputs", "label"}
                fields = {k: v for k, v in like.model_dump().items() if k not in own} | given
        else:
            ref = self._ref_of(after)
        name = edits.fresh_name(self.view, kind)
        axes = self._axes_of(ref)
        try:
            ports = edits.input_ports(edits.new_box(kind, name, {}, axes, **fields))
        except SchemaError:
            ports = []
        if ports and not ref:
            raise SchemaError(
                f"add {kind}: nothing to read (expected an input first: type its name and "
                "axes, then + input)"
            )

        def add(wire=None):
            return lambda c: edits.add_box(
                c, kind, source=ref or None, axes=axes, name=name, wire=wire, **fields
            )

        changes = [add()] + ([add(wire=ports[:1])] if len(ports) > 1 else [])
        what = f"added {name}" + (f" beside {like.name}" if like is not None else "")
        if self._first_accepted(changes, what, f"add {kind} reading {ref or '-'}"):
            self._on_select(node_id("box", name))
            opened = edits.open_boxes(self.view).get(name)
            tail = (
                _open_note({name: opened})
                if opened
                else "its fields are in the form (change one and press Enter)"
            )
            if ref and not opened:  # the gesture for the next box that reads the same value
                tail += f"; Shift+click a kind: one beside it, reading {ref}"
            self._show([], f"{what}: {self._here()}; {tail}")
            return
        # The form takes it from here: the kind, the searched fields and guesses, the ports
        # reading the selection; the user finishes it and presses add box.
        self._blank_form(kind)
        self.box_name.value = name
        self._filling = True
        try:
            try:
                self.form.fill(edits.new_box(kind, name, {}, axes, **fields))
            except SchemaError:  # no guess fits the schema: the searched fields alone
                for f, v in fields.items():
                    if f in self.form.fields:
                        self.form.fields[f][1].value = v
            for dd in self.port_widgets.values():
                if ref in dd.options:
                    dd.value = ref
        finally:
            self._filling = False

    def _beside(self, key: str):
        """The box of the circuit being edited that node `key` is, when a box beside it can
        read what it reads; None where `key` is not a box (an input, a wire, nothing: a box
        beside it reads that value, as a plain add does). A box that reads nothing is
        refused, saying so."""
        role, name = split_id(key)
        box = next((b for b in self.view.boxes if b.name == name), None) if role == "box" else None
        if box is None:
            return None
        if not any(box.inputs.get(p) for p in edits.input_ports(box)):
            raise SchemaError(
                f"add beside {name}: it reads nothing (expected a box that reads a value; "
                "a click without Shift adds a box reading its result)"
            )
        return box

    def _first_accepted(self, changes, what: str, attempt: str) -> bool:
        """Take the first of `changes` (of the circuit being edited) whose result validates;
        when none does, the last one's refusal is shown."""
        if self._text_waits(attempt):
            return False
        for change in changes[:-1]:
            try:
                self._accept(self._whole(change)(self.circuit), what)
                return True
            except Exception:  # noqa: BLE001 - the next one is tried
                continue
        return self.edit_here(changes[-1], what, attempt)

    def _on_connect(self, ref: str, node: str, port: str = "") -> None:
        """`ref` dropped on node `node` (an id): on a box's input `port` (none: the box's
        first or the one reading one value twice), on an output (it takes `ref`), or on a
        loose end."""
        c = self.view
        role, name = split_id(node)
        if role == "output" and name in {o.name for o in c.outputs}:
            self.edit_here(lambda c: edits.set_output(c, name, ref), f"output {name} <- {ref}")
            return
        if role == "output" and name.startswith(panels.DANGLING):  # a value nothing reads
            self._on_add_output("", ref)
            return
        loose = self._loose_end(node)
        if loose is not None:  # dropped on the loose end of a port that reads nothing yet
            name, port = loose
        elif role != "box":
            raise SchemaError(
                f"wire {ref}: {role} '{name}' takes no value (expected a drop on a box, one of "
                "its input ports, or an output)"
            )
        node = name
        box = edits._box(c, node)
        opened = edits.open_ports(box)
        if not port and opened:  # dropped on a box being wired: its first unwired port
            port = opened[0]
        if not port:  # dropped on the box: the last port reading one value twice, else the first
            ports = edits.input_ports(box)
            seen: dict[str, str] = {}
            port = ports[0] if ports else ""
            for p in ports:
                src = box.inputs.get(p)
                if src in seen.values():
                    port = p
                seen[p] = src
        self.edit_here(lambda c: edits.connect(c, ref, node, port), f"wired {ref} -> {node}.{port}")

    def _on_add_output(self, name: str = "", ref: str = "", path: str | None = None) -> None:
        """An output `name` of the value `ref`, else of the one node `path` (an id) sends
        (None: the selection)."""
        path = self.canvas.selected if path is None else path
        ref = ref or self._ref_of(path)
        if not ref:
            raise SchemaError("output: select a box first (its result becomes the output)")
        name = name or edits.fresh_name(self.view, "y")
        self.edit_here(lambda c: edits.set_output(c, name, ref), f"output {name} <- {ref}")

    def _on_add_input(self, name: str = "", axes: str = "", dtype: str = "float32") -> None:
        name = name or edits.fresh_name(self.view, "x")
        _need_axes(name, axes)
        self.edit_here(lambda c: edits.add_input(c, name, axes, dtype), f"added input {name}")

    def _on_add_subcircuit(self, name: str = "", after: str | None = None) -> None:
        """A new subcircuit reading the value node `after` (an id) sends (None: the selection;
        "": the last value), called from here and opened: it starts as the identity (output
        y = its input x)."""
        after = self.canvas.selected if after is None else after
        ref = self._ref_of(after)
        if not ref:
            raise SchemaError("subcircuit: add an input first (the subcircuit reads a value)")
        name = name.strip()
        dtype = self._dtype_of(ref)
        call = edits.fresh_name(self.view, name) if name else ""
        if self.edit_here(
            lambda c: edits.add_subcircuit(c, name, ref, self._axes_of(ref), dtype),
            f"added subcircuit {name}",
        ):
            self._on_enter(node_id("box", call))
            self._show(
                [],
                f"editing {name} (called by {call} in {self.circuit.name}): its input x, its "
                "output y = x until you set it (select the last box, type y, + output); "
                "the breadcrumb goes back",
            )

    def _on_delete(self, path: str | None = None) -> None:
        """Delete the box, input or output node `path` is the id of (None: the selection)."""
        role, name = split_id(self.canvas.selected if path is None else path)
        c = self.view
        if role in ("", "wire"):
            raise SchemaError("delete: select a box, an input or an output first")
        if role == "box" and name in {b.name for b in c.boxes}:
            if self.edit_here(lambda c: edits.delete_box(c, name), f"deleted {name}"):
                self.canvas.selected = ""
        elif role == "input" and name in {i.name for i in c.inputs}:
            self.edit_here(lambda c: edits.remove_input(c, name), f"removed input {name}")
        elif role == "output" and name in {o.name for o in c.outputs}:
            self.edit_here(lambda c: edits.remove_output(c, name), f"removed output {name}")
        else:
            raise SchemaError(f"delete: '{name}' is not a box of this circuit (open its block)")

    def _on_splice(self, kind: str, tail: str, head: str) -> None:
        """A box of `kind` put onto the wire from node `tail` to node `head` (their ids)."""
        c = self.view
        (_, tail), (head_role, head) = split_id(tail), split_id(head)
        while tail.endswith("/copy"):
            tail = tail[: -len("/copy")]
        before_copy = head.endswith("/copy")
        if "/" in tail or "/" in head.removesuffix("/copy"):
            raise SchemaError("splice: the wire is inside a subcircuit (double-click to open it)")
        name = edits.fresh_name(c, kind)
        outputs = {o.name: o.source for o in c.outputs}
        if before_copy:
            # the wire before a copy: the new box takes the value before it is shared
            ref = self._sent_by(tail)

            def change(c):
                c = edits.add_box(c, kind, source=ref, axes=self._axes_of(ref), name=name)
                others = [b.name for b in c.boxes if b.name != name]
                return edits._replace_refs(c, edits.ref_box(ref), name, only=others)

            self.edit_here(change, f"spliced {name} after {tail}")
            return
        if head_role == "output" and head in outputs:
            ref = outputs[head]
            self.edit_here(
                lambda c: edits.splice(c, kind, ref, "output", head, axes=self._axes_of(ref),
                                       name=name),
                f"spliced {name} before output {head}",
            )  # fmt: skip
            return
        box = edits._box(c, head)
        port = next((p for p, r in box.inputs.items() if edits.ref_box(r) == tail), None)
        if port is None:
            raise SchemaError(f"splice: box '{head}' reads nothing from '{tail}'")
        ref = box.inputs[port]
        self.edit_here(
            lambda c: edits.splice(c, kind, ref, head, port, axes=self._axes_of(ref), name=name),
            f"spliced {name} into {tail} -> {head}",
        )

    def _on_rename(self, name: str) -> None:
        # the name quoted in a refusal: an empty one read `could not rename to: ...`
        attempt = f"rename the circuit to {name!r}"
        self.edit_here(lambda c: edits.rename_circuit(c, name=name), f"renamed to {name}", attempt)

    def _on_retitle(self, title: str) -> None:
        self.edit_here(lambda c: edits.rename_circuit(c, title=title), "changed the title")
