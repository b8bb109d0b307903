"""The Studio's views: everything shown is redrawn from the accepted circuit.

After every accepted edit, undo or redo, `_refresh` sends the page the drawing (the renderer's
SVG of the circuit being edited, its ports, axis sizes and breadcrumb) in one message, then
brings the lists and the form up to date, marks the tabs stale and says what happened on the
status line (`_show`). A tab (Cost, Code, JSON) is computed only while it is shown. The
contents themselves (drawing, cost, code, messages) are panels.py's; this part puts them into
the widgets. The functions below the class compute what the canvas is sent besides the SVG:
the palette, each node's ports, the axes' sizes.
"""

from __future__ import annotations

import typing

from ncd.circuits import io
from ncd.circuits.circuit import Circuit
from ncd.circuits.errors import NcdError
from ncd.circuits.ids import node_id, split_id
from ncd.circuits.types import TensorType

from . import edits, panels
from .form_panel import _NONE
from .forms import palette_options
from .notes import _guarded, _open_note

TABS = ["Messages", "Cost", "Code", "JSON"]


class Views:
    """Redrawing the Studio's views from its circuit (a part of `Studio`, widgets/studio.py)."""

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
            if self.json_text.value != self._json_shown:
                # typed there and not applied: rewriting it would lose it (a refused apply,
                # then any edit, used to)
                self.json_status.value = (
                    '<div class="ncd-json-kept" style="color:#c62828">the JSON below was typed '
                    "here and not applied, and is not the circuit's: apply JSON takes it, "
                    "discard JSON changes shows the circuit's</div>"
                )
                self.discard_json_button.layout.display = ""
                return
            self._json_shown = self.json_text.value = io.dumps(self.circuit)
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

    @_guarded
    def _default_sizes(self) -> None:
        sizes = panels.parse_sizes(self.sizes.value)
        self.edit(
            lambda c: c.model_copy(update={"sizes": {**c.sizes, **sizes}}), "set default sizes"
        )

    def _show(self, problems, note: str, ok: bool = True) -> None:
        self.messages.value = panels.messages_html(problems, note, ok)
        lines = [note] + [str(p) for p in problems[:3]]
        if len(problems) > 3:
            lines.append(f"… and {len(problems) - 3} more")
        with self.canvas.hold_sync():  # the status and its colour together
            self.canvas.status_ok = ok and not problems
            self.canvas.status = "\n".join(x for x in lines if x)


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
