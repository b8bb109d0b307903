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

This module holds the state: the current circuit, the subcircuit being edited (`scope`), the
undo history, and the one place where an edit is accepted (checked, pushed, every view
redrawn) or refused. The Studio's behaviour is in parts, one module each, that the class
below puts together:

- layout.py: the widgets and where they sit;
- views.py: the diagram, the tabs and the status line, redrawn from the accepted circuit;
- textview.py: the circuit as Builder code, and code typed there taken or kept;
- selection.py: selecting, collapsing, opening a subcircuit, the breadcrumb;
- intents.py: the diagram's edits (add, connect, splice, delete, inputs, outputs, subcircuits);
- form_panel.py: the form column (a box's fields and ports; inputs and outputs);
- files.py: load, save, export, the JSON tab;
- notes.py: the words of a refusal, and the guard that keeps callbacks from raising.

    >>> studio = Studio("transformer_block")   # doctest: +SKIP
    >>> studio                                 # in JupyterLab: the editor
    >>> studio.circuit                         # the current Circuit
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import ipywidgets as w

from ncd.circuits import io
from ncd.circuits.circuit import Circuit
from ncd.circuits.errors import SchemaError

from . import edits, panels
from .files import Files
from .form_panel import FormPanel
from .forms import BoxForm
from .intents import DiagramIntents
from .layout import StudioLayout
from .notes import _guarded, _tried
from .selection import Selection
from .textview import TextView
from .views import TABS, Views, _palette  # noqa: F401 - tests read _palette here

MAX_UNDO = 200
CHECKS_KEPT = 8  # circuits whose check_draft is kept (undo and redo check nothing again)


class Studio(StudioLayout, Views, TextView, Selection, DiagramIntents, FormPanel, Files, w.VBox):
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
        self._json_shown = ""  # the circuit's JSON, as the JSON tab last showed it
        self.form: BoxForm | None = None
        self._editing = ""  # the box the form shows (its fields apply on Enter)
        self._editing_scope: tuple[str, ...] = ()  # where that box is
        self._filling = False  # the form is being filled from the circuit: nothing applies
        self._port_memory: dict[str, str] = {}  # port -> source, while the form shows one box
        self.port_widgets: dict[str, w.Dropdown] = {}
        self._build_widgets()
        self._accept(self._resolve(circuit), "opened")
        self._new_form()

    @property
    def circuit(self) -> Circuit:
        """The current (last accepted) circuit. While a box has ports that read nothing yet
        (being wired), it is a draft: `check()` refuses it until they are wired."""
        return self._history.current

    @property
    def view(self) -> Circuit:
        """The circuit being edited: the top circuit, or the subcircuit `scope` leads to."""
        return edits.at_scope(self.circuit, self.scope)

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

    def _guarded_edit(self, change, what, loading=False, attempt="", after="", text=False):
        if not text and self._text_waits(attempt or _tried(what)):
            return None
        try:
            return self._accept(change(self.circuit), what, loading)
        except Exception as e:  # noqa: BLE001 - shown, located; the last valid circuit stays
            self._refuse(panels.problems_of(e), attempt or _tried(what), after)
            return None

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
