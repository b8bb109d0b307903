"""A Python builder that reads like the diagram: axes by name (`"B T D"`), one call per box.

Each call checks its box at once and raises BuildError at the line that is wrong, so a
mistake is found where it is written rather than at the end.

>>> b = Builder("attention")
>>> q, k, v = b.input("q", "B H T K"), b.input("k", "B H S K"), b.input("v", "B H S V")
>>> p = b.softmax(b.scale(b.contract(q, k, over="K"), "K**-0.5"), over="S")
>>> b.output("y", b.contract(p, v, over="S")).axes
('B', 'H', 'T', 'V')
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any

import pydantic

from .circuit import Circuit, Input, Output
from .errors import BuildError, ShapeProblem, SizeError, schema_problems
from .kinds import KINDS
from .sizes import Unifier
from .types import TensorType, Value
from .validate import _Checker


@dataclass(frozen=True)
class Wire:
    """A value in the circuit being built: a reference (`box.port`) and its type."""

    ref: str
    type: Value

    @property
    def axes(self) -> tuple[str, ...]:
        return self.type.names if isinstance(self.type, TensorType) else ()

    def __repr__(self) -> str:
        return f"Wire({self.ref} {self.type})"


def _need_wire(w, where: str) -> None:
    """A BuildError unless `w` is a Wire: a box of several outputs returns a dict of wires by
    port, so unpacking one (`num, den = b.split(...)`) gives its port names."""
    if isinstance(w, Wire):
        return
    found = f"{type(w).__name__} {w!r}" if isinstance(w, str) else type(w).__name__
    hint = ""
    if isinstance(w, str):
        hint = (
            f"; a box of several outputs returns a dict of wires by port: take one as "
            f'out["{w}"] (unpacking the dict gives its port names)'
        )
    raise BuildError(f"{where}: expected a wire (what a Builder call returns), found {found}{hint}")


class _Draft:
    """What the shape rules' context reads while the circuit is still being written."""

    def __init__(self, name):
        self.name = name
        self.axes: dict[str, str] = {}
        self.subcircuits: dict[str, Circuit] = {}


class Builder:
    """Builds a `Circuit` box by box. Axis sizes: `Builder(..., axes={"D": "H*K"})`."""

    def __init__(
        self,
        name: str,
        *,
        title: str = "",
        paper: str = "",
        doc: str = "",
        axes: dict[str, Any] | None = None,
        sizes: dict[str, int] | None = None,
    ):
        self.name, self.title, self.paper, self.doc = name, title, paper, doc
        self.sizes = dict(sizes or {})
        self._draft = _Draft(name)
        self._draft.axes = {k: str(v) for k, v in (axes or {}).items()}
        self._inputs: list[Input] = []
        self._boxes: list = []
        self._outputs: list[Output] = []
        self._names: set[str] = set()
        self._group = ""
        self._placed: dict[str, str] = {}  # block title -> the block it was opened in ('' top)
        self.tied: dict[str, str] = {}
        self._unifier = Unifier(self.sizes)
        self._ctx = _Checker(self._draft, self._unifier, self.sizes, [], depth=0)

    # -- structure
    def axis(self, name: str, size) -> None:
        """Declare the size of an axis (`b.axis("D", "H*K")`)."""
        self._draft.axes[name] = str(size)

    @contextlib.contextmanager
    def group(self, title: str):
        """Boxes made inside belong to the block `title` (a shaded region in the drawing). A
        group opened inside another is drawn inside it; a title names one block, so opened
        again it must be inside the same block (opening the current one again changes
        nothing)."""
        outer = self._group
        if title and title != outer:
            placed = self._placed.setdefault(title, outer)
            if placed != outer:
                where = f"inside {placed!r}" if placed else "at the top level"
                here = f"inside {outer!r}" if outer else "at the top level"
                raise BuildError(
                    f"group {title!r}: opened {here}, but it was opened {where} before; a "
                    "block has one place (give this one another title)"
                )
        self._group = title
        try:
            yield
        finally:
            self._group = outer

    def subcircuit(self, circuit: Circuit) -> str:
        """Make `circuit` callable from this one; returns its name."""
        self._draft.subcircuits[circuit.name] = circuit
        return circuit.name

    def input(self, name: str, axes: str, dtype: str = "float32") -> Wire:
        try:
            inp = Input(name=name, axes=axes, dtype=dtype)
        except pydantic.ValidationError as e:
            raise BuildError(_first(e, f"input '{name}'")) from None
        self._claim(name)
        self._inputs.append(inp)
        t = TensorType(tuple(_axis(self._ctx, a) for a in inp.axes), inp.dtype)
        self._ctx.saw(t)
        return Wire(name, t)

    def output(self, name: str, wire: Wire) -> Wire:
        if any(o.name == name for o in self._outputs):
            raise BuildError(f"output '{name}' is defined twice")
        _need_wire(wire, f"output '{name}'")
        self._outputs.append(Output(name=name, source=wire.ref))
        return wire

    def build(self) -> Circuit:
        """The finished circuit, validated as a whole."""
        c = Circuit(
            name=self.name,
            title=self.title,
            paper=self.paper,
            doc=self.doc,
            axes=self._draft.axes,
            sizes=self.sizes,
            inputs=self._inputs,
            boxes=self._boxes,
            outputs=self._outputs,
            subcircuits=self._draft.subcircuits,
            tied=self.tied,
            groups=self._nesting(),
        )
        c.check()
        return c

    def tie(self, param: str, to: str) -> None:
        """Makes `param` (`box.param`) the tensor `to` is: one parameter, trained and counted
        once (`b.tie("lm_head.weight", "wte.weight")`). Checked when the circuit is built."""
        self.tied[param] = to

    def _nesting(self) -> dict[str, str]:
        """Block -> the block around it, for the blocks that hold a box (or such a block)."""
        used: set[str] = set()
        for b in self._boxes:
            g = b.group
            while g and g not in used:
                used.add(g)
                g = self._placed.get(g, "")
        return {t: p for t, p in self._placed.items() if p and t in used}

    # -- the generic box
    def box(self, kind: str, inputs: dict[str, Wire], name: str | None = None, **params) -> Any:
        """Add a box of any kind; returns its output wire, or a dict of wires by port.

        Makes the kinds that have no method of their own (`constant`, `short_conv`,
        `gather`, `where`, ...): `b.box("constant", {}, axes="H", value="1",
        dtype="float32")`, `b.box("where", {"cond": c, "a": a, "b": b})`. A kind's ports and
        fields: `ncd schema KIND`."""
        if kind not in KINDS:
            raise BuildError(f"unknown kind {kind!r}; known: {', '.join(sorted(KINDS))}")
        name = name or self._fresh(kind)
        for p, w in inputs.items():
            _need_wire(w, f"box '{name}' ({kind}) port '{p}'")
        self._claim(name)
        params.setdefault("group", self._group)
        try:
            box = KINDS[kind](name=name, inputs={p: w.ref for p, w in inputs.items()}, **params)
        except pydantic.ValidationError as e:
            self._names.discard(name)
            raise BuildError(_first(e, f"box '{name}' ({kind})")) from None
        ports = list(inputs) if kind == "call" else box.ports()
        if sorted(ports) != sorted(inputs):
            self._names.discard(name)
            raise BuildError(
                f"box '{name}' ({kind}): ports {' '.join(ports)} expected, "
                f"found {' '.join(inputs) or 'none'}"
            )
        try:
            outs = box.infer({p: w.type for p, w in inputs.items()}, self._ctx)
            box.params({p: w.type for p, w in inputs.items()}, self._ctx)
        except (ShapeProblem, SizeError) as e:
            self._names.discard(name)
            detail = ""
            if isinstance(e, ShapeProblem):
                port = f" port '{e.port}'" if e.port else ""
                detail = f"{port}: {e.message}"
                if e.expected or e.found:
                    detail += f" (expected {e.expected}, found {e.found})"
                if e.hint:
                    detail += f"; {e.hint}"
            else:
                detail = f": {e}"
            raise BuildError(f"box '{name}' ({kind}){detail}") from None
        self._boxes.append(box)
        for t in outs.values():
            self._ctx.saw(t)
        wires = {p: Wire(f"{name}.{p}" if len(outs) > 1 else name, t) for p, t in outs.items()}
        return next(iter(wires.values())) if len(wires) == 1 else wires

    # -- the vocabulary, one method per kind (sugar over `box`)
    def linear(self, x, over, out, *, bias=True, name=None, label="", **kw):
        """The `linear` box; `kw` its other fields (`backward`, `budget`, `product`)."""
        return self.box("linear", {"x": x}, name, over=over, out=out, bias=bias, label=label,
                        **kw)  # fmt: skip

    def param(self, axes, *, name=None, label="", **kw):
        return self.box("param", {}, name, axes=axes, label=label, **kw)

    def embedding(self, x, vocab, out, *, name=None, label=""):
        return self.box("embedding", {"x": x}, name, vocab=vocab, out=out, label=label)

    def contract(self, *xs, over, out="", name=None, label=""):
        ports = tuple("abcdefgh"[: len(xs)])
        return self.box(
            "contract", dict(zip(ports, xs)), name, over=over, out=out, operands=ports, label=label
        )

    def diagonal(self, x, axes, into, *, name=None):
        return self.box("diagonal", {"x": x}, name, axes=axes, into=into)

    def unary(self, x, fn, *, name=None, label=""):
        return self.box("unary", {"x": x}, name or self._fresh(fn), fn=fn, label=label)

    def relu(self, x, **kw):
        return self.unary(x, "relu", **kw)

    def gelu(self, x, **kw):
        return self.unary(x, "gelu", **kw)

    def silu(self, x, **kw):
        return self.unary(x, "silu", **kw)

    def binary(self, a, b, fn, *, name=None, label=""):
        return self.box("binary", {"a": a, "b": b}, name or self._fresh(fn), fn=fn, label=label)

    def add(self, a, b, **kw):
        return self.binary(a, b, "add", **kw)

    def mul(self, a, b, **kw):
        return self.binary(a, b, "mul", **kw)

    def sub(self, a, b, **kw):
        return self.binary(a, b, "sub", **kw)

    def div(self, a, b, **kw):
        return self.binary(a, b, "div", **kw)

    def scale(self, x, factor, *, name=None, label=""):
        return self.box("scale", {"x": x}, name, factor=str(factor), label=label)

    def cast(self, x, dtype, *, name=None):
        return self.box("cast", {"x": x}, name, dtype=dtype)

    def dropout(self, x, p=0.1, *, name=None):
        return self.box("dropout", {"x": x}, name, p=p)

    def mask(self, x, query, key, *, pattern="causal", window=0, fill="-inf", name=None):
        return self.box(
            "mask", {"x": x}, name, query=query, key=key, pattern=pattern, window=window, fill=fill
        )

    def rotary(self, x, seq, feature, *, base=10000.0, rotated=None, pairs="half", start=None,
               offsets=None, name=None, label=""):  # fmt: skip
        """`b.rotary(q, "T", "K")` turns the pairs of q's features K by angles of its
        positions along T (LLaMA's queries and keys); `rotated="K/2"` turns only the first
        half of them, `pairs="interleaved"` pairs 2i with 2i + 1 (GPT-J). `start` (integer
        start positions over some of x's other axes) sets `start`; `offsets` (packed
        sequences' starts and the total length, integers along one axis) sets `packed`."""
        ins = {"x": x}
        if start is not None:
            ins["start"] = start
        if offsets is not None:
            ins["offsets"] = offsets
        rotated = None if rotated is None else str(rotated)
        return self.box("rotary", ins, name, seq=seq, feature=feature, base=base,
                        rotated=rotated, pairs=pairs, start=start is not None,
                        packed=offsets is not None, label=label)  # fmt: skip

    def positions(self, axis, *, dtype="float32", start=None, offsets=None, name=None,
                  label=""):  # fmt: skip
        """`b.positions("T")` is the tensor [T] holding 0, 1, …, T − 1; `dtype="int64"` for
        integers. `b.sub(b.positions("T"), b.positions("S"))` is the [T S] table of t − s
        (ALiBi's distances). `start` (integer starts over other axes, `B`) gives [B T]
        holding start[b] + t and sets `start`; `offsets` (packed sequences' starts and the
        total length, integers along one axis) counts within each sequence and sets
        `packed`."""
        ins = {}
        if start is not None:
            ins["start"] = start
        if offsets is not None:
            ins["offsets"] = offsets
        return self.box("positions", ins, name, axis=axis, dtype=dtype, start=start is not None,
                        packed=offsets is not None, label=label)  # fmt: skip

    def softmax(self, x, over, *, variant="softmax", name=None, label=""):
        return self.box("softmax", {"x": x}, name, over=over, variant=variant, label=label)

    # The norms' `kw` are their other fields (`eps`; batchnorm's `momentum`, ...), as
    # `ncd schema KIND` lists them: a paper's own epsilon needs no `b.box` call.
    def layernorm(self, x, over, *, affine=True, name=None, label="", **kw):
        return self.box("layernorm", {"x": x}, name, over=over, affine=affine, label=label,
                        **kw)  # fmt: skip

    def rmsnorm(self, x, over, *, affine=True, name=None, label="", **kw):
        return self.box("rmsnorm", {"x": x}, name, over=over, affine=affine, label=label,
                        **kw)  # fmt: skip

    def batchnorm(self, x, channel, *, name=None, label="", **kw):
        return self.box("batchnorm", {"x": x}, name, channel=channel, label=label, **kw)

    def unifiednorm(self, x, channel, *, name=None, label="", **kw):
        return self.box("unifiednorm", {"x": x}, name, channel=channel, label=label, **kw)

    def groupnorm(self, x, channel, groups, over=(), *, name=None, label="", **kw):
        return self.box(
            "groupnorm", {"x": x}, name, channel=channel, groups=groups, over=over, label=label,
            **kw,
        )  # fmt: skip

    def normalize(self, x, over, p=2, *, name=None):
        return self.box("normalize", {"x": x}, name, over=over, p=p)

    def reduce(self, x, over, op="sum", *, name=None):
        return self.box("reduce", {"x": x}, name, over=over, op=op)

    def scan(self, x, over, op="sum", *, reverse=False, name=None):
        return self.box("scan", {"x": x}, name, over=over, op=op, reverse=reverse)

    def topk(self, x, over, k, *, into="k", name=None):
        return self.box("topk", {"x": x}, name, over=over, k=k, into=into)

    def split_axis(self, x, axis, into, *, name=None):
        return self.box("split_axis", {"x": x}, name, axis=axis, into=into)

    def merge_axes(self, x, axes, into, *, name=None):
        return self.box("merge_axes", {"x": x}, name, axes=axes, into=into)

    def permute(self, x, order, *, name=None):
        return self.box("permute", {"x": x}, name, order=order)

    def rename(self, x, mapping=None, *, name=None, **kw):
        return self.box("rename", {"x": x}, name, mapping={**(mapping or {}), **kw})

    def copy(self, x, n=2, *, name=None):
        outs = self.box("copy", {"x": x}, name, n=n)
        return [outs[str(i)] for i in range(n)]

    def pack(self, *, name=None, **items):
        return self.box("pack", items, name, items=tuple(items))

    def unpack(self, x, *, name=None):
        return self.box("unpack", {"x": x}, name)

    def concat(self, *xs, axis, along=None, name=None):
        """`along`: {operand (its position, or its port `x0`, `x1`, ...): the axis it joins
        along}, for pieces whose axis has another name (another size) than `axis`."""
        ports = tuple(f"x{i}" for i in range(len(xs)))
        along = {f"x{k}" if isinstance(k, int) else k: a for k, a in (along or {}).items()}
        extra = {"along": along} if along else {}
        return self.box("concat", dict(zip(ports, xs)), name, axis=axis, operands=ports, **extra)

    def split(self, x, axis, sizes, *, names=(), name=None):
        return self.box(
            "split", {"x": x}, name, axis=axis, sizes=tuple(map(str, sizes)), names=tuple(names)
        )

    def index(self, x, axis, index, *, name=None):
        return self.box("index", {"x": x}, name, axis=axis, index=index)

    def slice(self, x, axis, start=0, stop=None, step=1, *, name=None):
        stop = None if stop is None else str(stop)
        return self.box("slice", {"x": x}, name, axis=axis, start=start, stop=stop, step=step)

    def conv(self, x, spatial, channel, out, kernel, *, name=None, label="", **kw):
        return self.box(
            "conv",
            {"x": x},
            name,
            spatial=spatial,
            channel=channel,
            out=out,
            kernel=kernel,
            label=label,
            **kw,
        )

    def long_conv(self, x, filter, seq, *, name=None, label=""):
        """`b.long_conv(x, h, seq="T")` convolves x causally along T with the filter h, each
        channel with its own: y[t] = Σ_{s ≤ t} h[t − s] x[s], by FFT (Hyena's long
        convolution). h holds its taps along T, or along its one axis x lacks (`L D`: L ≤ T
        taps for each channel D), and channels among x's; x's axes that h lacks are
        broadcast over (h `T H` for x `B T H K`: a filter per head)."""
        return self.box("long_conv", {"x": x, "filter": filter}, name, seq=seq, label=label)

    def pool(self, x, spatial, window, op="max", *, name=None, **kw):
        return self.box("pool", {"x": x}, name, spatial=spatial, window=window, op=op, **kw)

    def upsample(self, x, spatial, factor=2, mode="nearest", *, name=None):
        return self.box("upsample", {"x": x}, name, spatial=spatial, factor=factor, mode=mode)

    def attention(self, q, k, v, *, mask=None, name=None, label="", **kw):
        """The `attention` box, softmax(q·k * scale [+ mask]) · v over the key axis; `kw` its
        fields (`query`, `key`, `head`, `value`, `causal`, `scale`, `heads`, `kv_heads`).

        `mask` (sets `masked`): a boolean keep-mask, True where a query attends to a key, or
        a float bias added to the scaled scores, over some of the scores' axes, broadcast by
        name over the others: key padding `B S` (one row per batch entry), a pattern `T S`,
        a bias per head `H T S` (ALiBi). With `causal=True` both apply; a query left with no
        key gives 0.

        >>> b = Builder("enc", sizes={"B": 2, "H": 4, "T": 16, "S": 16, "K": 8, "V": 8})
        >>> q, k, v = b.input("q", "B H T K"), b.input("k", "B H S K"), b.input("v", "B H S V")
        >>> keep = b.input("keep", "B S", dtype="bool")  # False at padding keys
        >>> b.attention(q, k, v, mask=keep).axes
        ('B', 'H', 'T', 'V')
        """
        ins = {"q": q, "k": k, "v": v}
        if mask is not None:
            ins["mask"] = mask
            kw.setdefault("masked", True)
        return self.box("attention", ins, name, label=label, **kw)

    def linear_attention(self, q, k, v, *, g=None, beta=None, offsets=None, name=None, label="",
                         **kw):  # fmt: skip
        """The `linear_attention` box; `offsets` (packed sequences' starts and the total
        length, integers along one axis) sets `packed`. Grouped heads (Mamba-2's B and C
        shared by groups of heads): q, k `B T G N` and v `B T H P` with `heads="H",
        qk_heads="G"` (head h reads group h // (H/G)), or q, k `B T N` with `heads="H"`
        alone; gates g and beta per head (`B T H`; gla's g `B T H N`)."""
        ins = {"q": q, "k": k, "v": v}
        if g is not None:
            ins["g"] = g
        if beta is not None:
            ins["beta"] = beta
        if offsets is not None:
            ins["offsets"] = offsets
            kw.setdefault("packed", True)
        return self.box("linear_attention", ins, name, label=label, **kw)

    def call(self, circuit: Circuit | str, *, repeat=1, name=None, label="", **inputs):
        cname = circuit if isinstance(circuit, str) else self.subcircuit(circuit)
        if cname not in self._draft.subcircuits:
            raise BuildError(f"unknown subcircuit {cname!r}; register it with b.subcircuit()")
        return self.box(
            "call",
            inputs,
            name or self._fresh(cname),
            circuit=cname,
            repeat=str(repeat),
            label=label,
        )

    def rearrange(self, x: Wire, pattern: str, *, name=None) -> Wire:
        """einops-style `"B T (H K) -> B H T K"`: splits, then a permutation, then merges.

        An axis on one side only is a unit axis (size 1), added (`"B T H -> B T H V"`) or
        taken away (`"B T H V -> B T H"`): split off or merged into a neighbour (`H -> H V`,
        `H V -> H`), so its size must be known to be 1 (`sizes=` or `b.axis("V", 1)`)."""
        left, right = _parse_pattern(pattern)
        base = name or self._fresh("rearrange")
        self._claim(base)  # reserves the stem, so the next rearrange gets fresh box names
        flat_left = [a for g in left for a in g]
        singles_ok = all(len(g) > 1 or g[0] == a for g, a in zip(left, x.axes))
        if len(left) != len(x.axes) or not singles_ok:
            raise BuildError(
                f"rearrange '{pattern}': the left side does not match the input's "
                f"axes {' '.join(x.axes)}"
            )
        step = 0
        for g, axis in zip(left, x.axes, strict=True):
            if len(g) > 1:
                x = self.split_axis(x, axis, g, name=f"{base}_split{step or ''}")
                step += 1
        flat_right = [a for g in right for a in g]
        try:
            x = self._units(x, flat_left, flat_right, base)
        except BuildError as e:
            raise BuildError(f"rearrange '{pattern}': {e}") from None
        if list(x.axes) != flat_right:
            x = self.permute(x, flat_right, name=f"{base}_permute")
        for i, g in enumerate(right):
            if len(g) > 1:
                into = "".join(g) if "".join(g) not in x.axes else f"{''.join(g)}_{i}"
                x = self.merge_axes(x, g, into, name=f"{base}_merge{i}")
        return x

    def _units(self, x: Wire, left: list[str], right: list[str], base: str) -> Wire:
        """`x` (axes `left`) with the unit axes only `left` names merged into a neighbour, and
        those only `right` names split off the axis before them there (after, where they come
        first), so that it has the axes `right` names."""
        for axis in [a for a in left if a not in right]:
            kept = [a for a in x.axes if a in right]
            if not kept:
                raise BuildError(f"no axis is left to merge the unit axis {axis} into")
            at = x.axes.index(axis)
            near = next((a for a in reversed(x.axes[:at]) if a in right), kept[0])
            pair = [near, axis] if x.axes.index(near) < at else [axis, near]
            x = self.merge_axes(x, pair, near, name=f"{base}_drop_{axis}")
        for i, axis in enumerate(right):
            if axis in left:
                continue
            before = [a for a in right[:i] if a in x.axes]
            after = [a for a in right[i + 1 :] if a in left]
            if not before and not after:
                raise BuildError(f"no axis to split the unit axis {axis} off")
            near = before[-1] if before else after[0]
            into = [near, axis] if before else [axis, near]
            x = self.split_axis(x, near, into, name=f"{base}_unit_{axis}")
        return x

    # -- helpers
    def _fresh(self, stem: str) -> str:
        if stem not in self._names:
            return stem
        i = 2
        while f"{stem}_{i}" in self._names:
            i += 1
        return f"{stem}_{i}"

    def _claim(self, name: str) -> None:
        if name in self._names:
            raise BuildError(f"name '{name}' is already used in circuit '{self.name}'")
        self._names.add(name)


def _axis(ctx, name):
    from .types import Axis

    return Axis(name, ctx.size(name))


def _first(e: pydantic.ValidationError, where: str) -> str:
    """The first of pydantic's errors, located at `where` and its field, in words."""
    return str(schema_problems(e, where)[0])


_GROUP = re.compile(r"\(([^()]*)\)|(\S+)")


def _parse_pattern(pattern: str):
    if "->" not in pattern:
        raise BuildError(f"rearrange pattern needs '->': {pattern!r}")
    sides = []
    for side in pattern.split("->", 1):
        groups = []
        for m in _GROUP.finditer(side):
            groups.append(m.group(1).split() if m.group(1) is not None else [m.group(2)])
        sides.append(groups)
    return sides


# The methods that make a kind not of their own name.
_SUGAR_KINDS = {
    **dict.fromkeys(("add", "mul", "sub", "div"), "binary"),
    **dict.fromkeys(("relu", "gelu", "silu"), "unary"),
}


def _document_methods() -> None:
    """Gives each box method the first paragraph of its kind's docstring and where to read
    the kind's fields and ports, so that `help(b.attention)` says what the box is (most
    methods had no docstring, and their fields hide in `**kw`)."""
    for method, fn in vars(Builder).items():
        kind = _SUGAR_KINDS.get(method, method)
        if method.startswith("_") or not callable(fn) or kind not in KINDS:
            continue
        about = " ".join((KINDS[kind].__doc__ or "").strip().split("\n\n")[0].split())
        own = f"{fn.__doc__.strip()}\n\n" if fn.__doc__ else ""
        fields = [f for f in KINDS[kind].model_fields if f not in ("name", "inputs", "kind")]
        fn.__doc__ = (
            f"{own}The `{kind}` box: {about}\n\nFields (keywords here): {', '.join(fields)}; "
            f"what each means, the ports and the defaults: `ncd schema {kind}`."
        )


_document_methods()
