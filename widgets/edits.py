"""Edits of a circuit as pure functions (circuit, arguments) -> circuit, and the undo history.

The diagram's front end sends intents ("wire this port to that one", "delete this box"); the
Studio turns each into one of these functions and validates the result before taking it. None
of them validates types itself: a result that does not check is refused by the Studio, and the
last valid circuit stays. They raise SchemaError (located: which box, port or name, what was
expected, what was found) where the request itself cannot be carried out.

Subcircuits: `scope` is a path of `call` box names from the top circuit inward; `at_scope`
reads the circuit being edited there and `with_scope` puts an edited one back.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable

import pydantic

from ncd.circuits.circuit import Circuit, Input, Output
from ncd.circuits.errors import SchemaError, schema_error
from ncd.circuits.kinds import KINDS

MAX_UNDO = 200
# A problem's place names the node it is marked on: `box 'q'`, `input 'x'`, `output 'y'`.
_WHERE_NODE = re.compile(r"\b(box|input|output) '([^']*)'")


# ---- references -------------------------------------------------------------------------
def ref_box(ref: str) -> str:
    """`box.port` -> `box`; an input's name is itself."""
    return ref.split(".", 1)[0]


def readers(c: Circuit, name: str) -> list[tuple[str, str]]:
    """(box, port) of every box input reading `name` (a box or an input), then
    ('output', output name) for every output taken from it."""
    out = [(b.name, p) for b in c.boxes for p, r in b.inputs.items() if ref_box(r) == name]
    out += [("output", o.name) for o in c.outputs if ref_box(o.source) == name]
    return out


def names(c: Circuit) -> set[str]:
    return {i.name for i in c.inputs} | {b.name for b in c.boxes}


def fresh_name(c: Circuit, stem: str) -> str:
    """`stem` if no input or box has it, else `stem2`, `stem3`, ..."""
    taken = names(c) | {o.name for o in c.outputs}
    if stem not in taken:
        return stem
    return next(f"{stem}{k}" for k in itertools.count(2) if f"{stem}{k}" not in taken)


def _replace_refs(
    c: Circuit, old: str, new: str, *, only: Iterable[str] | None = None, rename: bool = False
):
    """Every reference to `old` (or `old.port`) becomes `new`; `only`: boxes to touch.
    `rename`: `old` is renamed `new`, so `old.port` becomes `new.port`."""
    keep = None if only is None else set(only)

    def swap(ref: str) -> str:
        if ref_box(ref) != old:
            return ref
        return new + ref[len(old) :] if rename else new

    boxes = [
        b
        if keep is not None and b.name not in keep
        else b.model_copy(update={"inputs": {p: swap(r) for p, r in b.inputs.items()}})
        for b in c.boxes
    ]
    outputs = [o.model_copy(update={"source": swap(o.source)}) for o in c.outputs]
    return c.model_copy(update={"boxes": boxes, "outputs": outputs})


def _box(c: Circuit, name: str):
    try:
        return c.box(name)
    except KeyError:
        known = ", ".join(b.name for b in c.boxes[:20]) or "(no boxes)"
        raise SchemaError(f"box '{name}': no such box (expected one of {known})") from None


# ---- scopes: editing inside a subcircuit -------------------------------------------------
def at_scope(top: Circuit, scope: Iterable[str]) -> Circuit:
    """The circuit a `call` path leads to: () is `top`, ("blocks",) the subcircuit that box
    `blocks` calls, and so on inward."""
    c = top
    for call in scope:
        box = _box(c, call)
        if box.kind != "call":
            raise SchemaError(f"box '{call}': not a call (expected a call box, found {box.kind})")
        c = c.subcircuits[box.circuit]
    return c


def with_scope(top: Circuit, scope: Iterable[str], edited: Circuit) -> Circuit:
    """`top` with the circuit at `scope` replaced by `edited`."""
    scope = list(scope)
    if not scope:
        return edited
    box = _box(top, scope[0])
    inner = with_scope(top.subcircuits[box.circuit], scope[1:], edited)
    return top.model_copy(update={"subcircuits": {**top.subcircuits, box.circuit: inner}})


# ---- boxes -------------------------------------------------------------------------------
def _sequence_axis(axes: tuple[str, ...]) -> str:
    """The wire's position axis: T where the wire has it, else the axis after the batch axis
    of a wire of three axes or more (`B N H K`), else the first."""
    if "T" in axes:
        return "T"
    if len(axes) > 2:
        return axes[1]
    return axes[0] if axes else "T"


def _candidates(kind: str, axes: tuple[str, ...]) -> list[dict]:
    """Field values to try, in order, for a box of `kind` reading a wire with `axes`: the
    last axis is the usual one a box acts on (features), and a box made from the palette
    keeps the wire's shape where it can (linear D -> D), so the circuit stays valid."""
    last = axes[-1] if axes else "D"
    first = axes[0] if axes else "B"
    spatial = " ".join(axes[2:]) if len(axes) > 2 else last
    per_field = {
        "over": [last],
        "out": [last],
        "fn": ["gelu", "add", "relu"],
        "factor": ["1"],
        "dtype": ["float32"],
        "channel": [axes[1] if len(axes) > 1 else last, last],
        "groups": [1],
        "axes": [last],
        "vocab": ["V"],
        "k": [1],
        "axis": [last],
        "into": [last],
        "order": [" ".join(axes)],
        "mapping": [{last: f"{last}2"}],
        "index": [0],
        "sizes": [[last]],
        "spatial": [spatial],
        "window": [[2]],
        "kernel": [[3]],
        "query": [first],
        "key": [first],
        "outputs": [{"out": list(axes) or [last]}],
        "items": [["x"]],
    }
    cls = KINDS[kind]
    required = [
        f
        for f, info in cls.model_fields.items()
        if info.is_required() and f not in ("kind", "name", "inputs")
    ]
    options = [per_field.get(f, [None]) for f in required]
    guessed = {}
    if kind in ("linear_attention", "attention") and axes:
        # The box reads its queries (the selection): their positions are the keys' too (a
        # linear attention's running state is causal over one sequence; a softmax attention
        # added on q attends over q's own sequence unless its keys are renamed), and their
        # last axis the features (q `B T H K`: query and key T, head K). The default key S
        # is on no wire yet: guessed, a self-attention's k and v wired from projections of
        # the same x were refused only once the last of them was wired, for port k.
        seq = _sequence_axis(axes)
        guessed = {"query": seq, "key": seq, "head": last}
    return [{**guessed, **dict(zip(required, combo))} for combo in itertools.product(*options)][:12]


def new_box(kind: str, name: str, inputs: dict[str, str], axes: tuple[str, ...] = (), **fields):
    """A box of `kind` named `name`, wired by `inputs`, with `fields`; fields not given are
    filled from the wire it reads (`axes`). Raises SchemaError when no filling fits the
    kind's schema (the form must then be filled in by hand)."""
    if kind not in KINDS:
        raise SchemaError(f"box '{name}': unknown kind (expected one of KINDS, found {kind!r})")
    cls = KINDS[kind]
    errors = []
    for guess in _candidates(kind, axes) or [{}]:
        data = {"kind": kind, "name": name, "inputs": inputs, **guess, **fields}
        try:
            return cls.model_validate(data)
        except pydantic.ValidationError as e:  # the next guess is tried
            errors.append(e)
    raise schema_error(errors[-1], f"new {kind} box '{name}'", hint="fill it in the form")


def input_ports(box) -> list[str]:
    try:
        return list(box.ports())
    except Exception:  # noqa: BLE001 - a kind whose ports depend on unfilled fields
        return list(box.inputs)


def add_box(
    c: Circuit,
    kind: str,
    *,
    source: str | None = None,
    axes: tuple[str, ...] = (),
    name: str | None = None,
    wire: Iterable[str] | None = None,
    **fields,
) -> Circuit:
    """Append a box of `kind`; its input ports read `source` when given (the wire the user
    chose: a box, `box.port` or an input): all of them, or those named in `wire` (the others
    read nothing yet: loose ends to be wired). Named `name` or after its kind."""
    name = name or fresh_name(c, kind)
    if name in names(c):
        raise SchemaError(f"box '{name}': the name is taken (expected a new name)")
    probe = new_box(kind, name, {}, axes, **fields)
    ports = input_ports(probe) if wire is None else [p for p in input_ports(probe) if p in wire]
    inputs = {p: source for p in ports} if source else {}
    box = new_box(kind, name, inputs, axes, **fields)
    return c.model_copy(update={"boxes": [*c.boxes, box]})


def open_ports(box) -> list[str]:
    """Input ports of `box` that read nothing yet (a box being wired: its loose ends)."""
    return [p for p in input_ports(box) if not box.inputs.get(p)]


def open_boxes(c: Circuit) -> dict[str, list[str]]:
    """Box name -> its input ports that read nothing yet, for every box with some."""
    return {b.name: ports for b in c.boxes if (ports := open_ports(b))}


def replace_box(c: Circuit, name: str, box) -> Circuit:
    """Box `name` becomes `box`, in the same place. A new name (`box.name`) renames it:
    every reference to it follows."""
    _box(c, name)
    if box.name != name and box.name in names(c):
        raise SchemaError(
            f"box '{name}': cannot rename to '{box.name}' (the name is taken; expected a new name)"
        )
    c = c.model_copy(update={"boxes": [box if b.name == name else b for b in c.boxes]})
    return _replace_refs(c, name, box.name, rename=True) if box.name != name else c


def update_box(c: Circuit, name: str, **fields) -> Circuit:
    """Box `name` with `fields` changed (validated by its kind's schema). A new `name` field
    renames the box and every reference to it."""
    old = _box(c, name)
    new_name = fields.get("name", name)
    if new_name != name and new_name in names(c):
        raise SchemaError(f"box '{name}': cannot rename to '{new_name}' (the name is taken)")
    data = {**old.model_dump(), **fields}
    try:
        box = KINDS[old.kind].model_validate(data)
    except pydantic.ValidationError as e:  # located by box and field
        raise schema_error(e, f"box '{name}' ({old.kind})") from None
    c = c.model_copy(update={"boxes": [box if b.name == name else b for b in c.boxes]})
    return _replace_refs(c, name, new_name, rename=True) if new_name != name else c


def connect(c: Circuit, source: str, box: str, port: str) -> Circuit:
    """Input `port` of `box` reads `source` (a box, `box.port` or an input)."""
    target = _box(c, box)
    if ref_box(source) == box:
        raise SchemaError(f"box '{box}', port '{port}': a box cannot read itself")
    if ref_box(source) not in names(c):
        raise SchemaError(f"box '{box}', port '{port}': no source '{source}' in the circuit")
    ports = input_ports(target)
    if port not in ports:
        raise SchemaError(
            f"box '{box}': no input port '{port}' (expected one of {', '.join(ports)})"
        )
    updated = target.model_copy(update={"inputs": {**target.inputs, port: source}})
    return c.model_copy(update={"boxes": [updated if b.name == box else b for b in c.boxes]})


def delete_box(c: Circuit, name: str) -> Circuit:
    """Remove box `name`. Its readers are reconnected to what it read when it has one input
    port (a pass-through: the shapes decide, when the result is checked); a box with more
    inputs may be removed only when nothing reads it."""
    box = _box(c, name)
    users = readers(c, name)
    wired = [r for r in box.inputs.values() if r]
    c = c.model_copy(update={"boxes": [b for b in c.boxes if b.name != name]})
    if not users:
        return c
    if len(wired) != 1:
        who = ", ".join(f"{b}.{p}" if b != "output" else f"output {p}" for b, p in users)
        raise SchemaError(
            f"box '{name}': cannot delete: it has {len(wired)} inputs and is read by {who} "
            "(expected a box with one input, or one that nothing reads)"
        )
    return _replace_refs(c, name, wired[0])


def splice(
    c: Circuit,
    kind: str,
    source: str,
    box: str,
    port: str,
    *,
    axes: tuple[str, ...] = (),
    name: str | None = None,
) -> Circuit:
    """Put a new box of `kind` on the wire `source` -> (`box`, `port`): it reads `source`,
    and `box.port` reads it. `box` 'output' means the output named `port`."""
    name = name or fresh_name(c, kind)
    c = add_box(c, kind, source=source, axes=axes, name=name)
    if box == "output":
        outs = [o.model_copy(update={"source": name}) if o.name == port else o for o in c.outputs]
        return c.model_copy(update={"outputs": outs})
    return connect(c, name, box, port)


def add_subcircuit(
    c: Circuit, name: str, source: str, axes: tuple[str, ...], dtype: str = "float32"
) -> Circuit:
    """A new subcircuit `name` with one input `x` (`axes`, `dtype`) and the output `y` taken
    straight from it (the identity, to be filled in inside), and a `call` box reading
    `source` (a box, `box.port` or an input), named `name` or, when taken, `name2`, ..."""
    if not name:
        raise SchemaError("subcircuit: no name given (expected a name such as attention)")
    if name in c.subcircuits:
        raise SchemaError(
            f"subcircuit '{name}': the name is taken (expected a new name; to call it again, "
            "add a call box and type its name in the form's circuit field)"
        )
    if ref_box(source) not in names(c):
        raise SchemaError(f"subcircuit '{name}': no source '{source}' in the circuit")
    if not axes:
        raise SchemaError(f"subcircuit '{name}': '{source}' is not one tensor (select a box)")
    try:
        inner = Circuit(
            name=name,
            inputs=[Input(name="x", axes=" ".join(axes), dtype=dtype)],
            outputs=[Output(name="y", source="x")],
        )
    except pydantic.ValidationError as e:  # located by field
        raise schema_error(e, f"subcircuit '{name}'") from None
    call = KINDS["call"].model_validate(
        {"kind": "call", "name": fresh_name(c, name), "circuit": name, "inputs": {"x": source}}
    )
    return c.model_copy(
        update={"boxes": [*c.boxes, call], "subcircuits": {**c.subcircuits, name: inner}}
    )


# ---- inputs, outputs, names --------------------------------------------------------------
def add_input(c: Circuit, name: str, axes: str, dtype: str = "float32") -> Circuit:
    if name in names(c):
        raise SchemaError(f"input '{name}': the name is taken (choose another)")
    try:
        new = Input(name=name, axes=axes, dtype=dtype)
    except pydantic.ValidationError as e:  # located by field
        raise schema_error(e, f"input '{name}'") from None
    return c.model_copy(update={"inputs": [*c.inputs, new]})


def remove_input(c: Circuit, name: str) -> Circuit:
    if name not in {i.name for i in c.inputs}:
        raise SchemaError(f"input '{name}': no such input")
    users = readers(c, name)
    if users:
        who = ", ".join(f"{b}.{p}" for b, p in users[:5])
        raise SchemaError(f"input '{name}': cannot remove: read by {who} (rewire them first)")
    return c.model_copy(update={"inputs": [i for i in c.inputs if i.name != name]})


def set_output(c: Circuit, name: str, source: str) -> Circuit:
    """Output `name` takes `source`; an output of that name is replaced in its place. It may
    be named like an input or a box (the diagram draws it as a node of its own)."""
    try:
        new = Output(name=name, source=source or "")
    except pydantic.ValidationError as e:  # located by field
        raise schema_error(e, f"output '{name}'") from None
    if ref_box(source) not in names(c):
        raise SchemaError(f"output '{name}': no source '{source}' in the circuit")
    outs = list(c.outputs)
    at = next((k for k, o in enumerate(outs) if o.name == name), None)
    if at is None:
        outs.append(new)
    else:
        outs[at] = new
    return c.model_copy(update={"outputs": outs})


def remove_output(c: Circuit, name: str) -> Circuit:
    if name not in {o.name for o in c.outputs}:
        raise SchemaError(f"output '{name}': no such output")
    return c.model_copy(update={"outputs": [o for o in c.outputs if o.name != name]})


def rename_circuit(c: Circuit, name: str | None = None, title: str | None = None) -> Circuit:
    update = {}
    if name is not None:
        update["name"] = name
    if title is not None:
        update["title"] = title
    try:
        return Circuit.model_validate({**c.model_dump(), **update})
    except pydantic.ValidationError as e:  # located by field
        raise schema_error(e, "circuit") from None


# ---- problems as marks --------------------------------------------------------------------
def marks(problems) -> dict[str, str]:
    """Node id (`box:q`, `output:y`: the diagram's, widgets/canvas.py) -> the messages of the
    problems located at that box, input or output (one per line)."""
    out: dict[str, list[str]] = {}
    for p in problems:
        m = _WHERE_NODE.search(getattr(p, "where", ""))
        if m:
            out.setdefault(f"{m.group(1)}:{m.group(2)}", []).append(str(p))
    return {k: "\n".join(v) for k, v in out.items()}


# ---- history -----------------------------------------------------------------------------
class History:
    """Accepted circuits, newest last, and where the user stands in them (undo/redo). A new
    entry after an undo drops the undone ones. Keeps the last `limit` entries."""

    def __init__(self, first, limit: Callable[[], int] | int = MAX_UNDO):
        self._items = [first]
        self._at = 0
        self._limit = limit

    @property
    def current(self):
        return self._items[self._at]

    def push(self, item) -> None:
        del self._items[self._at + 1 :]
        self._items.append(item)
        limit = self._limit() if callable(self._limit) else self._limit
        del self._items[:-limit]
        self._at = len(self._items) - 1

    def undo(self) -> bool:
        moved = self._at > 0
        self._at = max(self._at - 1, 0)
        return moved

    def redo(self) -> bool:
        moved = self._at < len(self._items) - 1
        self._at = min(self._at + 1, len(self._items) - 1)
        return moved

    @property
    def can_undo(self) -> bool:
        return self._at > 0

    @property
    def can_redo(self) -> bool:
        return self._at < len(self._items) - 1

    def where(self) -> str:
        return f"{self._at + 1} of {len(self._items)}"
