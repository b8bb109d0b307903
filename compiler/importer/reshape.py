"""Reshapes as splits and merges of named axes (`view`, pixel shuffles, einops'
`rearrange` and `reduce`, whose functions and layers are found here), and permutes, transposes
and broadcasts (`expand`)."""

from __future__ import annotations

import math

import torch
from torch import fx

from ncd.circuits.builder import Wire
from ncd.circuits.errors import BuildError
from ncd.circuits.sizes import show

from .common import _Lazy, _Rename, _role_of, _Unmapped
from .tables import imports

try:  # einops, as research code calls it: its functions and layers are nodes of the trace
    import einops
    from einops.layers.torch import Rearrange as _Rearrange
    from einops.layers.torch import Reduce as _Reduce
    from einops.parsing import ParsedExpression

    EINOPS_FNS = {einops.rearrange: "rearrange", einops.reduce: "reduce", einops.repeat: "repeat"}
    _EINOPS_LAYERS: tuple[type, ...] = (_Rearrange, _Reduce)
except ImportError:  # pragma: no cover - einops is a dependency
    EINOPS_FNS, _EINOPS_LAYERS = {}, ()


def _runs(sizes: list[int], want: list[int]) -> list[list[int]] | None:
    """The positions of `sizes`, cut into consecutive runs whose products are `want` in
    order (each run at least one position), else None."""
    runs, i = [], 0
    for w in want:
        run, p = [], 1
        while i < len(sizes) and (not run or p < w):
            run.append(i)
            p *= sizes[i]
            i += 1
        if p != w:
            return None
        runs.append(run)
    return runs if i == len(sizes) and sizes else None


def _merged_role(parts, sizes=()) -> str:
    """The role of an axis merged from `parts`: the outer parts of a grid's splits (Swin's
    windows along Y and X, Y_1 X_1: each has a later part Y_2) index windows, which the
    attention runs over as a batch; positions of a grid read in order are a sequence (Swin's
    positions within a window, Y_2 X_2; a feature map's Y X flattened), heads with their
    features are features, else the first part's role."""
    roles = [_role_of(a) for a in parts]
    if len(roles) > 1 and all(r == "spatial" for r in roles):
        if all(_outer_part(a, sizes) for a in parts):
            return "batch"
        return "seq"
    if roles[0] == "heads" and {"head", "value"} & set(roles[1:]):
        return "feature"
    return roles[0]


def _outer_part(name: str, sizes) -> bool:
    """Whether `name` is a part of a split grid axis with a part after it (Y_1 of Y_1 Y_2)."""
    base, _, k = name.partition("_")
    return k.isdigit() and f"{base}_{int(k) + 1}" in sizes


class _Reshape:
    """Reshapes, permutes and broadcasts (a mixin of `_Importer`, core.py)."""

    def expand(self, n, a) -> Wire:
        """x.expand(...): x's wire with the size-1 dims broadcast left off it (their sizes in
        `grown`), so that a binary op or a concat repeats it by name; where a box needs them
        on the wire (`wire`), each is that many copies along it."""
        shape, out = self.shape(a), self.shape(n)
        if len(out) != len(shape):
            raise _Unmapped  # new leading dims
        ones = [d for d in range(len(shape)) if shape[d] == 1]
        src = self.wires.get(a)
        if isinstance(src, _Lazy) and id(src) not in self.made and src.parent is None:
            w, units = self.materialize(src, drop=ones)  # a held class token: [D], not [1, 1, D]
        else:
            w, units = self.bare(a)
        grown = {d: t for d, (s_, t) in enumerate(zip(shape, out, strict=True)) if s_ != t}
        for d in sorted(grown, reverse=True):
            if d not in units:  # a size-1 axis on the wire: taken off
                pos = [p for p in range(len(shape)) if p not in units]
                w = self.b.index(w, w.axes[pos.index(d)], 0, name=self.box_name(n, "one"))
                units = (*units, d)
        self.units[n] = tuple(sorted(units))
        self.grown[n] = grown
        return w

    def transpose(self, n, x, a, b):
        a, b = self.const(a) % len(x.axes), self.const(b) % len(x.axes)
        names = list(x.axes)
        names[a], names[b] = names[b], names[a]
        return self.order(x, names, n, "transpose")

    def einops(self, n, a, pattern: str, lengths: dict, reduction) -> Wire:
        """einops' `rearrange(x, "b n (h d) -> b h n d", h=4)` and `reduce(x, pattern, op)`:
        the reshape splitting the left side's groups, a permute (and a reduce box over the
        letters the right side leaves out), the reshape merging the right side's groups.
        Ellipses and unit groups stay opaque; new letters are `repeat`'s."""
        left, arrow, right = str(pattern).partition("->")
        L, R = ParsedExpression(left.strip()), ParsedExpression(right.strip())
        if not arrow or R.has_ellipsis or any(not g for g in R.composition):
            raise _Unmapped
        size = self.letter_sizes(a, L, lengths)
        lefts = [c for g in L.composition for c in g]
        rights = [c for g in R.composition for c in g]
        gone = [c for c in lefts if c not in rights]
        if set(rights) - set(lefts) or (gone and reduction is None):
            raise _Unmapped
        x = self.wire(a)
        y = self.view(n, x, [size[c] for c in lefts])  # one axis per letter
        named = dict(zip(lefts, y.axes, strict=True))
        for c in lefts:  # (a letter `repeat` adds later takes the axis this one named)
            self.letters.setdefault((c, size[c]), named[c])
        if gone:
            op = self.const(reduction)
            if op not in ("sum", "mean", "max", "min", "prod"):
                raise _Unmapped
            y = self.b.reduce(y, [named[c] for c in gone], op, name=self.box_name(n, "reduce"))
        y = self.order(y, [named[c] for c in rights], n)
        return self.view(n, y, [math.prod(size[c] for c in g) for g in R.composition])

    def letter_sizes(self, a, L, lengths: dict) -> dict[str, int]:
        """The size of each letter of an einops pattern's left side `L` on node a's tensor,
        from its shape and the lengths given (each group one dim, one letter in it unknown)."""
        shape = self.shape(a)
        if L.has_ellipsis or len(L.composition) != len(shape) or not all(L.composition):
            raise _Unmapped
        size: dict[str, int] = {}
        for group, s in zip(L.composition, shape, strict=True):
            size.update({c: int(self.const(lengths[c])) for c in group if c in lengths})
            known = math.prod(size[c] for c in group if c in lengths)
            unknown = [c for c in group if c not in lengths]
            if len(unknown) > 1 or known == 0 or s % known:
                raise _Unmapped
            if unknown:
                size[unknown[0]] = s // known
        return size

    def einops_repeat(self, n, a, pattern: str, lengths: dict) -> Wire:
        """einops' `repeat`: size-1 positions given a new letter (`"1 1 d -> b 1 d"`) are
        copies as `expand` makes them (none on the wire until a box needs them); other new
        letters (`"n d -> b n d"`, `"b j -> (b h) () j"`) are axes a constant of ones over
        them brings in (x times 1: x exactly, repeated by name), each the axis whose size
        the code passed (`b=x.shape[0]`: B, which stays free) or the one an earlier einops
        call named that letter by; then the right side's order and merges, its unit groups
        size-1 dims."""
        left, _, right = str(pattern).partition("->")
        L, R = ParsedExpression(left.strip()), ParsedExpression(right.strip())
        if L.has_ellipsis or R.has_ellipsis:
            raise _Unmapped
        lefts = [c for g in L.composition for c in g]
        rights = [c for g in R.composition for c in g]
        if len(L.composition) == len(R.composition) and all(
            lg == rg or (not lg and len(rg) == 1 and rg[0] not in lefts)
            for lg, rg in zip(L.composition, R.composition, strict=True)
        ):
            return self.expand(n, a)
        if set(lefts) - set(rights) or len(set(rights)) != len(rights):
            raise _Unmapped
        size = self.letter_sizes(a, L, {k: v for k, v in lengths.items() if k in lefts})
        y = self.view(n, self.wire(a), [size[c] for c in lefts])
        named = dict(zip(lefts, y.axes, strict=True))
        for c in rights:
            if c not in named:
                named[c] = self.letter_axis(c, lengths.get(c), avoid=[*named.values()])
        new = [named[c] for c in rights if c not in lefts]
        ones = self.b.box("constant", {}, self.box_name(n, "ones"), axes=new,
                          dtype=y.type.dtype, value="1")  # fmt: skip
        y = self.b.binary(y, ones, "mul", name=self.box_name(n, "copies"))
        y = self.order(y, [named[c] for c in rights], n)
        out = self.shape(n)
        y = self.view(n, y, [s for s, g in zip(out, R.composition, strict=True) if g])
        self.units[n] = tuple(d for d, g in enumerate(R.composition) if not g)
        return y

    def letter_axis(self, c: str, length, avoid) -> str:
        """The axis of a letter `repeat` adds, of the length given for it: the axis whose
        size the code read (`b=x.shape[0]`: B), else the axis an einops call named that
        letter by at that size, else a new one."""
        if length is None:
            raise _Unmapped
        e = self.size_expr(length) if isinstance(length, fx.Node) else None
        if e is not None and e[1] == {e[0]} and e[0] not in avoid:
            return e[0]
        r = self.const(length)
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise _Unmapped
        known = self.letters.get((c, r))
        return (
            known
            if known is not None and known not in avoid
            else self.axis("feature", r, avoid=avoid)
        )

    def parts(self, w: Wire, a: str) -> tuple[str, ...]:
        """The axes a merge made axis `a` of wire w from, in the merge's order: its record,
        where a rename since has not changed the names in `a`'s size; else the factors of
        that size put in the record's order by their sizes, where those are distinct."""
        record = self.merged.get(a, ())
        factors = show(w.type.axis(a).size).split("*")
        if not record or sorted(factors) == sorted(record):
            return record
        if len(factors) != len(record) or not all(f in self.sizes for f in factors):
            return record
        by_size = {self.sizes[f]: f for f in factors}
        if len(by_size) < len(factors) or any(self.sizes[r] not in by_size for r in record):
            return record
        return tuple(by_size[self.sizes[r]] for r in record)

    def move(self, n, op: str, a) -> Wire:
        """Axes swapped or moved (`swapaxes`, `movedim`, `t`), positions picked (`select`,
        `narrow`, `squeeze`: index and slice boxes as indexing makes them) or the tensor
        reshaped as another (`view_as`)."""
        shape = self.shape(a)
        nd = len(shape)
        if op in ("view_as", "reshape_as"):
            return self.view(n, self.wire(a), self.shape(n))
        if op in ("select", "narrow"):
            d = self.const(self.arg(n, 1, "dim")) % nd
            start = self.const(self.arg(n, 2, "index" if op == "select" else "start"))
            if op == "select":
                item = start
            else:
                start %= shape[d]
                item = slice(start, start + self.const(self.arg(n, 3, "length")))
            return self.getitem(n, a, (*[slice(None)] * d, item))
        if op == "squeeze":
            dims = self.const(self.arg(n, 1, "dim"))
            dims = range(nd) if dims is None else [dims] if isinstance(dims, int) else dims
            drop = {d % nd for d in dims if shape[d % nd] == 1}
            return self.getitem(n, a, tuple(0 if d in drop else slice(None) for d in range(nd)))
        x = self.wire(a)
        if op == "t":
            return x if nd < 2 else self.transpose(n, x, 0, 1)
        if op in ("swapaxes", "swapdims"):
            return self.transpose(n, x, self.arg(n, 1, "axis0"), self.arg(n, 2, "axis1"))
        src, dst = self.const(self.arg(n, 1, "source")), self.const(self.arg(n, 2, "destination"))
        src = [src] if isinstance(src, int) else list(src)
        dst = [dst] if isinstance(dst, int) else list(dst)
        order: list = [None] * nd
        for s_, d_ in zip(src, dst, strict=True):
            order[d_ % nd] = s_ % nd
        rest = iter(d for d in range(nd) if d not in {s_ % nd for s_ in src})
        order = [next(rest) if o is None else o for o in order]
        return self.order(x, [x.axes[d] for d in order], n, "permute")

    def pixel_shuffle(self, n, x: Wire, r: int, up: bool) -> Wire:
        """PixelShuffle (`up`: [.., C r r, H, W] -> [.., C, H r, W r]) or PixelUnshuffle (the
        reverse): a split, a permute and a merge, as the reshapes that define it."""
        *lead, c, h, w = self.shape(n.args[0])
        k = len(lead)
        if up:  # (c r r) h w -> c h r w r -> c (h r) (w r)
            split, perm = [c // (r * r), r, r, h, w], [k, k + 3, k + 1, k + 4, k + 2]
        else:  # c (h r) (w r) -> c h r w r -> (c r r) h w
            split, perm = [c, h // r, r, w // r, r], [k, k + 2, k + 4, k + 1, k + 3]
        y = self.view(n, x, [*lead, *split])
        y = self.order(y, [y.axes[d] for d in [*range(k), *perm]], n, "permute")
        return self.view(n, y, self.shape(n))

    def split_names(self, a: str, sizes: list[int], avoid, chunks: bool = False) -> list[str]:
        """Names of the parts of axis `a` that a reshape splits it into, from what it splits:
        a sequence of positions into a grid (Y X: `x.view(B, H, W, C)` of a vision
        transformer's tokens), an axis of a grid into its parts (Y into Y_1 Y_2: Swin's
        windows and the positions within a window, `x.view(B, H // w, w, W // w, w, C)`),
        features into heads and their features, the last two parts (`view(B, T, H, K)`,
        timm's `reshape(B, N, 3, H, K)`). Parts were once all named as heads, so that Swin's
        grid read as heads H and head features K, and its windows as H2 K2, H3 K3. `chunks`:
        a sequence cut into chunks of a length the code writes as a number (`view(B, T // 64,
        64, D)`) is T_1 T_2 (the chunks, the positions in each), not a grid."""
        role = _role_of(a)
        if role == "seq" and not chunks:
            roles = ["spatial"] * len(sizes)
        elif role in ("spatial", "seq"):
            names = [f"{a}_{k}" for k in range(1, len(sizes) + 1)]
            if not any(m in self.sizes or m in avoid for m in names):
                self.sizes.update(zip(names, sizes, strict=True))
                return names
            roles = ["spatial"] * len(sizes)
        else:
            roles = ["feature"] * (len(sizes) - 2) + ["heads", "head"]
        names = []
        for r, size in zip(roles, sizes, strict=True):
            names.append(self.axis(r, size, avoid=[*avoid, *names]))
        return names

    @imports("split_axis", "merge_axes")
    def view(self, n, x: Wire, out_shape):
        """A reshape as splits and merges of axes, when it is one (else opaque)."""
        in_shape = [self.sizes[a] for a in x.axes]
        out_shape = list(out_shape)
        literal = _literal_sizes(n, out_shape) if out_shape == list(self.shape(n)) else None
        groups, i, j = [], 0, 0
        while i < len(in_shape) or j < len(out_shape):
            gi, gj = [i], [j]
            if i >= len(in_shape) or j >= len(out_shape):
                raise _Unmapped
            pi, pj = in_shape[i], out_shape[j]
            i, j = i + 1, j + 1
            while pi != pj:
                if pi < pj and i < len(in_shape):
                    pi *= in_shape[i]
                    gi.append(i)
                    i += 1
                elif pj < pi and j < len(out_shape):
                    pj *= out_shape[j]
                    gj.append(j)
                    j += 1
                else:
                    raise _Unmapped
            while (
                i < len(in_shape)
                and in_shape[i] == 1
                and (j >= len(out_shape) or out_shape[j] != 1)
            ):
                gi.append(i)  # unit axes folded into the group before them
                i += 1
            while (
                j < len(out_shape)
                and out_shape[j] == 1
                and (i >= len(in_shape) or in_shape[i] != 1)
            ):
                gj.append(j)
                j += 1
            groups.append((gi, gj))
        y = x
        for gi, gj in groups:
            if len(gi) == 1 and len(gj) == 1:
                continue
            if len(gi) > 1 and len(gj) > 1:
                raise _Unmapped
            if len(gi) == 1:  # split
                a = x.axes[gi[0]]
                parts = self.parts(y, a)
                want = [out_shape[j_] for j_ in gj]
                runs = _runs([self.sizes[p] for p in parts], want)
                if runs is not None:
                    # the axes a merge made `a` of, back again; where a size is the product of
                    # neighbouring parts (Swin's windows of a batch, `view(B, nW, ...)`), or a
                    # part's name is taken on the wire, a new axis declared as that product
                    names = []
                    for k, run in enumerate(runs):
                        group = [parts[r] for r in run]
                        if len(group) == 1 and group[0] not in (*y.axes, *names):
                            names.append(group[0])
                            continue
                        taken = [m for m, size in self.sizes.items() if size == want[k]]
                        new = self.axis(_merged_role(group, self.sizes), want[k],
                                        avoid=[*y.axes, *names, *parts, *taken])  # fmt: skip
                        self.b.axis(new, "*".join(group))
                        names.append(new)
                    y = self.b.split_axis(y, a, names, name=self.box_name(n, "split"))
                    self.split_from[tuple(names)] = a
                    continue
                else:
                    given = [literal[j_] for j_ in gj] if literal else []
                    chunks = len(gj) == 2 and sorted(given) == [False, True]
                    names = self.split_names(a, [out_shape[j_] for j_ in gj], y.axes, chunks)
                try:
                    y = self.b.split_axis(y, a, names, name=self.box_name(n, "split"))
                    self.split_from[tuple(names)] = a
                except BuildError:  # `a` names a product of other sizes (D = H K) that a
                    # linear map's output of the same width took by its size: again, with
                    # a name of its own for that output (a kv map of width 2 G K = D)
                    maker = self.renamed_maker(n.args[0], a)
                    if maker is None:
                        raise
                    raise _Rename(maker) from None
            else:  # merge
                parts = [x.axes[k] for k in gi]
                role, size = _merged_role(parts, self.sizes), out_shape[gj[0]]
                # heads merged back to a channels-last image's width are its C, as a linear
                # map's output is (out_axis), not a new feature axis (window attention's Q)
                channels = self.by_role.get(("channel", size))
                fresh = role == "feature" and ("feature", size) not in self.by_role
                if fresh and channels is not None and channels not in y.axes:
                    into = channels
                else:
                    into = self.axis(role, size, avoid=y.axes)
                back = self.split_from.get(tuple(parts))  # the axis a split made them of
                into = back if back is not None and back not in y.axes else into
                name = self.box_name(n, "merge")
                try:
                    y2 = self.b.merge_axes(y, parts, into, name=name)
                except BuildError:  # the name of that size stands for another product (the
                    # input's Y for the conv's output Y' X'): a name of its own
                    into = self.axis(role, out_shape[gj[0]], avoid=[*y.axes, into])
                    y2 = self.b.merge_axes(y, parts, into, name=name)
                y = y2
                self.merged.setdefault(into, tuple(parts))
        if y is x:
            return x
        return y


def _literal_sizes(n, out_shape) -> list[bool] | None:
    """For a reshape written with its sizes (`x.view(B, T // 64, 64, D)`, `torch.reshape(x,
    (...))`), which of them the code writes as a positive number (64), not computed from the
    input's sizes (`T // 64`) or left to torch (-1); None where the call gives no such list."""
    if n.op == "call_method" and n.target in ("view", "reshape"):
        given = list(n.args[1:])
    elif n.op == "call_function" and n.target is torch.reshape and len(n.args) > 1:
        given = [n.args[1]]
    else:
        return None
    if len(given) == 1 and isinstance(given[0], (tuple, list)):
        given = list(given[0])
    if len(given) != len(out_shape):
        return None
    return [isinstance(g, int) and not isinstance(g, bool) and g > 0 for g in given]
