"""A box kind's pydantic schema → a form of ipywidgets, and the form's values → a Box.

The form holds text only; the box kind's own pydantic model parses and checks it, so the
editor accepts exactly what a JSON spec accepts (axis lists are written `B T D`, dicts as JSON).
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

import ipywidgets as w
import pydantic

from ncd.circuits.errors import schema_problems
from ncd.circuits.fielddocs import attach
from ncd.circuits.io import parse_json
from ncd.circuits.kinds import KINDS

# Fields every box has that the editor fills in itself (name, wiring) or never shows.
_OWN = ("kind", "name", "inputs")
FAMILY_ORDER = [
    "learned",
    "contraction",
    "elementwise",
    "normalisation",
    "reduction",
    "rearrangement",
    "convolution",
    "attention",
    "structure",
    "opaque",
    "other",
]


def fitted() -> dict[str, Any]:
    """A labelled field's look in the editor's column: the label 90 px wide, the input filling
    the rest of the column (ipywidgets' own width would overflow it and clip the input)."""
    return {"style": {"description_width": "90px"}, "layout": w.Layout(width="auto")}


def palette_options() -> list[tuple[str, str]]:
    """Dropdown options (label, kind) for every kind in KINDS, grouped by family."""
    rank = {f: i for i, f in enumerate(FAMILY_ORDER)}
    kinds = sorted(KINDS, key=lambda k: (rank.get(KINDS[k].family, len(rank)), k))
    return [(f"{KINDS[k].family} · {k}", k) for k in kinds]


def _shape(annotation) -> tuple[str, Any]:
    """(widget shape, extra) of a field: bool, choice (Literal options), list, dict, number
    (extra: int or float), text."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):  # Optional[X]: empty text means None
        inner = [a for a in args if a is not type(None)]
        shape = _shape(inner[0]) if len(inner) == 1 else ("text", None)
        return ("text", None) if shape[0] == "number" else shape  # a number box has no "None"
    if origin is typing.Annotated:
        return _shape(args[0])
    if annotation is bool:
        return "bool", None
    if origin is Literal:
        return "choice", list(args)
    if origin in (tuple, list):
        return "list", None
    if origin is dict:
        return "dict", None
    if annotation in (int, float):
        return "number", annotation
    return "text", None


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple | list):
        return " ".join(str(v) for v in value)
    if isinstance(value, dict):
        import json

        return json.dumps(value)
    return str(value)


class BoxForm:
    """The fields of one box kind as widgets (`self.widget`); `build(name, inputs)` -> Box."""

    def __init__(self, kind: str, on_change=None):
        self.kind = kind
        self.cls = KINDS[kind]
        attach()  # the fields' descriptions, shown as tooltips
        self.fields: dict[str, tuple[str, w.ValueWidget]] = {}
        for fname, info in self.cls.model_fields.items():
            if fname in _OWN:
                continue
            shape, extra = _shape(info.annotation)
            default = None if info.is_required() else info.get_default(call_default_factory=True)
            desc = (info.description or "").split("\n")[0]
            if shape == "bool":
                widget = w.Checkbox(value=bool(default), description=fname, indent=False)
            elif shape == "choice":
                widget = w.Dropdown(
                    options=[(str(o), o) for o in extra],
                    value=default if default in extra else extra[0],
                    description=fname,
                    **fitted(),
                )
            elif shape == "number":
                number = w.IntText if extra is int else w.FloatText
                widget = number(value=default or 0, description=fname, **fitted())
            else:
                hint = {"list": "space-separated, e.g. B T D", "dict": 'T=S, or JSON {"T": "S"}'}
                widget = w.Text(
                    value=_text(default),
                    description=fname,
                    placeholder=hint.get(shape, "required" if info.is_required() else ""),
                    **fitted(),
                    continuous_update=False,  # the value arrives on Enter or when left
                )
            widget.tooltip = desc
            if on_change is not None:
                widget.observe(on_change, names="value")
            self.fields[fname] = (shape, widget)
        self.widget = w.VBox([wd for _, wd in self.fields.values()])

    def values(self) -> dict[str, Any]:
        """The form's values as a spec dict (text split into lists, JSON parsed for dicts)."""
        out: dict[str, Any] = {}
        for fname, (shape, widget) in self.fields.items():
            v = widget.value
            if shape == "list":
                v = v.split()
            elif shape == "dict":
                v = _parse_dict(v)
            elif shape == "text" and not v.strip() and not self._required(fname):
                continue  # an optional field left empty keeps its default (a required one
                # stays empty, and the schema says it is missing)
            out[fname] = v
        return out

    def fill(self, box) -> None:
        """Show an existing box of this kind in the form (the inverse of `build`)."""
        for fname, (shape, widget) in self.fields.items():
            value = getattr(box, fname)
            widget.value = value if shape in ("bool", "choice", "number") else _text(value)

    def _required(self, fname: str) -> bool:
        return self.cls.model_fields[fname].is_required()

    def build(self, name: str, inputs: dict[str, str], existing: str = ""):
        """The Box the form describes; raises FormError listing every field that is wrong.
        `existing`: the name of the box the form edits (none for a new box)."""
        data = {"kind": self.kind, "name": name, "inputs": inputs}
        try:
            data.update(self.values())
            return self.cls.model_validate(data)
        except pydantic.ValidationError as e:
            raise FormError(name, self.kind, e, existing) from None

    def ports(self) -> list[str]:
        """Input ports of the box as the form stands (contract/concat/pack/opaque vary)."""
        try:
            return self.build("draft", {}).ports()
        except Exception:  # noqa: BLE001 - an unfinished form falls back to the defaults
            try:
                return self.cls.model_construct().ports()
            except Exception:  # noqa: BLE001
                return ["x"]


def _parse_dict(text: str) -> dict:
    """A dict field's text: JSON (`{"T": "S"}`), or `key=value` pairs separated by commas
    (`T=S, U=V`); empty is {}."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        return parse_json(text)
    out = {}
    for item in text.split(","):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(
                f"expected key=value pairs separated by commas or JSON, found {item.strip()!r}"
            )
        out[key.strip()] = value.strip()
    return out


class FormError(Exception):
    """A box form that the kind's schema rejects; `.problems` are located per field: the box
    (`box 'q_proj' (linear)` when the form edits it, else `new linear box 'q2'`), the field,
    what the schema asks for and what the form holds (`errors.schema_problems`)."""

    def __init__(self, name: str, kind: str, err: pydantic.ValidationError, existing: str = ""):
        if existing:
            box = f"box '{existing}' ({kind})"
        else:
            box = f"new {kind} box '{name}'" if name else f"new {kind} box (no name yet)"
        self.problems = schema_problems(err, box)
        super().__init__("\n".join(str(p) for p in self.problems))
