"""Opaque boxes: what the importer cannot map runs as it was traced (a node, or a region of
computations on complex tensors), its callable kept in memory beside the circuit."""

from __future__ import annotations

import copy
import warnings

import torch
from torch import fx, nn

from ncd.circuits.builder import Wire
from ncd.circuits.errors import BuildError

from .. import tracing
from ..errors import TorchImportError
from ..in_place import changes_in_place
from .common import _dtype, _flat, _is_t, _Lazy, _target_name, _Unmapped
from .tables import imports


def _tensor_paths(v, path=()) -> list[tuple[int, ...]] | None:
    """The index paths of the tensors in v (a tensor: [()]; a nested tuple or list: each
    member's), None where v holds anything else but None."""
    if isinstance(v, torch.Tensor):
        return [path]
    if v is None:
        return []
    if not isinstance(v, (tuple, list)):
        return None
    found: list = []
    for i, m in enumerate(v):
        sub = _tensor_paths(m, (*path, i))
        if sub is None:
            return None
        found += sub
    return found


def _at(v, path: tuple[int, ...]):
    for i in path:
        v = v[i]
    return v


class _Replay(nn.Module):
    """Runs traced nodes again (one, or a region of them in graph order), with new values
    for the tensors they read."""

    def __init__(self, gm, nodes: list[fx.Node], tensors, consts, pick=None, bools=(),
                 in_place=False):  # fmt: skip
        super().__init__()
        self.consts = consts
        # the first node changes its first argument in place (`add_`, `F.elu(x,
        # inplace=True)`): it works on a copy, as the box's input is another box's output,
        # which others may read
        self.in_place = in_place
        self.steps = [(m, m.op, m.target, m.args, m.kwargs) for m in nodes]
        self.tensors = tensors
        self.pick = pick  # a tuple result: the paths of its tensors, the box's outputs
        self.bools = bools  # inputs that were booleans where traced
        self.mods = nn.ModuleList()
        self.held: dict[fx.Node, tuple[str, torch.dtype]] = {}
        for m in nodes:
            if m.op == "call_module":
                self.mods.append(copy.deepcopy(gm.get_submodule(m.target)))
            elif m.op == "get_attr":  # a tensor the model holds (a complex one: kept as
                # real pairs, which a module's .to(dtype) casts without dropping a part)
                t = tracing.fetch(gm, m.target).detach()
                name = f"held{len(self.held)}"
                self.register_buffer(name, torch.view_as_real(t) if t.is_complex() else t)
                self.held[m] = (name, t.dtype)

    def forward(self, *xs):
        xs = tuple(x != 0 if i in self.bools and x.dtype != torch.bool else x
                   for i, x in enumerate(xs))  # fmt: skip
        env = {**self.consts, **dict(zip(self.tensors, xs, strict=True))}
        mods = iter(self.mods)
        for node, op, target, args, kwargs in self.steps:
            args = fx.node.map_arg(args, lambda a: env[a])
            kwargs = fx.node.map_arg(kwargs, lambda a: env[a])
            if self.in_place and node is self.steps[0][0]:
                args = (args[0].clone(), *args[1:])
            if op == "get_attr":
                name, dtype = self.held[node]
                t = getattr(self, name)
                out = t if not dtype.is_complex else torch.view_as_complex(
                    t.to(torch.float64 if dtype == torch.complex128 else torch.float32)
                    .contiguous()
                )  # fmt: skip
            elif op == "call_module":
                out = next(mods)(*args, **kwargs)
            elif op == "call_method":
                # `view` -> `reshape`: the circuit does not keep `contiguous()` calls
                method = "reshape" if target == "view" else target
                out = getattr(args[0], method)(*args[1:], **kwargs)
            else:
                out = target(*args, **kwargs)
            env[node] = out
        if self.pick is None:
            return out
        outs = tuple(_at(out, p) for p in self.pick)
        return outs if len(outs) > 1 else outs[0]


class _Opaque:
    """Opaque boxes (a mixin of `_Importer`, core.py)."""

    @imports("opaque")
    def opaque(self, n: fx.Node, region: list[fx.Node] | None = None):
        """A box that runs the node as it was (module or function), by its tensor inputs; or
        a `region` of nodes ending in n, in graph order (computations on complex tensors,
        which have no type in a circuit), by the tensors the region reads."""
        region = region or [n]
        inside = set(region)
        read = [a for m in region for a in _flat(m.args) + _flat(list(m.kwargs.values()))
                if isinstance(a, fx.Node) and a not in inside]  # fmt: skip
        tensors = list(dict.fromkeys(a for a in read if _is_t(self, a)))
        v = self.values[n]
        # the tensors of a (nested) tuple result, by their paths in it (an LSTM's (out, (h,
        # c))); None members (nn.MultiheadAttention's weights when not asked for) are no
        # outputs, their positions read None
        pick = _tensor_paths(v)
        outs = [_at(v, p) for p in pick or ()]
        if not outs:
            raise TorchImportError(
                f"{self.where(n)}: returns {type(v).__name__} values other than tensors and "
                "None, which no box carries"
            )
        try:
            ins = [self.wire(a) if isinstance(self.wires.get(a), (Wire, _Lazy)) else None
                   for a in tensors]  # fmt: skip
        except (_Unmapped, BuildError):  # a held tensor read in a way no box draws
            ins = [None]
        if any(w is None for w in ins):
            raise TorchImportError(f"node '{n.name}' ({n.target}): reads a value ncd cannot wire")
        ports = [f"x{i}" if len(ins) > 1 else "x" for i in range(len(ins))]
        outputs = {}
        for i, t in enumerate(outs):
            # axes keep their input's names where rank and size agree position by position
            first = ins[0].axes if ins else ()
            names: list[str] = []
            for j, s in enumerate(t.shape):
                same = len(first) == t.dim() and self.sizes.get(first[j]) == s
                fresh = None if same else self.axis("feature", s, avoid=names + list(first))
                names.append(first[j] if same else fresh)
            base = names
            outputs["out" if len(outs) == 1 else f"out{i}"] = list(base)
        name = self.box_name(n)
        consts = {a: self.values[a] for a in read if a not in tensors}
        for a in consts:  # sizes the box runs with as the example's numbers
            self.pin(a)
        whole = None if not isinstance(v, (tuple, list)) else pick
        # a comparison's wire holds 0 and 1 in a float type where the node read booleans
        bools = tuple(i for i, a in enumerate(tensors) if self.values[a].dtype == torch.bool)
        first = self.values.get(n.args[0]) if n.args and isinstance(n.args[0], fx.Node) else None
        changes = len(region) == 1 and changes_in_place(n, self.gm, first)
        self.callables[name] = _Replay(self.gm, region, tensors, consts, whole, bools, changes)
        held = sum(p.numel() for p in self.callables[name].parameters())
        if held:  # (a layer ncd does not map, such as nn.LSTM)
            warnings.warn(
                f"{self.where(n)}: runs as the opaque box {name!r}, whose {held} parameters stay "
                "in its callable in memory: they are not among the circuit's weights (nor in "
                "the file `ncd import -o` writes), and analyses do not count them",
                stacklevel=3,
            )
        target = _target_name(self.gm, n)
        if len(region) > 1:
            target = f"{_target_name(self.gm, region[0])} … {target} ({len(region)} ops)"
        r = self.b.box(
            "opaque",
            dict(zip(ports, ins, strict=True)),
            name,
            target=target[:200],
            in_ports=ports,
            outputs=outputs,
            dtype=_dtype(outs[0]),
            dtypes={
                p: _dtype(t)
                for p, t in zip(outputs, outs, strict=True)
                if _dtype(t) != _dtype(outs[0])
            },  # fmt: skip
        )
        if not isinstance(v, (tuple, list)):
            return r
        got = dict(zip(pick, [r] if len(outs) == 1 else [r[p] for p in outputs], strict=True))

        def rebuild(u, path):
            if isinstance(u, (tuple, list)):
                return tuple(rebuild(m, (*path, i)) for i, m in enumerate(u))
            return got.get(path)

        return rebuild(v, ())
