"""`Studio`: a JupyterLab editor of one circuit, built on ipywidgets (no Node build).

The circuit is the single source of truth. The Studio holds the current circuit and an undo
history of circuits; every edit is a pure function circuit -> circuit that is validated before
it is accepted, and every panel is redrawn from the accepted circuit. An edit that fails is
shown, located, in the messages panel and the last valid circuit stays. No button callback
raises: errors end up in the messages panel.

    >>> studio = Studio("transformer_block")   # doctest: +SKIP
    >>> studio                                 # in JupyterLab: the editor
    >>> studio.circuit                         # the current Circuit
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import ipywidgets as w

from ncd.circuits import io
from ncd.circuits.circuit import Circuit, Input, Output
from ncd.circuits.errors import NcdError, SchemaError
from ncd.circuits.types import DTYPES

from . import panels
from .forms import BoxForm, palette_options

_NONE = "—"  # a port left unwired
MAX_UNDO = 200


def _guarded(method):
    """A callback that shows its error in the messages panel instead of raising."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as e:  # noqa: BLE001 - a widget callback must never raise
            what = method.__name__.strip("_").replace("_", " ")
            self._show(panels.problems_of(e), f"{what}: not done; the circuit is unchanged", False)
            return None

    return run


class Studio(w.VBox):
    """Editor of one circuit: palette, box form, wiring, inputs/outputs, undo/redo,
    save/load/export on the left; diagram, messages, cost, code and JSON on the right.

    circuit: None (an empty circuit), a Circuit, or a path to a JSON spec; one that cannot be
    read or does not validate raises its NcdError here (later, `load` reports it in the
    messages panel instead). lookup: turns any other text (a gallery name) into a circuit;
    `ncd.Studio` passes the CLI's, so that the editor itself knows no gallery.
    Keeps the last MAX_UNDO circuits for undo.
    """

    def __init__(
        self,
        circuit: Circuit | str | Path | None = None,
        lookup: Callable[[str], Circuit] | None = None,
    ):
        super().__init__()
        self._lookup = lookup
        self._history: list[Circuit] = []
        self._at = -1
        self._checked = None
        self.form: BoxForm | None = None
        self.port_widgets: dict[str, w.Dropdown] = {}
        self._build_widgets()
        self._accept(self._resolve(circuit), "opened")
        self._new_form()

    # ---- the state -----------------------------------------------------------------------
    @property
    def circuit(self) -> Circuit:
        """The current (last accepted) circuit."""
        return self._history[self._at]

    def load(self, circuit: Circuit | str | Path | None) -> bool:
        """Replace the circuit (undoable). Returns whether it was accepted; a circuit that
        cannot be read or is invalid is reported in the messages panel and not taken."""
        return self._guarded_edit(lambda _: self._resolve(circuit), "loaded") is not None

    def edit(self, change, what: str = "edited") -> bool:
        """Apply `change` (a function Circuit -> Circuit); True when it was accepted."""
        return self._guarded_edit(change, what) is not None

    def _resolve(self, source) -> Circuit:
        if source is None:
            return Circuit(name="untitled")
        if isinstance(source, Circuit):
            return source
        text = str(source)
        if text.endswith(".json") or Path(text).is_file():
            return io.load(text)
        if self._lookup is not None:
            return self._lookup(text)
        raise SchemaError(f"{text!r} is not a JSON file (ncd.Studio also takes gallery names)")

    def _guarded_edit(self, change, what):
        try:
            return self._accept(change(self.circuit), what)
        except Exception as e:  # noqa: BLE001 - shown, located; the last valid circuit stays
            note = f"edit not taken ({what}): the circuit is unchanged"
            self._show(panels.problems_of(e), note, ok=False)
            return None

    def _accept(self, new: Circuit, what: str) -> Circuit:
        # Round-trip through the schema so that edits made with model_copy are checked too.
        new = io.from_dict(io.to_dict(new))
        checked = panels.check_draft(new)  # raises ValidationError: the edit is not taken
        del self._history[self._at + 1 :]
        self._history.append(new)
        del self._history[:-MAX_UNDO]  # circuits are small, but a session can be long
        self._at = len(self._history) - 1
        self._checked = checked
        self._refresh(f"{what}: {new.name} ({len(new.boxes)} boxes)")
        return new

    # ---- the layout ----------------------------------------------------------------------
    def _build_widgets(self) -> None:
        button = functools.partial(w.Button, layout=w.Layout(width="auto"))
        wide = {"description_width": "90px"}
        # palette, form, wiring
        self.palette = w.Dropdown(options=palette_options(), description="kind", style=wide)
        self.box_name = w.Text(description="name", placeholder="box name", style=wide)
        self.form_box = w.VBox()
        self.wiring = w.VBox()
        self.add_box_button = button(description="add box", button_style="primary")
        self.palette.observe(lambda _: self._new_form(), names="value")
        self.add_box_button.on_click(lambda _: self._add_box())
        # delete, inputs, outputs
        self.box_select = w.Dropdown(description="box", style=wide)
        self.delete_box_button = button(description="delete box")
        self.delete_box_button.on_click(lambda _: self._delete_box())
        self.edit_box_button = button(description="edit in form")
        self.edit_box_button.on_click(lambda _: self._edit_box())
        self.replace_box_button = button(description="replace box")
        self.replace_box_button.on_click(lambda _: self._replace_box())
        self.input_name = w.Text(description="input", placeholder="name", style=wide)
        self.input_axes = w.Text(description="axes", placeholder="B T D", style=wide)
        self.input_dtype = w.Dropdown(options=list(DTYPES), description="dtype", style=wide)
        self.add_input_button = button(description="add input")
        self.add_input_button.on_click(lambda _: self._add_input())
        self.output_name = w.Text(description="output", placeholder="name", style=wide)
        self.output_source = w.Dropdown(description="from", style=wide)
        self.set_output_button = button(description="set output")
        self.set_output_button.on_click(lambda _: self._set_output())
        # history and files
        self.undo_button = button(description="undo", icon="undo")
        self.redo_button = button(description="redo", icon="repeat")
        self.undo_button.on_click(lambda _: self.undo())
        self.redo_button.on_click(lambda _: self.redo())
        self.path = w.Text(description="file", placeholder="circuit.json", style=wide)
        self.save_button = button(description="save")
        self.load_button = button(description="load")
        self.save_button.on_click(lambda _: self._save())
        self.load_button.on_click(lambda _: self.load(self.path.value.strip()))
        self.export_path = w.Text(
            description="export", placeholder="diagram.svg|pdf|png", style=wide
        )
        self.export_button = button(description="export")
        self.export_button.on_click(lambda _: self._export())
        # views
        self.theme = w.ToggleButtons(options=["paper", "notebook"], value="paper")
        self.theme.observe(lambda _: self._refresh_diagram(), names="value")
        self.diagram = w.HTML()
        self.messages = w.HTML()
        self.sizes = w.Text(description="sizes", placeholder="B=2,T=128", style=wide)
        self.sizes.observe(lambda _: self._refresh_sized(), names="value")
        self.default_sizes_button = button(description="make these the default sizes")
        self.default_sizes_button.on_click(lambda _: self._default_sizes())
        self.cost = w.HTML()
        self.code = w.HTML()
        self.json_text = w.Textarea(layout=w.Layout(width="100%", height="360px"))
        self.apply_json_button = button(description="apply JSON", button_style="primary")
        self.apply_json_button.on_click(lambda _: self._apply_json())
        tabs = w.Tab(
            [
                w.VBox([w.HBox([self.sizes, self.default_sizes_button]), self.cost]),
                self.code,
                w.VBox([self.json_text, self.apply_json_button]),
            ]
        )
        for i, title in enumerate(["Cost", "Code", "JSON"]):
            tabs.set_title(i, title)

        def section(title, *items):
            return w.VBox([w.HTML(f"<b>{title}</b>"), *items])

        left = w.VBox(
            [
                section("Add a box", self.palette, self.box_name, self.form_box),
                section("Wiring", self.wiring, self.add_box_button),
                section("A box of the circuit", self.box_select),
                w.HBox([self.edit_box_button, self.replace_box_button, self.delete_box_button]),
                section("Inputs", self.input_name, self.input_axes, self.input_dtype),
                self.add_input_button,
                section("Outputs", self.output_name, self.output_source, self.set_output_button),
                w.HBox([self.undo_button, self.redo_button]),
                section("Files", self.path, w.HBox([self.save_button, self.load_button])),
                self.export_path,
                self.export_button,
            ],
            layout=w.Layout(width="340px", min_width="340px"),
        )
        right = w.VBox([self.theme, self.diagram, self.messages, tabs], layout=w.Layout(flex="1"))
        self.children = [w.HBox([left, right])]

    # ---- panels: pure functions of the current circuit ------------------------------------
    def _refresh(self, note: str = "") -> None:
        c = self.circuit
        self._refresh_diagram()
        self._refresh_sized()
        self.json_text.value = io.dumps(c)
        refs = panels.sources(c, self._checked)
        refs = [r for r in refs if r != panels.DRAFT_OUTPUT]
        for dd in [*self.port_widgets.values()]:
            keep = dd.value
            dd.options = [_NONE, *refs]
            dd.value = keep if keep in refs else (refs[-1] if refs else _NONE)
        # A choice the user made survives the refresh after an edit, while it still exists.
        for dd, names in ((self.output_source, refs), (self.box_select, [b.name for b in c.boxes])):
            keep = dd.value
            dd.options = names
            dd.value = keep if keep in names else None
        self.undo_button.disabled = self._at <= 0
        self.redo_button.disabled = self._at >= len(self._history) - 1
        problems = []
        if not c.outputs and c.inputs:
            note += "; a draft: set an output to draw, cost and compile it"
        self._show(problems, note)

    def _refresh_diagram(self) -> None:
        self.diagram.value = panels.diagram_html(self.circuit, self.theme.value)

    def _refresh_sized(self) -> None:
        """Cost and code at the circuit's default sizes updated by the sizes field."""
        try:
            sizes = panels.parse_sizes(self.sizes.value)
        except NcdError as e:
            self.cost.value = self.code.value = panels.messages_html(
                panels.problems_of(e), ok=False
            )
            return
        self.cost.value = panels.cost_html(self.circuit, sizes)
        self.code.value = panels.code_html(self.circuit, sizes)

    def _show(self, problems, note: str, ok: bool = True) -> None:
        self.messages.value = panels.messages_html(problems, note, ok)

    # ---- edits -----------------------------------------------------------------------------
    @_guarded
    def _new_form(self) -> None:
        self.form = BoxForm(self.palette.value, on_change=lambda _: self._rewire())
        self.form_box.children = [self.form.widget]
        self._rewire()

    @_guarded
    def _rewire(self) -> None:
        """One source dropdown per input port of the box the form describes."""
        refs = [r for r in panels.sources(self.circuit, self._checked) if r != panels.DRAFT_OUTPUT]
        old = {p: dd.value for p, dd in self.port_widgets.items()}
        self.port_widgets = {}
        for port in self._ports():
            value = old.get(port, refs[-1] if refs else _NONE)
            self.port_widgets[port] = w.Dropdown(
                options=[_NONE, *refs],
                value=value if value in refs else _NONE,
                description=f"port {port}",
                style={"description_width": "90px"},
            )
        self.wiring.children = list(self.port_widgets.values())

    def _ports(self) -> list[str]:
        if self.form.kind == "call":  # a call takes the inputs of the subcircuit it names
            sub = self.circuit.subcircuits.get(self.form.fields["circuit"][1].value.strip())
            return [i.name for i in sub.inputs] if sub is not None else []
        return self.form.ports()

    @_guarded
    def _add_box(self) -> None:
        name = self.box_name.value.strip()
        inputs = {p: dd.value for p, dd in self.port_widgets.items() if dd.value != _NONE}
        box = self.form.build(name, inputs)  # FormError: located per field
        if any(b.name == name for b in self.circuit.boxes) or name in self._input_names():
            raise SchemaError(f"box '{name}': the name is taken (choose another)")
        if self.edit(lambda c: c.model_copy(update={"boxes": [*c.boxes, box]}), f"added {name}"):
            self.box_name.value = ""

    @_guarded
    def _edit_box(self) -> None:
        """Load the selected box into the palette, form and wiring (then `replace box`)."""
        box = self.circuit.box(self._selected())
        self.palette.value = box.kind  # a new form for the kind
        self.form.fill(box)
        self.box_name.value = box.name
        self._rewire()
        for port, dd in self.port_widgets.items():
            ref = box.inputs.get(port, _NONE)
            if ref not in dd.options:  # written `box.port` where the list has `box`
                dd.options = [*dd.options, ref]
            dd.value = ref
        self._show([], f"editing {box.name}: change the form, then replace box")

    @_guarded
    def _replace_box(self) -> None:
        """The selected box becomes the form's box, in the same place (the name may change)."""
        old = self._selected()
        inputs = {p: dd.value for p, dd in self.port_widgets.items() if dd.value != _NONE}
        box = self.form.build(self.box_name.value.strip(), inputs)
        self.edit(
            lambda c: c.model_copy(
                update={"boxes": [box if b.name == old else b for b in c.boxes]}
            ),
            f"replaced {old}",
        )

    def _selected(self) -> str:
        if not self.box_select.value:
            raise SchemaError("no box selected (expected one chosen in the box list)")
        return self.box_select.value

    def _input_names(self) -> set[str]:
        return {i.name for i in self.circuit.inputs}

    @_guarded
    def _delete_box(self) -> None:
        name = self._selected()
        self.edit(
            lambda c: c.model_copy(update={"boxes": [b for b in c.boxes if b.name != name]}),
            f"deleted {name}",
        )

    @_guarded
    def _add_input(self) -> None:
        name = self.input_name.value.strip()
        if name in self._input_names() or any(b.name == name for b in self.circuit.boxes):
            raise SchemaError(f"input '{name}': the name is taken (choose another)")
        try:
            new = Input(name=name, axes=self.input_axes.value, dtype=self.input_dtype.value)
        except Exception as e:  # pydantic: say which input and field
            raise SchemaError(f"input '{name}': {_first_line(e)}") from None
        if self.edit(lambda c: c.model_copy(update={"inputs": [*c.inputs, new]}), f"added {name}"):
            self.input_name.value = ""

    @_guarded
    def _set_output(self) -> None:
        name, source = self.output_name.value.strip(), self.output_source.value
        try:
            new = Output(name=name, source=source or "")
        except Exception as e:
            raise SchemaError(f"output '{name}': {_first_line(e)}") from None

        def change(c):
            outs = [o for o in c.outputs if o.name != name]
            return c.model_copy(update={"outputs": [*outs, new]})

        self.edit(change, f"output {name} <- {source}")

    @_guarded
    def _default_sizes(self) -> None:
        sizes = panels.parse_sizes(self.sizes.value)
        self.edit(
            lambda c: c.model_copy(update={"sizes": {**c.sizes, **sizes}}), "set default sizes"
        )

    @_guarded
    def _apply_json(self) -> None:
        self.edit(lambda _: io.loads(self.json_text.value), "applied JSON")

    @_guarded
    def _save(self) -> None:
        path = self.path.value.strip()
        if not path:
            raise SchemaError("save: no file given (expected a path such as circuit.json)")
        try:
            io.save(self.circuit, path)
        except OSError as e:
            raise SchemaError(f"{path}: cannot write ({e.strerror or e})") from None
        self._show([], f"saved {path}")

    @_guarded
    def _export(self) -> None:
        from ncd.circuits.draw import render

        path = self.export_path.value.strip()
        if not path:
            raise SchemaError("export: no file given (expected diagram.svg, .pdf or .png)")
        render(self.circuit, path, theme=self.theme.value)
        self._show([], f"exported {path}")

    # ---- history ---------------------------------------------------------------------------
    @_guarded
    def undo(self) -> None:
        """Go back one accepted edit (a no-op at the first)."""
        self._goto(max(self._at - 1, 0), "undo")

    @_guarded
    def redo(self) -> None:
        """Go forward one undone edit (a no-op at the last)."""
        self._goto(min(self._at + 1, len(self._history) - 1), "redo")

    def _goto(self, at: int, what: str) -> None:
        self._at = at
        self._checked = panels.check_draft(self.circuit)  # it was valid when accepted
        self._refresh(f"{what}: {self._at + 1} of {len(self._history)}")


def _first_line(err: Exception) -> str:
    errors = getattr(err, "errors", None)
    if callable(errors):
        e = errors(include_url=False)[0]
        return f"field '{'.'.join(map(str, e['loc']))}': {e['msg']} (found {e.get('input')!r})"
    return str(err).splitlines()[0]
