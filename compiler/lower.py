"""Lowering: a checked circuit → a `torch.fx.Graph` inside a `GraphModule`.

Each box kind has one lowering function (registered in `LOWERINGS`) that emits fx nodes for the
box through a `Lowerer`. A wire's tensor keeps its axes in the order its type lists them, so a
lowering reads dimensions off the types by name. Parameters live in one holder module per
learned box, named after the box (`q_proj.weight`), built like PyTorch's own layers; a called
subcircuit becomes a submodule (`blocks.0.ff_up.weight` when repeated).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from ncd.circuits.kinds.registry import Registry
from ncd.circuits.validate import Checked

from .errors import CompileError
from .module import adopt, box_summary, header, keep
from .names import class_name, comment, letters, scope_names
from .passes import common_subexpressions, live_boxes

LOWERINGS = Registry("lowering", "compiler/lowerings.py", "@lowers")
lowers = LOWERINGS.register


def listed(repeat) -> bool:
    """Whether a call repeated `repeat` times is held as an nn.ModuleList (`blocks.0.…`):
    a count above 1, or one written with a size (`N`, even bound to 1), so that a module's
    parameter names do not depend on the value of N."""
    return repeat != 1 or isinstance(repeat, Size)


class Size(int):
    """A whole number read off a size expression, carrying the expression (`expr`) so that
    the source emitter writes `c.H` where the graph holds 4; behaves as the int otherwise."""

    def __new__(cls, value, expr):
        self = super().__new__(cls, value)
        self.expr = expr
        return self

    def __repr__(self):
        return int.__repr__(self)

    def __reduce__(self):
        return (type(self), (int(self), self.expr))


class RealSize(float):
    """A real number read off a size expression (`K**-0.5`), carrying the expression."""

    def __new__(cls, value, expr):
        self = super().__new__(cls, value)
        self.expr = expr
        return self

    def __repr__(self):
        return float.__repr__(self)

    def __reduce__(self):
        return (type(self), (float(self), self.expr))


def plain(v):
    """`v` with sizes made plain numbers (for modules' constructors: a module keeps plain
    attributes, whatever traces it later)."""
    if isinstance(v, Size):
        return int(v)
    if isinstance(v, RealSize):
        return float(v)
    if isinstance(v, tuple | list):
        return type(v)(plain(x) for x in v)
    return v


class Call:
    """The source of a holder's constructor, `fn(*args, **kwargs)`: the emitter writes each
    argument, sizes by their expressions (`nn.LayerNorm(c.D)`)."""

    def __init__(self, fn: str, *args, **kwargs):
        self.fn, self.args, self.kwargs = fn, args, kwargs


@dataclass
class Holder:
    """A submodule that owns a box's parameters, and the source that builds it (text, or a
    `Call` whose sizes the emitter writes from their expressions)."""

    ident: str
    box: str
    module: nn.Module
    source: str | Call


@dataclass
class Options:
    """What the lowering may choose: the fused-kernel backend and where the module runs."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    opaque: dict[str, Any] = field(default_factory=dict)
    fused: str = "auto"  # "auto": compiler/choices.py's table; "ncd" / "torch": that one


@dataclass
class Lowered:
    """One lowered circuit: its GraphModule and what the source emitter needs to print it."""

    checked: Checked
    module: fx.GraphModule
    class_name: str
    holders: list[Holder]
    box_idents: dict[str, str]
    input_idents: dict[str, str]
    calls: dict[str, tuple[str, int, Lowered]]  # box -> (holder ident, repeat, subcircuit)
    kept: list[str]  # boxes lowered, in order
    aliases: dict[str, str]  # box removed as a common subexpression -> the box it equals
    read: frozenset[str] = frozenset()  # size symbols the graph is specialised to (here, in calls)

    def input_axes(self):
        """What a call's inputs must be, for the checks of the compiled module and of the
        written file alike: (input name, dtype, ((axis, size, n), ...)) per input, `size` the
        axis' resolved size expression and `n` its number where the module is specialised to
        it (a size the lowering read), else None: a free size that must agree across inputs."""
        c = self.checked
        out = []
        for inp in c.circuit.inputs:
            t = c.inputs[inp.name]
            axes = []
            for a in t.axes:
                size = c.resolve(a.size)
                symbols = {s.name for s in getattr(size, "free_symbols", ())}
                n = c.number(size) if not symbols or symbols & self.read else None
                axes.append((a.name, size, n if isinstance(n, int) else None))
            out.append((inp.name, t.dtype, tuple(axes)))
        return out


class Lowerer:
    """Emits the fx graph of one checked circuit."""

    def __init__(self, checked: Checked, opts: Options, prefix: str = ""):
        self.c = checked
        self.opts = opts
        self.prefix = prefix  # "in subcircuit 'x', " for messages
        self.g = fx.Graph()
        self.root = nn.Module()
        self.holders: list[Holder] = []
        self.calls: dict[str, tuple[str, int, Lowered]] = {}
        self.env: dict[tuple[str, str], Any] = {}
        self.box = ""
        self._sizes: dict[Any, int] = {}
        self.read: set[str] = set()  # size symbols whose values the lowering used
        self.input_idents, self.box_idents = scope_names(checked.circuit, checked.order)

    # -- helpers for lowerings
    def where(self, box: str | None = None) -> str:
        return f"{self.prefix}box '{box or self.box}'"

    def num(self, expr) -> int | float:
        """A size (or constant) as a number under the bound sizes; one read off an expression
        with symbols carries it (`Size`, `RealSize`), for the source emitter."""
        if expr in self._sizes:
            return self._sizes[expr]
        n = self.c.number(expr)
        if n is None:
            raise CompileError(
                self.where(), "size is not bound", "a number", str(self.c.resolve(expr))
            )
        if getattr(expr, "free_symbols", None):
            self.read |= {s.name for s in self.c.resolve(expr).free_symbols}
            n = Size(n, expr) if isinstance(n, int) else RealSize(n, expr)
        self._sizes[expr] = n
        return n

    def real(self, expr) -> float:
        """`num` as a real number (a scale factor), still carrying its expression."""
        n = self.num(expr)
        if isinstance(n, Size):
            return RealSize(float(n), n.expr)
        return n if isinstance(n, float) else float(n)

    def _node(self, op, target, args, kwargs):
        n = self.g.create_node(op, target, tuple(args), kwargs)
        n.meta["ncd_box"] = self.box
        return n

    def fn(self, target, *args, **kwargs) -> fx.Node:
        return self._node("call_function", target, args, kwargs)

    def method(self, name, *args, **kwargs) -> fx.Node:
        return self._node("call_method", name, args, kwargs)

    def attr(self, path: str) -> fx.Node:
        return self._node("get_attr", path, (), {})

    def module(self, path: str, *args, **kwargs) -> fx.Node:
        return self._node("call_module", path, args, kwargs)

    def hold(self, module: nn.Module, source: str | Call) -> str:
        """Registers the parameter holder of the current box; returns its attribute name."""
        ident = self.box_idents[self.box]
        self.root.add_module(ident, module)
        self.holders.append(Holder(ident, self.box, module, source))
        return ident

    def tie(self) -> None:
        """The circuit's tied parameters (`tied`) made one nn.Parameter: the follower's holder
        takes the owner's (before the GraphModule copies the holders' attributes)."""
        holders = {h.box: h for h in self.holders}
        for follower, owner in self.c.circuit.tied.items():
            (fb, _, fp), (ob, _, op) = follower.partition("."), owner.partition(".")
            hf, ho = holders.get(fb), holders.get(ob)
            pf = getattr(hf.module, fp, None) if hf else None
            po = getattr(ho.module, op, None) if ho else None
            if not isinstance(pf, nn.Parameter) or not isinstance(po, nn.Parameter):
                raise CompileError(f"tied '{follower}'", "both sides are parameters of boxes "
                                   "that hold them", f"a parameter {owner!r}", "none")  # fmt: skip
            if pf.shape != po.shape:
                raise CompileError(f"tied '{follower}'", "the lowered parameters differ in "
                                   "shape", str(tuple(po.shape)), str(tuple(pf.shape)))  # fmt: skip
            setattr(hf.module, fp, po)

    def param(self, ident: str, name: str) -> fx.Node:
        return self.attr(f"{ident}.{name}")

    def einsum(self, operands, out_names) -> fx.Node:
        """operands: [(node, axis names)]; letters come from the axis names."""
        order = [a for _, names in operands for a in names] + list(out_names)
        m = letters(order)
        spec = ",".join("".join(m[a] for a in names) for _, names in operands)
        spec += "->" + "".join(m[a] for a in out_names)
        return self.fn(torch.einsum, spec, *[n for n, _ in operands])

    def permute(self, node, names, want) -> fx.Node:
        names, want = list(names), list(want)
        if names == want:
            return node
        return self.method("permute", node, *[names.index(a) for a in want])

    def align(self, node, names, target) -> fx.Node:
        """`node` (axes `names`, a subset of `target`) laid out to broadcast against `target`."""
        names = list(names)
        keep = [a for a in target if a in names]
        node = self.permute(node, names, keep)
        if not keep:
            return node
        first = list(target).index(keep[0])
        idx = tuple(slice(None) if a in names else None for a in target[first:])
        if None not in idx:
            return node
        return self.fn(operator.getitem, node, idx)

    # -- the pass
    def lower(self) -> Lowered:
        c = self.c
        for inp in c.circuit.inputs:
            n = self.g.placeholder(self.input_idents[inp.name])
            n.meta["ncd_box"] = ""
            self.env[("", inp.name)] = n
        needed = live_boxes(c)
        aliases = common_subexpressions(c, needed)
        kept = []
        for name in c.order:
            if name not in needed:
                continue
            b = c.box(name)
            if name in aliases:
                for port in c.outs[name]:
                    self.env[(name, port)] = self.env[(aliases[name], port)]
                continue
            self.box = name
            ins = {p: self.env[src] for p, src in c.sources[name].items()}
            rule = LOWERINGS.get(b.kind)
            if rule is None:
                raise CompileError(self.where(), "no lowering for this kind", "a lowering", b.kind)
            try:
                outs = rule(self, b, ins, c.ins[name], c.outs[name])
            except CompileError:
                raise
            except Exception as e:  # a lowering bug must still say where it happened
                raise CompileError(
                    self.where(), f"cannot lower {b.kind} ({type(e).__name__}: {e})"
                ) from e
            for port, v in outs.items():
                self.env[(name, port)] = v
                # a result of several is named by its port in the written code (`top_values`)
                if len(outs) > 1 and isinstance(v, fx.Node) and v.meta.get("ncd_box") == name:
                    v.meta.setdefault("ncd_port", port)
            kept.append(name)
        self.box = ""
        results = {o: self.env[src] for o, src in c.output_sources.items()}
        out = next(iter(results.values())) if len(results) == 1 else results
        self.g.output(out)
        self.tie()
        cls = class_name(c.circuit.name)
        gm = fx.GraphModule(self.root, self.g, class_name=cls)
        # fx rebuilt each holder whose tensors the graph reads (`q_proj.weight`) as a plain
        # Module, and `blocks` as one; the holders go back (an nn.Linear, the ModuleList)
        adopt(gm, dict(self.root.named_children()))
        read = set(self.read)
        for _, _, sub in self.calls.values():
            read |= sub.read
        notes = {h.ident: comment(box_summary(c.box(h.box)), 200) for h in self.holders
                 if h.box not in self.calls}  # fmt: skip
        root = not self.prefix  # the module ncd.compile returns, not a called subcircuit's
        keep(gm, header(c, read if root else ()), notes, root)
        return Lowered(
            c,
            gm,
            cls,
            self.holders,
            self.box_idents,
            self.input_idents,
            self.calls,
            kept,
            aliases,
            frozenset(read),
        )


def lower(checked: Checked, opts: Options, prefix: str = "") -> Lowered:
    return Lowerer(checked, opts, prefix).lower()


from . import lowerings  # noqa: E402,F401  (registers one lowering per kind)
