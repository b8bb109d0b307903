"""Indexing, slicing and joining along an axis: basic indexing, split and chunk, cat and
stack, roll, padding, repeats and tiles."""

from __future__ import annotations

import torch

from ncd.circuits.builder import Wire

from .common import _dtype, _is_t, _Lazy, _num, _role_of, _Unmapped
from .fftconv import _PendingConv
from .tables import imports


class _Slicing:
    """Indexing, slicing and joining along an axis (a mixin of `_Importer`, core.py)."""

    def repeat(self, n, x: Wire, axis: str, r: int) -> Wire:
        """Each position along `axis` repeated `r` times in place (repeat_interleave): a unit
        axis split off, `r` copies concatenated along it, merged back."""
        if r == 1:
            return x
        u = self.unit(x.axes)
        y = self.b.split_axis(x, axis, [axis, u], name=self.box_name(n, "unit"))
        y = self.copies(n, y, u, r)
        into = self.axis(
            _role_of(axis), self.sizes[axis] * r, avoid=[a for a in y.axes if a != axis]
        )
        return self.b.merge_axes(y, [axis, y.axes[y.axes.index(axis) + 1]], into,
                                 name=self.box_name(n, "merge"))  # fmt: skip

    def copies(self, n, y: Wire, u: str, r: int) -> Wire:
        """`r` copies of `y` along its unit axis `u`, which becomes an axis of size r."""
        y = self.b.concat(*[y] * r, axis=u, name=self.box_name(n, "copies"))
        new = self.axis("feature", r, avoid=y.axes)
        return self.b.rename(y, {u: new}, name=self.box_name(n, "sizes"))

    def pad(self, n, a=None, pads=None, value=None) -> Wire:
        """F.pad with zeros (constant mode, value 0, pads no larger than the axis), or a zero
        padding layer (nn.ZeroPad2d, nn.ConstantPad1d with 0): per padded axis, zeros along it
        sliced to each pad's width, concatenated on either side (repeated along the other
        axes by the concat); a negative pad crops (a slice: RWKV's
        token shift `ZeroPad2d((0, 0, 1, -1))`)."""
        a = n.args[0] if a is None else a
        x = self.wire(a)
        if pads is None:
            pads = self.const(self.arg(n, 1, "pad"))
            mode = self.const(self.arg(n, 2, "mode", "constant"))
            value = self.const(self.arg(n, 3, "value", None))
            if mode != "constant":
                raise _Unmapped
        pads = list(pads)
        if value not in (None, 0, 0.0):
            raise _Unmapped
        shape = list(self.shape(a))
        for i in range(len(pads) // 2):  # crops first: slices of the input
            d = len(shape) - 1 - i
            lo, hi = min(pads[2 * i], 0), min(pads[2 * i + 1], 0)
            if lo or hi:
                if shape[d] + lo + hi <= 0:
                    raise _Unmapped
                x = self.b.slice(x, x.axes[d], -lo, shape[d] + hi, name=self.box_name(n, "crop"))
                new = self.axis(_role_of(x.axes[d]), shape[d] + lo + hi, avoid=x.axes)
                x = self.b.rename(x, {x.axes[d]: new}, name=self.box_name(n, "cropped"))
                shape[d] += lo + hi
        pads = [max(p, 0) for p in pads]
        y = x
        for i in range(len(pads) // 2):
            d = len(shape) - 1 - i
            lo, hi = pads[2 * i], pads[2 * i + 1]
            if not lo and not hi:
                continue
            ax = x.axes[d]
            if max(lo, hi) > shape[d]:
                raise _Unmapped
            # zeros along the padded axis alone: the concat repeats them along y's others
            name = self.box_name(n, "zeros")
            z = self.b.box("constant", {}, name, axes=[ax], dtype=x.type.dtype, value=_num(0.0))
            self.weights[name] = {"value": torch.zeros(shape[d], dtype=self.values[n].dtype)}
            self.buffers.add(name)
            parts = []
            if lo:
                parts.append(self.b.slice(z, ax, 0, lo, name=self.box_name(n, "left")))
            parts.append(y)
            if hi:
                parts.append(self.b.slice(z, ax, 0, hi, name=self.box_name(n, "right")))
            y = self.b.concat(*parts, axis=ax, name=self.box_name(n))
            new = self.axis(_role_of(ax), shape[d] + lo + hi, avoid=y.axes)
            y = self.b.rename(y, {ax: new}, name=self.box_name(n, "sizes"))
        return y

    @imports("index", "slice")
    def getitem(self, n, a, idx):
        """Basic indexing (slices, integers, None, ...) as slice and index boxes; None adds a
        size-1 dim the wire carries only where needed."""
        src = self.wires.get(a)
        if isinstance(src, _PendingConv) and src.at is n:
            return src.wire  # an FFT convolution's first T outputs (fftconv.py)
        items = list(idx) if isinstance(idx, tuple) else [idx]
        if isinstance(src, _Lazy) and id(src) not in self.made:
            if len(items) == 1 and self.is_table(src, items[0]):
                return self.lookup(n, src, items[0])
            if not any(_is_t(self, i) for i in items):  # basic indexing: sliced in place
                return _Lazy(n, self.values[n], src, idx)  # named where it is used
        w = self.wire(a)
        w, units = self.apply_index(n, w, self.shape(a), idx)
        self.units[n] = units
        return w

    def full_index(self, idx, ndim: int) -> list:
        """A basic index as one item per dim (None items kept where they stand): `...`
        expanded, the dims it leaves off taken whole."""
        items = self.const(list(idx) if isinstance(idx, tuple) else [idx])
        items = [slice(*self.const([i.start, i.stop, i.step])) if isinstance(i, slice) else i
                 for i in items]  # fmt: skip
        used = sum(1 for i in items if i is not None and i is not Ellipsis)
        if used > ndim or sum(1 for i in items if i is Ellipsis) > 1:
            raise _Unmapped
        full = []
        for i in items:
            full += [slice(None)] * (ndim - used) if i is Ellipsis else [i]
        return full + [slice(None)] * (ndim - sum(1 for i in full if i is not None))

    def assign(self, n, a, idx, value, suffix: str = "") -> Wire:
        """`y[idx] = v` out of place (y's node `a`): y with the positions idx picks along one
        dim (a slice of step 1, or an integer; every other dim whole) replaced by v broadcast
        to them, as torch broadcasts: the slices of y before and after them and v
        concatenated along that axis, which keeps its name and size (v joins along its own
        axis there, of the slice's size). v repeats along the axis where it lacks it (a
        number, a size-1 dim). `value`: a node, a number, or an operand (`operand`). A
        boolean mask of y's shape with a number (`y[y < 0] = 0`): a where box."""
        if _is_t(self, idx) and self.values[idx].dtype == torch.bool:
            if isinstance(value, tuple) or not self.is_number(value):
                raise _Unmapped  # (a tensor of the selected elements' number, in order)
            y = self.values[a]
            return self.select(n, idx, a, value, negate=True, shape=y.shape, dtype=_dtype(y))
        shape = list(self.shape(a))
        full = self.full_index(idx, len(shape))
        if None in full:
            raise _Unmapped
        whole = [isinstance(i, slice) and i.indices(s) == (0, s, 1) for i, s in zip(full, shape)]
        picked = [(d, i) for d, i in enumerate(full) if not whole[d]]
        if len(picked) != 1:
            raise _Unmapped
        (d, i), y = picked[0], self.wire(a)
        ax = y.axes[d]
        if isinstance(i, bool) or not isinstance(i, (int, slice)):
            raise _Unmapped  # a mask or tensor (advanced) index
        if isinstance(i, int):
            start, stop, width = i % shape[d], i % shape[d] + 1, None
        else:
            start, stop, step = i.indices(shape[d])
            width = stop - start
            if step != 1 or width <= 0:
                raise _Unmapped
        region = [s if k != d else width for k, s in enumerate(shape) if k != d or width]
        names = [x if k != d else None for k, x in enumerate(y.axes) if k != d or width]
        op = value if isinstance(value, tuple) else self.operand(value)
        if op[0] == "const":
            v = self.constant(op[1], y.type.dtype, n)
        else:
            v = self.broadcast_to(n, op, names, region)
        if v.type.dtype != y.type.dtype:
            v = self.b.cast(v, y.type.dtype, name=self.box_name(n, "cast"))
        own = names[d] if width and names[d] in v.axes else None
        copies = width if width and own is None else 1
        if copies > 64:
            raise _Unmapped
        parts = [v] * copies  # (each copy without the axis joins as one position)
        if start > 0:
            name = self.box_name(n, f"{suffix}_before".lstrip("_"))
            parts.insert(0, self.b.slice(y, ax, 0, start, name=name))
        if stop < shape[d]:
            name = self.box_name(n, f"{suffix}_after".lstrip("_"))
            parts.append(self.b.slice(y, ax, stop, name=name))
        if len(parts) < 2:
            raise _Unmapped  # (every position replaced by one copy: no concat)
        along = {int(start > 0): own} if own is not None and own != ax else None
        out = self.b.concat(*parts, axis=ax, along=along, name=self.box_name(n, suffix))
        return self.order(out, y.axes, n)

    def apply_index(self, n, w: Wire, shape, idx, names=None) -> tuple[Wire, tuple[int, ...]]:
        full = self.full_index(idx, len(shape))
        units: list[int] = []
        d = o = 0
        axes = list(w.axes)
        for i in full:
            if i is None:
                units.append(o)
                o += 1
                continue
            ax, size = axes[d], shape[d]
            if isinstance(i, bool) or not isinstance(i, (int, slice)):
                raise _Unmapped  # tensor (advanced) indexing
            if isinstance(i, int):
                w = self.b.index(w, ax, i, name=self.box_name(n, "index"))
            else:
                start, stop, step = i.indices(size)
                new = len(range(start, stop, step))
                if new == 0:
                    raise _Unmapped
                if (start, stop, step) != (0, size, 1):
                    w = self.b.slice(w, ax, start, stop, step, name=self.box_name(n, "slice"))
                    want = names[o] if names and names[o] else None
                    if want is None or want in w.axes:
                        want = self.axis(_role_of(ax), new, avoid=w.axes)
                    w = self.b.rename(w, {ax: want}, name=self.box_name(n, "sizes"))
                o += 1
            d += 1
        return w, tuple(units)

    @imports("split")
    def split(self, n, x: Wire, how: str):
        """split / chunk along one axis: a split box, each piece's axis renamed by its size."""
        pieces = self.values[n]
        d = self.const(self.arg(n, 2, "dim", 0)) % len(x.axes)
        axis = x.axes[d]
        sizes = [p.shape[d] for p in pieces]
        # pieces sized by their axis names, so that sizes stay symbols the next boxes can
        # split further (96 = 3 D, then D = H K), rather than numbers they cannot
        names = [self.axis("feature", s, avoid=[a for a in x.axes if a != axis]) for s in sizes]
        r = self.b.split(x, axis, names, name=self.box_name(n))
        r = r if isinstance(r, dict) else {"0": r}
        out = []
        for i, w in enumerate(r.values()):
            new = names[i]
            if new != axis:
                w = self.b.rename(w, {axis: new}, name=self.box_name(n, f"piece{i}"))
            out.append(w)
        return tuple(out)

    @imports("concat")
    def cat(self, n):
        """torch.cat along one axis; an operand of size 1 there (a class token before the
        patches) joins as one position, without that axis, one of another size joins along
        its own axis (`along`), and one expanded from size 1 (`cls.expand(B, -1, -1)`)
        repeats along the axes it was expanded over."""
        args = list(self.arg(n, 0, "tensors"))
        shapes = [self.shape(a) for a in args]
        R = len(shapes[0])
        d = self.const(self.arg(n, 1, "dim", 0)) % R
        ref = next((i for i, sh in enumerate(shapes) if sh[d] != 1 and args[i] not in self.grown),
                   0)  # fmt: skip
        first = self.wire(args[ref])
        axis = first.axes[d]
        xs, along = [], {}
        for i, a in enumerate(args):
            w, units = (first, ()) if i == ref else self.bare(a)
            grown = self.grown.get(a, {})
            if any(u not in grown and u != d for u in units):
                w, units = self.wire(a), ()  # its size-1 dims as axes
            pos = [p for p in range(R) if p not in units]
            if d in pos and w.axes[pos.index(d)] != axis and shapes[i][d] == 1:
                w = self.b.index(w, w.axes[pos.index(d)], 0, name=self.box_name(n, f"one{i}"))
                pos.remove(d)
            # axes meeting at one position take the reference operand's names; a joined
            # axis of another size keeps its own and joins `along` it
            other = shapes[i][d] != shapes[ref][d]
            ren = {ax: first.axes[p] for ax, p in zip(w.axes, pos, strict=True)
                   if ax != first.axes[p] and not (p == d and other)}  # fmt: skip
            if ren:
                w = self.b.rename(w, ren, name=self.box_name(n, f"align{i}"))
            if d in pos and w.axes[pos.index(d)] != axis:
                along[i] = w.axes[pos.index(d)]
            if any(ax not in first.axes for ax in w.axes if ax != along.get(i)):
                raise _Unmapped
            xs.append(w)
        y = self.b.concat(*xs, axis=axis, along=along, name=self.box_name(n))
        new = self.axis("feature", self.shape(n)[d % len(first.axes)], avoid=first.axes)
        return self.b.rename(y, {axis: new}, name=self.box_name(n, "sizes"))

    def tile(self, n, a) -> Wire:
        """`x.repeat(r0, r1, ...)` / `torch.tile`: along each dim repeated r > 1 times, r
        copies of the whole concatenated (no new leading dims)."""
        reps = [self.const(r) for r in n.args[1:]] if len(n.args) > 2 else self.const(n.args[1])
        reps = list(reps) if isinstance(reps, (list, tuple)) else [reps]
        shape = self.shape(a)
        if len(reps) < len(shape):  # tile pads the repeats with ones in front
            reps = [1] * (len(shape) - len(reps)) + reps
        if len(reps) != len(shape):
            raise _Unmapped
        y = self.wire(a)
        for d, r in enumerate(reps):
            if r > 1:
                ax = y.axes[d]
                y = self.b.concat(*[y] * r, axis=ax, name=self.box_name(n, f"tile{d}"))
                new = self.axis(_role_of(ax), shape[d] * r, avoid=y.axes)
                y = self.b.rename(y, {ax: new}, name=self.box_name(n, "sizes"))
        return y

    def stack(self, n) -> Wire:
        """torch.stack: the first operand given a unit axis at `dim` (`with_units`), the others
        joining it there as one position each (a concat box), the new axis named by its
        size."""
        args = list(self.arg(n, 0, "tensors"))
        d = self.const(self.arg(n, 1, "dim", 0)) % (len(self.shape(args[0])) + 1)
        first = self.wire(args[0])
        y = self.with_units(first, (d,), self.shape(n), n)
        u = y.axes[d]
        rest = []
        for i, a in enumerate(args[1:], start=1):
            w = self.wire(a)
            if w.axes != first.axes:
                w = self.b.rename(w, dict(zip(w.axes, first.axes, strict=True)),
                                  name=self.box_name(n, f"align{i}"))  # fmt: skip
            rest.append(w)
        y = self.b.concat(y, *rest, axis=u, name=self.box_name(n))
        new = self.axis("feature", len(args), avoid=y.axes)
        return self.b.rename(y, {u: new}, name=self.box_name(n, "sizes"))

    def roll(self, n) -> Wire:
        """torch.roll(x, shifts, dims): along each dim the last `s` positions moved to the
        front, as two slices and their concat (the axis keeps its name and size)."""
        x = self.wire(n.args[0])
        shifts, dims = self.const(self.arg(n, 1, "shifts")), self.const(self.arg(n, 2, "dims"))
        if dims is None:  # a roll of the flattened tensor
            raise _Unmapped
        shifts = shifts if isinstance(shifts, (tuple, list)) else [shifts]
        dims = dims if isinstance(dims, (tuple, list)) else [dims]
        if len(shifts) != len(dims):
            raise _Unmapped
        for i, (s, d) in enumerate(zip(shifts, dims, strict=True)):
            ax = x.axes[d % len(x.axes)]
            size = self.sizes[ax]
            cut = size - s % size
            if cut == size:
                continue
            tail = self.b.slice(x, ax, cut, name=self.box_name(n, f"tail{i}"))
            head = self.b.slice(x, ax, 0, cut, name=self.box_name(n, f"head{i}"))
            x = self.b.concat(tail, head, axis=ax, name=self.box_name(n, str(i)))
        return x
