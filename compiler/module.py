"""What a compiled GraphModule is besides its graph: its layers as their own classes, a
printout like a hand-written module's, deep copies that keep both, and one clear error for
TorchScript.

fx's GraphModule copies only the tensors its graph reads, into plain `nn.Module`s, so a
linear map's holder would print as `Module()`. `adopt` puts each holder back (the same
tensors, so state_dict keys do not change) and `keep` gives the module's class (each
GraphModule has a class of its own) a repr that notes each layer's box in the circuit's axes:

    TransformerBlock(
      # circuit 'transformer_block' (H=4, K=8, V=8, F=64): x [B T D] -> y [B T D]
      # 8,544 parameters; float32 on cpu
      (ln1): LayerNorm((32,), eps=1e-05, elementwise_affine=True, bias=True)  # layernorm over D
      (q_proj): Linear(in_features=32, out_features=32, bias=True)  # linear D -> H K
      ...
"""

from __future__ import annotations

from torch import fx, nn

from ncd.circuits.types import TensorType

from .errors import CompileError
from .names import comment


def shape_text(t) -> str:
    """A wire's axes as the comments write them: `[B T D]`, a tuple `(a: [B T], b: [B])`."""
    if isinstance(t, TensorType):
        return "[" + " ".join(t.names) + "]"
    return "(" + ", ".join(f"{n}: {shape_text(x)}" for n, x in t.items) + ")"


def box_summary(b) -> str:
    """What box `b` does, in the circuit's axis names: `linear D -> H K`, `softmax over S`."""
    if b.kind == "linear":
        return f"linear {' '.join(b.over)} -> {' '.join(b.out)}"
    if b.kind == "scale":
        return f"scale by {b.factor}"
    if b.kind == "rename":
        return "rename " + ", ".join(f"{a} -> {z}" for a, z in b.mapping.items())
    if b.kind in ("unary", "binary"):
        return b.fn
    if b.acts_on():
        # A kind that broadcasts over no axis names the axes it is parametrised by: batch
        # norm's statistics are over every axis but the channel ("batchnorm per C").
        how = "over" if type(b).broadcasts else "per"
        return f"{b.kind} {how} {' '.join(dict.fromkeys(b.acts_on()))}"
    return b.kind


def header(checked, read=()) -> str:
    """The printout's first line: the circuit, the sizes of those in `read` (those the module
    is specialised to), its inputs and outputs."""
    c = checked.circuit
    ins = ", ".join(f"{n} {shape_text(t)}" for n, t in checked.inputs.items())
    outs = ", ".join(f"{n} {shape_text(t)}" for n, t in checked.outputs.items())
    sizes = ", ".join(f"{k}={v}" for k, v in checked.sizes.items() if k in read)
    bound = f" ({sizes})" if sizes else ""
    return comment(f"circuit {c.name!r}{bound}: {ins} -> {outs}", 400)


def _tensors(m: nn.Module) -> tuple[dict[str, int], set[str]]:
    """The identity of each tensor `m` holds, by name, and its state_dict's keys."""
    named = [*m.named_parameters(remove_duplicate=False), *m.named_buffers(remove_duplicate=False)]
    return {k: id(t) for k, t in named}, set(m.state_dict(keep_vars=True))


def adopt(gm: fx.GraphModule, holders: dict[str, nn.Module]) -> None:
    """Each of `holders` (attribute name -> module) whose tensors fx copied into a plain
    nn.Module on `gm` goes back in its place, where it holds the very same tensors under the
    same names (so that nothing a state_dict sees changes)."""
    for name, holder in holders.items():
        copy = gm._modules.get(name)
        if type(copy) is nn.Module and copy is not holder and _tensors(copy) == _tensors(holder):
            gm._modules[name] = holder


def keep(gm: fx.GraphModule, head: str, notes: dict[str, str], root: bool) -> None:
    """Installs on `gm`'s class (its own: each GraphModule has one) the printout (`head`, then
    for the module `ncd.compile` returns, `root`, its parameters' count, dtypes and devices;
    `notes` by attribute name after each layer's line), deep copies that keep it, and the
    refusal of torch.jit.script."""
    cls = type(gm)
    cls.ncd_printout = (head, dict(notes), root)
    cls.__repr__ = _repr
    cls.__str__ = _repr  # as a hand-written module prints (fx's adds its code: `gm.code`)
    cls.__deepcopy__ = deepcopy
    cls.__prepare_scriptable__ = _refuse_script


def deepcopy(module: fx.GraphModule, memo: dict) -> fx.GraphModule:
    """fx's deep copy (a new GraphModule, of a new class named GraphModule, whose holders
    are plain modules again) with the class's name, the holders' copies and the printout."""
    copied = fx.GraphModule.__deepcopy__(module, memo)
    type(copied).__name__ = type(module).__name__
    adopt(copied, {k: memo[id(m)] for k, m in module._modules.items() if id(m) in memo})
    keep(copied, *type(module).ncd_printout)
    return copied


def _repr(self) -> str:
    head, notes, root = type(self).ncd_printout
    lines = [f"# {head}"]
    if root:
        lines.append(f"# {_tensor_summary(self)}")
    for key, sub in self._modules.items():
        text = nn.modules.module._addindent(repr(sub), 2)
        if notes.get(key):
            first, nl, rest = text.partition("\n")
            text = f"{first}  # {notes[key]}{nl}{rest}"
        lines.append(f"({key}): {text}")
    return f"{self._get_name()}(\n  " + "\n  ".join(lines) + "\n)"


def _tensor_summary(m: nn.Module) -> str:
    """`8,544 parameters; float32 on cpu`: the count, and the dtypes and devices of the
    parameters and buffers as they are now."""
    tensors = [*m.parameters(), *m.buffers()]
    n = sum(p.numel() for p in m.parameters())
    if not tensors:
        return "no parameters"
    dtypes = ", ".join(sorted({str(t.dtype).removeprefix("torch.") for t in tensors}))
    devices = ", ".join(sorted({str(t.device) for t in tensors}))
    return f"{n:,} parameters; {dtypes} on {devices}"


def _refuse_script(self):
    """torch.jit.script calls this first on a module (and on each submodule)."""
    raise CompileError(
        "torch.jit.script",
        "TorchScript cannot compile ncd's modules (their fused ops and input checks are "
        "Python); use torch.export.export(module, args) for a saved, Python-free program, "
        "or torch.compile(module)",
    )


__all__ = ["adopt", "box_summary", "deepcopy", "header", "keep", "shape_text"]
