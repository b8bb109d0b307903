"""`Studio`: a JupyterLab editor of one circuit: the diagram is the editor.

The circuit is the single source of truth. The Studio holds the current circuit and an undo
history of circuits; every edit is a pure function circuit -> circuit (widgets/edits.py) that
is validated before it is accepted, and every view is redrawn from the accepted circuit. An
edit that fails is shown, located (a mark on the box, the message on hover, and in the
messages panel), and the last valid circuit stays. No callback raises. A box may be accepted
with ports that read nothing yet (being wired: drawn with loose ends); it is set aside by the
check (panels.check_draft) and nothing may read it until they are wired.

The diagram (widgets/canvas.py, an anywidget) sends intents: select, add from the palette,
wire an output port to an input port, splice a box onto a wire, delete, collapse, enter a
subcircuit; the form on the left edits the selected box, and follows the circuit (an edit, an
undo or a redo refills it). The Cost, Code and JSON panels are computed only while their tab
is shown; the text view follows every edit (circuits/script.py).

    >>> studio = Studio("transformer_block")   # doctest: +SKIP
    >>> studio                                 # in JupyterLab: the editor
    >>> studio.circuit                         # the current Circuit
"""

from __future__ import annotations

import dataclasses
import functools
import html
import typing
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import ipywidgets as w

from ncd.circuits import io
from ncd.circuits.circuit import Circuit
from ncd.circuits.errors import NcdError, SchemaError
from ncd.circuits.ids import node_id, split_id
from ncd.circuits.types import DTYPES, TensorType

from . import edits, panels
from .canvas import Canvas
from .forms import BoxForm, FormError, fitted, palette_options

_NONE = "—"  # a port left unwired
MAX_UNDO = 200
CHECKS_KEPT = 8  # circuits whose check_draft is kept (undo and redo check nothing again)
TABS = ["Messages", "Cost", "Code", "JSON"]
# A refused edit says what was tried, not what would have been done: `added x` -> `add x`.
_TRIED = {
    "added": "add", "changed": "change", "wired": "wire", "deleted": "delete",
    "removed": "remove", "spliced": "splice", "renamed": "rename", "loaded": "load",
    "applied": "apply", "edited": "edit", "set": "set", "opened": "open",
}  # fmt: skip


def _tried(what: str) -> str:
    """`added linear` -> `add linear`; `output y <- h` -> `set output y <- h`."""
    verb, _, rest = what.partition(" ")
    if verb in _TRIED:
        return f"{_TRIED[verb]} {rest}".strip()
    if verb == "output":
        return f"set {what}"
    return f"make the edit ({what})"


def _script():
    """circuits/script.py's (to_script, from_script), or None where it is not there."""
    try:
        from ncd.circuits import script
    except ImportError:
        return None
    return script


def _guarded(method):
    """A callback that shows its error in the messages panel instead of raising."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as e:  # noqa: BLE001 - a widget callback must never raise
            what = method.__name__.strip("_").replace("_", " ")
            self._show(panels.problems_of(e), f"could not {what}: the circuit is unchanged", False)
            return None

    return run


class Studio(w.VBox):
    """Editor of one circuit: the diagram (palette, selection, wiring, zoom, collapse,
    subcircuits, undo) with the box form, inputs/outputs, files and export on the left;
    messages, the text view, and the Cost, Code and JSON tabs below.

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
        self.add_class("ncd-editor")
        self._lookup = lookup
        self._history: edits.History | None = None
        self.scope: tuple[str, ...] = ()
        self._collapsed: set[str] = set()
        self._checked = None  # check_draft of the circuit being edited (self.view)
        self._checks: OrderedDict[int, tuple[Circuit, object]] = OrderedDict()
        self._stale = set(TABS)  # tabs to recompute when next shown
        self._confirm_save = ""  # a path the user was asked about overwriting
        self._text_shown = ""  # the circuit's text, as the text view last showed it
        self._text_error = ""  # why the text typed there was not taken ("" once it was)
        self.form: BoxForm | None = None
        self._editing = ""  # the box the form shows (its fields apply on Enter)
        self._editing_scope: tuple[str, ...] = ()  # where that box is
        self._filling = False  # the form is being filled from the circuit: nothing applies
        self._port_memory: dict[str, str] = {}  # port -> source, while the form shows one box
        self.port_widgets: dict[str, w.Dropdown] = {}
        self._build_widgets()
        self._accept(self._resolve(circuit), "opened")
        self._new_form()

    # ---- the state -----------------------------------------------------------------------
    @property
    def circuit(self) -> Circuit:
        """The current (last accepted) circuit. While a box has ports that read nothing yet
        (being wired), it is a draft: `check()` refuses it until they are wired."""
        return self._history.current

    @property
    def view(self) -> Circuit:
        """The circuit being edited: the top circuit, or the subcircuit `scope` leads to."""
        return edits.at_scope(self.circuit, self.scope)

    def load(self, circuit: Circuit | str | Path | None) -> bool:
        """Replace the circuit (undoable). Returns whether it was accepted; a circuit that
        cannot be read or is invalid is reported in the messages panel and not taken. The
        sizes typed for the previous circuit are cleared: sizes belong to a circuit."""
        ok = self._guarded_edit(lambda _: self._resolve(circuit), "loaded", loading=True)
        return ok is not None

    def edit(self, change, what: str = "edited", attempt: str = "", after: str = "") -> bool:
        """Apply `change` (a function Circuit -> Circuit) to the top circuit; True when it
        was accepted. `what`: the status line's words for it (`added x`); `attempt`: what a
        refusal says was tried (`add x`, by default from `what`), `after` is added to it."""
        return self._guarded_edit(change, what, attempt=attempt, after=after) is not None

    def edit_here(self, change, what: str = "edited", attempt: str = "", after: str = "") -> bool:
        """Apply `change` to the circuit being edited (the subcircuit the breadcrumb shows)."""
        return self.edit(self._whole(change), what, attempt, after)

    def _whole(self, change):
        """`change` of the circuit being edited, as a change of the top circuit."""
        scope = self.scope

        def whole(top):
            return edits.with_scope(top, scope, change(edits.at_scope(top, scope)))

        return whole

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

    def _guarded_edit(self, change, what, loading=False, attempt="", after="", text=False):
        if not text and self._text_waits(attempt or _tried(what)):
            return None
        try:
            return self._accept(change(self.circuit), what, loading)
        except Exception as e:  # noqa: BLE001 - shown, located; the last valid circuit stays
            self._refuse(panels.problems_of(e), attempt or _tried(what), after)
            return None

    def _text_pending(self) -> bool:
        """The text view holds text the user typed that is not the circuit's: it was not
        taken (it does not read or validate), and nothing may overwrite it."""
        return _script() is not None and self.text.value != self._text_shown

    def _text_waits(self, attempt: str) -> bool:
        """Refuse an edit of the circuit (`attempt`) while the text view holds text that was not
        taken: the edit would rewrite the text, and the user's draft would be lost. True when
        it was refused (said, with the way out: fix the text, or discard it)."""
        if not self._text_pending():
            return False
        why = self._text_error or "it was not read yet"
        self._show([], f"could not {attempt}: the text view has changes that were not taken "
                   f"({why}); fix them and press Tab to apply them, or press 'discard text "
                   "changes': the circuit is unchanged", ok=False)  # fmt: skip
        self.discard_text_button.layout.display = ""
        return True

    def _refuse(self, problems, attempt: str, after: str = "") -> None:
        """An edit not taken: what was tried, why (located problems, marked on their boxes)."""
        self.canvas.marks = edits.marks(problems)
        self._show(problems, f"could not {attempt}: the circuit is unchanged{after}", ok=False)

    def _accept(self, new: Circuit, what: str, loading: bool = False) -> Circuit:
        # Round-trip through the schema so that edits made with model_copy are checked too.
        new = io.from_dict(io.to_dict(new))
        self._check(new)  # raises ValidationError: the edit is not taken
        if self._history is None:
            self._history = edits.History(new, limit=lambda: MAX_UNDO)
        else:
            self._history.push(new)
        if loading:
            self.scope, self._collapsed = (), set()
            self.sizes.value = ""  # the last circuit's sizes are not this one's
        self._fit_scope()
        self._refresh(f"{what}: {self._here()}")
        return new

    def _here(self) -> str:
        """The circuit being edited, as the status line names it: `attention (3 boxes), in
        untitled` inside a subcircuit (the breadcrumb's last name), `untitled (8 boxes)` at
        the top."""
        c = self.view
        n = len(c.boxes)
        text = f"{c.name} ({n} box{'' if n == 1 else 'es'})"
        return f"{text}, in {self.circuit.name}" if self.scope else text

    def _check(self, c: Circuit):
        """panels.check_draft(c), kept for the last CHECKS_KEPT circuit objects."""
        hit = self._checks.get(id(c))
        if hit is not None and hit[0] is c:
            self._checks.move_to_end(id(c))
            return hit[1]
        checked = panels.check_draft(c)
        self._checks[id(c)] = (c, checked)
        while len(self._checks) > CHECKS_KEPT:
            self._checks.popitem(last=False)
        return checked

    def _fit_scope(self) -> None:
        """Keep the scope while the calls it goes through still exist (an undo may remove
        them); otherwise go out as far as needed."""
        for k in range(len(self.scope), -1, -1):
            try:
                edits.at_scope(self.circuit, self.scope[:k])
            except (SchemaError, KeyError):
                continue
            self.scope = self.scope[:k]
            return

    # ---- the layout ----------------------------------------------------------------------
    def _build_widgets(self) -> None:
        button = functools.partial(w.Button, layout=w.Layout(width="auto"))
        # the diagram
        self.canvas = Canvas(palette=_palette())
        self.canvas.on_intent(self._intent)
        # palette, form, wiring
        self.palette = w.Dropdown(options=palette_options(), description="kind", **fitted())
        self.box_name = w.Text(
            description="name", placeholder="new: left empty, kind2…", **fitted(),
            continuous_update=False,
        )  # fmt: skip
        self.form_box = w.VBox()
        self.wiring = w.VBox()
        self.add_box_button = button(description="add box", button_style="primary")
        self.palette.observe(lambda _: self._new_form(), names="value")
        # The name is a field like the others: Enter (or leaving it) renames the box shown.
        self.box_name.observe(lambda _: self._field_changed("name"), names="value")
        self.add_box_button.on_click(lambda _: self._add_box())
        # delete, inputs, outputs
        self.box_select = w.Dropdown(description="box", **fitted())
        # A box chosen in the list is selected as a click on it would: the form shows it.
        self.box_select.observe(lambda _: self._box_chosen(), names="value")
        self.delete_box_button = button(description="delete box")
        self.delete_box_button.on_click(lambda _: self._delete_box())
        self.edit_box_button = button(description="edit in form")
        self.edit_box_button.on_click(lambda _: self._edit_box())
        self.replace_box_button = button(description="apply to box")
        self.replace_box_button.on_click(lambda _: self._replace_box())
        self.input_name = w.Text(description="input", placeholder="name", **fitted())
        self.input_axes = w.Text(description="axes", placeholder="B T D", **fitted())
        self.input_dtype = w.Dropdown(options=list(DTYPES), description="dtype", **fitted())
        self.add_input_button = button(description="add input")
        self.add_input_button.on_click(lambda _: self._add_input())
        self.output_name = w.Text(description="output", placeholder="name", **fitted())
        self.output_source = w.Dropdown(description="from", **fitted())
        self.set_output_button = button(description="set output")
        self.set_output_button.on_click(lambda _: self._set_output())
        # history and files
        self.undo_button = button(description="undo", icon="undo")
        self.redo_button = button(description="redo", icon="repeat")
        self.undo_button.on_click(lambda _: self.undo())
        self.redo_button.on_click(lambda _: self.redo())
        self.path = w.Text(description="file", placeholder="circuit.json", **fitted())
        self.path.observe(lambda _: self._reset_confirm(), names="value")
        self.save_button = button(description="save")
        self.load_button = button(description="load")
        self.save_button.on_click(lambda _: self._save())
        self.load_button.on_click(lambda _: self.load(self.path.value.strip()))
        self.export_path = w.Text(
            description="export", placeholder="diagram.svg|pdf|png, model.py", **fitted()
        )
        self.export_button = button(description="export")
        self.export_button.on_click(lambda _: self._export())
        # views
        self.theme = w.ToggleButtons(options=["paper", "notebook"], value="paper")
        self.theme.observe(lambda _: self._refresh_diagram(), names="value")
        self.messages = w.HTML()
        self.text = w.Textarea(
            placeholder="the circuit as Builder code",
            continuous_update=False,
            layout=w.Layout(width="100%", height="260px"),
        )
        self.text.add_class("ncd-text")
        self.text.observe(lambda _: self._apply_text(), names="value")
        self.text_status = w.HTML()
        # Text that was not taken stays until it is fixed or discarded (never overwritten).
        self.discard_text_button = w.Button(  # a layout of its own: it is hidden and shown
            description="discard text changes", icon="times", layout=w.Layout(width="auto")
        )
        self.discard_text_button.add_class("ncd-discard-text")
        self.discard_text_button.on_click(lambda _: self._discard_text())
        self.discard_text_button.layout.display = "none"
        self.sizes = w.Text(
            description="sizes", placeholder="B=2,T=128", style={"description_width": "90px"}
        )
        self.sizes.observe(lambda _: self._sizes_changed(), names="value")
        self.default_sizes_button = button(description="make these the default sizes")
        self.default_sizes_button.on_click(lambda _: self._default_sizes())
        self.cost = w.HTML()
        self.code = w.HTML()
        self.json_text = w.Textarea(layout=w.Layout(width="100%", height="360px"))
        self.apply_json_button = button(description="apply JSON", button_style="primary")
        self.apply_json_button.on_click(lambda _: self._apply_json())
        self.tabs = w.Tab(
            [
                self.messages,
                w.VBox([w.HBox([self.sizes, self.default_sizes_button]), self.cost]),
                self.code,
                w.VBox([self.json_text, self.apply_json_button]),
            ],
            titles=TABS,
            selected_index=0,  # the others are computed when shown, never on every edit
        )
        self.tabs.observe(lambda _: self._refresh_tab(), names="selected_index")

        def section(title, *items):
            return w.VBox([w.HTML(f"<b>{title}</b>"), *items])

        # The form's heading says whose fields it shows: the selected box's, or a new box's.
        self.form_title = w.HTML()
        left = w.VBox(
            [
                w.VBox(
                    [self.form_title, self.box_select, self.box_name, self.form_box, self.wiring]
                ),  # fmt: skip
                w.HBox([self.replace_box_button, self.delete_box_button]),
                # adds a new box: the kind and fields above, under a name of its own
                section("Add a box", self.palette, self.add_box_button),
                section("Inputs", self.input_name, self.input_axes, self.input_dtype),
                self.add_input_button,
                section("Outputs", self.output_name, self.output_source, self.set_output_button),
                w.HBox([self.undo_button, self.redo_button, self.edit_box_button]),
                section("Files", self.path, w.HBox([self.save_button, self.load_button])),
                self.export_path,
                self.export_button,
            ],
            layout=w.Layout(width="300px", min_width="300px"),
        )
        left.add_class("ncd-form")
        text = w.VBox(
            [w.HTML("<b>Text</b>"), self.text, self.text_status, self.discard_text_button]
        )
        text.layout = w.Layout(width="320px", min_width="260px")
        if _script() is None:
            text.layout.display = "none"
        # The diagram keeps a readable width: in a narrow notebook the text view goes below.
        middle = w.VBox(
            [self.theme, self.canvas], layout=w.Layout(flex="1 1 560px", min_width="480px")
        )
        self.children = [
            w.HBox([left, middle, text], layout=w.Layout(flex_flow="row wrap")),
            self.tabs,
        ]

    # ---- views: pure functions of the current circuit -------------------------------------
    def _refresh(self, note: str = "") -> None:
        # One message to the page: the drawing, its breadcrumb, version and undo state
        # together, sent before the form and the lists are brought up to date (their widgets
        # send messages of their own, which the page would otherwise handle first).
        c = self.view
        with self.canvas.hold_sync():
            self._checked = self._check(c)
            self._refresh_diagram()
            self.canvas.can_undo = self._history.can_undo
            self.canvas.can_redo = self._history.can_redo
            self.canvas.name, self.canvas.title = c.name, c.title
            self.canvas.marks = {}
        self._stale = set(TABS)
        self._refresh_tab()
        self._refresh_text()
        refs = [r for r in panels.sources(c, self._checked) if r != panels.DRAFT_OUTPUT]
        self._filling = True  # new choices, not the user's: nothing applies
        try:
            for dd in [*self.port_widgets.values()]:
                keep = dd.value
                dd.options = [_NONE, *refs]
                dd.value = keep if keep in refs else (refs[-1] if refs else _NONE)
            # A choice the user made survives the refresh after an edit, while it still exists.
            for dd, names in (
                (self.output_source, refs),
                (self.box_select, [b.name for b in c.boxes]),
            ):
                keep = dd.value
                dd.options = names
                dd.value = keep if keep in names else None
        finally:
            self._filling = False
        self.undo_button.disabled = not self._history.can_undo
        self.redo_button.disabled = not self._history.can_redo
        self._sync_form()
        opened = edits.open_boxes(c)
        if opened:
            note += "; " + _open_note(opened)
        elif not c.outputs and c.inputs:
            note += "; a draft: its loose ends are drawn dashed (set an output to finish it)"
        self._show([], note)

    def _refresh_diagram(self) -> None:
        c = self.view
        canvas = self.canvas
        with canvas.hold_sync():  # the drawing and its breadcrumb reach the page together
            crumbs, at = [self.circuit.name], self.circuit
            for call in self.scope:
                at = edits.at_scope(at, [call])
                crumbs.append(f"{call} ({at.name})")
            canvas.crumbs = crumbs
            if self._checked is None:
                canvas.svg = ""
                canvas.placeholder = (
                    "An empty circuit.\nAdd an input above (a name and its axes, e.g. x and "
                    "B T D), then click boxes in the palette: each new box reads the selected one."
                )
                canvas.ports = {}
            else:
                drawn, checked = panels.drawing(c, self._checked)
                collapse = self._collapsed & _blocks(self._checked)
                self._collapsed = collapse
                try:
                    canvas.svg = panels.diagram_svg(
                        drawn, self.theme.value, collapse, checked=checked
                    )
                except Exception as e:  # noqa: BLE001 - a view that fails says why
                    canvas.svg = ""
                    canvas.placeholder = "cannot draw the circuit: " + str(e)[:2000]
                canvas.ports = _ports(drawn, self._checked, edits.open_boxes(c))
                canvas.axis_sizes = _axis_sizes(c, self._checked)
            if canvas.selected and not self._exists(canvas.selected):
                canvas.selected = ""
            canvas.version += 1

    def _exists(self, key: str) -> bool:
        """Whether the node `key` names (`box:x`, `input:x`, `output:y`) is still in the
        circuit being edited; a wire's id is not (they change with every drawing)."""
        role, name = split_id(key)
        c = self.view
        found = {"box": c.boxes, "input": c.inputs, "output": c.outputs}.get(role, [])
        return name in {x.name for x in found}

    def _refresh_tab(self) -> None:
        """The tab shown, if its contents are stale (the others wait until shown)."""
        index = self.tabs.selected_index
        if index is None or TABS[index] not in self._stale:
            return
        tab = TABS[index]
        self._stale.discard(tab)
        if tab == "Messages":
            return
        if tab == "JSON":
            self.json_text.value = io.dumps(self.circuit)
            return
        try:
            sizes = panels.parse_sizes(self.sizes.value)
        except NcdError as e:
            self.cost.value = self.code.value = panels.messages_html(
                panels.problems_of(e), ok=False
            )
            return
        # the widget shows the note at once (a value set is sent as it is set) while the
        # panel is computed: a large block's code or cost takes seconds
        view = self.cost if tab == "Cost" else self.code
        view.value = f'<p class="ncd-computing">computing the {tab.lower()} …</p>'
        if tab == "Cost":
            view.value = panels.cost_html(self.circuit, sizes)
        else:
            view.value = panels.code_html(self.circuit, sizes)

    def _sizes_changed(self) -> None:
        self._stale |= {"Cost", "Code"}
        self._refresh_tab()

    def _refresh_text(self) -> None:
        """The text view shows the circuit, unless it holds text the user typed that was not
        taken: that stays, with its error, until it is fixed or discarded (edits of the
        circuit are refused meanwhile, so the circuit's text is still `_text_shown`)."""
        script = _script()
        if script is None or self._text_pending():
            return
        try:
            text = script.to_script(self.circuit)
        except Exception as e:  # noqa: BLE001 - a view that fails says why
            self.text_status.value = panels.messages_html(panels.problems_of(e), ok=False)
            return
        self._text_shown = text
        self._text_error = ""
        self.discard_text_button.layout.display = "none"
        self.text_status.value = ""  # before the text: its observer sees no error to clear
        self.text.value = text

    @_guarded
    def _discard_text(self) -> None:
        """Drop the text typed in the text view that was not taken: it shows the circuit."""
        if not self._text_pending():
            self.discard_text_button.layout.display = "none"
            return
        self.text.value = self._text_shown  # its observer finds nothing to apply
        self._text_error = ""
        self.discard_text_button.layout.display = "none"
        self.text_status.value = ""
        self.canvas.marks = {}
        self._show([], f"discarded the text changes: the text view shows {self._here()}")

    @_guarded
    def _apply_text(self) -> None:
        script = _script()
        text = self.text.value
        if script is None:
            return
        if text == self._text_shown:  # put back as the circuit is: nothing left to refuse
            self._text_unchanged()
            return
        try:
            new = panels.read_script(text)  # a draft's boxes with open ports too
        except NcdError as e:  # ScriptError says its line and column
            self._text_error = str(e)
            self.text_status.value = (
                f'<div class="ncd-text-error" style="color:#c62828">{html.escape(str(e))} '
                "(the diagram keeps the last valid circuit; your text stays here until you "
                "fix it or discard it)</div>"
            )
            self.discard_text_button.layout.display = ""
            self._show([], f"text not taken: {e}", ok=False)
            return
        if io.to_dict(new) == io.to_dict(self.circuit):  # the same circuit written otherwise
            self.text.value = self._text_shown  # no longer pending: it may be rewritten
            self._refresh_text()
            self._text_unchanged()
            return
        if self._guarded_edit(lambda _: new, "edited the text", text=True) is not None:
            self._text_shown = self.text.value  # taken: the view shows the circuit's text
            self._refresh_text()
        else:
            first = self.canvas.status.split("\n")
            self._text_error = "; ".join(first[1:2]) or first[0]
            self.text_status.value = self.messages.value
            self.discard_text_button.layout.display = ""

    def _text_unchanged(self) -> None:
        """The text view shows the current circuit again: an error left from a text that was
        not taken is cleared."""
        self._text_error = ""
        self.discard_text_button.layout.display = "none"
        if self.text_status.value:
            self.text_status.value = ""
            self.canvas.marks = {}
            self._show([], f"the text is the circuit's: nothing to change, {self._here()}")

    def _show(self, problems, note: str, ok: bool = True) -> None:
        self.messages.value = panels.messages_html(problems, note, ok)
        lines = [note] + [str(p) for p in problems[:3]]
        if len(problems) > 3:
            lines.append(f"… and {len(problems) - 3} more")
        with self.canvas.hold_sync():  # the status and its colour together
            self.canvas.status_ok = ok and not problems
            self.canvas.status = "\n".join(x for x in lines if x)

    # ---- intents from the diagram ---------------------------------------------------------
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

    def _box_chosen(self) -> None:
        name = self.box_select.value
        if not self._filling and name and node_id("box", name) != self.canvas.selected:
            self._on_select(node_id("box", name))

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
        self.form_title.value = f"<b>A new {kind} box</b>"
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

    def _on_undo(self) -> None:
        self.undo()

    def _on_redo(self) -> None:
        self.redo()

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

    def _on_add(self, kind: str, after: str | None = None, fields: dict | None = None) -> None:
        """A box of `kind` reading the value node `after` sends (its id; None: the selection;
        "": the last value), with `fields`
        (a choice found by the palette's search, e.g. {"fn": "relu"}) and the rest guessed.
        Every input port reads that value, or, where that does not validate (a linear
        attention reads its queries there, not its keys and values), the first port alone:
        the others are left to wire, drawn as loose ends."""
        if self._text_waits(f"add {kind}"):
            return
        after = self.canvas.selected if after is None else after
        ref = self._ref_of(after)
        name = edits.fresh_name(self.view, kind)
        axes = self._axes_of(ref)
        fields = {k: v for k, v in (fields or {}).items() if k not in {"kind", "name", "inputs"}}
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
        if self._first_accepted(changes, f"added {name}", f"add {kind} reading {ref or '-'}"):
            self._on_select(node_id("box", name))
            opened = edits.open_boxes(self.view).get(name)
            tail = (
                _open_note({name: opened})
                if opened
                else "its fields are in the form (change one and press Enter)"
            )
            self._show([], f"added {name}: {self._here()}; {tail}")
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

    def _dtype_of(self, ref: str) -> str:
        return getattr(self._value_of(ref), "dtype", "float32")

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

    def _on_rename(self, name: str) -> None:
        self.edit_here(lambda c: edits.rename_circuit(c, name=name), f"renamed to {name}")

    def _on_retitle(self, title: str) -> None:
        self.edit_here(lambda c: edits.rename_circuit(c, title=title), "changed the title")

    # ---- the form ---------------------------------------------------------------------------
    @_guarded
    def _new_form(self) -> None:
        self._editing = ""  # a form for a new box until a selected box is shown in it
        self._port_memory = {}
        self.form_title.value = f"<b>A new {html.escape(self.palette.value)} box</b>"
        self.form = BoxForm(self.palette.value, on_change=self._field_changed)
        self.form_box.children = [self.form.widget]
        self._rewire()

    def _blank_form(self, kind: str) -> None:
        """A form for a new box of `kind` (even where the form showed a box of that kind)."""
        if self.palette.value != kind:
            self.palette.value = kind  # its observer makes the new form
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

    def _form_box(self):
        """The box the form describes (raises FormError, located per field)."""
        inputs = {p: dd.value for p, dd in self.port_widgets.items() if dd.value != _NONE}
        return self.form.build(self.box_name.value.strip(), inputs, existing=self._editing)

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
        """The form's box is added as a new box, and selected (the form then edits it). Its
        name is the one typed for it; left empty, or the selected box's own (the form shows
        that box), a fresh one after its kind (`unary2`): the selected box is unchanged."""
        name = self.box_name.value.strip()
        if not name or (name == self._editing and self._editing == self.box_select.value):
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
            self._on_select(node_id("box", name))

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
            try:
                box = self._form_box()
            except FormError as e:
                self._refuse(e.problems, f"change box '{old.name}'")
                return
        if box.model_dump() == old.model_dump():
            self._show([], f"{old.name} is as the circuit has it: {self._here()}")
            return
        what = f"changed {old.name}" + (f" (now {box.name})" if box.name != old.name else "")
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

    @_guarded
    def _default_sizes(self) -> None:
        sizes = panels.parse_sizes(self.sizes.value)
        self.edit(
            lambda c: c.model_copy(update={"sizes": {**c.sizes, **sizes}}), "set default sizes"
        )

    @_guarded
    def _apply_json(self) -> None:
        self.edit(lambda _: io.loads(self.json_text.value), "applied JSON")

    # ---- files ---------------------------------------------------------------------------------
    def _reset_confirm(self) -> None:
        self._confirm_save = ""
        self.save_button.description = "save"

    @_guarded
    def _save(self) -> None:
        path = self.path.value.strip()
        if not path:
            raise SchemaError("save: no file given (expected a path such as circuit.json)")
        if Path(path).exists() and self._confirm_save != path:
            self._confirm_save = path
            self.save_button.description = "overwrite"
            self._show([], f"{path} exists: press overwrite to replace it (or change the name)")
            return
        try:
            io.save(self.circuit, path)  # atomic: a temporary file, then renamed
        except OSError as e:
            raise SchemaError(f"{path}: cannot write ({e.strerror or e})") from None
        self._reset_confirm()
        self._show([], f"saved {path}")

    @_guarded
    def _export(self) -> None:
        from ncd.circuits.atomic import write_atomic
        from ncd.circuits.draw import render

        path = self.export_path.value.strip()
        if not path:
            raise SchemaError("export: no file given (expected diagram.svg, .pdf, .png or .py)")
        if Path(path).suffix not in {".svg", ".pdf", ".png", ".py"}:
            raise SchemaError(
                f"export: {path}: unknown kind of file (expected .svg, .pdf, .png or .py)"
            )
        if path.endswith(".py"):
            from ncd.compiler import to_source

            sizes = panels.parse_sizes(self.sizes.value)
            try:
                source = to_source(self.circuit, sizes or None)
            except NcdError as e:  # the CLI's hint (`--sizes`) said as the Studio has it
                problems = [
                    dataclasses.replace(p, hint=p.hint.replace(
                        "pass e.g. --sizes ", "type them in the Cost tab's sizes field, e.g. "
                    ))
                    for p in panels.problems_of(e)
                ]  # fmt: skip
                self._refuse(problems, f"export {path}")
                return
            try:
                write_atomic(path, source)
            except OSError as e:
                raise SchemaError(f"{path}: cannot write ({e.strerror or e})") from None
        else:
            render(self.circuit, path, theme=self.theme.value)
        self._show([], f"exported {path}")

    # ---- history ---------------------------------------------------------------------------
    @_guarded
    def undo(self) -> None:
        """Go back one accepted edit (at the first, say there is nothing to undo)."""
        if self._text_waits("undo"):
            return
        if not self._history.undo():
            self._show(
                [], f"nothing to undo: this is the oldest state kept ({self._history.where()})"
            )
            return
        self._goto("undo")

    @_guarded
    def redo(self) -> None:
        """Go forward one undone edit (at the last, say there is nothing to redo)."""
        if self._text_waits("redo"):
            return
        if not self._history.redo():
            self._show([], f"nothing to redo: this is the newest state ({self._history.where()})")
            return
        self._goto("redo")

    def _goto(self, what: str) -> None:
        self._fit_scope()
        self._refresh(f"{what}: {self._history.where()}, {self._here()}")


def _need_axes(name: str, axes: str) -> None:
    """An input typed in the editor names its axes: an empty field is a forgotten one more
    often than a scalar (a scalar input is written in the text view: `b.input("s", "")`)."""
    if not axes.strip():
        raise SchemaError(
            f"input '{name or '?'}': no axes given (expected axis names such as B T D, found none)"
        )


def _open_note(opened: dict[str, list[str]]) -> str:
    """What the status line says of boxes whose ports read nothing yet."""
    parts = [f"{b}'s port{'s' if len(p) > 1 else ''} {' '.join(p)}" for b, p in opened.items()]
    many = len(opened) > 1 or len(next(iter(opened.values()))) > 1
    return (
        f"{', '.join(parts)} read{'' if many else 's'} nothing yet: drag a value onto "
        f"{'each' if many else 'it'} (drawn as a loose end; Cost, Code and export wait for it)"
    )


def _palette() -> list[dict]:
    """[{"kind", "family", "doc", "choices": {field: [values]}}]: `choices` are the values of
    the kind's fields that take one of a fixed list (unary's `fn`: relu, gelu, ...; not the
    dtype), so that searching `gelu` finds unary and adds it with `fn` gelu."""
    from ncd.circuits.kinds import KINDS

    out = []
    for _, kind in palette_options():
        cls = KINDS[kind]
        doc = (cls.__doc__ or "").strip().split("\n")[0]
        choices = {
            name: values
            for name, f in cls.model_fields.items()
            if name not in {"kind", "dtype"} and (values := _literal_values(f.annotation))
        }
        out.append({"kind": kind, "family": cls.family, "doc": doc[:160], "choices": choices})
    return out


def _literal_values(annotation) -> list:
    """The values of a `Literal[...]` annotation (or of the Literal in an Optional), else []."""
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is typing.Literal:
            return list(typing.get_args(arg))
    return []


def _blocks(checked) -> set[str]:
    from ncd.circuits.draw.scene import blocks

    return blocks(checked) if checked is not None else set()


def _ports(drawn: Circuit, checked, opened=None) -> dict[str, dict[str, list[str]]]:
    """What the diagram offers to wire, by node id: input ports of boxes and outputs, values
    sent by boxes and inputs (a box of several results sends `box.port` for each). `opened`:
    box -> its ports that read nothing yet (`open` in its entry; such a box sends nothing
    yet, and the loose ends drawn for those ports take nothing from the page)."""
    opened = opened or {}
    out: dict[str, dict[str, list[str]]] = {}
    for i in drawn.inputs:
        out[node_id("input", i.name)] = {"out": [i.name]}
    for b in drawn.boxes:
        outs = list(checked.outs.get(b.name, {}))
        refs = [b.name] if len(outs) == 1 else [f"{b.name}.{p}" for p in outs]
        out[node_id("box", b.name)] = {"in": edits.input_ports(b), "out": refs}
        if b.name in opened:
            out[node_id("box", b.name)] = {
                "in": edits.input_ports(b), "out": [], "open": opened[b.name]
            }  # fmt: skip
    for o in drawn.outputs:
        loose = o.name.startswith(panels.DANGLING)
        out[node_id("output", o.name)] = {"in": [] if loose else ["source"]}
    return out


def _axis_sizes(c: Circuit, checked) -> dict[str, str]:
    """Axis -> `T = 128` (bound), `D = H*K` (an expression), or `T (free)`."""
    from ncd.circuits.sizes import show, symbol

    axes: set[str] = set()
    values = list(checked.inputs.values())
    for ports in checked.outs.values():
        values += list(ports.values())
    for v in values:
        items = [v] if isinstance(v, TensorType) else [t for _, t in getattr(v, "items", [])]
        for t in items:
            axes |= {a.name for a in t.axes}
    out = {}
    for a in sorted(axes)[:500]:
        try:
            expr = checked.resolve(symbol(a))
            n = checked.number(expr)
        except Exception:  # noqa: BLE001 - a size that cannot be shown is left out
            continue
        shown = show(expr)
        text = f"{a} = {shown}" if shown != a else a
        out[a] = (
            f"{text} = {n}"
            if n is not None and str(n) != shown
            else (text if n is not None else f"{text} (free)")
        )
    return out
