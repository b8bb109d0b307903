"""Folding inference-mode normalisations into the linear maps that read them (Unified
Normalization's point): a norm whose statistics are constants at inference is a per-channel
affine map, y = s ⊙ x + t, and a linear map after it absorbs it, W (s ⊙ x + t) + b =
(W diag s) x + (W t + b).

    >>> small, weights = fold_norms(circuit, model.eval().state_dict())
    >>> ncd.compile(small).eval().load_state_dict(weights)   # same outputs at inference

Norms folded: `unifiednorm` (s = weight / sqrt(running_var + eps), t = bias) and `batchnorm`
(s = weight / sqrt(running_var + eps), t = bias - running_mean s). Every reader of the norm
must be a map that absorbs it: a linear map whose `over` holds the norm's channel axis, or an
ungrouped, untransposed convolution over that channel without padding (zero padding of the
normalised input is not zero padding of x where t ≠ 0; a padded convolution folds a norm
without shift). The norm disappears; its readers read its input. The folded circuit is for
inference only: in training, a norm computes batch statistics that no longer exist.
"""

from __future__ import annotations

import torch

from ncd.circuits.circuit import Circuit
from ncd.circuits.validate import check

from .collapse import exact, linear_axes, readers_of, rename_keys
from .names import scope_names

NORMS = ("unifiednorm", "batchnorm")


def fold_norms(
    circuit: Circuit, state: dict[str, torch.Tensor], sizes: dict[str, int] | None = None
) -> tuple[Circuit, dict[str, torch.Tensor]]:
    """The circuit with its inference-mode norms folded into the maps that read them, and the
    weights of the folded circuit (keys as `ncd.compile` names them) computed from `state`."""
    state = dict(state)
    while True:
        checked = check(circuit, sizes)
        _, idents = scope_names(circuit, checked.order)
        readers = readers_of(checked)
        found = None
        for name in checked.order:
            norm = checked.box(name)
            if norm.kind not in NORMS or not readers.get(name):
                continue
            scale, shift = _affine(norm, idents, state)
            maps = [checked.box(r) if r else None for r in readers[name]]
            if all(m is not None and _absorbs(m, norm.channel, shift) for m in maps):
                found = norm, {m.name: _fold(checked, m, norm.channel, scale, shift, idents,
                                             state) for m in maps}  # fmt: skip
                break
        if not found:
            return circuit, state
        norm, folded = found
        source = norm.inputs["x"]
        boxes = []
        for b in circuit.boxes:
            if b.name in folded:
                bias = "bias" in folded[b.name]
                boxes.append(b.model_copy(update={"inputs": {"x": source}, "bias": bias}))
            elif b.name != norm.name:
                boxes.append(b)
        circuit = circuit.model_copy(update={"boxes": boxes})
        state = rename_keys(circuit, sizes, idents, state, norm.name, folded)


def _affine(norm, idents, state):
    """(s, t) of the norm at inference, per channel; t None where it is zero."""
    key = idents[norm.name]
    var = state[f"{key}.running_var"]
    scale = torch.rsqrt(var + norm.eps)
    shift = None
    if norm.affine:
        scale = scale * state[f"{key}.weight"]
        shift = state[f"{key}.bias"]
    if norm.kind == "batchnorm":
        mean = state[f"{key}.running_mean"] * scale
        shift = -mean if shift is None else shift - mean
    return scale, shift


def _absorbs(m, channel, shift) -> bool:
    if m.kind == "linear":
        return exact(m) and channel in m.over
    if m.kind == "conv":
        plain = m.groups == 1 and not m.depthwise and not m.transposed
        unpadded = shift is None or all(p == 0 for p in m._norm("padding"))
        return plain and unpadded and m.channel == channel
    return False


def _fold(checked, m, channel, scale, shift, idents, state):
    """The map's weight scaled along the channel; its bias plus the weight applied to t (a
    linear map's weight, nn.Linear's matrix, viewed [*out, *over] for this)."""
    w = state[f"{idents[m.name]}.weight"]
    stored = w.shape
    if m.kind == "linear":
        w = w.reshape(*(n for sizes in linear_axes(checked, m) for n in sizes))
    first = len(m.out) if m.kind == "linear" else 1  # the weight's contracted dimensions
    dim = first + m.over.index(channel) if m.kind == "linear" else 1
    shape = [1] * w.dim()
    shape[dim] = -1
    weights = {"weight": (w * scale.reshape(shape)).reshape(stored)}
    if m.bias:
        weights["bias"] = state[f"{idents[m.name]}.bias"]
    if shift is not None:
        wt = (w * shift.reshape(shape)).sum(list(range(first, w.dim()))).reshape(-1)
        weights["bias"] = weights["bias"] + wt if m.bias else wt
    return weights
