"""Algebraic collapse of linear chains (SESR's trick): two learned linear maps with nothing
non-linear between them are one linear map, so a model trained over-parameterised (a wide
expand followed by a project) runs at inference as the single map they compose to.

    >>> small, weights = collapse(circuit, model.state_dict())
    >>> ncd.compile(small).load_state_dict(weights)     # same outputs, fewer FLOPs

Chains collapsed: linear → linear (the second reads exactly the axes the first makes), and a
convolution → a 1×1 convolution (stride 1, no padding, one group). The first box must have no
other reader. The fused box keeps the second box's name, so every reference still holds.

A residual around a linear map folds in too: `map(x) + x`, where the map gives its input's
shape, is the map plus the identity (a linear map over the same axes out as in: W + I; a
convolution C → C of stride 1 whose padding keeps the size: the identity added to the kernel's
centre tap). The addition disappears and whatever read it reads the map.
"""

from __future__ import annotations

import math

import torch

from ncd.circuits.circuit import Circuit
from ncd.circuits.kinds import KINDS
from ncd.circuits.validate import check

from .names import scope_names


def collapse(
    circuit: Circuit, state: dict[str, torch.Tensor], sizes: dict[str, int] | None = None
) -> tuple[Circuit, dict[str, torch.Tensor]]:
    """The circuit with its linear chains collapsed, and the weights of the collapsed
    circuit (keys as `ncd.compile` names them) computed from `state`."""
    state = dict(state)
    while True:
        checked = check(circuit, sizes)
        _, idents = scope_names(circuit, checked.order)
        readers = readers_of(checked)
        found = None
        for name in checked.order:
            b = checked.box(name)
            if b.kind == "binary" and b.fn == "add":
                found = _residual(checked, b, readers, idents, state)
                if found:
                    break
            src = checked.sources[name].get("x", ("", ""))[0]
            if not src or readers.get(src) != [name]:
                continue
            a = checked.box(src)
            if a.kind == b.kind == "linear" and exact(a) and exact(b) and set(b.over) == set(a.out):
                found = _linear(checked, a, b, idents, state)
            elif a.kind == b.kind == "conv" and _pointwise(b) and b.channel == a.out:
                found = _conv(a, b, idents, state)
            if found:
                break
        if not found:
            return circuit, state
        new_box, new_weights, removed = found
        boxes = [
            new_box if x.name == new_box.name else x for x in circuit.boxes if x.name != removed
        ]
        old_idents = idents
        circuit = circuit.model_copy(update={"boxes": boxes})
        if checked.box(removed).kind == "binary":  # a folded residual: its readers read the map
            circuit = _redirect(circuit, removed, new_box.name)
        state = rename_keys(circuit, sizes, old_idents, state, removed, {new_box.name: new_weights})


def _pointwise(b) -> bool:
    ones = all(k == 1 for k in b._norm("kernel"))
    plain = all(s == 1 for s in b._norm("stride")) and all(p == 0 for p in b._norm("padding"))
    return ones and plain and b.groups == 1 and not b.transposed and not b.depthwise


def linear_axes(checked, b) -> tuple[list[int], list[int]]:
    """The sizes of a linear map's `out` and `over` axes: its weight, nn.Linear's matrix
    [prod(out), prod(over)], viewed [*out, *over]."""
    x, y = checked.ins[b.name]["x"], checked.outs[b.name]["out"]
    out = [checked.number(y.axis(a).size) for a in b.out]
    return out, [checked.number(x.axis(a).size) for a in b.over]


def _linear(checked, a, b, idents, state):
    """y = Wb (Wa x + ba) + bb: weight [*b.out, *a.over], bias Wb ba + bb (computed over
    the named axes, stored as nn.Linear's matrix and vector)."""
    out_a, over_a = linear_axes(checked, a)
    out_b, over_b = linear_axes(checked, b)
    wa = state[f"{idents[a.name]}.weight"].reshape(*out_a, *over_a)
    wb = state[f"{idents[b.name]}.weight"].reshape(*out_b, *over_b)
    n_out_b, n_mid = len(b.out), len(a.out)
    # b's weight lists the middle axes in b.over's order; bring them to a.out's order
    perm = [b.over.index(x) for x in a.out]
    wb = wb.permute(*range(n_out_b), *[n_out_b + p for p in perm])
    mid = list(range(n_out_b, n_out_b + n_mid))
    w = torch.tensordot(wb, wa, dims=(mid, list(range(n_mid)))).reshape(
        math.prod(out_b), math.prod(over_a)
    )
    bias = None
    if a.bias:
        ba = state[f"{idents[a.name]}.bias"].reshape(out_a)
        bias = torch.tensordot(wb, ba, dims=(mid, list(range(n_mid)))).reshape(-1)
    if b.bias:
        bb = state[f"{idents[b.name]}.bias"]
        bias = bb if bias is None else bias + bb
    box = KINDS["linear"](
        name=b.name, inputs=a.inputs, label=b.label, group=b.group, over=a.over, out=b.out,
        bias=bias is not None,
    )  # fmt: skip
    weights = {"weight": w} | ({"bias": bias} if bias is not None else {})
    return box, weights, a.name


def _conv(a, b, idents, state):
    """A 1×1 convolution after a convolution: W[o, c, k...] = Σ_e Wb[o, e] Wa[e, c, k...]."""
    wa, wb = state[f"{idents[a.name]}.weight"], state[f"{idents[b.name]}.weight"]
    wb2 = wb.flatten(1)  # [O, E]
    if a.transposed or a.depthwise or a.groups != 1:
        return None
    w = torch.einsum("oe,e...->o...", wb2, wa)
    bias = None
    if a.bias:
        bias = wb2 @ state[f"{idents[a.name]}.bias"]
    if b.bias:
        bb = state[f"{idents[b.name]}.bias"]
        bias = bb if bias is None else bias + bb
    fields = a.model_dump(exclude={"name", "inputs", "label", "group", "out", "bias", "kind"})
    box = KINDS["conv"](
        name=b.name, inputs=a.inputs, label=b.label, group=b.group, out=b.out,
        bias=bias is not None, **fields,
    )  # fmt: skip
    weights = {"weight": w} | ({"bias": bias} if bias is not None else {})
    return box, weights, a.name


def _residual(checked, add, readers, idents, state):
    """`add` = map(x) + x with the map (linear or convolution) read by `add` only: the map
    with the identity added to its weight, or None where the sum is not of that form."""
    srcs = checked.sources[add.name]
    for port, other in (("a", "b"), ("b", "a")):
        m = srcs[port][0]
        if not m or readers.get(m) != [add.name] or srcs[port][1] != "out":
            continue
        mb = checked.box(m)
        if mb.kind not in ("linear", "conv") or checked.sources[m].get("x") != srcs[other]:
            continue
        x_t, y_t = checked.value(srcs[other]), checked.outs[m]["out"]
        if y_t.names != checked.outs[add.name]["out"].names or x_t.dtype != y_t.dtype:
            continue
        if mb.kind == "linear" and exact(mb) and set(mb.over) == set(mb.out):
            eye = _linear_eye(mb, linear_axes(checked, mb)[0])
            return mb, _plus_identity(mb, idents, state, eye), add.name
        if mb.kind == "conv" and _same_size(mb) and mb.out == mb.channel:
            w = state[f"{idents[mb.name]}.weight"]
            return mb, _plus_identity(mb, idents, state, _conv_eye(w)), add.name
    return None


def readers_of(checked) -> dict[str, list[str]]:
    """Box name -> the boxes that read its outputs, "" for each circuit output it feeds."""
    readers: dict[str, list[str]] = {}
    for box, srcs in checked.sources.items():
        for sb, _ in srcs.values():
            readers.setdefault(sb, []).append(box)
    for sb, _ in checked.output_sources.values():
        readers.setdefault(sb, []).append("")
    return readers


def exact(b) -> bool:
    """A linear map whose products and gradients are exact: one that samples its backward
    (WTA-CRS) or approximates its products (L-Mul) is no plain matrix, and merging it would drop
    that option."""
    return getattr(b, "backward", "exact") == "exact" and getattr(b, "product", "exact") == "exact"


def _same_size(b) -> bool:
    """A convolution of stride 1 whose padding keeps every spatial size (odd kernels)."""
    if b.transposed or b.depthwise or b.groups != 1:
        return False
    k, s, p, d = (b._norm(f) for f in ("kernel", "stride", "padding", "dilation"))
    return all(
        ki % 2 == 1 and si == 1 and pi == di * (ki - 1) // 2
        for ki, si, pi, di in zip(k, s, p, d, strict=True)
    )


def _plus_identity(b, idents, state, eye):
    """The map's weights with `eye` added to its weight (its bias unchanged)."""
    w = state[f"{idents[b.name]}.weight"]
    weights = {"weight": w + eye.to(w)}
    if b.bias:
        weights["bias"] = state[f"{idents[b.name]}.bias"]
    return weights


def _linear_eye(b, sizes):
    """δ over [out..., over...] (out axis a matched with over axis a; `sizes` those of
    `out`), as nn.Linear's matrix [prod(out), prod(over)]."""
    n = len(b.out)
    eye = torch.eye(math.prod(sizes), dtype=torch.float64).reshape(*sizes, *sizes)
    # eye is [out..., out...]; its second half brought to the order of `over`
    eye = eye.permute(*range(n), *[n + b.out.index(a) for a in b.over])
    return eye.reshape(math.prod(sizes), math.prod(sizes))


def _conv_eye(w):
    """δ_oc at the kernel's centre tap, zero elsewhere: [O, C, k...]."""
    eye = torch.zeros_like(w)
    idx = torch.arange(w.shape[0], device=w.device)
    eye[(idx, idx, *(k // 2 for k in w.shape[2:]))] = 1
    return eye


def _redirect(circuit, old, new):
    """References to box `old`'s output (`old`, `old.out`) made references to box `new`."""

    def ref(r):
        return new if r in (old, f"{old}.out") else r

    boxes = [
        x.model_copy(update={"inputs": {p: ref(r) for p, r in x.inputs.items()}})
        for x in circuit.boxes
    ]
    outputs = [o.model_copy(update={"source": ref(o.source)}) for o in circuit.outputs]
    return circuit.model_copy(update={"boxes": boxes, "outputs": outputs})


def rename_keys(circuit, sizes, old_idents, state, removed, new_weights):
    """Weights keyed by the new circuit's names (removing a box can renumber identifiers):
    those of box `removed` dropped, those of each box in `new_weights` (box -> parameter ->
    tensor) replaced by the given ones."""
    _, new_idents = scope_names(circuit, check(circuit, sizes).order)
    out = {}
    for key, t in state.items():
        head, _, rest = key.partition(".")
        box = next((b for b, i in old_idents.items() if i == head), None)
        if box == removed or box in new_weights:
            continue
        out[f"{new_idents[box]}.{rest}" if box in new_idents else key] = t
    for box, weights in new_weights.items():
        for p, t in weights.items():
            out[f"{new_idents[box]}.{p}"] = t
    return out
