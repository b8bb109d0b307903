"""Functions and tensor methods (`call_function`, `call_method` nodes): which mapping each
reaches (by the tables of tables.py), the ops torch has as both (`common`), and in-place
methods."""

from __future__ import annotations

import operator
import warnings

import torch
import torch.nn.functional as F
from torch import fx

from ncd.circuits.builder import Wire
from ncd.circuits.errors import BuildError

from ..errors import TorchImportError
from ..in_place import IN_PLACE_OPERATORS, SHARED
from .common import _dtype, _is_t, _num, _Unmapped
from .reshape import EINOPS_FNS
from .tables import (
    _BINARY,
    _BINARY_METHODS,
    _CASTS,
    _COMMON_FNS,
    _COMMON_METHODS,
    _COMPOSED_FNS,
    _COMPOSED_OPTIONS,
    _FIELDS,
    _LAYER_FNS,
    _LOGICAL_ANY,
    _LOGICAL_FNS,
    _LOGICAL_METHODS,
    _MOVES,
    _PAIRWISE,
    _REDUCTIONS,
    _SOFTMAX_FNS,
    _UNARY_DEFAULTS,
    _UNARY_FNS,
    _UNARY_METHODS,
    imports,
)


class _Calls:
    """The mapping of functions and tensor methods (a mixin of `_Importer`, core.py)."""

    def map_function(self, n, fn):
        if fn is operator.getitem or (fn is getattr and n.args[1] in _FIELDS):
            src = self.wires.get(n.args[0]) if isinstance(n.args[0], fx.Node) else None
            i = _FIELDS.get(n.args[1], n.args[1]) if fn is getattr else n.args[1]
            if isinstance(src, tuple) and isinstance(i, int):
                if src[i] is None:
                    raise _Unmapped
                pair = getattr(n.args[0].target, "__name__", "") in ("var_mean", "std_mean")
                if (i == 0 or pair) and n.args[0] in self.units:  # a keepdim max's values
                    self.units[n] = self.units[n.args[0]]  # (`extreme`), var_mean's both
                return src[i]
            if fn is getattr:
                raise _Unmapped
            if _is_t(self, n.args[0]):
                return self.getitem(n, n.args[0], n.args[1])
            raise _Unmapped
        if fn is operator.setitem and _is_t(self, n.args[0]):
            return self.assign(n, *n.args)
        if fn in _COMMON_FNS:
            return self.common(n, _COMMON_FNS[fn])
        if fn in _LOGICAL_FNS or fn in _LOGICAL_ANY:
            op = _LOGICAL_FNS.get(fn) or _LOGICAL_ANY[fn]
            return self.logical(n, op, n.args, of_any=fn in _LOGICAL_ANY)
        if fn in (torch.div, torch.true_divide, torch.floor_divide, operator.floordiv):
            return self.binary(n, self.division(n, fn.__name__), n.args[0], n.args[1])
        if fn in _BINARY:
            return self.alpha(n, _BINARY[fn], n.args[0], n.args[1])
        if fn in (torch.max, torch.min) and len(n.args) == 2 and _is_t(self, n.args[1]):
            return self.binary(n, _PAIRWISE[fn.__name__], n.args[0], n.args[1])
        if fn in (torch.max, torch.min):
            return self.extreme(n, fn.__name__)
        if fn in _LAYER_FNS:  # F.max_pool2d(x, 3, 2, 1): the layer of those arguments
            cls, names = _LAYER_FNS[fn]
            given = {k: self.const(self.arg(n, i, k, None)) for i, k in enumerate(names, 1)}
            return self.map_module(n, cls(**{k: v for k, v in given.items() if v is not None}))
        if fn is F.pixel_shuffle:
            r = self.const(self.arg(n, 1, "upscale_factor"))
            return self.pixel_shuffle(n, self.wire(n.args[0]), r, True)
        if fn in _COMPOSED_FNS:
            kind = _COMPOSED_FNS[fn]
            opts = enumerate(_COMPOSED_OPTIONS.get(kind, ()), start=1)
            args = [self.const(self.arg(n, i, k, v)) for i, (k, v) in opts]
            return self.pointwise(n, n.args[0], lambda x: self.composed(n, x, kind, *args))
        if fn in _UNARY_FNS:
            name, box = _UNARY_FNS[fn], self.box_name(n)
            if fn is F.gelu and n.kwargs.get("approximate", "none") == "tanh":
                name = "gelu_tanh"
            for i, (k, v) in enumerate(_UNARY_DEFAULTS.get(name, {}).items(), start=1):
                if self.const(self.arg(n, i, k, v)) != v:
                    raise _Unmapped  # F.softplus(x, beta=2): not the box's function
            return self.pointwise(n, n.args[0], lambda x: self.b.unary(x, name, name=box))
        if fn in _SOFTMAX_FNS:
            return self.softmax(n, _SOFTMAX_FNS[fn])
        if fn in (torch.matmul, operator.matmul, torch.bmm):
            return self.matmul(n, self.wire(n.args[0]), self.wire(n.args[1]))
        if fn is F.linear:
            return self.linear_fn(n, self.arg(n, 0, "input"), self.arg(n, 1, "weight"),
                                  self.arg(n, 2, "bias"), transposed=False)  # fmt: skip
        if fn is torch.addmm:
            if any(self.const(n.kwargs.get(k, 1)) != 1 for k in ("beta", "alpha")):
                raise _Unmapped
            return self.linear_fn(n, self.arg(n, 1, "mat1"), self.arg(n, 2, "mat2"),
                                  self.arg(n, 0, "input"), transposed=True)  # fmt: skip
        if fn is F.scaled_dot_product_attention:
            return self.sdpa(n)
        if fn in (torch.flatten, torch.reshape):
            return self.view(n, self.wire(n.args[0]), self.shape(n))
        if fn is torch.transpose:
            return self.transpose(n, self.wire(n.args[0]), n.args[1], n.args[2])
        if fn is torch.cat:
            return self.cat(n)
        if fn is torch.roll:
            return self.roll(n)
        if fn in (torch.split, torch.chunk):
            return self.split(n, self.wire(n.args[0]), fn.__name__)
        if fn is torch.einsum:
            return self.einsum(n)
        if fn in EINOPS_FNS:
            op = EINOPS_FNS[fn]
            pattern = self.const(self.arg(n, 1, "pattern"))
            lengths = {k: v for k, v in n.kwargs.items() if k != "reduction"}
            if op == "repeat":
                return self.einops_repeat(n, n.args[0], pattern, lengths)
            how = self.arg(n, 2, "reduction") if op == "reduce" else None
            return self.einops(n, n.args[0], pattern, lengths, how)
        if fn in (F.layer_norm, F.rms_norm):
            return self.norm_fn(n, "layernorm" if fn is F.layer_norm else "rmsnorm")
        if fn is F.normalize:
            return self.normalize(n)
        if fn is torch.masked_fill:
            return self.masked_fill(n)
        if fn is torch.gather:
            return self.gather(n)
        if fn is torch.index_add:
            return self.index_add(n)
        if fn in (torch.scatter, torch.scatter_add):
            return self.scatter(n, add=fn is torch.scatter_add)
        raise _Unmapped

    @imports("reduce")
    def map_method(self, n, meth):
        if meth in ("div", "true_divide", "floor_divide"):
            return self.binary(n, self.division(n, meth), n.args[0], n.args[1])
        if meth in _LOGICAL_METHODS:
            return self.logical(n, *_LOGICAL_METHODS[meth][:1], n.args, _LOGICAL_METHODS[meth][1])
        if meth in _BINARY_METHODS:
            return self.alpha(n, _BINARY_METHODS[meth], n.args[0], n.args[1])
        if meth == "roll":
            return self.roll(n)
        if meth in ("max", "min") and len(n.args) == 2 and _is_t(self, n.args[1]):
            return self.binary(n, _PAIRWISE[meth], n.args[0], n.args[1])
        if meth in ("max", "min"):
            return self.extreme(n, meth)
        if meth in _COMMON_METHODS:
            return self.common(n, meth)
        if meth in _UNARY_METHODS:
            box = self.box_name(n)
            return self.pointwise(n, n.args[0], lambda x: self.b.unary(x, meth, name=box))
        x = self.wire(n.args[0])
        if meth in ("contiguous", "clone"):
            return x
        if meth in ("softmax", "log_softmax"):
            return self.softmax(n, meth)
        if meth in ("view", "reshape", "flatten", "unflatten"):
            return self.view(n, x, self.shape(n))
        if meth == "permute":
            dims = self.const(list(n.args[1:]))
            dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (list, tuple)) else dims
            return self.order(x, [x.axes[d] for d in dims], n, "permute")
        if meth == "transpose":
            return self.transpose(n, x, n.args[1], n.args[2])
        if meth in ("split", "chunk"):
            return self.split(n, x, meth)
        if meth == "masked_fill":
            return self.masked_fill(n)
        if meth in ("new_zeros", "new_ones", "new_full", "new_empty"):
            return self.made_tensor(n)
        if meth in ("zero", "fill"):  # (of `x.zero_()`, `x.fill_(v)`)
            return self.filled_like(n, n.args[0], fill=0 if meth == "zero" else None)
        if meth == "gather":
            return self.gather(n)
        if meth == "index_add":
            return self.index_add(n)
        if meth in ("scatter", "scatter_add"):
            return self.scatter(n, add=meth == "scatter_add")
        raise _Unmapped

    @imports("clamp", "cast", "scan")
    def common(self, n, op: str):
        """The tensor ops torch has as functions and methods alike (`torch.cumsum(x, 1)`,
        `x.cumsum(1)`), arguments read by position or keyword."""
        a0 = n.args[0] if n.args else n.kwargs.get("input")
        if op in _REDUCTIONS:  # over `dim` (every axis where None: a loss's `x.sum()`)
            if n.kwargs.get("dtype") is not None:
                raise _Unmapped
            if op in ("any", "all") and self.values[a0].dtype != torch.bool:
                x, units = self.condition(n, a0, negate=False)[1]  # x != 0
                if units:
                    raise _Unmapped
            else:
                x = self.wire(a0)
            if not x.axes:
                raise _Unmapped
            dims = self.dims_of(n, x)
            y = self.b.reduce(x, [x.axes[d] for d in dims], _REDUCTIONS[op], name=self.box_name(n))
            if self.const(self.arg(n, 2, "keepdim", False)):
                self.units[n] = tuple(dims)
            return y
        if op in ("var", "std", "var_mean", "std_mean"):
            return self.spread(n, op, a0)
        if op in ("clamp", "clamp_min", "clamp_max"):
            x = self.wire(a0)
            low = self.const(self.arg(n, 1, "min")) if op != "clamp_max" else None
            high = (
                self.const(self.arg(n, 2 if op == "clamp" else 1, "max"))
                if op != "clamp_min"
                else None
            )
            for v in (low, high):
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                    raise _Unmapped  # a tensor bound
            integer = not x.type.dtype.startswith(("float", "bfloat"))
            if not integer:  # a bound at the type's limit (HF's finfo(dtype).min) bounds nothing
                lim = torch.finfo(self.values[n].dtype)
                low = None if low is not None and low <= lim.min else low
                high = None if high is not None and high >= lim.max else high
                if low is None and high is None:
                    return x
            bound = [
                None if v is None else _num(int(v) if integer else float(v)) for v in (low, high)
            ]
            return self.b.box("clamp", {"x": x}, self.box_name(n), low=bound[0], high=bound[1])
        if op in ("to", "type_as", *_CASTS):
            want = _dtype(self.values[n])
            return self.pointwise(n, a0, lambda x: x if want == x.type.dtype else
                                  self.b.cast(x, want, name=self.box_name(n)))  # fmt: skip
        if op in ("cumsum", "cumprod"):
            x = self.wire(a0)
            d = self.const(self.arg(n, 1, "dim")) % len(x.axes)
            if n.kwargs.get("dtype") is not None:
                raise _Unmapped
            return self.b.scan(x, x.axes[d], "sum" if op == "cumsum" else "prod",
                               name=self.box_name(n))  # fmt: skip
        if op == "where":
            return self.where_(n)
        if op in _MOVES:
            return self.move(n, op, a0)
        if op == "stack":
            return self.stack(n)
        if op in ("repeat", "tile"):
            return self.tile(n, a0)
        if op == "make":
            return self.made_tensor(n)
        if op == "like":  # zeros_like(x), ones_like(x), full_like(x, v): x's shape filled
            return self.filled_like(n, a0)
        if op == "topk":
            return self.topk(n, a0)
        if op == "interpolate":
            return self.upsample(n, a0, self.arg(n, 1, "size"), self.arg(n, 2, "scale_factor"),
                                 self.arg(n, 3, "mode", "nearest"),
                                 self.arg(n, 4, "align_corners"))  # fmt: skip
        if op == "unbind":
            x = self.wire(a0)
            d = self.const(self.arg(n, 1, "dim", 0)) % len(x.axes)
            return tuple(self.b.index(x, x.axes[d], i, name=self.box_name(n, str(i)))
                         for i in range(self.shape(a0)[d]))  # fmt: skip
        if op == "unsqueeze":
            w, units = self.bare(a0)
            d = self.const(self.arg(n, 1, "dim")) % (len(self.shape(a0)) + 1)
            shifted = tuple(u + (u >= d) for u in units)
            self.units[n] = tuple(sorted((*shifted, d)))
            return w
        if op == "repeat_interleave":
            x, r = self.wire(a0), self.const(self.arg(n, 1, "repeats"))
            d = self.arg(n, 2, "dim")
            if not isinstance(r, int) or d is None:
                raise _Unmapped  # per-element counts, or the flattened form
            return self.repeat(n, x, x.axes[self.const(d) % len(x.axes)], r)
        if op in ("expand", "expand_as"):
            return self.expand(n, a0)
        if op == "detach":
            warnings.warn(f"{self.where(n)}: detach is dropped: gradients flow through the "
                          "circuit here", stacklevel=2)  # fmt: skip
            return self.wire(a0)
        if op == "dropout":  # (training=False: the input as it is)
            p = float(self.const(self.arg(n, 1, "p", 0.5)))
            x = self.wire(a0)
            off = p == 0 or not self.const(self.arg(n, 2, "training", True))
            return x if off else self.b.dropout(x, p, name=self.box_name(n))
        if op == "pad":
            return self.pad(n)
        raise _Unmapped

    def division(self, n, name: str) -> str:
        """The binary op of a division: `div` (true division), or `floordiv` for
        `rounding_mode="floor"`, `floor_divide` and `//`; truncation stays opaque."""
        mode = "floor" if name in ("floor_divide", "floordiv") else None
        mode = self.const(n.kwargs.get("rounding_mode", mode))
        if mode not in (None, "floor"):
            raise _Unmapped
        return "div" if mode is None else "floordiv"

    def in_place(self, n) -> Wire:
        """`y.add_(z)`, `y += z`, `torch.relu_(y)`, `F.relu(y, inplace=True)`, a layer made
        with `inplace=True`: the op out of place (an opaque box on a copy of y where it has
        none), and y rebound to its result, so that readers of y after it read the new value
        as in PyTorch (an input or a held tensor changed in place is not changed for the
        caller); where a tensor sharing elements of y's memory (a view of y made before the
        change, or the tensor y is a view of) is read after it, the import stops with that
        reason."""
        y = n.args[0]
        if y in self.islands:
            raise _Unmapped
        mark = self._mark()
        try:
            if n.op == "call_method":
                out = self.map_method(n, n.target[:-1])
            elif n.op == "call_module":
                out = self.map_module(n, self.gm.get_submodule(n.target))
            else:
                out = self.map_function(n, _out_of_place(n.target))
        except (_Unmapped, BuildError):
            self._undo(mark)
            self.units.pop(n, None)
            out = None
        # (an op that maps to y's own wire, dropout off, changes nothing)
        changes = out is None or out is not self.wires[y]
        base, rebased = (self.written_back(n, y, out) if changes and out is not None
                         else (None, None))  # fmt: skip
        skip = self.same_tensor.get(base, [base]) if base is not None else ()
        if changes and (stale := self.stale(n, y, skip)):
            other, reader, role = stale
            raise TorchImportError(
                f"{_in_place_name(self.gm, n)} changes a tensor in place while {role} (node "
                f"{other.name}) is read after the change (by node {reader.name}): a circuit "
                "has no shared memory to follow the change (expected no reader of memory it "
                "shares after the change; write it out of place, or keep the submodule whole)"
            )
        if out is None and n.target is operator.setitem:
            raise TorchImportError(
                f"the item assignment `[{_index_text(n.args[1])}] = …` (to node "
                f"{n.args[0].name}) has no box: an assignment imports where it replaces one "
                "position or a slice of step 1 along one dim (every other dim whole), or the "
                "elements a boolean mask picks by a number (expected such an index and value, "
                "found this one; write it out of place, with torch.cat or torch.where, or "
                "keep the submodule whole)"
            )
        out = self.opaque(n) if out is None else out
        same = self.same_tensor.setdefault(self.same_tensor.get(y, [y])[0], [y])
        same.append(n)  # y, and each in-place result of it: one tensor, all read the new value
        for m in same:
            self.same_tensor[m] = same
            self.wires[m] = out
            self.units[m] = self.units.get(n, ())
        for m in skip:  # the tensor y is a slice of, with the slice's new values
            self.wires[m], self.units[m] = rebased, ()
        return out

    def written_back(self, n, y, out) -> tuple[fx.Node | None, Wire | None]:
        """Where in-place node n changes y, a slice of a tensor (`torch.relu_(z[:, 1:])`) read
        after the change: (that tensor, its wire with the slice's positions replaced by
        `out`), as the change writes them into its memory; else (None, None). An augmented
        assignment's own write-back (`z[i] += v`) rebinds it itself."""
        if y.op != "call_function" or y.target is not operator.getitem or _write_back(n, y):
            return None, None
        base = y.args[0]
        order = {m: i for i, m in enumerate(self.gm.graph.nodes)}
        group = self.same_tensor.get(base, [base])
        if not _is_t(self, base) or not any(
            order[u] > order[n] and not _reads_shape(u) for m in group for u in m.users
        ):
            return None, None
        mark = self._mark()
        try:
            op = ("wire", (out, self.units.get(n, ())), self.shape(y))
            return base, self.assign(n, base, y.args[1], op, suffix="written")
        except (_Unmapped, BuildError):
            self._undo(mark)
            return None, None

    def stale(self, n, y, skip=()) -> tuple[fx.Node, fx.Node, str] | None:
        """(a tensor sharing elements with y's, a node reading it after n, what it is to y)
        where in-place node n changes y and such a tensor, made before n (and not among
        `skip`, the nodes of a tensor the change is written back to), is read after it
        for its values (its shape alone is the same): a view of y, the tensor y is a view of,
        a view of that; else None. The example run found them (`SHARED`): a copy
        (`y[:, [0, 2]]`) or a slice of other elements shares none. A view made after n reads
        the new value, as the wire rebound to n's result gives it."""
        order = {m: i for i, m in enumerate(self.gm.graph.nodes)}
        same = set(self.same_tensor.get(y, [y])) | set(skip)
        back = _write_back(n, y)
        for v in n.meta.get(SHARED, ()):
            late = [u for u in v.users if order[u] > order[n] and not _reads_shape(u)]
            if back is not None and v in self.same_tensor.get(back.args[0], [back.args[0]]):
                late = [u for u in late if order[u] < order[back]]  # (then rebound by it)
            if v not in same and late:
                role = (
                    "the tensor it is a view of" if _reaches(v, y, order)
                    else "a view of it made before" if _reaches(y, v, order)
                    else "a tensor sharing its memory"
                )  # fmt: skip
                return v, min(late, key=order.get), role
        return None


def _write_back(n: fx.Node, y: fx.Node) -> fx.Node | None:
    """The item assignment that writes in-place node n's result back where its view y was
    taken (`x[i] += v`: getitem, iadd, then setitem of the same index), if one follows."""
    if y.op != "call_function" or y.target is not operator.getitem:
        return None
    for u in n.users:
        if (u.target is operator.setitem and u.args[2] is n and u.args[0] is y.args[0]
                and u.args[1] == y.args[1]):  # fmt: skip
            return u
    return None


def _index_text(idx) -> str:
    """An index as code writes it: `..., :4`, `:, 0`, `mask`."""
    items = idx if isinstance(idx, tuple) else (idx,)

    def one(i):
        if i is Ellipsis:
            return "..."
        if isinstance(i, slice):
            parts = ["" if x is None else str(x) for x in (i.start, i.stop, i.step)]
            return ":".join(parts if i.step is not None else parts[:2])
        return "None" if i is None else str(i)

    return ", ".join(one(i) for i in items)


def _out_of_place(fn):
    """The function an in-place call applies: `operator.add` for `+=`, `torch.relu` for
    `torch.relu_`, itself for one called with `inplace=True`."""
    if fn in IN_PLACE_OPERATORS:
        return IN_PLACE_OPERATORS[fn]
    name = getattr(fn, "__name__", "")
    if name.endswith("_"):
        for mod in (torch, F):
            if callable(plain := getattr(mod, name[:-1], None)):
                return plain
        raise _Unmapped
    return fn


_SYMBOLS = {operator.iadd: "+=", operator.isub: "-=", operator.imul: "*=",
            operator.itruediv: "/=", operator.ifloordiv: "//=", operator.imod: "%=",
            operator.ipow: "**=", operator.iand: "&=", operator.ior: "|=", operator.ixor: "^=",
            operator.ilshift: "<<=", operator.irshift: ">>="}  # fmt: skip


def _in_place_name(gm, n: fx.Node) -> str:
    """An in-place call as the model's code writes it: `add_`, `+=`, `torch.relu_`,
    `torch.nn.functional.relu(inplace=True)`, `relu` (ReLU(inplace=True))."""
    if n.op == "call_method":
        return f"`{n.target}`"
    if n.op == "call_module":
        return f"`{n.target}` ({gm.get_submodule(n.target)!r})"
    if n.target in _SYMBOLS:
        return f"`{_SYMBOLS[n.target]}`"
    name = getattr(n.target, "__name__", "op")
    mod = "torch" if getattr(torch, name, None) is n.target else "torch.nn.functional"
    return f"`{mod}.{name}`" if name.endswith("_") else f"`{mod}.{name}(inplace=True)`"


def _reads_shape(u: fx.Node) -> bool:
    """Whether node u reads what a tensor is (`x.shape`, `x.size(1)`), not its values."""
    if u.op == "call_function" and u.target is getattr:
        return u.args[1] in ("shape", "dtype", "device", "ndim")
    return u.op == "call_method" and u.target in ("size", "dim")


def _reaches(a: fx.Node, b: fx.Node, order: dict) -> bool:
    """Whether node b is computed from node a."""
    seen, todo = set(), [b]
    while todo:
        m = todo.pop()
        if m is a:
            return True
        if m not in seen and order[m] > order[a]:
            seen.add(m)
            todo += m.all_input_nodes
    return False
