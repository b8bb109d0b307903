"""Tensors that are not computed from the inputs: a tensor the model holds becomes a param box
(or a constant box, an integer one) where it is first used, its axes named after what it meets;
rows of a held table read by an index tensor are an embedding box; tensors made from sizes alone
and numbers are constant boxes holding their values."""

from __future__ import annotations

import torch
from torch import fx

from ncd.circuits.builder import Wire
from ncd.circuits.sizes import parse_size

from .common import _dtype, _fill_of, _is_t, _Lazy, _num, _op, _role_of, _Unmapped
from .sizes import _is_shape
from .tables import imports

_POSITION_DTYPES = {torch.int64: "int64", torch.int32: "int32", torch.float32: "float32",
                    torch.float64: "float64"}  # fmt: skip
"""The element types of a positions box (a 16-bit arange rounds its values: a constant)."""


class _Held:
    """Tensors the model holds or makes from sizes (a mixin of `_Importer`, core.py)."""

    @imports("param")
    def materialize(self, lazy: _Lazy, hints=None, drop=()) -> tuple[Wire, tuple[int, ...]]:
        """The param box of a tensor the model holds (made once; a constant box holding the
        values of an integer or boolean one), as (wire, the positions of torch's size-1 dims
        it leaves out). `hints` name its dims (a name, or None); dims in
        `drop` (size 1) are left out of the box."""
        if id(lazy) in self.made:
            return self.made[id(lazy)]
        v = lazy.value
        hints = list(hints) if hints is not None else [None] * v.dim()
        if lazy.parent is not None:
            w, units = self.index_lazy(lazy, hints)
        else:
            n = lazy.node
            names: list[str] = []
            keep = [d for d in range(v.dim()) if d not in drop or v.shape[d] != 1]
            for d in keep:
                h = hints[d]
                if not h or h in names or self.sizes.get(h) != v.shape[d]:
                    role = "unit" if v.shape[d] == 1 else "feature"
                    h = self.axis(role, v.shape[d], avoid=[*names, *hints])
                names.append(h)
            name = self.box_name(n)
            held = v.reshape([v.shape[d] for d in keep])
            trained = n.target in dict(self.model.named_parameters())
            if v.is_floating_point():  # a buffer: fixed data, not trained (nor drawn bold)
                kw = {} if trained else {"trained": False}
                w = self.b.param(" ".join(names), name=name, dtype=_dtype(v), **kw)
                self.weights[name] = {"weight": held}
            else:  # an integer or boolean table (Swin's relative position index): a constant
                w = self.held_constant(name, names, held, str(n.target), buffer=False)
            if not trained:
                self.buffers.add(name)  # a buffer or a plain tensor attribute: not trained
                if n.target in self.state_names():  # a persistent buffer: the model's state
                    self.state_buffers.add(name)
            units = tuple(d for d in range(v.dim()) if d not in keep)
        self.made[id(lazy)] = (w, units)
        return w, units

    def filled_like(self, n, a, fill=None) -> Wire:
        """A tensor of x's shape with every element one number (`zeros_like(x)`, `x.zero_()`,
        `x.fill_(v)`): a constant box over x's axes."""
        x, v = self.wire(a), self.values[n]
        fill = {torch.zeros_like: 0, torch.ones_like: 1}.get(n.target, fill)
        fill = fill if fill is not None else self.const(self.arg(n, 1, "fill_value"))
        if tuple(v.shape) != self.shape(a) or isinstance(fill, bool):
            raise _Unmapped
        if not isinstance(fill, (int, float)):
            raise _Unmapped  # (a tensor fill)
        name = self.box_name(n)
        # no weights: the box's fill is its value at any size
        return self.b.box("constant", {}, name, axes=list(x.axes), dtype=_dtype(v),
                          value=_num(fill))  # fmt: skip

    def made_tensor(self, n) -> Wire:
        """A tensor made from sizes alone (`torch.arange(T)`, `torch.ones(T, T)`,
        `x.new_zeros(B, 16, D)`): a constant box holding its values (a buffer), each axis
        the one whose size the code read for it (`x.shape[0]`: B), else named by size after
        the model's axes. `torch.empty`'s values are any: zeros."""
        v = self.values[n]
        if v.dim() == 0:
            raise _Unmapped
        if n.target is torch.arange and (w := self.arange_positions(n)) is not None:
            return w
        if n.target in (torch.empty, "new_empty"):
            v = torch.zeros_like(v)
        read = self.sizes_given(n)
        names: list[str] = []
        for d, size in enumerate(v.shape):
            ax = read[d] if read is not None and len(read) == v.dim() else None
            if ax is None or ax in names or self.sizes.get(ax) != size:
                role = next((r for r in ("seq", "key", "feature") if (r, size) in self.by_role
                             and self.by_role[(r, size)] not in names), "feature")  # fmt: skip
                ax = self.axis(role, size, avoid=names)
            names.append(ax)
        maker = getattr(n.target, "__name__", None) or str(n.target)
        return self.held_constant(self.box_name(n), names, v, maker)

    def sizes_given(self, n) -> list[str | None] | None:
        """Per dim of a tensor a maker (`torch.zeros`, `x.new_ones`) made, the axis whose
        size its size argument is (`x.shape[0]`, a dim of `x.shape` passed whole), else None;
        None where the sizes are not given as such (`torch.eye`, `torch.linspace`)."""
        if n.op == "call_method":
            args = n.args[1:] if str(n.target) != "new_full" else n.args[1:2]
        elif n.target in (torch.zeros, torch.ones, torch.empty):
            args = n.args
        elif n.target is torch.full:
            args = n.args[:1]
        else:
            return None
        args = args or (n.kwargs.get("size"),)
        if len(args) == 1 and isinstance(args[0], (tuple, list)):
            args = args[0]
        if len(args) == 1 and isinstance(args[0], fx.Node):  # `torch.zeros(x.shape)`
            m = args[0]
            if _is_shape(m) and len(m.args) + len(m.kwargs) == (1 if m.op == "call_method" else 2):
                sizes = self.dim_sizes(m.args[0]) or []
                return [s if isinstance(s, str) and not s.isdigit() else None for s in sizes]
        found = []
        for a in args:
            e = self.size_expr(a) if isinstance(a, (int, fx.Node)) else None
            found.append(e[0] if e is not None and e[0] in self.sizes else None)
        return found

    @imports("positions")
    def arange_positions(self, n) -> Wire | None:
        """`torch.arange` of sizes alone as a positions box, where its length is an axis: the
        length the code reads (`arange(x.shape[1])`: T), or a new axis declared as the length's
        expression of named axes (`arange(0, D, 2)`: D/2 positions, scaled by 2). A start
        from sizes or a number is a constant added (its sizes fixed at the example's), a 0-dim
        integer tensor `past` in `arange(past, past + T)` the box's `start`. None where it is
        none of these (a 16-bit arange, its values rounded; a length read from no axis): a
        constant box holds the values."""
        v = self.values[n]
        dtype = _POSITION_DTYPES.get(v.dtype)
        if dtype is None or v.dim() != 1 or len(n.args) > 3:
            return None
        named = {"start": 0, "step": 1}
        named.update(zip(("start", "end", "step"), n.args if len(n.args) > 1 else (0, *n.args)))
        named.update({k: n.kwargs[k] for k in ("start", "end", "step") if k in n.kwargs})
        start, end, step = named["start"], named.get("end"), named["step"]
        if _is_t(self, start):
            return self.arange_from(n, start, end, step, dtype)
        parts = [self.size_expr(a) for a in (start, end, step)]
        nums = [self.values[a] if isinstance(a, fx.Node) else a for a in (start, end, step)]
        if any(p is None for p in parts) or any(type(x) is not int for x in nums):
            return None  # (a float bound, or one not computed from sizes)
        first, last, by = nums
        if parts[2][1] or by <= 0 or last <= first or (last - first) % by:
            return None  # (a step read from sizes, a descending or a ragged range)
        length = parse_size(f"(({parts[1][0]})-({parts[0][0]}))/({parts[2][0]})")
        axis = self.length_axis(length, v.numel())
        if axis is None:
            return None
        w = self.b.positions(axis, dtype=dtype, name=self.box_name(n))
        if by != 1:
            w = self.b.scale(w, _num(by), name=self.box_name(n, "step"))
        if parts[0][1] and isinstance(start, fx.Node):
            self.pin(start)  # a start read from sizes: the example's number
        if first != 0:
            c = self.constant(first, dtype, n)
            w = self.b.binary(w, c, "add", name=self.box_name(n, "start"))
        return w

    def arange_from(self, n, start, end, step, dtype: str) -> Wire | None:
        """`arange(past, past + T)` (past a 0-dim integer tensor, the length of a cache): the
        positions along T from port `start`; else None."""
        p = self.values[start]
        if step != 1 or p.dim() != 0 or p.is_floating_point() or p.dtype == torch.bool:
            return None
        if not isinstance(end, fx.Node) or _op(end) != "add" or end.kwargs:
            return None
        if len(end.args) != 2 or start not in end.args:
            return None
        other = end.args[1] if end.args[0] is start else end.args[0]
        e = self.size_expr(other)
        axis = None if e is None else self.length_axis(parse_size(e[0]), self.values[n].numel())
        if axis is None:
            return None
        return self.b.positions(axis, dtype=dtype, start=self.wire(start), name=self.box_name(n))

    def length_axis(self, length, size: int) -> str | None:
        """The axis of a range's length (a size expression): the axis it names, one declared
        as that expression, or a new axis declared as it where it is an expression of named
        axes; None where it is a number (no axis the code reads)."""
        names = length.names()
        if not names or not names <= set(self.sizes):
            return None
        if str(length) in self.sizes:
            return str(length)
        for ax, expr in self.b._draft.axes.items():
            if ax in self.sizes and parse_size(expr) == length:
                return ax
        new = self.axis("feature", size, avoid=[a for a, s in self.sizes.items() if s == size])
        self.b.axis(new, str(length))
        return new

    def held_constant(
        self, name: str, axes: list[str], v: torch.Tensor, what: str, buffer: bool = True
    ) -> Wire:
        """A constant box holding `v` (a buffer, loaded with the weights). Its `value` is the one
        number every element holds (`torch.ones`: 1; made from sizes, `buffer`, it then has no
        weights and follows its axes' sizes); where the elements differ (`torch.arange`, a
        position table) `value` is only the fill before loading, so the box is labelled with
        what it is (`what`: the maker or the buffer's name), drawn as a named tensor as a
        parameter is, not as that fill."""
        fill = _fill_of(v)
        if fill is not None:
            w = self.b.box("constant", {}, name, axes=axes, dtype=_dtype(v), value=fill)
            if buffer:  # made from sizes: no weights, so that it follows its axes' sizes
                return w
        else:
            zero = _num(0.0 if v.is_floating_point() else 0)
            label = what.rsplit(".", 1)[-1].replace("_", " ")  # a name, not markup: no subscripts
            w = self.b.box("constant", {}, name, axes=axes, dtype=_dtype(v), value=zero,
                           label=label)  # fmt: skip
        self.weights[name] = {"value": v}
        if buffer:
            self.buffers.add(name)
        return w

    def constant(self, value, dtype: str, n) -> Wire:
        """A number as a constant box (a buffer holding it)."""
        if not dtype.startswith(("float", "bfloat")):
            if value != int(value):
                raise _Unmapped
            value = int(value)
        name = self.box_name(n, "const")
        w = self.b.box("constant", {}, name, axes=[], dtype=dtype, value=_num(value))
        self.weights[name] = {"value": torch.tensor(value, dtype=getattr(torch, dtype))}
        self.buffers.add(name)
        return w

    def is_table(self, src: _Lazy, i) -> bool:
        """Whether `src[i]` reads rows of a 2-d float tensor the model holds by an integer
        tensor of indices."""
        v = self.values.get(i) if isinstance(i, fx.Node) else None
        return (
            src.parent is None and src.value.dim() == 2 and src.value.is_floating_point()
            and isinstance(v, torch.Tensor) and v.dtype in (torch.int32, torch.int64)
        )  # fmt: skip

    def lookup(self, n, table: _Lazy, index: fx.Node) -> Wire:
        """`table[index]`, rows of a 2-d float tensor the model holds read by an integer tensor
        (Swin's relative position bias table by its index buffer): an embedding box holding
        the table."""
        t, x = table.value, self.wire(index)
        vocab = self.axis("vocab", t.shape[0], avoid=x.axes)
        out = self.axis("feature", t.shape[1], avoid=[*x.axes, vocab])
        name = self.box_name(n)
        y = self.b.embedding(x, vocab, out, name=name)
        self.weights[name] = {"weight": t}
        if table.node.target not in dict(self.model.named_parameters()):
            self.buffers.add(name)
            if table.node.target in self.state_names():
                self.state_buffers.add(name)
        return y

    def state_names(self) -> set[str]:
        """The names of the model's state_dict (its parameters and persistent buffers)."""
        if not hasattr(self, "_state_names"):
            self._state_names = set(self.model.state_dict(keep_vars=True))
        return self._state_names

    def index_lazy(self, lazy: _Lazy, hints) -> tuple[Wire, tuple[int, ...]]:
        """A getitem of a tensor the model holds: the tensor's param box named after `hints`
        (the dims sliced get a name of the hint's role), then the getitem."""
        parent = lazy.parent
        items = self.const(list(lazy.index) if isinstance(lazy.index, tuple) else [lazy.index])
        pshape = tuple(parent.value.shape)
        used = sum(1 for i in items if i is not None and i is not Ellipsis)
        full = []
        for i in items:
            full += [slice(None)] * (len(pshape) - used) if i is Ellipsis else [i]
        full += [slice(None)] * (len(pshape) - sum(1 for i in full if i is not None))
        phints: list = []
        o = 0
        for i in full:
            if i is None:
                o += 1
                continue
            h = hints[o] if o < len(hints) and not isinstance(i, int) else None
            if (
                isinstance(i, slice)
                and h
                and slice(*self.const([i.start, i.stop, i.step])).indices(pshape[len(phints)])
                != (0, pshape[len(phints)], 1)
            ):
                role = _role_of(h)
                h = self.axis(role, pshape[len(phints)], avoid=hints)
            phints.append(h)
            o += 0 if isinstance(i, int) else 1
        w = self.wire_of_lazy(parent, phints)
        return self.apply_index(lazy.node, w, pshape, lazy.index, names=hints)

    def wire_of_lazy(self, lazy: _Lazy, hints) -> Wire:
        w, units = self.materialize(lazy, hints)
        if units:
            w = self.with_units(w, units, tuple(lazy.value.shape), lazy.node)
        return w
