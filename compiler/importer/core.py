"""The walk: `_Importer` holds one import's Builder and state, names axes and boxes, maps the
graph node by node (a node it cannot map becomes an opaque box, its partial boxes undone), keeps
each tensor's wire in torch's dim order, and finishes the circuit (outputs, boxes no output
reads left out, sizes read as numbers fixed, weights attached). The mapping of each kind of node
lives in the mixins it is made of, one module per family."""

from __future__ import annotations

import contextlib
import operator
import warnings
from typing import Any

import torch
from torch import fx

from ncd.circuits.builder import Builder, Wire
from ncd.circuits.errors import BuildError

from .. import attached
from ..errors import TorchImportError
from ..in_place import changes_in_place
from ..names import scope_names
from ..passes import live_boxes
from .attention import _Attention
from .by_value import _ByValue
from .calls import _Calls
from .common import (
    _ROLES,
    _complex,
    _dtype,
    _first_line,
    _flat,
    _Lazy,
    _module_path,
    _Rename,
    _role_of,
    _target_name,
    _Unmapped,
)
from .contractions import _Contractions
from .elementwise import _Elementwise
from .fftconv import _FFTConv
from .held import _Held
from .masks import _Masks
from .modules import _Modules
from .norms import _Norms
from .opaque import _Opaque
from .reductions import _Reductions
from .reshape import _Reshape
from .routing import _Routing
from .sizes import _Sizes
from .slicing import _Slicing
from .tables import imports


class _Importer(
    _Modules,
    _Calls,
    _Elementwise,
    _Reductions,
    _Reshape,
    _Slicing,
    _Routing,
    _Held,
    _Sizes,
    _Contractions,
    _Attention,
    _Masks,
    _Norms,
    _ByValue,
    _FFTConv,
    _Opaque,
):
    """One import: a model's traced graph and values -> a circuit (`run`)."""

    def __init__(self, model, gm, values, name, own_names=frozenset()):
        self.model, self.gm, self.values = model, gm, values
        self.own_names = own_names  # linear maps whose output axis gets a name of its own
        self.linear_out: dict[fx.Node, str] = {}  # linear map's node -> its output axis
        self.b = Builder(name, title=f"Imported {type(model).__name__}", doc="ncd.from_torch")
        self.sizes: dict[str, int] = {}
        self.by_role: dict[tuple[str, int], str] = {}
        self.wires: dict[fx.Node, Any] = {}
        self.weights: dict[str, dict[str, torch.Tensor]] = {}
        self.callables: dict[str, Any] = {}
        self.names: set[str] = set()
        self.buffers: set[str] = set()  # boxes whose weight is a buffer of the model
        # ... of those, the boxes whose tensor is in the model's state_dict (a persistent
        # buffer); the others are constants (a non-persistent buffer, a plain tensor attribute
        # or literal, a table made from sizes), which loading may leave out (runtime.Held)
        self.state_buffers: set[str] = set()
        # torch's size-1 dims a wire does not carry yet (a keepdim reduction, `x[:, None]`):
        # node -> their positions in the torch tensor; made into unit axes only where needed
        self.units: dict[fx.Node, tuple[int, ...]] = {}
        self.made: dict[Any, tuple[Wire, tuple[int, ...]]] = {}  # lazy -> its param box
        # node with a complex value -> the region of such nodes it ends, in graph order
        self.islands: dict[fx.Node, list[fx.Node]] = {}
        # axis made by a reshape's merge -> the axes merged (a later split of it into axes of
        # those sizes, `x.view(-1, D) ... y.view(B, T, -1)`, gives them back)
        self.merged: dict[str, tuple[str, ...]] = {}
        # axes a reshape's split made -> the axis split (their merge, in that order, is it)
        self.split_from: dict[tuple[str, ...], str] = {}
        # node -> {dim: size}: the size-1 dims an expand broadcast, off its wire (as units)
        self.grown: dict[fx.Node, dict[int, int]] = {}
        # (einops letter, size) -> the axis an einops call named it by (a letter `repeat`
        # adds takes it: `(b h)` of a repeated mask, of one size with the scores' `(b h)`)
        self.letters: dict[tuple[str, int], str] = {}
        # node -> the nodes that are one tensor with it (a tensor and its in-place results)
        self.same_tensor: dict[fx.Node, list[fx.Node]] = {}
        # submodule path -> how many nodes its forward made (theirs and its submodules')
        self.made_by: dict[str, int] = {}
        # sizes read as the example's numbers (into a constant, a slice, Python control
        # flow): (axes, the node that read them, the boxes holding the number or None where
        # the model's code itself took it); the circuit fixes those that live boxes hold
        self.pins: list[tuple[set[str], fx.Node, list[str] | None]] = []
        self.pending: list[tuple[set[str], fx.Node]] = []  # `pin`s of the node being mapped
        for node in gm.graph.nodes:
            for path in _module_path(node):
                self.made_by[path] = self.made_by.get(path, 0) + 1

    def outputs(self, out) -> list[tuple[str, Any]]:
        """(name, wire) of each tensor the model returns: one `y`; a tuple or list of them
        `y0 y1 …`, also where one node holds the tuple (`x.chunk(2)`); a dict by its keys."""
        if isinstance(out, dict):
            named = [(str(k), v) for k, v in out.items()]
        else:
            items = list(out) if isinstance(out, (tuple, list)) else [out]
            if len(items) == 1 and isinstance(self.wires.get(items[0]), (tuple, list)):
                items = list(self.wires[items[0]])
                named = [(f"y{i}", ("wire", w)) for i, w in enumerate(items)]
            else:
                named = [("y" if len(items) == 1 else f"y{i}", v) for i, v in enumerate(items)]
        found = []
        for oname, v in named:
            if isinstance(v, tuple) and len(v) == 2 and v[0] == "wire":
                wire = v[1]
            elif isinstance(v, fx.Node) and v in self.wires:
                wire = self.wires[v]
            else:
                raise TorchImportError(
                    f"output {oname!r} of {type(self.model).__name__} is not a tensor ncd "
                    f"can follow (found {type(v).__name__}); return tensors, a tuple or a dict "
                    "of them"
                )
            if isinstance(wire, (tuple, list)):
                found += [(f"{oname}_{i}", w) for i, w in enumerate(wire)]
            else:
                found.append((oname, wire))
        return found

    # -- names
    def axis(self, role: str, size: int, avoid=()) -> str:
        """A name for a new axis: one per (role, size), distinct from `avoid`."""
        key = (role, size)
        if key in self.by_role and self.by_role[key] not in avoid:
            return self.by_role[key]
        numbered = [f"{_ROLES[role][0]}{i}" for i in range(2, 64)]  # (H3 after H2, not H4)
        for cand in dict.fromkeys(_ROLES[role] + numbered):
            if cand in self.sizes or cand in avoid:
                continue
            self.sizes[cand] = size
            self.by_role.setdefault(key, cand)
            return cand
        raise TorchImportError(f"ran out of axis names for role {role}")

    def out_axis(self, n: fx.Node, size: int, x: Wire) -> str:
        """The output axis of a linear map: the name of its size (D for a square map, so
        that the residual stream keeps one name), or a name of its own where an earlier
        import found that name stands for another product (`_Rename`)."""
        if n not in self.own_names:
            channels = self.by_role.get(("channel", size))  # (ConvNeXt's pointwise map back
            # to the channels, read channels-last: the residual's C, not a new feature axis)
            if ("feature", size) not in self.by_role and channels not in (None, *x.axes[:-1]):
                return channels
            return self.axis("feature", size, avoid=x.axes[:-1])
        taken = [a for a, s in self.sizes.items() if s == size]
        return self.axis("feature", size, avoid=[*x.axes, *taken])

    def renamed_maker(self, start: fx.Node, axis: str) -> fx.Node | None:
        """The nearest linear map before `start` whose output axis is `axis` (not yet given a
        name of its own), if any."""
        seen, todo = set(), [start]
        while todo and len(seen) < 256:
            m = todo.pop(0)
            if m in seen:
                continue
            seen.add(m)
            if m in self.linear_out and self.linear_out[m] == axis and m not in self.own_names:
                return m
            todo += m.all_input_nodes
        return None

    def box_name(self, node: fx.Node, suffix: str = "") -> str:
        base = str(node.target) if node.op == "call_module" else node.name
        base = base.replace(".", "_") + (f"_{suffix}" if suffix else "")
        name, i = base, 2
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def _fresh(self, base: str) -> str:
        name, i = base, 2
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def fresh(self, like: str, size: int, avoid) -> str:
        """A new axis name of `like`'s role (a second sequence axis is a key axis)."""
        role = _role_of(like)
        return self.axis("key" if role == "seq" else role, size, avoid=avoid)

    def unit(self, avoid) -> str:
        """A unit axis to split off an axis (its size declared: `H = H U` holds as it is made)."""
        u = self.axis("unit", 1, avoid=avoid)
        self.b.axis(u, 1)
        return u

    # -- the walk
    def run(self):
        inputs = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        for n in inputs:
            v = self.values.get(n)
            if not isinstance(v, torch.Tensor):
                continue  # an argument fixed at its default while tracing
            self.wires[n] = self.b.input(n.name, " ".join(self.input_axes(v)), _dtype(v))
        for n in self.gm.graph.nodes:
            if n.op in ("placeholder", "output"):
                continue
            v = self.values.get(n)
            region = self.island(n)
            if _complex(v):  # no type in a circuit: the node joins the region that ends
                self.islands[n] = [*region, n]  # where a real tensor comes out
                continue
            if n.target is operator.setitem:  # (None: the tensor it changes is rebound)
                self.wires[n] = self.map_assignment(n)
                continue
            if not isinstance(v, torch.Tensor) and not (
                isinstance(v, (tuple, list)) and any(isinstance(t, torch.Tensor) for t in v)
            ):
                continue  # sizes, guards, None: constants that ops read through `const`
            if n.op == "get_attr":  # a tensor the model holds outside a layer: a param box
                self.wires[n] = _Lazy(n, v)  # made where it is first used
                continue
            if n.target is operator.getitem and not n.users:
                continue  # a part of a result nothing reads (`a, _ = self.attn(x, x, x)`)
            start, self.pending = len(self.b._boxes), []
            with contextlib.ExitStack() as blocks:
                for title in self.blocks_of(n):
                    blocks.enter_context(self.b.group(title))
                if region:  # the real result of computations on complex tensors: one box,
                    # or an FFT convolution's, resolved at the slice that reads it
                    self.wires[n] = self.fft_conv_or_opaque(n, region)
                else:
                    self.wires[n] = self.map_or_opaque(n)
            made = [b.name for b in self.b._boxes[start:]]
            self.pins += [(axes, m, made) for axes, m in self.pending]
            self.pending = []
        out = next(n for n in self.gm.graph.nodes if n.op == "output").args[0]
        for o in _flat(out if not isinstance(out, dict) else list(out.values())):
            if o in self.islands:
                raise TorchImportError(
                    f"{self.where(o)}: the model returns a complex tensor; a circuit's "
                    "outputs are real (return torch.view_as_real of it)"
                )
        for o in _flat(out if not isinstance(out, dict) else list(out.values())):
            if isinstance(o, fx.Node) and o in self.wires and not isinstance(self.wires[o], tuple):
                self.wires[o] = self.wire(o)  # a returned param, or size-1 dims made axes
        for oname, wire in self.outputs(out):
            self.b.output(oname, wire)
        self.pins += [(axes, m, None) for axes, m in self.pending]
        self.b.sizes = dict(self.sizes)
        self.b.tied = self.tied()
        circuit = self.b.build()
        checked = circuit.check()
        live = live_boxes(checked)
        if len(live) < len(circuit.boxes):  # boxes no output reads (a mask's makers, replaced
            # by a mask box): left out, with their weights and callables
            self.b._boxes = [b for b in self.b._boxes if b.name in live]
            self.weights = {k: v for k, v in self.weights.items() if k in live}
            self.callables = {k: v for k, v in self.callables.items() if k in live}
            self.b.tied = self.tied()
            circuit = self.b.build()
            checked = circuit.check()
        if self.pin_read_sizes(checked, live):
            circuit = self.b.build()
            checked = circuit.check()
        derived = set(checked.unifier.bound) & set(self.b.sizes)
        if derived:  # bound by the others (B2 = B*H of a merge): left to follow them, so that
            # the circuit compiled with other sizes of its free axes recomputes these
            self.b.sizes = {k: v for k, v in self.b.sizes.items() if k not in derived}
            circuit = self.b.build()
            checked = circuit.check()
        _, idents = scope_names(circuit, checked.order)
        state, buffers, constants = {}, set(), set()
        for box, ws in self.weights.items():
            for p, t in ws.items():
                state[f"{idents[box]}.{p}"] = t.detach().clone()
                if box in self.buffers:
                    buffers.add(f"{idents[box]}.{p}")
                    if box not in self.state_buffers:
                        constants.add(f"{idents[box]}.{p}")
        attached.attach(circuit, self.callables, state, buffers, constants)
        return circuit

    def tied(self) -> dict[str, str]:
        """`box.param` -> `box.param` for the weights that are one tensor of the model (an
        output map reading the token embedding's weight), each tied to the first box holding
        it."""
        first: dict[tuple, str] = {}
        tied = {}
        for box, ws in self.weights.items():
            for p, t in ws.items():
                if box in self.buffers or t.numel() == 0:
                    continue
                key = (t.data_ptr(), tuple(t.shape), tuple(t.stride()), t.dtype)
                if key in first:
                    tied[f"{box}.{p}"] = first[key]
                else:
                    first[key] = f"{box}.{p}"
        return tied

    def island(self, n: fx.Node) -> list[fx.Node]:
        """The complex-valued nodes n reads, with those they read in turn, in graph order."""
        found = {m for a in n.all_input_nodes for m in self.islands.get(a, ())}
        return [m for m in self.gm.graph.nodes if m in found] if found else []

    def _mark(self) -> tuple:
        """The state a node's mapping changes, for `_undo`."""
        return (len(self.b._boxes), set(self.b._names), set(self.names), dict(self.weights),
                set(self.buffers), dict(self.units), dict(self.made),
                dict(self.merged), dict(self.grown), dict(self.letters),
                dict(self.split_from), set(self.state_buffers))  # fmt: skip

    def _undo(self, mark: tuple) -> None:
        """Removes the boxes made since `mark`, and what they changed."""
        del self.b._boxes[mark[0] :]
        self.b._names, self.names, self.weights = mark[1], mark[2], mark[3]
        self.buffers, self.units, self.made, self.merged = mark[4], mark[5], mark[6], mark[7]
        self.grown, self.letters, self.split_from = mark[8], mark[9], mark[10]
        self.state_buffers = mark[11]

    def fft_conv_or_opaque(self, n: fx.Node, region: list[fx.Node]):
        """An FFT convolution's long_conv box where the region of complex values ending at n
        is one (`fft_conv`), else one opaque box of the region."""
        mark = self._mark()
        try:
            found = self.fft_conv(n, region)
        except (_Unmapped, BuildError):
            found = None
        if found is None:
            self._undo(mark)
            return self.opaque(n, [*region, n])
        return found

    def map_assignment(self, n: fx.Node):
        """An item assignment's boxes (`in_place`); it has no value an opaque box could
        return, so where it cannot be mapped the import stops, saying where."""
        try:
            return self.map(n)
        except TorchImportError as e:
            raise TorchImportError(f"{self.where(n)}: {e}") from None
        except Exception as e:
            raise TorchImportError(
                f"{self.where(n)}: could not map the item assignment ({type(e).__name__}: "
                f"{_first_line(e)}); write it out of place, or keep the submodule whole"
            ) from None

    def map_or_opaque(self, n: fx.Node):
        """The node's boxes, or where it cannot be mapped one opaque box."""
        mark = self._mark()
        try:
            return self.map(n)
        except Exception as e:
            # undo the boxes this node's mapping made before it failed
            self._undo(mark)
            self.units.pop(n, None)
            if isinstance(e, _Rename):
                raise
            if isinstance(e, TorchImportError):
                raise TorchImportError(f"{self.where(n)}: {e}") from None
            if not isinstance(e, (_Unmapped, BuildError)):
                warnings.warn(
                    f"{self.where(n)}: could not map ({type(e).__name__}: {_first_line(e)});"
                    " it runs as an opaque box",
                    stacklevel=3,
                )
            return self.opaque(n)

    def blocks_of(self, n: fx.Node) -> list[str]:
        """The blocks the node's boxes are drawn in, outermost first: the submodules whose
        forward made it (`layers.0`, then `layers.0.attn`), each a block titled by its path in
        the model, where that submodule made more than one node (a layer the importer keeps
        whole, such as `qkv`, is its own box, named after it)."""
        return [p for p in _module_path(n) if self.made_by.get(p, 0) > 1]

    def where(self, n: fx.Node) -> str:
        """`module.path (op)` of a node, for messages."""
        stack = n.meta.get("nn_module_stack") or {}
        path = str(n.target) if n.op == "call_module" else (list(stack)[-1] if stack else "")
        op = _target_name(self.gm, n) if n.op != "get_attr" else f"attribute {n.target}"
        return f"{path or type(self.model).__name__} ({op}, node {n.name})"

    def input_axes(self, v: torch.Tensor) -> list[str]:
        s = list(v.shape)
        if v.dim() == 1:
            roles = ["seq"]
        elif v.dim() == 2:
            roles = ["batch", "seq"] if not v.is_floating_point() else ["batch", "feature"]
        elif v.dim() == 3:
            roles = ["batch", "seq", "feature"]
        elif v.dim() == 4 and s[1] == s[2] != s[3]:  # channels last (Swin's [B, H, W, C]): a
            # square image's two spatial sizes are equal, the channels' another
            roles = ["batch", "spatial", "spatial", "channel"]
        elif v.dim() in (4, 5):
            roles = ["batch", "channel"] + ["spatial"] * (v.dim() - 2)
        else:
            roles = ["batch"] * v.dim()
        names: list[str] = []
        for r, n in zip(roles, s, strict=True):
            names.append(self.axis(r, n, avoid=names))
        return names

    def shape(self, n) -> tuple[int, ...]:
        return tuple(self.values[n].shape)

    def sizes_of(self, w: Wire) -> dict[str, int]:
        return {a: self.sizes[a] for a in w.axes}

    def dims_of(self, n, x: Wire) -> list[int]:
        """The dims a reduction's `dim` argument names (every one where None), each once,
        non-negative, in order."""
        dims = self.const(self.arg(n, 1, "dim"))
        dims = range(len(x.axes)) if dims is None else [dims] if isinstance(dims, int) else dims
        return sorted({d % len(x.axes) for d in dims})

    def const(self, a):
        """A node argument as a plain value (sizes computed by the graph become numbers)."""
        if isinstance(a, fx.Node):
            v = self.values[a]
            if isinstance(v, torch.Tensor):
                raise _Unmapped
            self.pin(a)  # a size read as the example's number
            return v
        if isinstance(a, (tuple, list)):
            return type(a)(self.const(x) for x in a)
        return a

    def arg(self, n: fx.Node, i: int, key: str, default=None):
        if len(n.args) > i:
            return n.args[i]
        return n.kwargs.get(key, default)

    def wire(self, a) -> Wire:
        """The wire of a node's tensor, its axes in torch's order (size-1 dims included, and
        the dims an expand broadcast as that many copies)."""
        w, units = self.bare(a)
        if units:
            key = ("units", a)
            if key not in self.made:
                y = self.with_units(w, units, self.shape(a), a)
                for d, t in self.grown.get(a, {}).items():
                    y = self.copies(a, y, y.axes[d], t)
                self.made[key] = (y, ())
            w = self.made[key][0]
        return w

    def bare(self, a) -> tuple[Wire, tuple[int, ...]]:
        """A node's wire without the size-1 dims it does not carry, and their positions."""
        if not isinstance(a, fx.Node) or a not in self.wires:
            raise _Unmapped
        w = self.wires[a]
        if isinstance(w, _Lazy):
            return self.materialize(w)
        if not isinstance(w, Wire):
            raise _Unmapped
        return w, self.units.get(a, ())

    def pointwise(self, n, a, make) -> Wire:
        """`make(wire)` of an op that keeps its input's shape (a cast, a scale, a unary
        function) on node a's wire as it is: the size-1 dims a leaves off stay off n's."""
        x, units = self.bare(a)
        y = make(x)
        self.units[n] = units
        return y

    def with_units(self, w: Wire, units, shape, node) -> Wire:
        """`w` with unit axes where torch has the size-1 dims `units` (split off a neighbour)."""
        axes = list(w.axes)
        for p in sorted(units):
            if not axes:
                raise _Unmapped  # a tensor of size-1 dims only
            u = self.unit(axes)
            nb = axes[p - 1] if p > 0 else axes[0]
            into = [nb, u] if p > 0 else [u, nb]
            w = self.b.split_axis(w, nb, into, name=self.box_name(node, "unit"))
            axes.insert(p, u)
        assert len(axes) == len(shape)
        return w

    @imports("permute")
    def order(self, w: Wire, names, node, suffix="order") -> Wire:
        """`w` with its axes in the order `names` (a permute box when they differ)."""
        if list(w.axes) == list(names):
            return w
        return self.b.permute(w, list(names), name=self.box_name(node, suffix))

    # -- mapping one node
    def map(self, n: fx.Node):
        first = self.values.get(n.args[0]) if n.args and isinstance(n.args[0], fx.Node) else None
        if changes_in_place(n, self.gm, first):
            return self.in_place(n)
        if n.op == "call_module":
            return self.map_module(n, self.gm.get_submodule(n.target))
        if n.op == "call_function":
            return self.map_function(n, n.target)
        if n.op == "call_method":
            return self.map_method(n, n.target)
        raise _Unmapped
