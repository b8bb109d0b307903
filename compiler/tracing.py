"""Tracing a model for the importer: torch.fx's graph (`trace`), and every node's value on the
example inputs (`values`).

torch.fx traces with proxies that stand for tensors, so model code that asks a proxy for a
concrete answer stops the trace: `x.reshape(*x.shape[:-1], -1, 2)` (iterating a size),
`torch.finfo(x.dtype)` (HF's GPT-2 mask value), `len(x)`. The tracer here runs each node on
the example inputs as it records it, so a proxy answers those from its value: a size, tuple
or tensor iterates and has a length, and a tensor's `dtype`, `device` and `ndim` are the
example's (the graph holds them as constants: the import is of the model at the example's
dtype and device). Sizes themselves stay nodes of the graph; a condition on sizes alone
(`assert t <= block_size`) is the example's answer. Questions whose answer would tie the
model's control flow to one input's values (`if x.sum() > 0`) still stop the trace.

Running the nodes while tracing runs the model's forward once more; buffers it changes in
place (a batch norm's running statistics in training mode) are put back afterwards, as are
the example inputs (each run reads copies).
"""

from __future__ import annotations

import contextlib
import inspect
import operator
import sys
from typing import Any

import torch
from torch import fx, nn
from torch.fx.node import map_aggregate

from .in_place import IN_PLACE_OPERATORS, SHARED, changes_in_place, overlapping

_UNKNOWN = object()
"""The value of a node that could not be run while tracing (the proxy then answers as fx's)."""
_CONCRETE = ("dtype", "device", "ndim", "is_cuda")
"""Tensor attributes a proxy answers with the example's value."""


def trace(model: nn.Module, example_inputs: tuple, leaf, functions=()) -> fx.GraphModule:
    """The model's graph. `leaf(module, path)` says whether a submodule stays one node (True),
    is traced into (False) or as fx decides (None: torch.nn's modules stay whole). Arguments
    of forward past the example inputs are fixed at their defaults; calls of `functions`
    (einops' rearrange) are nodes, not traced into. Raises TraceFailure."""
    concrete = _defaults(model, len(example_inputs))
    tracer = _Tracer(leaf, model, example_inputs, concrete, functions)
    try:
        with (
            _buffers_kept(model),
            torch.no_grad(),
            _sizes_as_one_tuple(),
            _as_nodes(tracer, functions),
        ):
            graph = tracer.trace(model, concrete_args=concrete)
    except Exception as e:
        raise TraceFailure(e, tracer.failed_in or "") from None
    return fx.GraphModule(model, graph)


class TraceFailure(Exception):
    """torch.fx could not trace the model: `error`, raised in the submodule at `path` (''
    for the model's own forward)."""

    def __init__(self, error: Exception, path: str):
        super().__init__(f"{path or 'forward'}: {error}")
        self.error, self.path = error, path


def values(gm: fx.GraphModule, example_inputs: tuple) -> dict[fx.Node, Any]:
    """Every node's value on the example inputs (shapes and constants)."""
    run = _Values(gm)
    with _buffers_kept(gm), torch.no_grad():
        run.run(*_clones(example_inputs))
    return run.values


@contextlib.contextmanager
def _buffers_kept(model: nn.Module):
    """The model's buffers as they were before (a forward in training mode updates a batch
    norm's running statistics; importing a model leaves it as it was)."""
    saved = {k: b.detach().clone() for k, b in model.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for k, b in model.named_buffers():
                if k in saved and b.shape == saved[k].shape:
                    b.copy_(saved[k])


class _Proxy(fx.Proxy):
    """A proxy that answers len, iteration and a tensor's dtype, device and ndim from the
    value its node took on the example inputs."""

    def _value(self):
        return self.tracer.values.get(self.node, _UNKNOWN)

    def __len__(self) -> int:
        v = self._value()
        if isinstance(v, torch.Tensor):
            self.tracer.read(self.node, 0)  # a tensor's length is its first dim's size
        if isinstance(v, (tuple, list, torch.Size, torch.Tensor)):
            return len(v)
        return super().__len__()

    def _number(self, cast):
        """`int(n)`, `float(n)` of a number computed from sizes alone (Swin's
        `int(windows.shape[0] / (H * W / ws / ws))`): the example's, as a condition on sizes
        is; of anything read from tensor values, fx's error."""
        v = self.tracer.of_sizes(self.node, (int, float))
        if v is _UNKNOWN or isinstance(v, bool):
            raise TypeError(f"{cast.__name__}() of a traced value that is not a size: {self.node}")
        self.tracer.read(self.node)
        return cast(v)

    def __setitem__(self, idx, value) -> None:
        """`y[idx] = v` (and the write-back of `y[idx] += v`): recorded as operator.setitem,
        a call that changes y in place."""
        self.tracer.create_proxy("call_function", operator.setitem, (self, idx, value), {})

    def __int__(self) -> int:
        return self._number(int)

    def __float__(self) -> float:
        return self._number(float)

    def __index__(self) -> int:
        return self._number(int)

    def __getattr__(self, k: str):
        if k in _CONCRETE:
            v = self._value()
            if isinstance(v, torch.Tensor):
                return getattr(v, k)
        return _Attribute(self, k)


def _augmented(op):
    """`x += y` on a traced tensor: one node of the in-place operator (fx's proxy has none,
    so Python would record `x = x + y`, and a tensor sharing x's memory would keep the old
    value); on a traced number (a size), Python's fallback to the plain operator."""

    def method(self, other):
        if not isinstance(self._value(), torch.Tensor):
            return NotImplemented
        return self.tracer.create_proxy("call_function", op, (self, other), {})

    return method


for _op in IN_PLACE_OPERATORS:
    setattr(_Proxy, f"__{_op.__name__}__", _augmented(_op))


class _Attribute(_Proxy, fx.proxy.Attribute):
    """`x.shape`, `x.T` and the like (fx adds the node when it is used, not a method call)."""


class _Tracer(fx.Tracer):
    """Keeps the layers `leaf` names (and any module fx cannot see into) whole; a buffer the
    model reads itself is a node (`get_attr`), so that it can be sliced by a size. Each node
    is run on the example inputs as it is made (`values`)."""

    proxy_buffer_attributes = True

    def __init__(self, leaf, model: nn.Module, example_inputs: tuple, concrete: dict, functions=()):
        super().__init__(autowrap_functions=tuple(functions))
        self.leaf = leaf
        self.values: dict[fx.Node, Any] = {}
        self.failed_in: str | None = None
        names = [p.lstrip("*") for p in inspect.signature(model.forward).parameters]
        self.given = {**concrete, **dict(zip(names, _clones(example_inputs), strict=False))}
        self.reads: list[tuple[fx.Node, int | None]] = []  # sizes taken as numbers (`read`)
        self.since = 0  # the reads made since the last node was recorded

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        keep = self.leaf(m, qualname)
        return super().is_leaf_module(m, qualname) if keep is None else keep

    def call_module(self, m, forward, args, kwargs):
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:  # the innermost submodule the error came through
                self.failed_in = self.path_of_module(m)
            raise

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _Proxy(node, self)

    def to_bool(self, obj: fx.Proxy) -> bool:
        """A condition on sizes alone (nanoGPT's `assert t <= block_size`) is the example's
        answer: the graph is that of the example's sizes. One on tensor values still stops
        the trace."""
        v = self.of_sizes(obj.node, bool)
        if v is _UNKNOWN:
            return super().to_bool(obj)
        self.read(obj.node)
        return v

    def of_sizes(self, node: fx.Node, types):
        """The example's value of a node of one of `types` computed from sizes alone, else
        _UNKNOWN."""
        v = self.values.get(node, _UNKNOWN)
        return v if isinstance(v, types) and not reads_values(node) else _UNKNOWN

    def iter(self, obj: fx.Proxy):
        v = self.values.get(obj.node, _UNKNOWN)
        if isinstance(v, torch.Tensor):
            self.read(obj.node, 0)  # as many steps as the first dim's size
        if isinstance(v, (tuple, list, torch.Size, torch.Tensor)):
            return (obj[i] for i in range(len(v)))
        return super().iter(obj)

    def read(self, n: fx.Node, dim: int | None = None) -> None:
        """Marks node n's value (dim None) or the size of dim `dim` of its tensor as taken as
        the example's number (`READ`)."""
        n.meta.setdefault(READ, []).append(dim)
        self.reads.append((n, dim))

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, *rest, **kw):
        # torch's argument parser asks sizes given to a torch function for their numbers
        # (`torch.ones(T, T)`) before it hands the call to fx, which records the sizes as
        # nodes: those reads took nothing as a number
        pending = [n for n, dim in self.reads[self.since :] if dim is None]
        if pending:
            given: list[fx.Node] = []
            map_aggregate(
                (args, kwargs), lambda a: given.append(a.node) if isinstance(a, fx.Proxy) else a
            )
            for n in pending:
                if n in given and None in n.meta.get(READ, ()):
                    n.meta[READ].remove(None)
        p = super().create_proxy(kind, target, args, kwargs, name, type_expr, *rest, **kw)
        self.since = len(self.reads)
        if isinstance(p, fx.Proxy) and kind != "output":
            self.values[p.node] = self._run(kind, target, args, kwargs)
        return p

    def _run(self, kind: str, target, args, kwargs):
        """The node's value on the example inputs, or _UNKNOWN where it cannot be had."""
        if kind == "placeholder":
            return self.given.get(target.lstrip("*"), _UNKNOWN)
        unknown = False

        def value(a):
            nonlocal unknown
            if isinstance(a, fx.Proxy):
                v = self.values.get(a.node, _UNKNOWN)
                unknown |= v is _UNKNOWN
                return v
            return a

        args, kwargs = map_aggregate(args, value), map_aggregate(kwargs, value)
        if unknown:
            return _UNKNOWN
        try:
            with _unpatched():
                if kind == "get_attr":
                    return fetch(self.root, target)
                if kind == "call_function":
                    return target(*args, **kwargs)
                if kind == "call_method":
                    return getattr(args[0], target)(*args[1:], **kwargs)
                if kind == "call_module":
                    return self.root.get_submodule(target)(*args, **kwargs)
        except Exception:
            return _UNKNOWN
        return _UNKNOWN


@contextlib.contextmanager
def _as_nodes(tracer: fx.Tracer, functions):
    """While tracing, `functions` called through their module (`einops.rearrange(x, ...)`)
    on a traced value are one node each; fx's autowrap covers the names code imported from
    the module (`from einops import rearrange`)."""
    saved = []
    for fn in functions:
        top = sys.modules.get(fn.__module__.partition(".")[0])
        for mod in {sys.modules.get(fn.__module__), top} - {None}:
            if getattr(mod, fn.__name__, None) is fn:
                saved.append((mod, fn.__name__, fn))

    def node(fn):
        def call(*args, **kwargs):
            found = []
            map_aggregate(
                (args, kwargs), lambda a: found.append(a) if isinstance(a, fx.Proxy) else a
            )
            if found:
                return tracer.create_proxy("call_function", fn, args, kwargs)
            return fn(*args, **kwargs)

        return call

    try:
        for mod, name, fn in saved:
            setattr(mod, name, node(fn))
        yield
    finally:
        for mod, name, fn in saved:
            setattr(mod, name, fn)


# nn.Module's attribute lookup and call as they are outside a trace (fx patches both while it
# traces, so that a module called inside a leaf's forward would add nodes)
_MODULE_CALL, _MODULE_GETATTR = nn.Module.__call__, nn.Module.__getattr__


@contextlib.contextmanager
def _unpatched():
    """Modules behave as outside a trace: a leaf run on the example values adds no node."""
    call, get = nn.Module.__call__, nn.Module.__getattr__
    nn.Module.__call__, nn.Module.__getattr__ = _MODULE_CALL, _MODULE_GETATTR
    try:
        yield
    finally:
        nn.Module.__call__, nn.Module.__getattr__ = call, get


READ = "ncd_read"
"""A node's meta key: the sizes the trace took as the example's numbers (Python code that
asked a proxy for an answer: `range(x.shape[0] // 2)`, `int(T / 2)`, `if T > 1`, `len(x)`),
one entry per read: None where the node's own value was read (a size or a condition on
sizes), else the dim of its tensor whose size was read."""


def reads_values(n: fx.Node) -> bool:
    """Whether node n depends on the values of a model input, not only on what a tensor is
    (its shape, size(), dim(), dtype, device)."""
    seen, todo = set(), [n]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        if m.op == "placeholder":
            return True
        meta = (m.op == "call_function" and m.target is getattr and m.args[1] in _META) or (
            m.op == "call_method" and m.target in ("size", "dim")
        )
        if not meta:
            todo += m.all_input_nodes
    return False


_META = {"shape", "dtype", "device", "ndim"}


def fetch(root: nn.Module, target: str):
    """The attribute at a dotted path (`layers.0.freqs`)."""
    obj = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _clones(xs: tuple) -> list:
    """The example inputs as the tracer's run reads them: copies, so that a forward that
    writes into its inputs leaves the caller's as they were."""
    return [x.clone() if isinstance(x, torch.Tensor) else x for x in xs]


def _defaults(model: nn.Module, n: int) -> dict:
    """Arguments of forward past the example inputs, fixed at their defaults (so that
    `mask=None` is None while tracing, not a placeholder)."""
    params = list(inspect.signature(model.forward).parameters.values())[n:]
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


# torch's tensor makers that take sizes one by one (`torch.ones(T, T)`, the causal mask's
# idiom): fx cannot trace them when the sizes are read off a traced tensor ("ones() takes 1
# positional argument but 2 were given"), though it traces `torch.ones((T, T))`.
_BY_SIZES = ("ones", "zeros", "empty", "rand", "randn")


@contextlib.contextmanager
def _sizes_as_one_tuple():
    """While tracing, the makers of _BY_SIZES pass sizes given one by one as one tuple when
    one of them is traced; the graph records the maker itself."""
    saved = {name: getattr(torch, name) for name in _BY_SIZES}

    def packing(make):
        def call(*size, **kw):
            if len(size) > 1 and any(isinstance(s, fx.Proxy) for s in size):
                size = (tuple(size),)
            return make(*size, **kw)

        return call

    try:
        for name, make in saved.items():
            setattr(torch, name, packing(make))
        yield
    finally:
        for name, make in saved.items():
            setattr(torch, name, make)


class _Values(fx.Interpreter):
    """Runs the traced graph once, keeping every node's value (shapes and constants)."""

    def __init__(self, gm):
        super().__init__(gm)
        self.values: dict[fx.Node, Any] = {}

    def run_node(self, n):
        # (the tensor as the run holds it: an earlier change's recorded value is a copy)
        first = self.env.get(n.args[0]) if n.args and isinstance(n.args[0], fx.Node) else None
        if changes_in_place(n, self.module, first):
            # the values still to be read (the run drops the others) that it will change
            n.meta[SHARED] = overlapping(first, {m: v for m, v in self.env.items() if m is not n})
            self.keep_before(first)
        v = super().run_node(n)
        self.values[n] = v
        return v

    def keep_before(self, t) -> None:
        """Copies of the values recorded so far that share memory with `t`, which an in-place
        method is about to change: each node keeps the value it computed (a constant made
        from sizes, `zeros_like(x)` before its `index_add_`, holds zeros)."""
        if not isinstance(t, torch.Tensor) or t.numel() == 0:
            return
        at = t.untyped_storage().data_ptr()
        for m, v in self.values.items():
            if isinstance(v, torch.Tensor) and v.numel() and v.untyped_storage().data_ptr() == at:
                self.values[m] = v.clone()
