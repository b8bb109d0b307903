"""The Studio's form column: the selected box's fields and port sources, and new boxes.

The form (forms.BoxForm) shows the selected box, or a new box of the palette's kind. A field
changed there (typed and Enter, or a choice) applies to the selected box at once; **add box**
adds the form's box under a name of its own, and the form stays a new box's, as it was, for
the next one (fill, add, fill, add makes two boxes); **apply to box** and **delete box** act on
the box chosen in the box list, and the heading of a new box's form says what apply to box
would do to that box. Every port has a dropdown of the values it may read. The form follows
the circuit: an edit, an undo or a redo refills it (`_sync_form`). The column's Inputs and
Outputs sections add an input and set an output.
"""

from __future__ import annotations

import functools
import html

import ipywidgets as w

from ncd.circuits.errors import SchemaError
from ncd.circuits.ids import node_id

from . import edits, panels
from .forms import BoxForm, FormError, fitted
from .notes import _guarded, _need_axes, _open_note

_NONE = "—"  # a port left unwired


class FormPanel:
    """The form column's behaviour (a part of `Studio`, widgets/studio.py)."""

    def _box_chosen(self) -> None:
        name = self.box_select.value
        if not self._filling and name and node_id("box", name) != self.canvas.selected:
            self._on_select(node_id("box", name))

    @_guarded
    def _new_form(self) -> None:
        self._editing = ""  # a form for a new box until a selected box is shown in it
        self._port_memory = {}
        self.form = BoxForm(self.palette.value, on_change=self._field_changed)
        self.form_title.value = self._draft_title()
        self.form_box.children = [self.form.widget]
        self._rewire()

    def _draft_title(self, added: str = "") -> str:
        """The heading of a new box's form. With a box chosen in the list it also says what
        **apply to box** does to that box (a kind chosen with a box selected said "a new
        unary box", and apply to box turned the selected box into one). `added`: the box that
        add box just added (the form stays as it was, for the next box)."""
        kind = html.escape(self.form.kind)
        chosen = self.box_select.value
        box = next((b for b in self.view.boxes if b.name == chosen), None) if chosen else None
        if box is None:
            return f"<b>A new {kind} box</b>"
        name = html.escape(box.name)
        if box.kind != self.form.kind:
            apply = f"<b>apply to box</b> turns {name} (a {html.escape(box.kind)}) into it"
        else:
            apply = f"<b>apply to box</b> gives {name} these fields"
        if added:
            return (
                f"<b>The next new {kind} box</b> ({html.escape(added)} was added and is "
                f"selected: a click on it edits it; {apply})"
            )
        return f"<b>A new {kind} box</b> (<b>add box</b> adds it; {apply})"

    @_guarded
    def _kind_chosen(self) -> None:
        """The palette's kind changed: a new box's form of that kind. Chosen by the user
        with a box selected, the status says what add box and apply to box do now (it said
        to change a field of the selected box, which no longer applies)."""
        self._new_form()
        chosen = self.box_select.value
        if not self._filling and chosen in {b.name for b in self.view.boxes}:
            old = self.view.box(chosen)
            self._show([], f"a new {self.form.kind} box in the form: add box adds it; apply to "
                       f"box turns {chosen} (a {old.kind}) into it")  # fmt: skip

    def _blank_form(self, kind: str) -> None:
        """A form for a new box of `kind` (even where the form showed a box of that kind)."""
        if self.palette.value != kind:
            self._filling = True  # not the user's choice: the status keeps what it says
            try:
                self.palette.value = kind  # its observer makes the new form
            finally:
                self._filling = False
        else:
            self._new_form()

    def _field_changed(self, change=None) -> None:
        """A field was changed (typed and Enter, or a choice): the ports follow, and a form
        showing the selected box applies to it at once. `change`: the field's name, or the
        traitlets change of its widget."""
        self._rewire()
        if self._editing and not self._filling and self._editing == self.box_select.value:
            self._apply_if_changed(self._field_name(change))

    def _field_name(self, change) -> str:
        if isinstance(change, str):
            return change
        owner = getattr(change, "owner", None) or (change or {}).get("owner")
        for name, (_, widget) in self.form.fields.items():
            if widget is owner:
                return name
        return ""

    def _field_text(self, field: str) -> str:
        """`over = 'E'`: a field as the user set it, for a message."""
        if field == "name":
            value = self.box_name.value
        elif field.startswith("port "):
            value = self.port_widgets[field[5:]].value
        elif field in self.form.fields:
            value = self.form.fields[field][1].value
        else:
            return ""
        return f" ({field} = {value!r})"

    def _form_box(self, default_name: str = ""):
        """The box the form describes (raises FormError, located per field); named as typed,
        else `default_name`."""
        inputs = {p: dd.value for p, dd in self.port_widgets.items() if dd.value != _NONE}
        name = self.box_name.value.strip() or default_name
        return self.form.build(name, inputs, existing=self._editing or default_name)

    @_guarded
    def _apply_if_changed(self, field: str = "") -> None:
        old = self.view.box(self._editing)
        try:
            box = self._form_box()
        except FormError as e:
            self._refuse(e.problems, f"change box '{old.name}'{self._field_text(field)}",
                         "; the form shows the box as it is")  # fmt: skip
            self._sync_form()
            return
        new_ports = [p for p in edits.open_ports(box) if p not in edits.open_ports(old)]
        users = sorted({b if b != "output" else f"output {p}" for b, p in edits.readers(
            self.view, old.name)})  # fmt: skip
        if new_ports and users:  # a box that others read changes once it is complete
            ports = " ".join(new_ports)
            self.form_title.value = (
                f"<b>The selected box: {html.escape(old.name)}</b> (changed here, not yet in "
                f"the circuit: choose a source for {html.escape(ports)})"
            )
            self._show([], f"{old.name}{self._field_text(field)}: port {ports} reads nothing yet; "
                       f"{', '.join(users)} read{'s' if len(users) == 1 else ''} {old.name}, so "
                       "it changes once every port is wired: choose a source for each in the "
                       "form")  # fmt: skip
            return
        if box.model_dump() != old.model_dump():
            self._replace_box(box, field)
        elif not self.canvas.status_ok:  # put back as the circuit has it: no error left
            self.canvas.marks = {}
            self._show([], f"{old.name} is as the circuit has it: {self._here()}")

    @_guarded
    def _rewire(self) -> None:
        """One source dropdown per input port of the box the form describes. A port the form
        had keeps its source; a new one of a box being edited takes the source it had while
        the form showed that box, else reads nothing (a loose end to wire); a new box's
        reads the last value."""
        refs = [r for r in panels.sources(self.view, self._checked) if r != panels.DRAFT_OUTPUT]
        old = {p: dd.value for p, dd in self.port_widgets.items()}
        self._port_memory |= {p: v for p, v in old.items() if v != _NONE}
        self.port_widgets = {}
        for port in self._ports():
            if port in old:
                value = old[port]
            elif self._editing:
                value = self._port_memory.get(port, _NONE)
            else:
                value = refs[-1] if refs else _NONE
            dd = w.Dropdown(
                options=[_NONE, *refs],
                value=value if value in refs else _NONE,
                description=f"port {port}",
                **fitted(),
            )
            dd.observe(functools.partial(self._port_changed, port), names="value")
            self.port_widgets[port] = dd
        self.wiring.children = list(self.port_widgets.values())

    def _port_changed(self, port: str, _change=None) -> None:
        """A port's source was chosen: a form showing the selected box applies to it."""
        if self._editing and not self._filling and self._editing == self.box_select.value:
            self._apply_if_changed(f"port {port}")

    def _ports(self) -> list[str]:
        if self.form.kind == "call":  # a call takes the inputs of the subcircuit it names
            sub = self.view.subcircuits.get(self.form.fields["circuit"][1].value.strip())
            return [i.name for i in sub.inputs] if sub is not None else []
        return self.form.ports()

    @_guarded
    def _add_box(self) -> None:
        """The form's box is added as a new box, and selected (the next palette click reads
        it). Its name is the one typed for it; left empty, or the name of the box chosen in
        the list (the form shows that box, or its kind was changed), a fresh one after its
        kind (`unary2`): the chosen box is unchanged. The form then stays a new box's, as it
        was, without the name: a field changed next prepares the next box; it used to edit
        the box just added, so that fill, add, fill, add changed the first box instead of
        making a second."""
        name = self.box_name.value.strip()
        if not name or name == self.box_select.value:
            name = edits.fresh_name(self.view, self.form.kind)
        inputs = {p: dd.value for p, dd in self.port_widgets.items() if dd.value != _NONE}
        try:
            box = self.form.build(name, inputs)
        except FormError as e:
            self._refuse(e.problems, f"add the form's {self.form.kind} box")
            return
        if name in edits.names(self.view):
            raise SchemaError(f"box '{name}': the name is taken (choose another)")
        if self.edit_here(
            lambda c: c.model_copy(update={"boxes": [*c.boxes, box]}), f"added {name}"
        ):
            self._added(name)

    def _added(self, name: str) -> None:
        """Box `name`, just added from the form, is selected; the form stays a new box's
        (its kind, fields and port sources as they were; the name field empty)."""
        self.canvas.selected = node_id("box", name)
        self.canvas.marks = {}
        self._filling = True  # the selection and the name change; nothing applies
        try:
            self.box_select.value = name
            self.box_name.value = ""
        finally:
            self._filling = False
        self._editing, self._port_memory = "", {}
        self.form_title.value = self._draft_title(added=name)
        opened = edits.open_boxes(self.view).get(name)
        tail = f"; {_open_note({name: opened})}" if opened else ""
        self._show([], f"added {name}: {self._here()}; the form is ready for the next box "
                   f"(a click on {name} edits it){tail}")  # fmt: skip

    @_guarded
    def _edit_box(self) -> None:
        """Show the box chosen in the box list in the form, selected (change a field there
        and press Enter)."""
        box = self.view.box(self._selected())
        self.canvas.selected = node_id("box", box.name)
        self._fill_form(box)
        opened = edits.open_ports(box)
        tail = f"; {_open_note({box.name: opened})}" if opened else ""
        self._show([], f"{box.name} ({box.kind}): change a field in the form and press Enter"
                   + tail)  # fmt: skip

    def _fill_form(self, box) -> None:
        """The form shows `box` as the circuit has it (nothing applies while it is filled)."""
        same = box.name == self._editing and self.scope == self._editing_scope
        self._filling = True
        try:
            if self.palette.value != box.kind:
                self.palette.value = box.kind  # a new form for the kind
            self.form.fill(box)
            self.box_name.value = box.name
            self._rewire()
            for port, dd in self.port_widgets.items():
                ref = box.inputs.get(port) or _NONE
                if ref not in dd.options:  # written `box.port` where the list has `box`
                    dd.options = [*dd.options, ref]
                dd.value = ref
        finally:
            self._filling = False
        # what the ports read, remembered while the form shows this box (a port a variant
        # drops and the next brings back reads what it read)
        kept = self._port_memory if same else {}
        self._port_memory = kept | {p: r for p, r in box.inputs.items() if r}
        self._editing, self._editing_scope = box.name, self.scope
        self.form_title.value = f"<b>The selected box: {html.escape(box.name)}</b>"

    def _sync_form(self) -> None:
        """The form follows the circuit: after an edit, an undo or a redo it shows the box it
        showed as the circuit now has it, or a new box's form once that box is gone."""
        if not self._editing:
            return
        box = None
        if self.scope == self._editing_scope:
            box = next((b for b in self.view.boxes if b.name == self._editing), None)
        if box is None:
            self._leave_box()
        else:
            self._fill_form(box)

    def _leave_box(self) -> None:
        """The form stops showing a box: a new box's form, without that box's name."""
        self._new_form()
        self.box_name.value = ""

    @_guarded
    def _replace_box(self, box=None, field: str = "") -> None:
        """The box chosen in the box list becomes `box` (by default the form's), in the same
        place; a new name renames it, and what read it reads it under the new name."""
        old = self.view.box(self._selected())
        if box is None:
            try:  # a new box's form with its name left empty keeps the box's name
                box = self._form_box(default_name=old.name)
            except FormError as e:
                self._refuse(e.problems, f"change box '{old.name}'")
                return
        if box.model_dump() == old.model_dump():
            self._show([], f"{old.name} is as the circuit has it: {self._here()}")
            return
        what = f"changed {old.name}" + (f" (now {box.name})" if box.name != old.name else "")
        if box.kind != old.kind:
            what += f" from a {old.kind} into a {box.kind}"
        ports = edits.input_ports(box)
        dropped = [f"port {p} dropped (it read {r})" for p, r in old.inputs.items()
                   if r and p not in ports]  # fmt: skip
        if dropped:
            what += "; " + ", ".join(dropped)
        before = (self._editing, self.canvas.selected)
        if self._editing == old.name:  # the form and the selection follow a new name
            self._editing = box.name
        if self.canvas.selected == node_id("box", old.name):
            self.canvas.selected = node_id("box", box.name)
        taken = self.edit_here(
            lambda c: edits.replace_box(c, old.name, box),
            what,
            attempt=f"change box '{old.name}'{self._field_text(field)}",
            after="; the form shows the box as it is",
        )
        if taken:
            self.box_select.value = box.name
            if not self._editing:  # applied from a new box's form: it now shows the box
                self.canvas.selected = node_id("box", box.name)
                self._fill_form(self.view.box(box.name))
            return
        self._editing, self.canvas.selected = before
        self._sync_form()

    def _selected(self) -> str:
        if not self.box_select.value:
            raise SchemaError("no box selected (expected one chosen in the box list)")
        return self.box_select.value

    @_guarded
    def _delete_box(self) -> None:
        name = self._selected()
        self.edit_here(
            lambda c: c.model_copy(update={"boxes": [b for b in c.boxes if b.name != name]}),
            f"deleted {name}",
        )

    @_guarded
    def _add_input(self) -> None:
        name = self.input_name.value.strip()
        axes, dtype = self.input_axes.value, self.input_dtype.value
        _need_axes(name, axes)
        if self.edit_here(lambda c: edits.add_input(c, name, axes, dtype), f"added {name}"):
            self.input_name.value = ""

    @_guarded
    def _set_output(self) -> None:
        name, source = self.output_name.value.strip(), self.output_source.value
        self.edit_here(
            lambda c: edits.set_output(c, name, source or ""), f"output {name} <- {source}"
        )
