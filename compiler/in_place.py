"""Calls that change a tensor in place, for the importer: which nodes of a traced graph do
(`changes_in_place`), and which earlier values share elements with the tensor one changes
(`overlapping`, recorded by the example run in each such node's meta under `SHARED`)."""

from __future__ import annotations

import functools
import inspect
import operator
from typing import Any

import torch
from torch import fx, nn

IN_PLACE_OPERATORS = {
    operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul,
    operator.itruediv: operator.truediv, operator.ifloordiv: operator.floordiv,
    operator.imod: operator.mod, operator.ipow: operator.pow, operator.iand: operator.and_,
    operator.ior: operator.or_, operator.ixor: operator.xor,
    operator.ilshift: operator.lshift, operator.irshift: operator.rshift,
}  # fmt: skip
"""Augmented assignments (`x += y`) and the operator each applies; on a tensor they change
it in place."""

SHARED = "ncd_shared"
"""A node's meta key: the nodes whose values (recorded before it ran) shared elements with
the tensor it changed in place (views of it, the tensor it is a view of, and so on)."""


def changes_in_place(n: fx.Node, root: nn.Module, first: Any) -> bool:
    """Whether node n changes its first argument, a tensor whose value is `first`, in place:
    a method ending in `_` (`y.add_(z)`), an augmented assignment (`y += z`), an item
    assignment (`y[i] = z`, `operator.setitem`), a torch
    function ending in `_` (`torch.relu_(y)`), a function called with `inplace=True`
    (`F.relu(y, inplace=True)`) or a layer made with it (`nn.ReLU(inplace=True)`)."""
    if not isinstance(first, torch.Tensor):
        return False
    if n.op == "call_method":
        return n.target.endswith("_") and not n.target.startswith("__")
    if n.op == "call_module":
        return getattr(root.get_submodule(n.target), "inplace", False) is True
    if n.op != "call_function":
        return False
    if n.target in IN_PLACE_OPERATORS or n.target is operator.setitem:
        return True
    name = getattr(n.target, "__name__", "")
    torch_fn = (getattr(n.target, "__module__", None) or "").startswith("torch")
    if torch_fn and name.endswith("_") and not name.startswith("_"):  # (not `operator.and_`)
        return True
    i = _inplace_position(n.target)
    flag = n.args[i] if i is not None and len(n.args) > i else n.kwargs.get("inplace", False)
    return flag is True


@functools.cache
def _inplace_position(fn) -> int | None:
    """The position of a function's `inplace` parameter (`F.relu(x, True)`), if it has one."""
    try:
        names = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return None
    return names.index("inplace") if "inplace" in names else None


def overlapping(t: torch.Tensor, values: dict) -> list:
    """The keys of `values` whose value (a tensor, or a tuple or list holding tensors) shares
    at least one element of memory with t."""
    found = []
    for m, v in values.items():
        members = v if isinstance(v, (tuple, list)) else (v,)
        if any(isinstance(u, torch.Tensor) and _overlap(u, t) for u in members):
            found.append(m)
    return found


def _overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors share an element of memory (tensors of one storage whose elements
    lie apart, `z[:, :2]` and `z[:, 2:]`, share none)."""
    if a.numel() == 0 or b.numel() == 0:
        return False
    if a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr():
        return False
    if a.element_size() != b.element_size():
        return True  # (a view as another dtype: counted as sharing)
    (lo_a, hi_a), (lo_b, hi_b) = _span(a), _span(b)
    if hi_a < lo_b or hi_b < lo_a:
        return False
    return bool(torch.isin(_offsets(a), _offsets(b)).any())


def _span(t: torch.Tensor) -> tuple[int, int]:
    """The first and last element of t's storage that t reads."""
    last = sum((s - 1) * abs(st) for s, st in zip(t.shape, t.stride(), strict=True))
    return t.storage_offset(), t.storage_offset() + last


def _offsets(t: torch.Tensor) -> torch.Tensor:
    """The storage positions of t's elements."""
    n = _span(t)[1] + 1
    return torch.arange(n).as_strided(t.shape, t.stride(), t.storage_offset()).flatten()
