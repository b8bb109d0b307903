"""Elementwise ops: binary boxes broadcast as torch broadcasts (size-1 dims, axis names
aligned by position), numbers as scales or constant boxes, comparisons and `torch.where`, and
activations imported as the boxes of their definition."""

from __future__ import annotations

import contextlib
import math

import torch
from torch import fx

from ncd.circuits.builder import Wire

from .common import _dtype, _is_const_tensor, _is_t, _Lazy, _num, _role_of, _Unmapped
from .masks import _VERY_NEGATIVE
from .tables import _COMPARISONS, _NEGATED, _NOTS, imports

_SYMMETRIC = ("add", "mul", "maximum", "minimum", "eq", "ne", "and", "or", "xor")
"""Elementwise ops whose operands may be swapped: the result is the same to the bit."""


def _union(wires) -> list[str]:
    """The axes of a box broadcasting `wires` by name, in its order (first appearance)."""
    return list(dict.fromkeys(a for w in wires for a in w.axes))


class _Elementwise:
    """Elementwise ops (a mixin of `_Importer`, core.py)."""

    def alpha(self, n, fn: str, a, b):
        """`torch.add(a, b, alpha=s)` (and sub): a and s·b (a scale box, or the number
        folded), then the op; without alpha (or 1) the op as it is."""
        s_ = self.const(n.kwargs.get("alpha", 1))
        if fn not in ("add", "sub") or s_ == 1:
            return self.binary(n, fn, a, b)
        if isinstance(s_, bool) or not isinstance(s_, (int, float)):
            raise _Unmapped
        if self.is_number(b):
            ob = ("const", self.number(b) * s_, ())
        else:
            w, units = self.bare(b)
            sb = self.b.scale(w, self.factor(float(s_)), name=self.box_name(n, "alpha"))
            ob = ("wire", (sb, units), self.shape(b))
        return self.elementwise(n, fn, [self.operand(a), ob], self.shape(n))

    @imports("binary", "scale", "constant", "compare")
    def binary(self, n, fn, a, b):
        """An elementwise op of two tensors or a tensor and a number, broadcast as torch does:
        size-1 dims that broadcast leave (an `index` box), axes meeting at one position take
        one name (a `rename` box), a number is a scale or a constant box; a comparison is a
        compare box (boolean, as torch's). An RMS or layer norm written out (`x * rsqrt(mean(
        x^2, -1, keepdim) + eps)`, see `norm_core`) is an rmsnorm or layernorm box (without
        weight)."""
        if fn in ("add", "sub") and (hit := self.rotary_by_value(n, fn, a, b)) is not None:
            return hit
        if (hit := self.unary_by_value(n)) is not None:
            x, units = self.bare(hit[0])
            if not units:
                return self.b.unary(x, hit[1], name=self.box_name(n))
        if fn in ("mul", "div") and (hit := self.norm_core(fn, a, b)) is not None:
            kind, src, eps, dim = hit
            x, units = self.bare(src)
            if not units:  # (a size-1 dim off the wire: the elementwise boxes below)
                return self.b.box(kind, {"x": x}, self.box_name(n), over=[x.axes[dim]],
                                  affine=False, eps=eps)  # fmt: skip
        ta, tb = not self.is_number(a), not self.is_number(b)
        if fn == "add" and ta and tb:  # scores + an additive causal mask (0 and -inf)
            for x, m in ((a, b), (b, a)):
                with contextlib.suppress(_Unmapped):
                    return self.additive_mask(n, x, m)
        if fn in ("mul", "div") and ta and not tb and (f := self.size_factor(b, fn)):
            return self.pointwise(n, a, lambda x: self.b.scale(x, f, name=self.box_name(n)))
        if fn == "mul" and tb and not ta and (f := self.size_factor(a, fn)):
            return self.pointwise(n, b, lambda x: self.b.scale(x, f, name=self.box_name(n)))
        if fn in ("mul", "div") and ta and not tb:
            f = self.number(b)
            f = f if type(f) is int else float(f)  # an integer tensor times an integer stays one
            if fn == "div" and f == 0:
                raise _Unmapped
            f = self.factor(self.mask_factor(n, f if fn == "mul" else 1.0 / f))
            return self.pointwise(n, a, lambda x: self.b.scale(x, f, name=self.box_name(n)))
        if fn == "mul" and tb and not ta:
            f = self.number(a)
            f = self.factor(self.mask_factor(n, f if type(f) is int else float(f)))
            return self.pointwise(n, b, lambda x: self.b.scale(x, f, name=self.box_name(n)))
        if fn == "pow" and ta and not tb and self.number(b) == 2:
            return self.b.unary(self.wire(a), "square", name=self.box_name(n))
        make = None
        if fn in _NEGATED:  # a comparison: a boolean tensor, as torch's

            def make(wires, name):
                return self.b.box("compare", {"a": wires[0], "b": wires[1]}, name, fn=fn)

        return self.elementwise(n, fn, [self.operand(a), self.operand(b)], self.shape(n),
                                make=make)  # fmt: skip

    def size_factor(self, a, fn: str) -> str | None:
        """The factor of a scale by a number the model computes from sizes (`x / x.shape[1]
        ** 0.5`): its size expression (`1/((T)**(0.5))` for a division), so that the scale
        follows the axis; None where a is no such number."""
        if not isinstance(a, fx.Node) or _is_t(self, a):
            return None
        e = self.size_expr(a)
        if e is None or not e[1]:
            return None
        return f"1/({e[0]})" if fn == "div" else e[0]

    def operand(self, a):
        """An operand of an elementwise op: ("const", number, ()), ("lazy", _Lazy, shape) or
        ("wire", (wire, size-1 positions it leaves out), shape)."""
        if self.is_number(a):
            v = self.number(a)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise _Unmapped
            return ("const", v, ())
        w = self.wires.get(a)
        if isinstance(w, _Lazy) and id(w) not in self.made:
            return ("lazy", w, self.shape(a))
        return ("wire", self.bare(a), self.shape(a))

    def factor(self, f: float) -> str:
        """A scale factor as a size expression: `K**-0.5` where f is a square root (or its
        inverse) of an axis size, head features first (an attention's score scale, which
        code computes as a number); else the number."""
        if f <= 0:
            return _num(f)
        heads = [a for a in self.sizes if _role_of(a) in ("head", "value")]
        others = [a for a in self.sizes if a not in heads]
        simple = float(f).is_integer() or float(1 / f).is_integer()  # 0.5, 2: a number reads
        for name in heads if simple else [*heads, *others]:  # best, unless a head's scale
            size = self.sizes[name]
            for e in (-0.5, 0.5):  # to float32's precision (a scale held in a tensor)
                if size > 1 and math.isclose(f, size**e, rel_tol=1e-6):
                    return f"{name}**{e}"
        return _num(f)

    def is_number(self, a) -> bool:
        """A number: a plain value, or a 0-dim tensor the model makes without reading its
        inputs (`torch.full([], v.size(-1) ** 0.5)`, HF's GPT-2 score scale)."""
        if not _is_t(self, a):
            return True
        return _is_const_tensor(self, a) and self.values[a].dim() == 0

    def number(self, a):
        if _is_t(self, a):
            self.pin(a)  # `torch.full([], x.size(-1) ** 0.5)`: a size in a tensor
            return self.values[a].item()
        return self.const(a)

    def elementwise(self, n, fn, ops, out_shape, suffix="", dtype=None, make=None,
                    bare=False):  # fmt: skip
        """A binary box of fn on two operands (see `operand`), its axes in torch's order, or
        the box `make(wires, name)` builds from the operands (a compare or where box).
        `bare`: (wire, the size-1 dims it leaves out), an operand's pair."""
        R = len(out_shape)
        names: list = [None] * R
        ready: list = [None] * len(ops)
        rank = {"wire": 0, "lazy": 1, "const": 2}
        for i in sorted(range(len(ops)), key=lambda i: rank[ops[i][0]]):
            if ops[i][0] != "const":
                ready[i] = self.broadcast_to(n, ops[i], names, out_shape)
        units = tuple(o for o in range(R) if names[o] is None)
        if all(r is None for r in ready) or any(out_shape[o] != 1 for o in units):
            raise _Unmapped
        for i, (kind, v, _) in enumerate(ops):
            if kind == "const":
                other = next(r for r in ready if r is not None)
                compares = fn in _NEGATED
                dt = dtype or (other.type.dtype if compares else _dtype(self.values[n]))
                if not dt.startswith(("float", "bfloat")) and not compares:
                    dt = other.type.dtype
                ready[i] = self.constant(v, dt, n)
        name = self.box_name(n, suffix)
        want = [a for a in names if a is not None]
        if fn in _SYMMETRIC and _union(ready[::-1]) == want != _union(ready):
            ready = ready[::-1]  # (`gamma * x`: x's axes first, in torch's order, no permute)
        y = make(ready, name) if make else self.b.binary(ready[0], ready[1], fn, name=name)
        y = self.order(y, want, n)
        if bare:
            return y, units
        if suffix:  # an intermediate of a longer mapping: its size-1 dims made axes
            return self.with_units(y, units, out_shape, n) if units else y
        self.units[n] = units  # size-1 dims no operand carries stay off the wire
        return y

    def broadcast_to(self, n, op, names: list, out_shape) -> Wire:
        """The wire of operand `op` (a "wire" or "lazy" one, see `operand`) broadcast against
        `out_shape` as torch broadcasts, its dims right-aligned: a size-1 dim that broadcasts
        leaves (an `index` box), every other dim takes the name `names` holds at its place
        (a `rename` box), or where that is None gives it its own (written into `names`)."""
        kind, x, shape = op
        R = len(out_shape)
        off = R - len(shape)
        if off < 0:
            raise _Unmapped
        if kind == "lazy":
            hints = [names[off + d] for d in range(len(shape))]
            drop = [d for d in range(len(shape)) if shape[d] == 1 and out_shape[off + d] != 1]
            w, units = self.materialize(x, hints, drop)
        else:
            w, units = x
        pos = [d for d in range(len(shape)) if d not in units]
        ren, cut = {}, []
        for ax, d in zip(w.axes, pos, strict=True):
            o = off + d
            if shape[d] == 1 and out_shape[o] != 1:
                cut.append(ax)
                continue
            want = names[o]
            if want is None:
                taken = [*names, *w.axes]
                want = ax if ax not in names else self.fresh(ax, shape[d], taken)
                names[o] = want
            if want != ax:
                ren[ax] = want
        for ax in cut:
            w = self.b.index(w, ax, 0, name=self.box_name(n, "squeeze"))
        if ren:
            w = self.b.rename(w, ren, name=self.box_name(n, "align"))
        return w

    @imports("where")
    def where_(self, n):
        """torch.where(c, x, y): a mask box where c is made from sizes alone and y is -inf
        (see `mask_of`), else a where box (`select`)."""
        c, x, y = (self.arg(n, i, k) for i, k in enumerate(("condition", "input", "other")))
        with contextlib.suppress(_Unmapped):  # a causal mask: where(keep, scores, -inf)
            if _is_t(self, x) and (not _is_t(self, y) or _is_const_tensor(self, y)):
                return self.mask_of(n, x, c, y, keep=True)
            if _is_t(self, y) and (not _is_t(self, x) or _is_const_tensor(self, x)):
                return self.mask_of(n, y, c, x, keep=False)
        return self.select(n, c, x, y)

    def select(self, n, c, x, y, negate: bool = False, shape=None, dtype=None) -> Wire:
        """A where box: x where condition c holds (`negate`: where it does not), y elsewhere.
        A number y of -inf, 0 or inf is the box's fill, and so is a very negative one
        (`finfo(dtype).min`, -1e9) where only softmaxes read the result, as -inf; any other
        number is a constant box."""
        if not _is_t(self, x) or self.is_number(x):  # where(c, number, t): c's complement
            x, y, negate = y, x, not negate
        if not _is_t(self, x) or self.is_number(x):
            raise _Unmapped
        ops = [self.condition(n, c, negate), self.operand(x)]
        fill = None
        if self.is_number(y):
            v = self.number(y)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise _Unmapped
            if v == float("-inf") or (v <= _VERY_NEGATIVE and self.feeds_only_softmaxes(n)):
                fill = "-inf"
            elif v in (0, float("inf")):
                fill = "0" if v == 0 else "inf"
        if fill is None:
            ops.append(self.operand(y))

        def make(wires, name):
            return self.b.box("where", dict(zip(("cond", "a", "b"), wires)), name, fill=fill)

        shape = self.shape(n) if shape is None else shape  # (an item assignment's: y's)
        return self.elementwise(n, "where", ops, shape, make=make, dtype=dtype)

    def condition(self, n, c, negate: bool) -> tuple:
        """Condition c of node n's where (`negate`: its complement) as an operand holding a
        boolean wire with all of c's dims: a comparison as a compare box of its two values
        (negated by the opposite comparison), `~` flips, any other tensor compared with 0
        (a boolean one as it is)."""
        while isinstance(c, fx.Node) and (
            c.target in _NOTS or (c.op == "call_method" and c.target in ("logical_not",
                                                                         "bitwise_not"))
        ):  # fmt: skip
            c, negate = c.args[0], not negate
        if not _is_t(self, c):
            raise _Unmapped
        fn = (
            _COMPARISONS.get(c.target) if c.op == "call_function"
            else c.target if c.op == "call_method" and c.target in _NEGATED else None
        )  # fmt: skip
        if fn is not None and len(c.args) == 2 and not c.kwargs:
            ops = [self.operand(a) for a in c.args]
        elif self.values[c].dtype == torch.bool and not negate:
            return self.operand(c)
        else:
            fn, ops = "ne", [self.operand(c), ("const", 0, ())]
        fn = _NEGATED[fn] if negate else fn

        def make(wires, name):
            return self.b.box("compare", {"a": wires[0], "b": wires[1]}, name, fn=fn)

        return ("wire", self.elementwise(n, fn, ops, self.shape(c), "cond", make=make, bare=True),
                self.shape(c))  # fmt: skip

    def logical(self, n, op: str, operands, of_any: bool) -> Wire:
        """A logical op of boolean tensors (`of_any`: of tensors of any type, nonzero
        meaning true, as torch.logical_and takes them): not as the negated condition (a
        comparison as the opposite one, `~(x > 0)`: x <= 0), and and or as a binary minimum
        and maximum (labelled so), xor as a compare box (a != b). A bitwise op of integers
        stays opaque."""
        if not all(_is_t(self, a) for a in operands):
            raise _Unmapped  # (a Python bool)
        if not of_any and any(self.values[a].dtype != torch.bool for a in operands):
            raise _Unmapped
        if op == "not":
            w, units = self.condition(n, operands[0], negate=True)[1]
            self.units[n] = units
            return w
        ops = [self.operand(a) if self.values[a].dtype == torch.bool
               else self.condition(n, a, negate=False) for a in operands]  # fmt: skip

        def make(wires, name):
            a, b = wires
            if op == "xor":
                return self.b.box("compare", {"a": a, "b": b}, name, fn="ne")
            fn = "minimum" if op == "and" else "maximum"
            return self.b.box("binary", {"a": a, "b": b}, name, fn=fn, label=op)

        return self.elementwise(n, op, ops, self.shape(n), make=make)

    def composed(self, n, x: Wire, kind: str, *opts) -> Wire:
        """An activation as the boxes of its definition: leaky ReLU with slope a as max(x, a x)
        (min for a > 1), hardtanh as a clamp, hardsigmoid as clamp(x / 6 + 1/2, 0, 1), mish as
        x tanh(softplus(x)), softsign as x / (1 + |x|)."""

        def box(suffix):
            return self.box_name(n, suffix)

        dt = x.type.dtype
        if kind == "leaky_relu":
            (a,) = opts
            if a < 0:  # (a negative slope: no max or min of the two)
                raise _Unmapped
            ax = self.b.scale(x, self.factor(float(a)), name=box("slope"))
            return self.b.binary(x, ax, "maximum" if a <= 1 else "minimum", name=box(""))
        if kind == "hardtanh":
            lo, hi = opts
            return self.b.box("clamp", {"x": x}, box(""), low=_num(float(lo)),
                              high=_num(float(hi)))  # fmt: skip
        if kind == "hardsigmoid":
            y = self.b.binary(self.b.scale(x, "1/6", name=box("sixth")),
                              self.constant(0.5, dt, n), "add", name=box("shift"))  # fmt: skip
            return self.b.box("clamp", {"x": y}, box(""), low="0", high="1")
        if kind == "mish":
            t = self.b.unary(self.b.unary(x, "softplus", name=box("softplus")), "tanh",
                             name=box("tanh"))  # fmt: skip
            return self.b.binary(x, t, "mul", name=box(""))
        if kind == "softsign":
            d = self.b.binary(self.b.unary(x, "abs", name=box("abs")), self.constant(1, dt, n),
                              "add", name=box("plus_one"))  # fmt: skip
            return self.b.binary(x, d, "div", name=box(""))
        raise _Unmapped
