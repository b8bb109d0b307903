"""What every stage of the import shares: its internal signals (`_Unmapped`, `_Rename`), a
tensor the model holds not yet made a box (`_Lazy`), axis roles, and small functions of fx nodes
and their values."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import fx

from ncd.circuits.sizes import parse_size

from .. import tracing
from .tables import _BINARY, _UNARY_FNS

if TYPE_CHECKING:
    from .core import _Importer


_ROLES = {
    "batch": ["B", "B2", "B3"],
    "seq": ["T", "T2", "T3"],
    "key": ["S", "S2", "S3"],
    "feature": ["D", "F", "E", "G", "M", "P", "Q", "R"],
    "channel": ["C", "O", "C2", "C3", "C4", "C5", "C6"],
    "spatial": ["Y", "X", "Z", "Y2", "X2", "Z2"],
    "heads": ["H", "H2"],
    "head": ["K", "K2"],
    "value": ["V", "V2"],
    "vocab": ["W", "W2"],
    "unit": ["U", "U2", "U3"],
}


def _op(n: fx.Node) -> str | None:
    """The elementwise op a node calls, by name (function, method or operator)."""
    if n.op == "call_method":
        return str(n.target)
    if n.op == "call_function":
        fn = n.target
        return _BINARY.get(fn) or _UNARY_FNS.get(fn) or {torch.mean: "mean"}.get(fn)
    return None


def _call_arg(n: fx.Node, ops: set[str]) -> fx.Node | None:
    """The argument node of a one-argument call n of one of `ops`, else None."""
    if _op(n) in ops and n.args and isinstance(n.args[0], fx.Node):
        return n.args[0]
    return None


def _squared_of(n) -> fx.Node | None:
    """x where node n is x ** 2, x.pow(2), torch.square(x) or x * x; else None."""
    if not isinstance(n, fx.Node):
        return None
    op = _op(n)
    if op == "pow" and len(n.args) == 2 and n.args[1] == 2:
        return n.args[0]
    if op == "square":
        return n.args[0]
    if op == "mul" and len(n.args) == 2 and n.args[0] is n.args[1]:
        return n.args[0]
    return None


def _module_path(n: fx.Node) -> list[str]:
    """The submodules whose forward made node n, outermost first, by their paths in the model
    (fx records them while tracing); a kept layer's own node leaves the layer out."""
    stack = [path for path, _ in (n.meta.get("nn_module_stack") or {}).values()]
    if n.op == "call_module" and stack and stack[-1] == n.target:
        stack = stack[:-1]
    return [p for p in stack if p]


class _Unmapped(Exception):
    """This node has no mapping: it becomes an opaque box."""


class _Rename(Exception):
    """Import again, the output axis of this linear map's node named apart from its size's
    name."""

    def __init__(self, node: fx.Node):
        super().__init__(node.name)
        self.node = node


class _Lazy:
    """A tensor the model holds (`get_attr`), or a getitem of one, not yet a box: it becomes a
    param box where it is first used, its axes named after what it is combined with."""

    def __init__(self, node: fx.Node, value: torch.Tensor, parent=None, index=None):
        self.node, self.value, self.parent, self.index = node, value, parent, index


def _num(v) -> str:
    """A number as a size expression (`1e-06` as `1.0*10**-6`)."""
    if isinstance(v, int):
        return str(v)
    text = repr(float(v))
    if "e" in text:
        m, e = text.split("e")
        text = f"{m}*10**{int(e)}" if not m.startswith("-") else f"-{m[1:]}*10**{int(e)}"
    return text


def _fill_of(v: torch.Tensor) -> str | None:
    """The one number every element of `v` holds, as a size expression (a constant box's
    `value`); None where the elements differ (`torch.arange`), or the number is not one a size
    expression writes (inf, nan)."""
    flat = v.reshape(-1)
    if flat.numel() == 0 or not bool((flat == flat[0]).all()):
        return None
    x = flat[0].item()
    x = int(x) if isinstance(x, bool) else x
    if isinstance(x, float) and not math.isfinite(x):
        return None
    try:
        parse_size(_num(x))
    except Exception:  # past the size limits
        return None
    return _num(x)


def _role_of(name: str) -> str:
    """The role an axis name was made for (`K2` -> head; `Y_1`, a part of the grid axis Y, ->
    spatial), feature where none is known."""
    base, _, part = name.partition("_")
    if part.isdigit() and _role_of(base) in ("spatial", "seq"):
        return "spatial"
    for role, names in _ROLES.items():
        if name in names or (name.startswith(names[0]) and name[len(names[0]) :].isdigit()):
            return role
    return "feature"


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0][:300]


def _complex(v) -> bool:
    if isinstance(v, (tuple, list)):
        return any(_complex(t) for t in v)
    return isinstance(v, torch.Tensor) and v.is_complex()


def _target_name(gm, n: fx.Node) -> str:
    """What an opaque box stands for, for people: `torch.nn.GRU`, `torch.cumsum`."""
    if n.op == "call_module":
        t = type(gm.get_submodule(n.target))
        return f"{t.__module__}.{t.__qualname__}"
    if n.op == "call_method":
        return f"torch.Tensor.{n.target}"
    mod = getattr(n.target, "__module__", None) or "torch"
    mod = "operator" if mod == "_operator" else mod  # (`operator.iadd`, as code imports it)
    return f"{mod}.{getattr(n.target, '__qualname__', getattr(n.target, '__name__', 'op'))}"


def _flat(a) -> list:
    if isinstance(a, (tuple, list)):
        return [x for y in a for x in _flat(y)]
    return [a]


def _is_const_tensor(imp: _Importer, a) -> bool:
    """A one-element tensor the model makes without reading its inputs (`torch.full([], v)`,
    a scalar buffer)."""
    if not isinstance(a, fx.Node) or tracing.reads_values(a):
        return False
    v = imp.values.get(a)
    return isinstance(v, torch.Tensor) and v.numel() == 1


def _is_t(imp: _Importer, a) -> bool:
    return isinstance(a, fx.Node) and isinstance(imp.values.get(a), torch.Tensor)


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")
