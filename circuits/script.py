"""A circuit as the Builder code a person would write, and such code read back, never run.

`to_script(circuit)` writes Python that uses `Builder`: one line per box, variables named after
the boxes, axes as strings (`"B T D"`), only the settings that differ from what the method
would pass anyway, each subcircuit first as a builder of its own, formatted as `ruff format`
leaves it (lines of at most 100 characters).

`from_script(text)` parses the text with `ast` and walks the tree: literals, names bound to
wires, `with b.group(...)`, tuple unpacking and calls of `Builder`'s public methods, nothing
else. Each call is made with the literal values read from the text, so nothing the text says
is executed, imported or looked up beyond those methods; what is not of that subset is a
`ScriptError` at its line and column. The text's result is the circuit of its last `Builder`.

>>> from ncd.circuits.builder import Builder
>>> b = Builder("mlp")
>>> x = b.input("x", "B D")
>>> _ = b.output("y", b.relu(b.linear(x, "D", "F", name="up")))
>>> print(to_script(b.build()), end="")
from ncd.circuits.builder import Builder
<BLANKLINE>
b = Builder("mlp")
x = b.input("x", "B D")
up = b.linear(x, "D", "F", name="up")
relu = b.relu(up)
b.output("y", relu)
mlp = b.build()
>>> from_script(to_script(b.build())) == b.build()
True
"""

from __future__ import annotations

import ast
import functools
import heapq
import inspect
import keyword
import math
import re
import typing
import warnings
from dataclasses import dataclass, field
from typing import Any

import pydantic

from .builder import Builder, Wire
from .circuit import Circuit
from .errors import NcdError, Problem, ScriptError, ValidationError
from .kinds.base import _split_axes
from .limits import MAX_INT_DIGITS, MAX_SCRIPT_CHARS, MAX_SCRIPT_NESTING

WIDTH = 100
"""Longest line `to_script` writes (the project's `ruff format` line length)."""
IMPORT = "from ncd.circuits.builder import Builder"
_IMPORTS = {("ncd.circuits.builder", "Builder"), ("ncd", "Builder")}

# -- writing ------------------------------------------------------------------------------------

# Box kinds whose Builder method has the kind's name and passes its ports and fields through:
# kind -> (ports, in order; fields passed positionally after the wires). Fields the method
# takes by keyword are read from its signature; kinds whose method takes `**kw` accept every
# other field too.
_PLAIN = {
    "linear": (("x",), ("over", "out")),
    "param": ((), ("axes",)),
    "embedding": (("x",), ("vocab", "out")),
    "diagonal": (("x",), ("axes", "into")),
    "scale": (("x",), ("factor",)),
    "cast": (("x",), ("dtype",)),
    "dropout": (("x",), ()),
    "mask": (("x",), ("query", "key")),
    "softmax": (("x",), ("over",)),
    "layernorm": (("x",), ("over",)),
    "rmsnorm": (("x",), ("over",)),
    "batchnorm": (("x",), ("channel",)),
    "unifiednorm": (("x",), ("channel",)),
    "groupnorm": (("x",), ("channel", "groups")),
    "normalize": (("x",), ("over",)),
    "reduce": (("x",), ("over",)),
    "scan": (("x",), ("over",)),
    "topk": (("x",), ("over", "k")),
    "split_axis": (("x",), ("axis", "into")),
    "merge_axes": (("x",), ("axes", "into")),
    "permute": (("x",), ("order",)),
    "copy": (("x",), ()),
    "unpack": (("x",), ()),
    "split": (("x",), ("axis", "sizes")),
    "index": (("x",), ("axis", "index")),
    "slice": (("x",), ("axis",)),
    "conv": (("x",), ("spatial", "channel", "out", "kernel")),
    "long_conv": (("x", "filter"), ()),
    "pool": (("x",), ("spatial", "window")),
    "upsample": (("x",), ("spatial",)),
    "attention": (("q", "k", "v"), ()),
    "linear_attention": (("q", "k", "v"), ()),
}
_SHORT_UNARY = ("relu", "gelu", "silu")
_SHORT_BINARY = ("add", "mul", "sub", "div")
# Kinds of one output, `out`: a reference `box.out` to one is written as the box's variable
# (the Builder's own form). References to other kinds keep their port, as a subscript.
_SINGLE = {k for k in _PLAIN if k not in ("copy", "split", "topk", "unpack")} | {
    "unary", "binary", "contract", "concat", "rename", "pack"
}  # fmt: skip
# Fields of the spatial kinds that take one integer for every axis.
_PER_AXIS = {"kernel", "stride", "padding", "dilation", "output_padding", "window"}
# Fields the Builder method turns into size expressions with str(); a number is written bare.
_SIZES = {("scale", "factor"), ("split", "sizes"), ("slice", "stop"), ("rotary", "rotated")}
_NOT_FIELDS = ("kind", "name", "inputs", "group")


def to_script(circuit: Circuit) -> str:
    """The circuit as Builder code: subcircuits first, each as its own builder, then the
    circuit; the last line binds the circuit. `layout` (view hints) is not written.

    Raises ValidationError where the circuit cannot be written as code: a reference to
    nothing, boxes wired in a cycle, two boxes of one name, a subcircuit filed under a name
    other than its own, a number that is not finite."""
    circuits: list[tuple[Circuit, str]] = []
    taken = {"b", "Builder"}
    _collect(circuit, circuits, taken)
    sections = [IMPORT]
    for c, var in circuits:
        sections.append("\n".join(_Section(c, circuits, taken, var).lines()))
    return "\n\n".join(sections) + "\n"


def _collect(c: Circuit, out: list, taken: set) -> str:
    """Gives `c` and every circuit it calls a variable, callees first; equal circuits share
    one."""
    for key, sub in c.subcircuits.items():
        if key != sub.name:
            raise _unwritable(c, f"subcircuit '{key}'", "its own name as key", sub.name)
        _collect(sub, out, taken)
    for known, var in out:
        if known == c:
            return var
    var = _fresh(_ident(c.name, "circuit"), taken)
    out.append((c, var))
    return var


def _unwritable(c: Circuit, where: str, expected: str, found: str) -> ValidationError:
    return ValidationError(
        c.name, [Problem(where, "cannot be written as Builder code", expected, found)]
    )


@dataclass
class _Var:
    """A box or input as the script names it."""

    var: str
    kind: str = ""  # "" for an input
    parts: list[str] = field(default_factory=list)  # names of unpacked outputs (copy)


class _Section:
    """The lines of one circuit's builder."""

    def __init__(self, c: Circuit, circuits, taken: set, var: str):
        self.c, self.var = c, var
        self.circuit_vars = circuits
        self.taken = set(taken) | {v for _, v in circuits}
        self.vars: dict[str, _Var] = {}
        self.claimed: set[str] = set()

    def lines(self) -> list[str]:
        c = self.c
        out = _format(_call("b = Builder", [_lit(c.name)] + _kwargs(self._header())))
        boxes = self._order()
        called = [b.circuit for b in boxes if b.kind == "call" and self._call_ok(b)]
        if list(dict.fromkeys(called)) != list(c.subcircuits):
            out += [f"b.subcircuit({self._circuit_var(n)})" for n in c.subcircuits]
        for inp in c.inputs:
            v = self._take(inp.name, "x")
            self.vars[inp.name] = _Var(v)
            self.claimed.add(inp.name)
            args = [_lit(inp.name), _lit(" ".join(inp.axes))]
            if inp.dtype != "float32":
                args.append(_Item("dtype=", _lit(inp.dtype)))
            out += _format(_call(f"{v} = b.input", args))
        opened: tuple[str, ...] = ()  # the blocks the `with` lines above have opened
        for box in boxes:
            path = c.group_path(box.group)
            keep = 0
            while keep < min(len(opened), len(path)) and opened[keep] == path[keep]:
                keep += 1
            for k in range(keep, len(path)):  # a nested block: `with` inside `with`
                out.append(" " * 4 * k + f"with b.group({_quote(path[k])}):")
            opened = path
            out += _format(self._box(box), 4 * len(path))
            self.claimed.add(box.name)
        for o in c.outputs:
            out += _format(_call("b.output", [_lit(o.name), self._ref(o.source)]))
        for param, to in c.tied.items():
            out += _format(_call("b.tie", [_lit(param), _lit(to)]))
        out.append(f"{self.var} = b.build()")
        return out

    def _header(self) -> list[tuple[str, Any]]:
        c = self.c
        items = [("title", c.title), ("paper", c.paper), ("doc", c.doc)]
        items += [("axes", dict(c.axes)), ("sizes", dict(c.sizes))]
        return [(k, v) for k, v in items if v]

    def _order(self) -> list:
        """The boxes in the circuit's order where that is an evaluation order; otherwise in
        evaluation order, earliest written first."""
        c = self.c
        index: dict[str, int] = {}
        inputs = {i.name for i in c.inputs}
        for i, b in enumerate(c.boxes):
            if b.name in index or b.name in inputs:
                raise _unwritable(c, f"box '{b.name}'", "a unique name", "the name used twice")
            index[b.name] = i
        deps: list[set[int]] = []
        for b in c.boxes:
            ds = set()
            for p, ref in b.inputs.items():
                src, _, port = ref.partition(".")
                if src in index:
                    ds.add(index[src])
                elif src not in inputs or port:
                    raise _unwritable(
                        c, f"box '{b.name}', port '{p}'", "an input or a box", repr(ref)
                    )
            deps.append(ds)
        for o in c.outputs:
            src, _, port = o.source.partition(".")
            if src not in index and (src not in inputs or port):
                raise _unwritable(c, f"output '{o.name}'", "an input or a box", repr(o.source))
        if all(d < i for i, ds in enumerate(deps) for d in ds):
            return list(c.boxes)
        users: list[list[int]] = [[] for _ in c.boxes]
        for i, ds in enumerate(deps):
            for d in ds:
                users[d].append(i)
        waiting = [len(ds) for ds in deps]
        ready = [i for i, n in enumerate(waiting) if n == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            i = heapq.heappop(ready)
            order.append(c.boxes[i])
            for u in users[i]:
                waiting[u] -= 1
                if waiting[u] == 0:
                    heapq.heappush(ready, u)
        if len(order) < len(c.boxes):
            stuck = next(b.name for i, b in enumerate(c.boxes) if waiting[i])
            raise _unwritable(c, f"box '{stuck}'", "an acyclic circuit", "wires form a cycle")
        return order

    def _take(self, name: str, fallback: str) -> str:
        return _fresh(_ident(name, fallback), self.taken)

    def _circuit_var(self, key: str) -> str:
        sub = self.c.subcircuits[key]
        return next(v for c, v in self.circuit_vars if c == sub)

    def _ref(self, ref: str) -> _Node:
        src, _, port = ref.partition(".")
        v = self.vars[src]
        if not port or (port == "out" and v.kind in _SINGLE):
            return _Atom(v.var)
        if v.parts and port.isdigit() and int(port) < len(v.parts):
            return _Atom(v.parts[int(port)])
        if v.kind == "copy" and port.isdigit():
            return _Seq(v.var, "[", [_Atom(str(int(port)))], "]")
        return _Seq(v.var, "[", [_Str(port)], "]")

    def _box(self, box) -> _Node:
        """The statement that makes `box`: its Builder method where one makes exactly this
        box, `b.box(kind, ...)` otherwise."""
        made = self._sugar(box) or self._generic(box)
        method, args, keywords, stem = made
        v = self._take(box.name, box.kind)
        self.vars[box.name] = _Var(v, box.kind)
        lhs = v
        if box.kind == "copy" and method == "copy" and box.n <= 4:
            parts = [_fresh(f"{v}_{i}", self.taken) for i in range(box.n)]
            self.vars[box.name].parts = parts
            lhs = ", ".join(parts)
        if box.name != _default_name(stem, self.claimed):
            keywords = (
                [k for k in keywords if k[0] != "label"]
                + [("name", box.name)]
                + [k for k in keywords if k[0] == "label"]
            )
        return _call(f"{lhs} = b.{method}", args + _kwargs(keywords))

    def _wires(self, box, ports) -> list[_Node]:
        return [self._ref(box.inputs[p]) for p in ports]

    def _sugar(self, box):
        kind = box.kind
        fields = _fields(box)
        if kind in ("unary", "binary"):
            fn = fields.pop("fn")
            ports = ("x",) if kind == "unary" else ("a", "b")
            if fn in (_SHORT_UNARY if kind == "unary" else _SHORT_BINARY):
                return self._plain(box, fn, ports, [], fields, fn)
            return self._plain(box, kind, ports, [("fn", fn)], fields, fn)
        if kind in ("contract", "concat"):
            ops = fields.pop("operands")
            if kind == "contract":
                want = tuple("abcdefgh"[: len(ops)])
            else:
                want = tuple(f"x{i}" for i in range(len(ops)))
            if ops != want:
                return None
            first = "over" if kind == "contract" else "axis"
            fields = {first: fields.pop(first), **fields}
            defaults = {"along": {}} if kind == "concat" else None  # (the Builder's None)
            return self._plain(box, kind, ops, [], fields, kind, defaults)
        if kind == "rename":
            mapping = fields.pop("mapping")
            if fields != _defaults(box, fields) or list(box.inputs) != ["x"]:
                return None
            wires = self._wires(box, ["x"])
            if all(_kwarg_ok(k, ("x", "mapping", "name")) for k in mapping):
                return "rename", wires, list(mapping.items()), kind
            return "rename", wires + [_lit(mapping)], [], kind
        if kind == "pack":
            items = fields.pop("items")
            if (
                fields != _defaults(box, fields)
                or list(box.inputs) != list(items)
                or not all(_kwarg_ok(k, ("name",)) for k in items)
            ):
                return None
            return "pack", [], [(k, self._ref(box.inputs[k])) for k in items], kind
        if kind == "call":
            return self._call_sugar(box) if self._call_ok(box) else None
        if kind == "linear_attention":
            extra = tuple(p for p in ("g", "beta", "offsets") if p in box.inputs)
            defaults = {"packed": "offsets" in box.inputs}
            return self._plain(box, kind, ("q", "k", "v"), [], fields, kind, defaults, extra)
        if kind == "attention":
            extra = ("mask",) if "mask" in box.inputs else ()
            defaults = {"masked": bool(extra)}  # (the method sets `masked` where given a mask)
            return self._plain(box, kind, ("q", "k", "v"), [], fields, kind, defaults, extra)
        if kind == "rotary":
            extra = tuple(p for p in ("start", "offsets") if p in box.inputs)
            if fields.pop("packed") != ("offsets" in box.inputs):
                return None  # (the method sets `packed` where it is given offsets)
            defaults = {"start": "start" in box.inputs}
            pairs = [(f, fields.pop(f)) for f in ("seq", "feature")]
            return self._plain(box, kind, ("x",), pairs, fields, kind, defaults, extra)
        if kind == "positions":
            extra = tuple(p for p in ("start", "offsets") if p in box.inputs)
            if fields.pop("packed") != ("offsets" in box.inputs):
                return None  # (the method sets `packed` where it is given offsets)
            defaults = {"start": "start" in box.inputs}
            return self._plain(box, kind, (), [("axis", fields.pop("axis"))], fields, kind,
                               defaults, extra)  # fmt: skip
        if kind in _PLAIN:
            ports, positional = _PLAIN[kind]
            pairs = [(f, fields.pop(f)) for f in positional]
            return self._plain(box, kind, ports, pairs, fields, kind)
        return None

    def _plain(self, box, method, ports, positional, fields, stem, defaults=None, extra=()):
        """`b.method(*wires, *positional, **keywords)` where the method's signature and the
        fields agree, else None. `extra`: ports passed by keyword."""
        if list(box.inputs) != [*ports, *extra]:
            return None
        params = _signature(method)
        takes_rest = any(p.kind is p.VAR_KEYWORD for p in params.values())
        keywords: list = [(p, self._ref(box.inputs[p])) for p in extra]
        for f, value in fields.items():
            info = type(box).model_fields[f]
            if f in params and params[f].default is not inspect.Parameter.empty:
                default = params[f].default
                if _is_axes(info) and isinstance(default, str):
                    default = tuple(default.split())
            elif f in params or takes_rest:
                default = info.get_default(call_default_factory=True)
            else:
                if not _same(value, info.get_default(call_default_factory=True)):
                    return None
                continue
            if defaults and f in defaults:
                default = defaults[f]
            if not _same(value, default):
                keywords.append((f, self._value(box, f, value)))
        args = self._wires(box, ports) + [self._value(box, f, v) for f, v in positional]
        return method, args, keywords, stem

    def _call_ok(self, box) -> bool:
        fields = _fields(box)
        for f in ("circuit", "repeat", "label"):
            fields.pop(f)
        return (
            fields == _defaults(box, fields)
            and box.circuit in self.c.subcircuits
            and all(_kwarg_ok(p, ("circuit", "repeat", "name", "label")) for p in box.inputs)
        )

    def _call_sugar(self, box):
        keywords: list = [(p, self._ref(r)) for p, r in box.inputs.items()]
        if box.repeat != "1":
            keywords.append(("repeat", _size_lit(box.repeat)))
        if box.label:
            keywords.append(("label", box.label))
        return "call", [_Atom(self._circuit_var(box.circuit))], keywords, box.circuit

    def _generic(self, box):
        fields = _fields(box)
        wires = _Seq("", "{", [_Item(f"{_quote(p)}: ", self._ref(r))
                               for p, r in box.inputs.items()], "}")  # fmt: skip
        keywords = [
            (f, self._value(box, f, v))
            for f, v in fields.items()
            if type(box).model_fields[f].is_required()
            or not _same(v, type(box).model_fields[f].get_default(call_default_factory=True))
        ]
        return "box", [_lit(box.kind), wires], keywords, box.kind

    def _value(self, box, f: str, value) -> _Node:
        info = type(box).model_fields[f]
        if (box.kind, f) in _SIZES and value is not None:
            if isinstance(value, tuple):
                return _Seq("", "[", [_size_lit(s) for s in value], "]")
            return _size_lit(value)
        if box.kind in ("conv", "pool") and f in _PER_AXIS and len(value) == 1:
            return _lit(value[0])
        if _is_axes(info):
            return _lit(" ".join(value))
        if isinstance(value, dict) and _is_axes(_dict_value_type(info)):
            return _lit({k: " ".join(v) for k, v in value.items()})
        if isinstance(value, float) and value != value:
            raise _unwritable(self.c, f"box '{box.name}', field '{f}'", "a number", "nan")
        return _lit(value)


def _fields(box) -> dict[str, Any]:
    return {f: getattr(box, f) for f in type(box).model_fields if f not in _NOT_FIELDS}


def _defaults(box, fields) -> dict[str, Any]:
    infos = type(box).model_fields
    return {f: infos[f].get_default(call_default_factory=True) for f in fields}


def _same(a, b) -> bool:
    return (
        type(a) is type(b)
        and a == b
        or (
            isinstance(a, int | float)
            and isinstance(b, int | float)
            and not isinstance(a, bool)
            and not isinstance(b, bool)
            and a == b
        )
    )


@functools.cache
def _signature(method: str) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(getattr(Builder, method)).parameters)


def _validators(tp) -> set:
    """The `BeforeValidator` functions on a type, through unions and containers."""
    out = set()
    for m in getattr(tp, "__metadata__", ()):
        if isinstance(m, pydantic.BeforeValidator):
            out.add(m.func)
    for arg in typing.get_args(tp):
        out |= _validators(arg)
    return out


def _is_axes(info) -> bool:
    if info is None:
        return False
    if isinstance(info, pydantic.fields.FieldInfo):
        metas = {m.func for m in info.metadata if isinstance(m, pydantic.BeforeValidator)}
        return _split_axes in metas
    return _split_axes in _validators(info) and typing.get_origin(info) is not dict


def _dict_value_type(info):
    args = typing.get_args(info.annotation)
    return args[1] if typing.get_origin(info.annotation) is dict and len(args) == 2 else None


def _default_name(stem: str, claimed: set[str]) -> str:
    """The name the Builder gives a box of `stem` when none is given (`Builder._fresh`)."""
    if stem not in claimed:
        return stem
    i = 2
    while f"{stem}_{i}" in claimed:
        i += 1
    return f"{stem}_{i}"


def _kwarg_ok(name: str, reserved) -> bool:
    return (
        name.isidentifier()
        and name.isascii()
        and not keyword.iskeyword(name)
        and not name.startswith("__")
        and name not in reserved
        and name != "self"
    )


def _ident(text: str, fallback: str) -> str:
    """A Python variable name read from a box's name (`"L^Q"` -> `L_Q`)."""
    s = re.sub(r"_+", "_", re.sub(r"\W", "_", text, flags=re.ASCII)).strip("_")
    if not s:
        s = fallback
    if s[0].isdigit():
        s = f"{fallback}_{s}"
    if keyword.iskeyword(s) or keyword.issoftkeyword(s):
        s += "_"
    return s


def _fresh(stem: str, taken: set[str]) -> str:
    name, i = stem, 2
    while name in taken:
        name, i = f"{stem}_{i}", i + 1
    taken.add(name)
    return name


# -- formatting: what `ruff format` makes of a call, line by line


class _Node:
    def flat(self) -> str:
        raise NotImplementedError


@dataclass
class _Atom(_Node):
    text: str

    def flat(self) -> str:
        return self.text


@dataclass
class _Str(_Node):
    value: str

    def flat(self) -> str:
        return _quote(self.value)


@dataclass
class _Item(_Node):
    """`prefix` (`name=`, `"key": `) before a value."""

    prefix: str
    value: _Node

    def flat(self) -> str:
        return self.prefix + self.value.flat()


@dataclass
class _Seq(_Node):
    prefix: str
    open: str
    items: list
    close: str

    def flat(self) -> str:
        return self.prefix + self.open + ", ".join(i.flat() for i in self.items) + self.close


def _call(head: str, args: list[_Node]) -> _Seq:
    return _Seq(head, "(", args, ")")


def _kwargs(pairs) -> list[_Node]:
    return [_Item(f"{k}=", v if isinstance(v, _Node) else _lit(v)) for k, v in pairs]


def _format(node: _Node, indent: int = 0, trail: str = "") -> list[str]:
    pad = " " * indent
    flat = node.flat()
    if indent + len(flat) + len(trail) <= WIDTH:
        return [pad + flat + trail]
    prefix, inner = "", node
    if isinstance(node, _Item):
        prefix, inner = node.prefix, node.value
    if isinstance(inner, _Seq):
        head = pad + prefix + inner.prefix + inner.open
        body = ", ".join(i.flat() for i in inner.items)
        # A call's arguments may share one line; a list or dict that is split is split fully.
        one_line = inner.open == "(" or len(inner.items) == 1
        if inner.items and one_line and indent + 4 + len(body) <= WIDTH:
            return [head, " " * (indent + 4) + body, pad + inner.close + trail]
        comma = "," if len(inner.items) > 1 else ""
        lines = [head]
        for item in inner.items:
            lines += _format(item, indent + 4, comma)
        return lines + [pad + inner.close + trail]
    if isinstance(inner, _Str):
        pieces = _pieces(inner.value, WIDTH - indent - 4 - 2)
        if pieces:
            inside = [" " * (indent + 4) + _quote(p) for p in pieces]
            return [pad + prefix + "(", *inside, pad + ")" + trail]
    return [pad + flat + trail]


def _pieces(text: str, width: int) -> list[str]:
    """`text` cut after spaces into pieces whose literals are at most `width` long."""
    pieces, cur = [], ""
    for word in re.findall(r"\S*\s*", text):
        while word:
            if len(_quote(cur + word)) - 2 <= width:
                cur, word = cur + word, ""
            elif cur:
                pieces.append(cur)
                cur = ""
            else:
                n = width
                while n > 1 and len(_quote(word[:n])) - 2 > width:
                    n -= 1
                pieces.append(word[:n])
                word = word[n:]
    return pieces + ([cur] if cur else [])


def _quote(s: str) -> str:
    """A string literal as `ruff format` writes it: double quotes unless that escapes more,
    every character a reader would not see as itself escaped."""
    q = "'" if s.count('"') > s.count("'") else '"'
    out = []
    for ch in s:
        if ch == "\\" or ch == q:
            out.append("\\" + ch)
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1])
    return q + "".join(out) + q


def _lit(value) -> _Node:
    if isinstance(value, str):
        return _Str(value)
    if value is None or isinstance(value, bool):
        return _Atom(str(value))
    if isinstance(value, int):
        return _Atom(str(value))
    if isinstance(value, float):
        if math.isinf(value):
            return _Atom("1e999" if value > 0 else "-1e999")
        return _Atom(repr(value))
    if isinstance(value, tuple | list):
        return _Seq("", "[", [_lit(v) for v in value], "]")
    if isinstance(value, dict):
        return _Seq("", "{", [_Item(f"{_quote(str(k))}: ", _lit(v)) for k, v in value.items()],
                    "}")  # fmt: skip
    raise TypeError(f"no literal for {type(value).__name__}")


def _size_lit(s: str) -> _Node:
    """A size expression: a bare number where the Builder's str() gives the text back."""
    try:
        if str(int(s)) == s:
            return _Atom(s)
    except ValueError:
        pass
    return _Str(s)


# -- reading ------------------------------------------------------------------------------------

_METHODS = frozenset(n for n, v in vars(Builder).items() if not n.startswith("_") and callable(v))
_STATEMENTS = {
    ast.For: "a for loop",
    ast.AsyncFor: "a for loop",
    ast.While: "a while loop",
    ast.If: "an if statement",
    ast.FunctionDef: "a function definition",
    ast.AsyncFunctionDef: "a function definition",
    ast.ClassDef: "a class definition",
    ast.Import: "an import",
    ast.Return: "a return",
    ast.Delete: "a del statement",
    ast.AugAssign: "an augmented assignment",
    ast.AnnAssign: "an annotated assignment",
    ast.Try: "a try statement",
    ast.Raise: "a raise statement",
    ast.Global: "a global statement",
    ast.Nonlocal: "a nonlocal statement",
    ast.Assert: "an assert statement",
    ast.Match: "a match statement",
    ast.Break: "a break",
    ast.Continue: "a continue",
    ast.AsyncWith: "an async with",
}
_EXPRESSIONS = {
    ast.JoinedStr: "an f-string",
    ast.Lambda: "a lambda",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a generator expression",
    ast.Attribute: "attribute access",
    ast.BinOp: "arithmetic (write the number, or a size expression as a string: 'K**-0.5')",
    ast.BoolOp: "a boolean operator",
    ast.Compare: "a comparison",
    ast.IfExp: "a conditional expression",
    ast.NamedExpr: "an assignment expression",
    ast.Set: "a set",
    ast.Starred: "a starred argument",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Slice: "a slice",
}
STATEMENT_HINT = "an assignment, a Builder method call, or `with b.group(...):`"


def from_script(text: str, *, subcircuits: dict[str, Circuit] | None = None) -> Circuit:
    """The circuit that Builder code `text` describes (its last `Builder`), read without
    running it. `subcircuits`: circuits the text may use by name without defining them.

    Raises ScriptError (`.line`, `.col`, from 1) at the first thing outside the accepted
    subset, or at the Builder call that fails."""
    if not isinstance(text, str):
        raise ScriptError(f"Builder code is text, found {type(text).__name__}", 1, 1)
    if len(text) > MAX_SCRIPT_CHARS:
        raise ScriptError(
            f"the text is {len(text):,} characters, more than the {MAX_SCRIPT_CHARS:,} allowed "
            "(limit MAX_SCRIPT_CHARS)",
            1,
            1,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the text's own oddities are not ncd's to report
            tree = ast.parse(text, mode="exec")
    except SyntaxError as e:
        raise ScriptError(f"not valid Python: {e.msg}", e.lineno or 1, e.offset or 1) from None
    except (MemoryError, RecursionError):
        raise ScriptError(
            f"nested deeper than {MAX_SCRIPT_NESTING} (limit MAX_SCRIPT_NESTING)", 1, 1
        ) from None
    except ValueError as e:
        raise ScriptError(f"not valid Python: {e}", 1, 1) from None
    reader = _Reader(text, subcircuits or {})
    reader.check_depth(tree)
    reader.block(tree.body)
    return reader.result(tree)


class _Reader:
    def __init__(self, text: str, subcircuits: dict[str, Circuit]):
        self.lines = re.split(r"\r\n|\r|\n", text)
        self.env: dict[str, Any] = {}
        for k, c in subcircuits.items():
            if not isinstance(c, Circuit):
                raise ScriptError(f"subcircuits['{k}'] is not a Circuit", 1, 1)
            self.env[k] = c
        self.owner: dict[int, Builder] = {}
        self.builders: list[tuple[Builder, ast.AST]] = []
        self.calls: dict[int, int] = {}
        self.built: dict[int, tuple[Circuit, int]] = {}

    # -- errors and bounds
    def error(self, node, message: str) -> ScriptError:
        line = getattr(node, "lineno", 1)
        col = getattr(node, "col_offset", 0)
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        col = len(text.encode("utf-8")[:col].decode("utf-8", "ignore")) + 1
        return ScriptError(message, line, col)

    def check_depth(self, tree) -> None:
        stack = [(tree, 0)]
        while stack:
            node, depth = stack.pop()
            if depth > MAX_SCRIPT_NESTING:
                raise self.error(
                    node, f"nested deeper than {MAX_SCRIPT_NESTING} (limit MAX_SCRIPT_NESTING)"
                )
            stack += [(child, depth + 1) for child in ast.iter_child_nodes(node)]

    # -- statements
    def block(self, body) -> None:
        for node in body:
            self.statement(node)

    def statement(self, node) -> None:
        if isinstance(node, ast.Expr):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                return  # a docstring
            if not isinstance(node.value, ast.Call):
                raise self.error(node, f"expected {STATEMENT_HINT}, found an expression on its own")
            self.call(node.value)
        elif isinstance(node, ast.Assign):
            if len(node.targets) != 1:
                raise self.error(node, "expected one name = value, found a chained assignment")
            self.bind(node.targets[0], self.expr(node.value))
        elif isinstance(node, ast.With):
            self.with_group(node)
        elif isinstance(node, ast.ImportFrom):
            names = [(a.name, a.asname) for a in node.names]
            if (
                node.level
                or len(names) != 1
                or (node.module, names[0][0]) not in _IMPORTS
                or (names[0][1] not in (None, "Builder"))
            ):
                raise self.error(node, f"expected `{IMPORT}` or no import, found another import")
        elif isinstance(node, ast.Pass):
            return
        else:
            found = _STATEMENTS.get(type(node), f"a {type(node).__name__} statement")
            raise self.error(node, f"expected {STATEMENT_HINT}, found {found}")

    def with_group(self, node) -> None:
        item = node.items[0] if len(node.items) == 1 else None
        call = item.context_expr if item else None
        if (
            item is None
            or item.optional_vars is not None
            or not isinstance(call, ast.Call)
            or not isinstance(call.func, ast.Attribute)
            or call.func.attr != "group"
        ):
            raise self.error(node, 'expected `with b.group("title"):`, found another with')
        builder = self.builder_of(call.func)
        args, kwargs = self.arguments(call, builder)
        self.bind_args(call, "group", builder, args, kwargs)
        self.calls[id(builder)] = self.calls.get(id(builder), 0) + 1
        with builder.group(*args, **kwargs):
            self.block(node.body)

    def bind(self, target, value) -> None:
        if isinstance(target, ast.Name):
            self.name_ok(target, target.id)
            if target.id == "Builder":
                raise self.error(target, "`Builder` names the Builder; assign to another name")
            self.env[target.id] = value
        elif isinstance(target, ast.Tuple | ast.List):
            if isinstance(value, dict):
                raise self.error(
                    target,
                    "unpacking outputs named by port gives their names in Python; expected "
                    'one name and a subscript per output (parts["q"])',
                )
            if not isinstance(value, list | tuple):
                raise self.error(target, f"expected several values, found {_kind(value)}")
            if len(value) != len(target.elts):
                raise self.error(
                    target, f"expected {len(value)} names to unpack into, found {len(target.elts)}"
                )
            for t, v in zip(target.elts, value, strict=True):
                self.bind(t, v)
        else:
            raise self.error(target, f"expected a name to assign to, found {_what(target)}")

    def name_ok(self, node, name: str) -> None:
        if name.startswith("__"):
            raise self.error(node, f"expected a plain name, found the dunder name '{name}'")

    # -- expressions
    def expr(self, node) -> Any:
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool) or v is None or isinstance(v, str | float):
                return v
            if isinstance(v, int):
                if len(str(abs(v))) > MAX_INT_DIGITS:
                    raise self.error(
                        node,
                        f"a number of more than {MAX_INT_DIGITS} digits (limit MAX_INT_DIGITS)",
                    )
                return v
            raise self.error(
                node, f"expected a string, number, True, False or None, found {v!r}"[:200]
            )
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            v = self.expr(node.operand)
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise self.error(node, f"expected a number after the sign, found {_kind(v)}")
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.Name):
            self.name_ok(node, node.id)
            if node.id in self.env:
                return self.env[node.id]
            if node.id == "Builder":
                raise self.error(node, "expected `Builder(...)`, found `Builder` not called")
            known = ", ".join(sorted(self.env)[:8]) or "none yet"
            raise self.error(
                node, f"name '{node.id}' is not assigned above (expected one of: {known})"
            )
        if isinstance(node, ast.Tuple | ast.List):
            values = [self.expr(e) for e in node.elts]
            return tuple(values) if isinstance(node, ast.Tuple) else values
        if isinstance(node, ast.Dict):
            out = {}
            for k, v in zip(node.keys, node.values, strict=True):
                if k is None:
                    raise self.error(v, "expected key: value, found ** in a dict")
                key = self.expr(k)
                if not isinstance(key, str | int | float | bool | None):
                    raise self.error(k, f"expected a string or number as key, found {_kind(key)}")
                out[key] = self.expr(v)
            return out
        if isinstance(node, ast.Subscript):
            value = self.expr(node.value)
            if isinstance(node.slice, ast.Slice):
                raise self.error(node.slice, "expected an output's port or index, found a slice")
            key = self.expr(node.slice)
            if not isinstance(value, dict | list | tuple):
                raise self.error(node, f"expected outputs to pick from, found {_kind(value)}")
            try:
                return value[key]
            except (KeyError, IndexError, TypeError):
                have = list(value) if isinstance(value, dict) else list(range(len(value)))
                raise self.error(
                    node.slice, f"no output {key!r}; expected one of {have}"[:300]
                ) from None
        if isinstance(node, ast.Call):
            return self.call(node)
        raise self.error(node, f"expected a literal, a name or a Builder call, found {_what(node)}")

    def builder_of(self, func: ast.Attribute) -> Builder:
        if not isinstance(func.value, ast.Name):
            raise self.error(
                func, f"expected a call of a Builder method (b.{func.attr}), found {_what(func)}"
            )
        target = self.expr(func.value)
        if not isinstance(target, Builder):
            raise self.error(
                func,
                f"expected a Builder before .{func.attr}, found '{func.value.id}', {_kind(target)}",
            )
        return target

    def arguments(self, call: ast.Call, builder: Builder | None):
        args, kwargs = [], {}
        for a in call.args:
            if isinstance(a, ast.Starred):
                raise self.error(a, "expected plain arguments, found *args")
            args.append(self.expr(a))
        for k in call.keywords:
            if k.arg is None:
                raise self.error(k.value, "expected name=value arguments, found **kwargs")
            self.name_ok(k, k.arg)
            kwargs[k.arg] = self.expr(k.value)
        for value, node in [*zip(args, call.args), *zip(kwargs.values(), call.keywords)]:
            self.check_value(value, node, builder)
        return args, kwargs

    def check_value(self, value, node, builder) -> None:
        stack = [value]
        while stack:
            v = stack.pop()
            if isinstance(v, Wire):
                if builder is None or self.owner.get(id(v)) is not builder:
                    raise self.error(
                        node,
                        f"wire '{v.ref}' belongs to another Builder; expected a wire of this one",
                    )
            elif isinstance(v, Builder):
                raise self.error(node, "expected a value, found a Builder")
            elif isinstance(v, dict):
                stack += list(v.values())
            elif isinstance(v, list | tuple):
                stack += list(v)

    def bind_args(self, call, method: str, builder, args, kwargs) -> None:
        target = Builder if method == "__init__" else getattr(Builder, method)
        what = "Builder()" if method == "__init__" else f"{call.func.value.id}.{method}()"
        try:
            if method == "__init__":
                inspect.signature(target).bind(*args, **kwargs)
            else:
                inspect.signature(target).bind(builder, *args, **kwargs)
        except TypeError as e:
            raise self.error(call, f"{what}: {e}") from None

    def call(self, node: ast.Call) -> Any:
        func = node.func
        if isinstance(func, ast.Name) and func.id == "Builder":
            args, kwargs = self.arguments(node, None)
            self.bind_args(node, "__init__", None, args, kwargs)
            b = self.run(node, "Builder()", lambda: Builder(*args, **kwargs))
            self.builders.append((b, node))
            return b
        if not isinstance(func, ast.Attribute):
            name = func.id if isinstance(func, ast.Name) else _what(func)
            raise self.error(
                node, f"expected a Builder method call (b.linear(...)), found a call of {name}"
            )
        if func.attr not in _METHODS or func.attr == "group":
            builder = self.builder_of(func)
            if func.attr == "group":
                raise self.error(func, 'b.group is a block: expected `with b.group("title"):`')
            raise self.error(
                func, f"Builder has no public method '{func.attr}' (expected b.linear, b.add, ...)"
            )
        builder = self.builder_of(func)
        args, kwargs = self.arguments(node, builder)
        self.bind_args(node, func.attr, builder, args, kwargs)
        method = getattr(builder, func.attr)
        result = self.run(node, f"{func.value.id}.{func.attr}()", lambda: method(*args, **kwargs))
        self.calls[id(builder)] = self.calls.get(id(builder), 0) + 1
        if isinstance(result, Circuit) and func.attr == "build":
            self.built[id(builder)] = (result, self.calls[id(builder)])
        values = (
            result.values()
            if isinstance(result, dict)
            else (result if isinstance(result, list) else [result])
        )
        for w in values:
            if isinstance(w, Wire):
                self.owner[id(w)] = builder
        return result

    def run(self, node, what: str, fn) -> Any:
        try:
            return fn()
        except NcdError as e:
            raise self.error(node, f"{what}: {e}") from None
        except (TypeError, ValueError, LookupError, AttributeError, ArithmeticError) as e:
            raise self.error(node, f"{what}: {type(e).__name__}: {e}"[:400]) from None

    def result(self, tree) -> Circuit:
        if not self.builders:
            raise ScriptError('expected `b = Builder("name")` somewhere, found no Builder', 1, 1)
        builder, _ = self.builders[-1]
        made = self.built.get(id(builder))
        if made and made[1] == self.calls.get(id(builder), 0):
            return made[0]
        last = tree.body[-1]
        return self.run(last, f"building circuit '{builder.name}'", builder.build)


def _kind(value) -> str:
    if isinstance(value, Wire):
        return f"a wire ({value.ref})"
    if isinstance(value, Circuit):
        return f"a circuit ({value.name})"
    if isinstance(value, Builder):
        return "a Builder"
    return f"a {type(value).__name__}"


def _what(node) -> str:
    return _EXPRESSIONS.get(type(node), f"a {type(node).__name__}")


__all__ = ["from_script", "to_script"]
