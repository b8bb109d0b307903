"""The entry point: `from_torch` checks its arguments, traces the model with torch.fx
(compiler/tracing.py; the layers the importer maps and those the user keeps stay whole), runs it
on the example inputs, and imports it node by node (core.py), again with a linear map's output
axis named apart where a name turned out to stand for two products."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import fx, nn

from .. import tracing
from ..errors import TorchImportError
from .common import _first_line, _Rename
from .core import _Importer
from .reshape import _EINOPS_LAYERS, EINOPS_FNS
from .tables import _MAPPED_MODULES

_TRACED_INTO = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
"""torch.nn layers that fx would keep whole (it keeps every torch.nn module but Sequential)
and whose forward the importer traces, so that they become boxes."""
_MASK_FNS = tuple(getattr(F, f) for f in ("_canonical_mask", "_none_or_dtype") if hasattr(F, f))
"""torch's own checks of a mask inside those layers (they read its dtype): nodes of the trace."""


def _keeps_whole(m: nn.Module, path: str, kept) -> bool | None:
    """The layers the importer maps, and those the user keeps (`kept`: paths and classes),
    stay one node of the trace; None leaves it to fx."""
    if isinstance(m, (*_MAPPED_MODULES, *_EINOPS_LAYERS, *kept[1])) or path in kept[0]:
        return True
    return False if isinstance(m, _TRACED_INTO) else None


def _trace(model: nn.Module, example_inputs: tuple, kept) -> fx.GraphModule:
    """The traced model. A torch layer traced into (`_TRACED_INTO`) whose code fx cannot
    trace as called (an encoder layer given a mask tensor) is kept whole instead, as fx
    keeps torch's layers."""
    while True:
        try:
            return tracing.trace(model, example_inputs,
                                 lambda m, path: _keeps_whole(m, path, kept),
                                 functions=(*EINOPS_FNS, *_MASK_FNS))  # fmt: skip
        except tracing.TraceFailure as e:
            parts = e.path.split(".") if e.path else []
            inner = [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
            whole = next((p for p in inner if p not in kept[0]
                          and isinstance(model.get_submodule(p), _TRACED_INTO)), None)  # fmt: skip
            if whole is None:
                raise
            kept[0].add(whole)


def _kept(model: nn.Module, keep) -> tuple[set[str], tuple[type, ...]]:
    """`keep` as (submodule paths, classes), each path checked against the model."""
    if isinstance(keep, (str, type)):
        keep = [keep]
    paths = {k for k in keep if isinstance(k, str)}
    classes = tuple(k for k in keep if isinstance(k, type))
    if len(paths) + len(classes) != len(list(keep)):
        raise TorchImportError("keep: expected submodule paths (str) or classes")
    have = {p for p, _ in model.named_modules()}
    for p in sorted(paths - have):
        near = [h for h in have if h and h.split(".")[-1] == p.split(".")[-1]][:3]
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise TorchImportError(f"keep: {type(model).__name__} has no submodule {p!r}{hint}")
    return paths, classes


def from_torch(model: nn.Module, example_inputs, name: str | None = None, keep=()):
    """Import `model` as a circuit; `example_inputs` is a tensor or a tuple of tensors.
    `keep` names submodules (paths such as `"layers.0.rope"`, or classes) kept whole: each
    call is one opaque box that runs it (for code torch.fx cannot trace, which the error
    names).

    Returns the `Circuit`. Its weights (named after its boxes) and the callables of its
    opaque boxes are attached in memory, so `ncd.compile(circuit)` gives a module that computes
    what `model` computes (the weights are loaded into it); `ncd.compiler.attached.weights`
    returns them.

    >>> c = from_torch(nn.TransformerEncoderLayer(32, 4, 64, batch_first=True).eval(),
    ...                torch.randn(2, 16, 32))
    >>> [b.kind for b in c.boxes][:4]
    ['linear', 'linear', 'linear', 'rename']
    """
    if name is not None:
        _check_name(name)
    if not isinstance(model, nn.Module):
        raise TorchImportError(f"model: expected a torch.nn.Module, found {type(model).__name__}")
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if not isinstance(example_inputs, (tuple, list)):
        raise TorchImportError("example_inputs: expected a tensor or a tuple of them, found "
                               f"{type(example_inputs).__name__}")  # fmt: skip
    example_inputs = tuple(example_inputs)
    _check_signature(model, len(example_inputs))
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fast path branches on tensor values
    kept = _kept(model, keep)
    try:
        gm = _trace(model, example_inputs, kept)
    except tracing.TraceFailure as e:
        where = f" in `{e.path}`" if e.path else ""
        how = (
            f"keep that submodule whole (one opaque box): keep=[{e.path!r}], or "
            f"`ncd import --keep {e.path}`"
            if e.path
            else "move that code into a submodule and keep it whole (keep=[path])"
        )
        raise TorchImportError(
            f"cannot trace {type(model).__name__} with torch.fx{where} "
            f"({type(e.error).__name__}: {_first_line(e.error)}); {how}"
        ) from None
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    try:
        values = tracing.values(gm, example_inputs)
    except Exception as e:
        raise TorchImportError(
            f"running {type(model).__name__} on the example inputs failed "
            f"({type(e).__name__}: {_first_line(e)})"
        ) from None
    cname = name or _snake(type(model).__name__)
    own: set[fx.Node] = set()
    for _ in range(16):  # (each round names one more output apart)
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            try:
                circuit = _Importer(model, gm, values, cname, own).run()
            except _Rename as r:
                own.add(r.node)
                continue
        for w in said:  # the warnings of the import that holds
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return circuit
    raise TorchImportError(f"{type(model).__name__}: axis names kept clashing; import gave up")


def _check_signature(model: nn.Module, given: int) -> None:
    """forward takes the `given` example inputs one by one: each is one input of the circuit,
    named after its parameter (`*xs` gathering them into one tuple, which a circuit has no
    wire for, is refused)."""
    import inspect

    for i, p in enumerate(inspect.signature(model.forward).parameters.values()):
        if p.kind is inspect.Parameter.VAR_POSITIONAL and given > i:
            raise TorchImportError(
                f"{type(model).__name__}.forward takes its inputs as *{p.name}: ncd names "
                f"each input after its parameter (expected forward(self, x, y, ...), found "
                f"forward(..., *{p.name}); wrap the model in a module whose forward names them)"
            )


def _check_name(name) -> None:
    from pydantic import TypeAdapter, ValidationError

    from ncd.circuits.kinds.base import Name

    try:
        TypeAdapter(Name).validate_python(name)
    except ValidationError as e:
        msg = e.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
        raise TorchImportError(f"circuit name {name!r}: {msg}") from None


def _snake(text: str) -> str:
    """A class name in snake case with acronyms whole: `GQAttention` -> `gq_attention`,
    `RMSNorm` -> `rms_norm`, `Conv2d` -> `conv2d`. A short capitalised fragment (up to three
    letters) joins the acronym after it (`SwiGLU` -> `swiglu`, `ViT` -> `vit`), and fragments of
    two letters join each other (`ConvNeXt` -> `conv_next`)."""
    import re

    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z][a-z]*|[a-z]+|\d+", text)
    out: list[str] = []
    prev = ""
    for w in words:
        frag = prev[:1].isupper() and prev[1:].islower() and len(prev) <= 3
        joins = out and (
            w.isdigit()
            or prev.isdigit()
            or (frag and w.isupper())
            or (frag and len(prev) <= 2 and w[:1].isupper() and len(w) <= 2)
            or (w.islower() and not prev[:1].isupper())
        )
        if joins:
            out[-1] += w.lower()
        else:
            out.append(w.lower())
        prev = w
    return "_".join(out) or "model"


def to_spec(model: nn.Module, example_inputs, name: str | None = None) -> str:
    """The imported circuit as JSON (callables and weights stay behind)."""
    return from_torch(model, example_inputs, name).to_json()
