"""Import: a PyTorch model → a circuit, its weights named after the circuit's boxes.

The model is traced with torch.fx (compiler/tracing.py: standard layers stay whole, a
`nn.Linear` is one node, a `nn.MultiheadAttention` one node, and so does any submodule named
in `keep`), and run once on the example inputs to learn every tensor's shape. Each node is
then mapped to boxes of the vocabulary through the Builder, so every box is checked as it is
made. A chain of elementwise ops of one tensor that computes a function of the vocabulary
(GELU written out) is recognised by its values and is that one box. Axes get readable names
by role and size (B, T, D, F, H, K, C, Y, X …; one name per size and role). Torch tensors are
positional and circuits are not, so the importer keeps one invariant: a wire's axes are
listed in the torch tensor's order (a `permute` box is added where a box's natural order
differs).

The model's structure is kept as blocks: the boxes a submodule's forward made are drawn in
a block titled by its path in the model (`layers.0.attn`, inside `layers.0`), so a figure of a
deep model folds with `--collapse layers.0`.

Anything it cannot map becomes an `opaque` box with its output axes stated (computations on
complex tensors, which have no type in a circuit, one box from the first complex value to the
real result); its callable (the
original module or function, with its constant arguments) is kept in memory beside the
circuit (`attached`), never in the JSON, so the imported circuit still compiles and runs.
The weights are attached too, with the names of those that are buffers; `ncd import -o` also
writes them to a safetensors file beside the spec, which `ncd.compile(weights=...)` loads.
What the circuit cannot express (an attention dropout, a batch norm's cumulative average) is
dropped with a warning that names the module.
"""

from __future__ import annotations

import contextlib
import copy
import math
import operator
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ncd.circuits.builder import Builder, Wire
from ncd.circuits.errors import BuildError
from ncd.circuits.kinds.registry import Registry
from ncd.circuits.limits import MAX_NUMBER
from ncd.circuits.sizes import parse_size, show

from . import attached, runtime, tracing
from .errors import TorchImportError
from .lowerings import UNARY
from .names import scope_names
from .passes import live_boxes

# Kind -> the method that maps PyTorch calls to it. Kinds no PyTorch call maps to are exempt:
# such calls import as opaque boxes.
_UNMAPPED = "no PyTorch call maps to it yet (one imports as an opaque box)"
IMPORTS = Registry(
    "importer mapping",
    "compiler/importer.py",
    "@imports",
    exempt={
        **dict.fromkeys(
            ("diagonal", "unifiednorm", "copy", "pack", "unpack", "linear_attention"),
            _UNMAPPED,
        ),
        "rename": "made by the importer itself, to give axes of equal size one name",
        "call": "an imported model is one flat circuit",
    },
)  # fmt: skip
imports = IMPORTS.register

_ROLES = {
    "batch": ["B", "B2", "B3"],
    "seq": ["T", "T2", "T3"],
    "key": ["S", "S2", "S3"],
    "feature": ["D", "F", "E", "G", "M", "P", "Q", "R"],
    "channel": ["C", "O", "C2", "C3", "C4", "C5", "C6"],
    "spatial": ["Y", "X", "Z", "Y2", "X2", "Z2"],
    "heads": ["H", "H2"],
    "head": ["K", "K2"],
    "value": ["V", "V2"],
    "vocab": ["W", "W2"],
    "unit": ["U", "U2", "U3"],
}
_UNARY_FNS = {
    F.relu: "relu",
    torch.relu: "relu",
    F.gelu: "gelu",
    F.silu: "silu",
    torch.sigmoid: "sigmoid",
    torch.tanh: "tanh",
    torch.exp: "exp",
    F.softplus: "softplus",
    F.elu: "elu",
    F.relu6: "relu6",
    F.hardswish: "hardswish",
    torch.neg: "neg",
    torch.abs: "abs",
    torch.sqrt: "sqrt",
    torch.rsqrt: "rsqrt",
    F.logsigmoid: "logsigmoid",
    operator.neg: "neg",
    torch.square: "square",
    torch.log: "log",
    torch.sin: "sin",
    torch.cos: "cos",
    torch.reciprocal: "reciprocal",
    torch.sign: "sign",
    torch.floor: "floor",
}
_UNARY_MODULES = {
    nn.ReLU: "relu",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.ReLU6: "relu6",
    nn.Hardswish: "hardswish",
    nn.ELU: "elu",
    nn.Softplus: "softplus",
}
_COMPOSED_MODULES = {
    nn.LeakyReLU: "leaky_relu",
    nn.Hardtanh: "hardtanh",
    nn.Hardsigmoid: "hardsigmoid",
    nn.Mish: "mish",
    nn.Softsign: "softsign",
}
_COMPOSED_FNS = {
    F.leaky_relu: "leaky_relu",
    F.hardtanh: "hardtanh",
    F.hardsigmoid: "hardsigmoid",
    F.mish: "mish",
    F.softsign: "softsign",
}
"""Activations with no box of their own, imported as the boxes of their definition."""
_COMPOSED_OPTIONS = {"leaky_relu": (("negative_slope", 0.01),),
                     "hardtanh": (("min_val", -1.0), ("max_val", 1.0))}  # fmt: skip
"""Their options, by the name the function's argument and the layer's attribute share, and
the function's default."""
_POOL_ARGS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_AVG_ARGS = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
             "divisor_override")  # fmt: skip
_LAYER_FNS = {
    F.max_pool1d: (nn.MaxPool1d, _POOL_ARGS), F.max_pool2d: (nn.MaxPool2d, _POOL_ARGS),
    F.avg_pool1d: (nn.AvgPool1d, _AVG_ARGS), F.avg_pool2d: (nn.AvgPool2d, _AVG_ARGS),
    F.adaptive_avg_pool2d: (nn.AdaptiveAvgPool2d, ("output_size",)),
}  # fmt: skip
"""Functions imported as the layer their arguments make, by the arguments' names."""
_UNARY_DEFAULTS = {"softplus": {"beta": 1, "threshold": 20}, "elu": {"alpha": 1.0}}
"""The options a unary box's function takes as torch's defaults: other values stay opaque."""
_UNARY_METHODS = {"relu", "sigmoid", "tanh", "exp", "neg", "abs", "sqrt", "rsqrt", "square",
                  "log", "sin", "cos", "reciprocal", "sign", "floor"}  # fmt: skip
_BINARY = {
    operator.add: "add",
    torch.add: "add",
    operator.sub: "sub",
    torch.sub: "sub",
    operator.mul: "mul",
    torch.mul: "mul",
    operator.truediv: "div",
    torch.div: "div",
}
_BINARY_METHODS = {"add": "add", "sub": "sub", "mul": "mul", "div": "div", "pow": "pow",
                   "ge": "ge", "gt": "gt", "le": "le", "lt": "lt", "eq": "eq", "ne": "ne",
                   "maximum": "maximum", "minimum": "minimum"}  # fmt: skip
_BINARY.update({
    operator.pow: "pow", torch.pow: "pow", operator.ge: "ge", torch.ge: "ge",
    operator.gt: "gt", torch.gt: "gt", operator.le: "le", torch.le: "le", operator.lt: "lt",
    torch.lt: "lt", operator.eq: "eq", torch.eq: "eq", operator.ne: "ne", torch.ne: "ne",
    torch.maximum: "maximum",
    torch.minimum: "minimum",
})  # fmt: skip
# Tensors made from sizes alone: a constant box holding the values (a buffer)
_MAKERS = (torch.arange, torch.ones, torch.zeros, torch.full, torch.eye, torch.linspace)
_CASTS = {"float": torch.float32, "double": torch.float64, "half": torch.float16,
          "bfloat16": torch.bfloat16, "int": torch.int32, "long": torch.int64,
          "bool": torch.bool}  # fmt: skip
_MOVES = ("swapaxes", "swapdims", "movedim", "moveaxis", "t", "select", "narrow", "squeeze",
          "view_as", "reshape_as")  # fmt: skip
_REDUCTIONS = {"mean": "mean", "sum": "sum", "amax": "max", "amin": "min",
               "logsumexp": "logsumexp", "any": "max", "all": "min"}  # fmt: skip
"""torch's reductions over dims and the reduce box's op (any, all: of booleans)."""
_FIELDS = {"values": 0, "indices": 1}
"""The fields of a (values, indices) result (max, min, topk, sort) by position."""
_PAIRWISE = {"max": "maximum", "min": "minimum"}
"""torch.max(a, b) and torch.min(a, b) of two tensors: elementwise."""
_SIZE_OPS = {operator.add: "{}+{}", operator.sub: "{}-{}", operator.mul: "{}*{}",
             operator.truediv: "{}/{}", operator.floordiv: "floor({}/{})",
             operator.pow: "{}**{}", operator.neg: "-{}"}  # fmt: skip
"""Python's arithmetic on sizes as size expressions (of operands each in parentheses)."""
_NEGATED = {"eq": "ne", "ne": "eq", "lt": "ge", "ge": "lt", "gt": "le", "le": "gt"}
_NOTS = (operator.invert, torch.logical_not, torch.bitwise_not)
_COMPARISONS = {f: op for f, op in _BINARY.items() if op in _NEGATED}
_SOFTMAX_FNS = {F.softmax: "softmax", torch.softmax: "softmax", F.log_softmax: "log_softmax",
                torch.log_softmax: "log_softmax", F.softmin: "softmin"}  # fmt: skip
"""Functions imported as a softmax box, and its variant."""
_SOFTMAX_MODULES = {nn.Softmax: "softmax", nn.LogSoftmax: "log_softmax", nn.Softmin: "softmin"}
_MAPPED_MODULES = (
    nn.Linear,
    nn.LayerNorm,
    nn.RMSNorm,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.GroupNorm,
    nn.Embedding,
    nn.Dropout,
    nn.MultiheadAttention,
    *_SOFTMAX_MODULES,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    *_COMPOSED_MODULES,
    nn.Flatten,
    nn.Unflatten,
    nn.PixelShuffle,
    nn.PixelUnshuffle,
    nn.Identity,
    nn.Upsample,
    nn.ZeroPad1d,
    nn.ZeroPad2d,
    nn.ZeroPad3d,
    nn.ConstantPad1d,
    nn.ConstantPad2d,
    nn.ConstantPad3d,
    *_UNARY_MODULES,
)


try:  # einops, as research code calls it: its functions and layers are nodes of the trace
    import einops
    from einops.layers.torch import Rearrange as _Rearrange
    from einops.layers.torch import Reduce as _Reduce
    from einops.parsing import ParsedExpression

    EINOPS_FNS = {einops.rearrange: "rearrange", einops.reduce: "reduce", einops.repeat: "repeat"}
    _EINOPS_LAYERS: tuple[type, ...] = (_Rearrange, _Reduce)
except ImportError:  # pragma: no cover - einops is a dependency
    EINOPS_FNS, _EINOPS_LAYERS = {}, ()
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


def _mask_pattern(drop: torch.Tensor, shape) -> tuple[str, int]:
    """("causal", 0) or ("window", w) where `drop` (True: masked out), broadcast over the
    last two dims of `shape`, is key > query or also key <= query - w; else _Unmapped."""
    if len(shape) < 2 or drop.dim() > len(shape) or any(d != 1 for d in drop.shape[:-2]):
        raise _Unmapped
    T, S = shape[-2:]
    m = drop.reshape(drop.shape[-2:] if drop.dim() >= 2 else drop.shape).expand(T, S).cpu()
    i, j = torch.arange(T)[:, None], torch.arange(S)[None, :]
    later = j > i
    if torch.equal(m, later):
        return "causal", 0
    w = int((~m[-1]).sum())  # a window keeps the last query's w latest keys
    if w >= 1 and torch.equal(m, later | (j <= i - w)):
        return "window", w
    raise _Unmapped


_VERY_NEGATIVE = -1e4
"""A mask fill at or below this, before a softmax, weighs its entries 0 as -inf does (exp
underflows in every float type for scores of ordinary size)."""
_SOFTMAXES = (F.softmax, torch.softmax)


_VIEWS = {"to", "type_as", *_CASTS, "contiguous", "unsqueeze", "expand", "expand_as", "view",
          "reshape", "getitem"}  # fmt: skip
"""Ops whose every output entry is one of their input's entries (or the input cast)."""


def _feeds_only_softmaxes(n: fx.Node, gm: fx.GraphModule, ndim, depth: int = 8) -> bool:
    """Whether all that node n's value reaches goes into softmaxes over their last dim, added
    to other terms (scores) or cast, viewed or indexed on the way (`ndim(node)`: a node's
    number of dims). Then a very negative entry of n weighs 0 in every softmax, as -inf
    does."""

    def into_softmax(u: fx.Node, x: fx.Node) -> bool:
        if u.op == "call_module":
            m = gm.get_submodule(u.target)
            d = m.dim if isinstance(m, nn.Softmax) else None
        elif (u.op == "call_function" and u.target in _SOFTMAXES) or (
            u.op == "call_method" and u.target == "softmax"
        ):
            d = u.kwargs.get("dim", u.args[1] if len(u.args) > 1 else None)
        else:
            return False
        return u.args[0] is x and d in (-1, ndim(x) - 1)

    readers = list(n.users)
    if not readers or depth == 0:
        return False
    for u in readers:
        op = "getitem" if u.target is operator.getitem else _op(u)
        passes = op == "add" or (op in _VIEWS and u.args[0] is n)
        if not into_softmax(u, n) and not (
            passes and _feeds_only_softmaxes(u, gm, ndim, depth - 1)
        ):
            return False
    return True


_BY_VALUE = ("gelu", "gelu_tanh", "silu", "sigmoid", "softplus", "logsigmoid", "elu",
             "hardswish", "relu6", "tanh")  # fmt: skip
"""Unary functions a chain of elementwise ops is recognised as (`unary_by_value`)."""
_TREE_OPS = {"add", "sub", "mul", "div", "pow", "neg", "tanh", "sigmoid", "exp", "log",
             "sqrt", "rsqrt", "reciprocal", "erf", "abs", "square", "softplus"}  # fmt: skip
_TREE_FNS = {torch.erf: "erf", torch.special.erf: "erf", F.softplus: "softplus"}
_TREE_MOST = 32  # ops of one recognised chain


def _tree_op(n) -> str | None:
    if not isinstance(n, fx.Node) or n.op not in ("call_function", "call_method"):
        return None
    op = _TREE_FNS.get(n.target) if n.op == "call_function" else None
    op = op or _op(n)
    return op if op in _TREE_OPS else None


def _elementwise_tree(n: fx.Node, stop: fx.Node | None = None) -> set[fx.Node]:
    """The elementwise ops (of `_TREE_OPS`, with numbers as other operands) that n computes
    from, n included, walking back until `stop` or a node of another kind; empty where one
    has an argument that is neither a node nor a number, or past _TREE_MOST ops."""
    found: set[fx.Node] = set()
    todo = [n]
    while todo:
        m = todo.pop()
        if m in found or m is stop or _tree_op(m) is None:
            continue
        found.add(m)
        if len(found) > _TREE_MOST:
            return set()
        for a in [*m.args, *m.kwargs.values()]:
            if isinstance(a, fx.Node):
                todo.append(a)
            elif isinstance(a, bool) or not isinstance(a, (int, float)):
                return set()
    return found


def _leaves(tree: set[fx.Node]) -> set[fx.Node]:
    """The nodes the ops of `tree` read that are not in it."""
    return {a for m in tree for a in m.all_input_nodes if a not in tree}


def _replay_on(nodes: list[fx.Node], x: fx.Node, grid: torch.Tensor) -> torch.Tensor:
    """The value of the last of `nodes` (in graph order) with x's value replaced by `grid`."""
    env = {x: grid}
    for m in nodes:
        args = fx.node.map_arg(m.args, lambda a: env[a])
        kwargs = fx.node.map_arg(m.kwargs, lambda a: env[a])
        if m.op == "call_method":
            env[m] = getattr(args[0], m.target)(*args[1:], **kwargs)
        else:
            env[m] = m.target(*args, **kwargs)
    return env[nodes[-1]]


_ALIASES = {"view", "reshape", "permute", "transpose", "expand", "expand_as", "squeeze",
            "unsqueeze", "flatten", "unflatten", "narrow", "select", "t", "view_as",
            "swapaxes", "movedim", "chunk", "split", "unbind", "detach", "contiguous"}  # fmt: skip
"""Methods whose result may share memory with their input (an in-place op on it mutates
both)."""


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


def _op(n: fx.Node) -> str | None:
    """The elementwise op a node calls, by name (function, method or operator)."""
    if n.op == "call_method":
        return str(n.target)
    if n.op == "call_function":
        fn = n.target
        return _BINARY.get(fn) or _UNARY_FNS.get(fn) or {torch.mean: "mean"}.get(fn)
    return None


def _call_arg(n: fx.Node, ops: set[str]) -> fx.Node | None:
    """The argument node of a one-argument call n of one of `ops`, else None."""
    if _op(n) in ops and n.args and isinstance(n.args[0], fx.Node):
        return n.args[0]
    return None


def _squared_of(n) -> fx.Node | None:
    """x where node n is x ** 2, x.pow(2), torch.square(x) or x * x; else None."""
    if not isinstance(n, fx.Node):
        return None
    op = _op(n)
    if op == "pow" and len(n.args) == 2 and n.args[1] == 2:
        return n.args[0]
    if op == "square":
        return n.args[0]
    if op == "mul" and len(n.args) == 2 and n.args[0] is n.args[1]:
        return n.args[0]
    return None


def _module_path(n: fx.Node) -> list[str]:
    """The submodules whose forward made node n, outermost first, by their paths in the model
    (fx records them while tracing); a kept layer's own node leaves the layer out."""
    stack = [path for path, _ in (n.meta.get("nn_module_stack") or {}).values()]
    if n.op == "call_module" and stack and stack[-1] == n.target:
        stack = stack[:-1]
    return [p for p in stack if p]


class _Unmapped(Exception):
    """This node has no mapping: it becomes an opaque box."""


class _Rename(Exception):
    """Import again, the output axis of this linear map's node named apart from its size's
    name."""

    def __init__(self, node: fx.Node):
        super().__init__(node.name)
        self.node = node


class _Lazy:
    """A tensor the model holds (`get_attr`), or a getitem of one, not yet a box: it becomes a
    param box where it is first used, its axes named after what it is combined with."""

    def __init__(self, node: fx.Node, value: torch.Tensor, parent=None, index=None):
        self.node, self.value, self.parent, self.index = node, value, parent, index


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


_COMMON_METHODS = {m: m for m in (
    "mean", "sum", "clamp", "clamp_min", "clamp_max", "to", "type_as", *_CASTS, "cumsum",
    "cumprod", "unbind", "unsqueeze", "repeat_interleave", "expand", "expand_as", "detach",
    "topk", *_REDUCTIONS, *_MOVES, "var", "std", "repeat", "tile",
)}  # fmt: skip
_COMMON_FNS = {
    **{getattr(torch, m): m for m in (*_REDUCTIONS, *_MOVES, "stack", "var", "std", "tile")
       if hasattr(torch, m)},
    torch.clamp: "clamp", torch.clamp_min: "clamp_min",
    torch.clamp_max: "clamp_max", torch.cumsum: "cumsum", torch.cumprod: "cumprod",
    torch.where: "where", torch.unbind: "unbind", torch.unsqueeze: "unsqueeze",
    torch.repeat_interleave: "repeat_interleave", F.dropout: "dropout", F.pad: "pad",
    torch.topk: "topk", F.interpolate: "interpolate",
    **dict.fromkeys(_MAKERS, "make"),
    **dict.fromkeys((torch.zeros_like, torch.ones_like, torch.full_like), "like"),
}  # fmt: skip


def _num(v) -> str:
    """A number as a size expression (`1e-06` as `1.0*10**-6`)."""
    if isinstance(v, int):
        return str(v)
    text = repr(float(v))
    if "e" in text:
        m, e = text.split("e")
        text = f"{m}*10**{int(e)}" if not m.startswith("-") else f"-{m[1:]}*10**{int(e)}"
    return text


def _fill_of(v: torch.Tensor) -> str | None:
    """The one number every element of `v` holds, as a size expression (a constant box's
    `value`); None where the elements differ (`torch.arange`), or the number is not one a size
    expression writes (inf, nan)."""
    flat = v.reshape(-1)
    if flat.numel() == 0 or not bool((flat == flat[0]).all()):
        return None
    x = flat[0].item()
    x = int(x) if isinstance(x, bool) else x
    if isinstance(x, float) and not math.isfinite(x):
        return None
    try:
        parse_size(_num(x))
    except Exception:  # past the size limits
        return None
    return _num(x)


def _role_of(name: str) -> str:
    """The role an axis name was made for (`K2` -> head), feature where none is known."""
    for role, names in _ROLES.items():
        if name in names or (name.startswith(names[0]) and name[len(names[0]) :].isdigit()):
            return role
    return "feature"


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0][:300]


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


class _Importer:
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
        # torch's size-1 dims a wire does not carry yet (a keepdim reduction, `x[:, None]`):
        # node -> their positions in the torch tensor; made into unit axes only where needed
        self.units: dict[fx.Node, tuple[int, ...]] = {}
        self.made: dict[Any, tuple[Wire, tuple[int, ...]]] = {}  # lazy -> its param box
        # node with a complex value -> the region of such nodes it ends, in graph order
        self.islands: dict[fx.Node, list[fx.Node]] = {}
        # axis made by a reshape's merge -> the axes merged (a later split of it into axes of
        # those sizes, `x.view(-1, D) ... y.view(B, T, -1)`, gives them back)
        self.merged: dict[str, tuple[str, ...]] = {}
        # node -> {dim: size}: the size-1 dims an expand broadcast, off its wire (as units)
        self.grown: dict[fx.Node, dict[int, int]] = {}
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
        for cand in _ROLES[role] + [f"{_ROLES[role][0]}{i}" for i in range(4, 64)]:
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
                if region:  # the real result of computations on complex tensors: one box
                    self.wires[n] = self.opaque(n, [*region, n])
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
        _, idents = scope_names(circuit, checked.order)
        state, buffers = {}, set()
        for box, ws in self.weights.items():
            for p, t in ws.items():
                state[f"{idents[box]}.{p}"] = t.detach().clone()
                if box in self.buffers:
                    buffers.add(f"{idents[box]}.{p}")
        attached.attach(circuit, self.callables, state, buffers)
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

    def map_or_opaque(self, n: fx.Node):
        """The node's boxes, or where it cannot be mapped one opaque box."""
        mark = (len(self.b._boxes), set(self.b._names), set(self.names), dict(self.weights),
                set(self.buffers), dict(self.units), dict(self.made),
                dict(self.merged), dict(self.grown))  # fmt: skip
        try:
            return self.map(n)
        except Exception as e:
            # undo the boxes this node's mapping made before it failed
            del self.b._boxes[mark[0] :]
            self.b._names, self.names, self.weights = mark[1], mark[2], mark[3]
            self.buffers, self.units, self.made, self.merged = mark[4], mark[5], mark[6], mark[7]
            self.grown = mark[8]
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

    @imports("param")
    def materialize(self, lazy: _Lazy, hints=None, drop=()) -> tuple[Wire, tuple[int, ...]]:
        """The param box of a tensor the model holds (made once; a constant box holding the
        values of an integer or boolean one), as (wire, the positions of torch's size-1 dims
        it leaves out). `hints` name its dims (a name, or None); dims in
        `drop` (size 1) are left out of the box."""
        if id(lazy) in self.made:
            return self.made[id(lazy)]
        v = lazy.value
        hints = list(hints) if hints is not None else [None] * v.dim()
        if lazy.parent is not None:
            w, units = self.index_lazy(lazy, hints)
        else:
            n = lazy.node
            names: list[str] = []
            keep = [d for d in range(v.dim()) if d not in drop or v.shape[d] != 1]
            for d in keep:
                h = hints[d]
                if not h or h in names or self.sizes.get(h) != v.shape[d]:
                    role = "unit" if v.shape[d] == 1 else "feature"
                    h = self.axis(role, v.shape[d], avoid=[*names, *hints])
                names.append(h)
            name = self.box_name(n)
            held = v.reshape([v.shape[d] for d in keep])
            if v.is_floating_point():
                w = self.b.param(" ".join(names), name=name, dtype=_dtype(v))
                self.weights[name] = {"weight": held}
            else:  # an integer or boolean table (Swin's relative position index): a constant
                w = self.held_constant(name, names, held, str(n.target), buffer=False)
            if n.target not in dict(self.model.named_parameters()):
                self.buffers.add(name)  # a buffer or a plain tensor attribute: not trained
            units = tuple(d for d in range(v.dim()) if d not in keep)
        self.made[id(lazy)] = (w, units)
        return w, units

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

    def dims_of(self, n, x: Wire) -> list[int]:
        """The dims a reduction's `dim` argument names (every one where None), each once,
        non-negative, in order."""
        dims = self.const(self.arg(n, 1, "dim"))
        dims = range(len(x.axes)) if dims is None else [dims] if isinstance(dims, int) else dims
        return sorted({d % len(x.axes) for d in dims})

    def feeds_only_softmaxes(self, n: fx.Node) -> bool:
        return _feeds_only_softmaxes(n, self.gm, lambda x: len(self.shape(x)))

    def mask_factor(self, n: fx.Node, f: float) -> float:
        """A factor past the language's number limit that makes a very negative additive mask
        (BERT's `(1 - mask) * finfo(dtype).min`, read only by softmaxes): _VERY_NEGATIVE,
        which weighs the masked entries 0 as it does. Any other factor as it is."""
        if f < -MAX_NUMBER and self.feeds_only_softmaxes(n):
            return _VERY_NEGATIVE
        return f

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

    def unit(self, avoid) -> str:
        """A unit axis to split off an axis (its size declared: `H = H U` holds as it is made)."""
        u = self.axis("unit", 1, avoid=avoid)
        self.b.axis(u, 1)
        return u

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
        if n.op == "call_module":
            return self.map_module(n, self.gm.get_submodule(n.target))
        if n.op == "call_function":
            return self.map_function(n, n.target)
        if n.op == "call_method":
            return self.map_method(n, n.target)
        raise _Unmapped

    @imports(
        "linear",
        "layernorm",
        "rmsnorm",
        "conv",
        "batchnorm",
        "groupnorm",
        "embedding",
        "dropout",
        "unary",
        "softmax",
    )
    def map_module(self, n, m):
        x = self.wire(n.args[0]) if n.args else None
        if isinstance(m, nn.Identity):
            return x
        if isinstance(m, nn.Linear):
            out = self.out_axis(n, m.out_features, x)
            name = self.box_name(n)
            y = self.b.linear(x, x.axes[-1], out, bias=m.bias is not None, name=name)
            self.keep(name, m, "weight", "bias")
            self.linear_out[n] = out
            return y
        if isinstance(m, (nn.LayerNorm, nn.RMSNorm)):
            over = list(x.axes[-len(m.normalized_shape) :])
            name = self.box_name(n)
            kind = "layernorm" if isinstance(m, nn.LayerNorm) else "rmsnorm"
            affine = m.elementwise_affine and (kind == "rmsnorm" or m.bias is not None)
            if m.elementwise_affine and not affine:
                raise _Unmapped
            eps = m.eps if m.eps is not None else torch.finfo(torch.float32).eps
            y = self.b.box(kind, {"x": x}, name, over=over, affine=affine, eps=eps)
            self.keep(name, m, "weight", "bias")
            return y
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            if m.padding_mode != "zeros" or isinstance(m.padding, str):
                raise _Unmapped
            nsp = len(m.kernel_size)
            chan, spatial = x.axes[-nsp - 1], list(x.axes[-nsp:])
            out = self.axis("channel", m.out_channels, avoid=x.axes)
            name = self.box_name(n)
            y = self.b.conv(
                x,
                spatial,
                chan,
                out,
                list(m.kernel_size),
                name=name,
                stride=list(m.stride),
                padding=list(m.padding),
                dilation=list(m.dilation),
                groups=m.groups,
                bias=m.bias is not None,
            )
            self.keep(name, m, "weight", "bias")
            return self.resize(y, n)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            if not m.track_running_stats:
                raise _Unmapped
            name = self.box_name(n)
            y = self.b.box(
                "batchnorm",
                {"x": x},
                name,
                channel=x.axes[1],
                eps=m.eps,
                momentum=m.momentum or 0.1,
                affine=m.affine,
            )
            self.keep(name, m, "weight", "bias", "running_mean", "running_var")
            if not m.momentum:
                warnings.warn(
                    f"{n.target}: batch norm momentum={m.momentum} "
                    f"({'a cumulative average' if m.momentum is None else 'frozen statistics'}"
                    ") is dropped: the circuit's batchnorm box updates its running statistics "
                    "with momentum 0.1 in training (eval outputs are unchanged)",
                    stacklevel=2,
                )
            return y
        if isinstance(m, nn.GroupNorm):
            name = self.box_name(n)
            y = self.b.groupnorm(x, x.axes[1], m.num_groups, list(x.axes[2:]), name=name)
            if not m.affine or m.eps != 1e-5:
                raise _Unmapped
            self.keep(name, m, "weight", "bias")
            return y
        if isinstance(m, nn.Embedding):
            vocab = self.axis("vocab", m.num_embeddings)
            out = self.axis("feature", m.embedding_dim, avoid=x.axes)
            name = self.box_name(n)
            y = self.b.embedding(x, vocab, out, name=name)
            self.keep(name, m, "weight")
            return y
        if isinstance(m, nn.Dropout):  # (timm writes Dropout(0.0): nothing to draw)
            return x if m.p == 0 else self.b.dropout(x, m.p, name=self.box_name(n))
        if type(m) in _COMPOSED_MODULES:
            kind = _COMPOSED_MODULES[type(m)]
            opts = (getattr(m, k) for k, _ in _COMPOSED_OPTIONS.get(kind, ()))
            return self.composed(n, x, kind, *opts)
        if type(m) in _UNARY_MODULES:
            if isinstance(m, nn.GELU) and m.approximate == "tanh":
                return self.b.unary(x, "gelu_tanh", name=self.box_name(n))
            name = _UNARY_MODULES[type(m)]
            if any(getattr(m, k) != v for k, v in _UNARY_DEFAULTS.get(name, {}).items()):
                raise _Unmapped  # nn.Softplus(beta=2): not the box's function
            return self.b.unary(x, name, name=self.box_name(n))
        if isinstance(m, (nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d,
                          nn.ConstantPad2d, nn.ConstantPad3d)):  # fmt: skip
            return self.pad(n, n.args[0], m.padding, m.value)
        if isinstance(m, _EINOPS_LAYERS):
            how = getattr(m, "reduction", None)
            return self.einops(n, n.args[0], m.pattern, dict(m.axes_lengths), how)
        if isinstance(m, nn.Upsample):
            return self.upsample(n, n.args[0], m.size, m.scale_factor, m.mode, m.align_corners)
        if type(m) in _SOFTMAX_MODULES:
            if m.dim is None:
                raise _Unmapped  # torch's implicit dim, chosen by rank
            return self.b.softmax(x, x.axes[m.dim], variant=_SOFTMAX_MODULES[type(m)],
                                  name=self.box_name(n))  # fmt: skip
        if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)):
            return self.pool(n, x, m)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            want = m.output_size if isinstance(m.output_size, tuple) else (m.output_size,) * 2
            if tuple(want) != (1, 1):
                raise _Unmapped
            sp = list(x.axes[-2:])
            win = [self.sizes_of(x)[a] for a in sp]
            y = self.b.pool(x, sp, win, op="avg", name=self.box_name(n))
            return self.resize(y, n)
        if isinstance(m, (nn.Flatten, nn.Unflatten)):
            return self.view(n, x, self.shape(n))
        if isinstance(m, (nn.PixelShuffle, nn.PixelUnshuffle)):
            up = isinstance(m, nn.PixelShuffle)
            return self.pixel_shuffle(n, x, m.upscale_factor if up else m.downscale_factor, up)
        if isinstance(m, nn.MultiheadAttention):
            return self.mha(n, m)
        raise _Unmapped

    def sizes_of(self, w: Wire) -> dict[str, int]:
        return {a: self.sizes[a] for a in w.axes}

    def resize(self, y: Wire, n) -> Wire:
        """After a box whose output axes keep their names but change size (conv, pool), gives
        the changed axes fresh names so that one name keeps one size."""
        shape = self.shape(n)
        mapping = {}
        for a, s in zip(y.axes, shape, strict=True):
            if self.sizes.get(a) != s:
                role = "spatial" if a[0] in "XYZ" else "unit" if s == 1 else "feature"
                mapping[a] = self.axis(role, s, avoid=[*y.axes, *mapping.values()])
        if not mapping:
            return y
        # the box's output already carries the new sizes symbolically; a rename pins names
        return self.b.rename(y, mapping, name=self.box_name(n, "sizes"))

    @imports("pool")
    def pool(self, n, x, m):
        nsp = 1 if isinstance(m, (nn.MaxPool1d, nn.AvgPool1d)) else 2
        if getattr(m, "ceil_mode", False) or getattr(m, "dilation", 1) not in (1, (1, 1)):
            raise _Unmapped
        if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)) and (
            not m.count_include_pad or getattr(m, "divisor_override", None) is not None
        ):
            raise _Unmapped  # a divisor other than the window's size
        if getattr(m, "return_indices", False):
            raise _Unmapped
        op = "max" if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)) else "avg"

        def per(v):
            return list(v) if isinstance(v, (tuple, list)) else [v] * nsp

        y = self.b.pool(
            x,
            list(x.axes[-nsp:]),
            per(m.kernel_size),
            op=op,
            stride=per(m.stride or m.kernel_size),
            padding=per(m.padding),
            name=self.box_name(n),
        )
        return self.resize(y, n)

    def keep(self, box: str, m: nn.Module, *names):
        ws = {}
        for p in names:
            t = getattr(m, p, None)
            if isinstance(t, torch.Tensor):
                ws[p] = t
        self.weights[box] = ws

    def mha(self, n, m: nn.MultiheadAttention):
        q_in, k_in, v_in = (self.wire(n.args[i]) for i in range(3))
        kw = dict(n.kwargs)
        for i, key in enumerate(
            ["key_padding_mask", "need_weights", "attn_mask", "average_attn_weights", "is_causal"],
            start=3,
        ):
            if len(n.args) > i:
                kw[key] = n.args[i]
        pad = kw.get("key_padding_mask")
        if pad is not None and (not isinstance(pad, fx.Node) or self.values.get(pad) is not None):
            raise _Unmapped  # (a node may hold None: torch's own check of an absent mask)
        causal = bool(self.const(kw.get("is_causal", False)))
        if (mask := kw.get("attn_mask")) is not None:  # causal, made from sizes alone: True
            # (or -inf) where not attended, nn.MultiheadAttention's convention
            drop = self.dropped(mask, keeps=False)
            if drop.dim() != 2 or _mask_pattern(drop, tuple(drop.shape)) != ("causal", 0):
                raise _Unmapped
            causal = True
        if not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn:
            raise _Unmapped
        if m.dropout and m.training:
            raise _Unmapped
        users = [u for u in n.users if u.users or u.target is not operator.getitem]
        if any(u.target is not operator.getitem or u.args[1] != 0 for u in users):
            raise _Unmapped  # attention weights are used: not a plain attention
        # (`a, _ = self.attn(x, x, x)` reads the weights into a name nothing uses)
        H, E = m.num_heads, m.embed_dim
        hd = E // H
        base = str(n.target).replace(".", "_")
        D = q_in.axes[-1]
        heads = self.axis("heads", H)
        K = self.axis("head", hd, avoid=(heads,))
        V = self.axis("value", hd, avoid=(heads, K))
        seq_q = q_in.axes[0] if not m.batch_first else q_in.axes[1]
        wq, wk, wv = m.in_proj_weight.chunk(3)
        bq, bk, bv = m.in_proj_bias.chunk(3) if m.in_proj_bias is not None else (None,) * 3
        bias = m.in_proj_bias is not None
        projs = []
        for role, x, w, b_, out in (("q", q_in, wq, bq, K), ("k", k_in, wk, bk, K)):
            name = self._fresh(f"{base}_{role}_proj")
            projs.append(self.b.linear(x, D, [heads, out], bias=bias, name=name))
            self.weights[name] = {"weight": w}
            if bias:
                self.weights[name]["bias"] = b_
        name = self._fresh(f"{base}_v_proj")
        v = self.b.linear(v_in, D, [heads, V], bias=bias, name=name)
        self.weights[name] = {"weight": wv}
        if bias:
            self.weights[name]["bias"] = bv
        q, k = projs
        S = self.axis("key", self.sizes[k.axes[0 if not m.batch_first else 1]], avoid=q.axes)
        seq_k = k.axes[0] if not m.batch_first else k.axes[1]
        k = self.b.rename(k, {seq_k: S}, name=self._fresh(f"{base}_k_keys"))
        v = self.b.rename(v, {seq_k: S}, name=self._fresh(f"{base}_v_keys"))
        o = self.b.attention(
            q,
            k,
            v,
            name=self._fresh(f"{base}_attention"),
            query=seq_q,
            key=S,
            head=K,
            value=V,
            causal=causal,
        )
        name = self._fresh(f"{base}_out_proj")
        y = self.b.linear(o, [heads, V], D, bias=m.out_proj.bias is not None, name=name)
        self.weights[name] = {"weight": m.out_proj.weight}
        if m.out_proj.bias is not None:
            self.weights[name]["bias"] = m.out_proj.bias
        if m.dropout:
            warnings.warn(
                f"{n.target}: the attention dropout of nn.MultiheadAttention (p={m.dropout}) is "
                "dropped: the circuit's attention box has none (in eval mode it does nothing)",
                stacklevel=2,
            )
        return (y,)  # MHA returns (output, weights); getitem 0 reads it

    def _fresh(self, base: str) -> str:
        name, i = base, 2
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def map_function(self, n, fn):
        if fn is operator.getitem or (fn is getattr and n.args[1] in _FIELDS):
            src = self.wires.get(n.args[0]) if isinstance(n.args[0], fx.Node) else None
            i = _FIELDS.get(n.args[1], n.args[1]) if fn is getattr else n.args[1]
            if isinstance(src, tuple) and isinstance(i, int):
                if src[i] is None:
                    raise _Unmapped
                if i == 0 and n.args[0] in self.units:  # a keepdim max's values (`extreme`)
                    self.units[n] = self.units[n.args[0]]
                return src[i]
            if fn is getattr:
                raise _Unmapped
            if _is_t(self, n.args[0]):
                return self.getitem(n, n.args[0], n.args[1])
            raise _Unmapped
        if fn in _COMMON_FNS:
            return self.common(n, _COMMON_FNS[fn])
        if fn in (torch.div, torch.true_divide, torch.floor_divide, operator.floordiv):
            return self.binary(n, self.division(n, fn.__name__), n.args[0], n.args[1])
        if fn in _BINARY:
            return self.alpha(n, _BINARY[fn], n.args[0], n.args[1])
        if fn in (torch.max, torch.min) and len(n.args) == 2 and _is_t(self, n.args[1]):
            return self.binary(n, _PAIRWISE[fn.__name__], n.args[0], n.args[1])
        if fn in (torch.max, torch.min):
            return self.extreme(n, fn.__name__)
        if fn in _LAYER_FNS:  # F.max_pool2d(x, 3, 2, 1): the layer of those arguments
            cls, names = _LAYER_FNS[fn]
            given = {k: self.const(self.arg(n, i, k, None)) for i, k in enumerate(names, 1)}
            return self.map_module(n, cls(**{k: v for k, v in given.items() if v is not None}))
        if fn is F.pixel_shuffle:
            r = self.const(self.arg(n, 1, "upscale_factor"))
            return self.pixel_shuffle(n, self.wire(n.args[0]), r, True)
        if fn in _COMPOSED_FNS:
            kind = _COMPOSED_FNS[fn]
            opts = enumerate(_COMPOSED_OPTIONS.get(kind, ()), start=1)
            args = [self.const(self.arg(n, i, k, v)) for i, (k, v) in opts]
            return self.pointwise(n, n.args[0], lambda x: self.composed(n, x, kind, *args))
        if fn in _UNARY_FNS:
            name, box = _UNARY_FNS[fn], self.box_name(n)
            if fn is F.gelu and n.kwargs.get("approximate", "none") == "tanh":
                name = "gelu_tanh"
            for i, (k, v) in enumerate(_UNARY_DEFAULTS.get(name, {}).items(), start=1):
                if self.const(self.arg(n, i, k, v)) != v:
                    raise _Unmapped  # F.softplus(x, beta=2): not the box's function
            return self.pointwise(n, n.args[0], lambda x: self.b.unary(x, name, name=box))
        if fn in _SOFTMAX_FNS:
            return self.softmax(n, _SOFTMAX_FNS[fn])
        if fn in (torch.matmul, operator.matmul, torch.bmm):
            return self.matmul(n, self.wire(n.args[0]), self.wire(n.args[1]))
        if fn is F.linear:
            return self.linear_fn(n, self.arg(n, 0, "input"), self.arg(n, 1, "weight"),
                                  self.arg(n, 2, "bias"), transposed=False)  # fmt: skip
        if fn is torch.addmm:
            if any(self.const(n.kwargs.get(k, 1)) != 1 for k in ("beta", "alpha")):
                raise _Unmapped
            return self.linear_fn(n, self.arg(n, 1, "mat1"), self.arg(n, 2, "mat2"),
                                  self.arg(n, 0, "input"), transposed=True)  # fmt: skip
        if fn is F.scaled_dot_product_attention:
            return self.sdpa(n)
        if fn in (torch.flatten, torch.reshape):
            return self.view(n, self.wire(n.args[0]), self.shape(n))
        if fn is torch.transpose:
            return self.transpose(n, self.wire(n.args[0]), n.args[1], n.args[2])
        if fn is torch.cat:
            return self.cat(n)
        if fn is torch.roll:
            return self.roll(n)
        if fn in (torch.split, torch.chunk):
            return self.split(n, self.wire(n.args[0]), fn.__name__)
        if fn is torch.einsum:
            return self.einsum(n)
        if fn in EINOPS_FNS:
            op = EINOPS_FNS[fn]
            pattern = self.const(self.arg(n, 1, "pattern"))
            if op == "repeat":  # (the new axes' lengths are read off the result's shape)
                return self.einops_repeat(n, n.args[0], pattern)
            lengths = {k: self.const(v) for k, v in n.kwargs.items() if k != "reduction"}
            how = self.arg(n, 2, "reduction") if op == "reduce" else None
            return self.einops(n, n.args[0], pattern, lengths, how)
        if fn in (F.layer_norm, F.rms_norm):
            return self.norm_fn(n, "layernorm" if fn is F.layer_norm else "rmsnorm")
        if fn is F.normalize:
            return self.normalize(n)
        if fn is torch.masked_fill:
            return self.masked_fill(n)
        raise _Unmapped

    @imports("reduce")
    def map_method(self, n, meth):
        if meth.endswith("_") and meth != "__getitem__":
            return self.in_place(n, meth)
        if meth in ("div", "true_divide", "floor_divide"):
            return self.binary(n, self.division(n, meth), n.args[0], n.args[1])
        if meth in _BINARY_METHODS:
            return self.alpha(n, _BINARY_METHODS[meth], n.args[0], n.args[1])
        if meth == "roll":
            return self.roll(n)
        if meth in ("max", "min") and len(n.args) == 2 and _is_t(self, n.args[1]):
            return self.binary(n, _PAIRWISE[meth], n.args[0], n.args[1])
        if meth in ("max", "min"):
            return self.extreme(n, meth)
        if meth in _COMMON_METHODS:
            return self.common(n, meth)
        if meth in _UNARY_METHODS:
            box = self.box_name(n)
            return self.pointwise(n, n.args[0], lambda x: self.b.unary(x, meth, name=box))
        x = self.wire(n.args[0])
        if meth in ("contiguous", "clone"):
            return x
        if meth in ("softmax", "log_softmax"):
            return self.softmax(n, meth)
        if meth in ("view", "reshape", "flatten", "unflatten"):
            return self.view(n, x, self.shape(n))
        if meth == "permute":
            dims = self.const(list(n.args[1:]))
            dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (list, tuple)) else dims
            return self.order(x, [x.axes[d] for d in dims], n, "permute")
        if meth == "transpose":
            return self.transpose(n, x, n.args[1], n.args[2])
        if meth in ("split", "chunk"):
            return self.split(n, x, meth)
        if meth == "masked_fill":
            return self.masked_fill(n)
        raise _Unmapped

    @imports("clamp", "cast", "scan")
    def common(self, n, op: str):
        """The tensor ops torch has as functions and methods alike (`torch.cumsum(x, 1)`,
        `x.cumsum(1)`), arguments read by position or keyword."""
        a0 = n.args[0] if n.args else n.kwargs.get("input")
        if op in _REDUCTIONS:  # over `dim` (every axis where None: a loss's `x.sum()`)
            if n.kwargs.get("dtype") is not None:
                raise _Unmapped
            if op in ("any", "all") and self.values[a0].dtype != torch.bool:
                x, units = self.condition(n, a0, negate=False)[1]  # x != 0
                if units:
                    raise _Unmapped
            else:
                x = self.wire(a0)
            if not x.axes:
                raise _Unmapped
            dims = self.dims_of(n, x)
            y = self.b.reduce(x, [x.axes[d] for d in dims], _REDUCTIONS[op], name=self.box_name(n))
            if self.const(self.arg(n, 2, "keepdim", False)):
                self.units[n] = tuple(dims)
            return y
        if op in ("var", "std"):
            return self.spread(n, op, a0)
        if op in ("clamp", "clamp_min", "clamp_max"):
            x = self.wire(a0)
            low = self.const(self.arg(n, 1, "min")) if op != "clamp_max" else None
            high = (
                self.const(self.arg(n, 2 if op == "clamp" else 1, "max"))
                if op != "clamp_min"
                else None
            )
            for v in (low, high):
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                    raise _Unmapped  # a tensor bound
            integer = not x.type.dtype.startswith(("float", "bfloat"))
            if not integer:  # a bound at the type's limit (HF's finfo(dtype).min) bounds nothing
                lim = torch.finfo(self.values[n].dtype)
                low = None if low is not None and low <= lim.min else low
                high = None if high is not None and high >= lim.max else high
                if low is None and high is None:
                    return x
            bound = [
                None if v is None else _num(int(v) if integer else float(v)) for v in (low, high)
            ]
            return self.b.box("clamp", {"x": x}, self.box_name(n), low=bound[0], high=bound[1])
        if op in ("to", "type_as", *_CASTS):
            want = _dtype(self.values[n])
            return self.pointwise(n, a0, lambda x: x if want == x.type.dtype else
                                  self.b.cast(x, want, name=self.box_name(n)))  # fmt: skip
        if op in ("cumsum", "cumprod"):
            x = self.wire(a0)
            d = self.const(self.arg(n, 1, "dim")) % len(x.axes)
            if n.kwargs.get("dtype") is not None:
                raise _Unmapped
            return self.b.scan(x, x.axes[d], "sum" if op == "cumsum" else "prod",
                               name=self.box_name(n))  # fmt: skip
        if op == "where":
            return self.where_(n)
        if op in _MOVES:
            return self.move(n, op, a0)
        if op == "stack":
            return self.stack(n)
        if op in ("repeat", "tile"):
            return self.tile(n, a0)
        if op == "make":
            return self.made_tensor(n)
        if op == "like":  # zeros_like(x), ones_like(x), full_like(x, v): x's shape filled
            return self.filled_like(n, a0)
        if op == "topk":
            return self.topk(n, a0)
        if op == "interpolate":
            return self.upsample(n, a0, self.arg(n, 1, "size"), self.arg(n, 2, "scale_factor"),
                                 self.arg(n, 3, "mode", "nearest"),
                                 self.arg(n, 4, "align_corners"))  # fmt: skip
        if op == "unbind":
            x = self.wire(a0)
            d = self.const(self.arg(n, 1, "dim", 0)) % len(x.axes)
            return tuple(self.b.index(x, x.axes[d], i, name=self.box_name(n, str(i)))
                         for i in range(self.shape(a0)[d]))  # fmt: skip
        if op == "unsqueeze":
            w, units = self.bare(a0)
            d = self.const(self.arg(n, 1, "dim")) % (len(self.shape(a0)) + 1)
            shifted = tuple(u + (u >= d) for u in units)
            self.units[n] = tuple(sorted((*shifted, d)))
            return w
        if op == "repeat_interleave":
            x, r = self.wire(a0), self.const(self.arg(n, 1, "repeats"))
            d = self.arg(n, 2, "dim")
            if not isinstance(r, int) or d is None:
                raise _Unmapped  # per-element counts, or the flattened form
            return self.repeat(n, x, x.axes[self.const(d) % len(x.axes)], r)
        if op in ("expand", "expand_as"):
            return self.expand(n, a0)
        if op == "detach":
            warnings.warn(f"{self.where(n)}: detach is dropped: gradients flow through the "
                          "circuit here", stacklevel=2)  # fmt: skip
            return self.wire(a0)
        if op == "dropout":  # (training=False: the input as it is)
            p = float(self.const(self.arg(n, 1, "p", 0.5)))
            x = self.wire(a0)
            off = p == 0 or not self.const(self.arg(n, 2, "training", True))
            return x if off else self.b.dropout(x, p, name=self.box_name(n))
        if op == "pad":
            return self.pad(n)
        raise _Unmapped

    def filled_like(self, n, a) -> Wire:
        """A tensor of x's shape with every element one number: a constant box over x's
        axes (a buffer of the example's size)."""
        x, v = self.wire(a), self.values[n]
        fill = {torch.zeros_like: 0, torch.ones_like: 1}.get(n.target)
        fill = fill if fill is not None else self.const(self.arg(n, 1, "fill_value"))
        if tuple(v.shape) != self.shape(a) or isinstance(fill, bool):
            raise _Unmapped
        name = self.box_name(n)
        w = self.b.box("constant", {}, name, axes=list(x.axes), dtype=_dtype(v), value=_num(fill))
        self.weights[name] = {"value": v}
        self.buffers.add(name)
        return w

    @imports("topk")
    def topk(self, n, a) -> tuple[Wire, Wire]:
        """`x.topk(k, dim)` (largest, sorted): the values and indices over a new axis of k."""
        x = self.wire(a)
        k = self.const(self.arg(n, 1, "k"))
        d = self.const(self.arg(n, 2, "dim", -1)) % len(x.axes)
        if not self.const(self.arg(n, 3, "largest", True)) or not self.const(
            self.arg(n, 4, "sorted", True)
        ):
            raise _Unmapped
        into = self.axis("feature", k, avoid=x.axes)
        r = self.b.box("topk", {"x": x}, self.box_name(n), over=x.axes[d], k=k, into=into)
        return r["values"], r["indices"]

    @imports("upsample")
    def upsample(self, n, a, size, factor, mode, align) -> Wire:
        """`F.interpolate` / `nn.Upsample` of the spatial axes (all but the first two) by one
        integer factor, nearest or (bi/tri)linear without aligned corners."""
        x = self.wire(a)
        shape, out = self.shape(a), self.shape(n)
        mode = self.const(mode)
        if mode not in ("nearest", "linear", "bilinear", "trilinear") or self.const(align):
            raise _Unmapped
        if len(shape) < 3 or any(o % i for i, o in zip(shape[2:], out[2:], strict=True)):
            raise _Unmapped
        factors = {o // i for i, o in zip(shape[2:], out[2:], strict=True)}
        if len(factors) != 1 or out[:2] != shape[:2]:
            raise _Unmapped
        kind = "nearest" if mode == "nearest" else "linear"
        y = self.b.box("upsample", {"x": x}, self.box_name(n), spatial=list(x.axes[2:]),
                       factor=factors.pop(), mode=kind)  # fmt: skip
        return self.resize(y, n)

    def made_tensor(self, n) -> Wire:
        """A tensor made from sizes alone (`torch.arange(T)`, `torch.ones(T, T)`): a constant
        box holding its values (a buffer), its axes named by size after the model's axes."""
        v = self.values[n]
        if v.dim() == 0:
            raise _Unmapped
        names: list[str] = []
        for size in v.shape:
            role = next((r for r in ("seq", "key", "feature") if (r, size) in self.by_role
                         and self.by_role[(r, size)] not in names), "feature")  # fmt: skip
            names.append(self.axis(role, size, avoid=names))
        maker = getattr(n.target, "__name__", None) or str(n.target)
        return self.held_constant(self.box_name(n), names, v, maker)

    def held_constant(
        self, name: str, axes: list[str], v: torch.Tensor, what: str, buffer: bool = True
    ) -> Wire:
        """A constant box holding `v` (a buffer, loaded with the weights). Its `value` is the one
        number every element holds (`torch.ones`: 1); where the elements differ
        (`torch.arange`, a position table) `value` is only the fill before loading, so the box
        is labelled with what it is (`what`: the maker or the buffer's name), drawn as a named
        tensor as a parameter is, not as that fill."""
        fill = _fill_of(v)
        if fill is not None:
            w = self.b.box("constant", {}, name, axes=axes, dtype=_dtype(v), value=fill)
        else:
            zero = _num(0.0 if v.is_floating_point() else 0)
            label = what.rsplit(".", 1)[-1].replace("_", " ")  # a name, not markup: no subscripts
            w = self.b.box("constant", {}, name, axes=axes, dtype=_dtype(v), value=zero,
                           label=label)  # fmt: skip
        self.weights[name] = {"value": v}
        if buffer:
            self.buffers.add(name)
        return w

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

    def transpose(self, n, x, a, b):
        a, b = self.const(a) % len(x.axes), self.const(b) % len(x.axes)
        names = list(x.axes)
        names[a], names[b] = names[b], names[a]
        return self.order(x, names, n, "transpose")

    def alpha(self, n, fn: str, a, b):
        """`torch.add(a, b, alpha=s)` (and sub): a and s·b (a scale box, or the number
        folded), then the op; without alpha (or 1) the op as it is."""
        s_ = self.const(n.kwargs.get("alpha", 1))
        if fn not in ("add", "sub") or s_ == 1:
            return self.binary(n, fn, a, b)
        if isinstance(s_, bool) or not isinstance(s_, (int, float)):
            raise _Unmapped
        if self.is_number(b):
            ob = ("const", self.number(b) * s_, ())
        else:
            w, units = self.bare(b)
            sb = self.b.scale(w, self.factor(float(s_)), name=self.box_name(n, "alpha"))
            ob = ("wire", (sb, units), self.shape(b))
        return self.elementwise(n, fn, [self.operand(a), ob], self.shape(n))

    @imports("binary", "scale", "constant", "compare")
    def binary(self, n, fn, a, b):
        """An elementwise op of two tensors or a tensor and a number, broadcast as torch does:
        size-1 dims that broadcast leave (an `index` box), axes meeting at one position take
        one name (a `rename` box), a number is a scale or a constant box; a comparison is a
        compare box (boolean, as torch's). An RMS or layer norm written out (`x * rsqrt(mean(
        x^2, -1, keepdim) + eps)`, see `norm_core`) is an rmsnorm or layernorm box (without
        weight)."""
        if fn in ("add", "sub") and (hit := self.rotary_by_value(n, fn, a, b)) is not None:
            return hit
        if (hit := self.unary_by_value(n)) is not None:
            x, units = self.bare(hit[0])
            if not units:
                return self.b.unary(x, hit[1], name=self.box_name(n))
        if fn in ("mul", "div") and (hit := self.norm_core(fn, a, b)) is not None:
            kind, src, eps, dim = hit
            x, units = self.bare(src)
            if not units:  # (a size-1 dim off the wire: the elementwise boxes below)
                return self.b.box(kind, {"x": x}, self.box_name(n), over=[x.axes[dim]],
                                  affine=False, eps=eps)  # fmt: skip
        ta, tb = not self.is_number(a), not self.is_number(b)
        if fn == "add" and ta and tb:  # scores + an additive causal mask (0 and -inf)
            for x, m in ((a, b), (b, a)):
                with contextlib.suppress(_Unmapped):
                    return self.additive_mask(n, x, m)
        if fn in ("mul", "div") and ta and not tb and (f := self.size_factor(b, fn)):
            return self.pointwise(n, a, lambda x: self.b.scale(x, f, name=self.box_name(n)))
        if fn == "mul" and tb and not ta and (f := self.size_factor(a, fn)):
            return self.pointwise(n, b, lambda x: self.b.scale(x, f, name=self.box_name(n)))
        if fn in ("mul", "div") and ta and not tb:
            f = self.number(b)
            f = f if type(f) is int else float(f)  # an integer tensor times an integer stays one
            if fn == "div" and f == 0:
                raise _Unmapped
            f = self.factor(self.mask_factor(n, f if fn == "mul" else 1.0 / f))
            return self.pointwise(n, a, lambda x: self.b.scale(x, f, name=self.box_name(n)))
        if fn == "mul" and tb and not ta:
            f = self.number(a)
            f = self.factor(self.mask_factor(n, f if type(f) is int else float(f)))
            return self.pointwise(n, b, lambda x: self.b.scale(x, f, name=self.box_name(n)))
        if fn == "pow" and ta and not tb and self.number(b) == 2:
            return self.b.unary(self.wire(a), "square", name=self.box_name(n))
        make = None
        if fn in _NEGATED:  # a comparison: a boolean tensor, as torch's

            def make(wires, name):
                return self.b.box("compare", {"a": wires[0], "b": wires[1]}, name, fn=fn)

        return self.elementwise(n, fn, [self.operand(a), self.operand(b)], self.shape(n),
                                make=make)  # fmt: skip

    def softmax(self, n, variant: str) -> Wire:
        """`F.softmax(x, dim)`, `F.log_softmax`, `F.softmin` and their methods: a softmax box
        of that variant over the axis at dim (without a dtype to compute in)."""
        x = self.wire(n.args[0] if n.args else n.kwargs.get("input"))
        d = self.const(self.arg(n, 1, "dim"))
        if not isinstance(d, int) or self.const(n.kwargs.get("dtype")) is not None:
            raise _Unmapped
        return self.b.softmax(x, x.axes[d], variant=variant, name=self.box_name(n))

    def size_factor(self, a, fn: str) -> str | None:
        """The factor of a scale by a number the model computes from sizes (`x / x.shape[1]
        ** 0.5`): its size expression (`1/((T)**(0.5))` for a division), so that the scale
        follows the axis; None where a is no such number."""
        if not isinstance(a, fx.Node) or _is_t(self, a):
            return None
        e = self.size_expr(a)
        if e is None or not e[1]:
            return None
        return f"1/({e[0]})" if fn == "div" else e[0]

    def unary_by_value(self, n: fx.Node) -> tuple[fx.Node, str] | None:
        """(x, name) where node n ends a chain of elementwise ops of one tensor x and numbers
        that computes a function of the vocabulary (`0.5 * x * (1 + tanh(c (x + 0.044715
        x^3)))` is gelu_tanh, `x * sigmoid(x)` silu), recognised by its values on a grid of
        points; else None."""
        inner = _elementwise_tree(n)
        if len(inner) < 2:
            return None
        order = {m: i for i, m in enumerate(self.gm.graph.nodes)}
        best = None
        for x in sorted({*inner, *_leaves(inner)} - {n}, key=order.get):
            region = _elementwise_tree(n, stop=x)
            if (
                len(region) >= 2
                and _leaves(region) == {x}
                and (best is None or len(region) > len(best[1]))
            ):
                best = (x, region)
        if best is None or not isinstance(self.values.get(best[0]), torch.Tensor):
            return None
        x, region = best
        if not self.values[x].is_floating_point() or self.shape(x) != self.shape(n):
            return None
        grid = torch.linspace(-8, 8, 321, dtype=torch.float64)
        try:
            got = _replay_on(sorted(region, key=order.get), x, grid)
        except Exception:
            return None
        for name in _BY_VALUE:
            fn, kw = UNARY[name]
            if torch.allclose(got, fn(grid, **kw), rtol=1e-6, atol=1e-7):
                return x, name
        return None

    @imports("rotary")
    def rotary_by_value(self, n: fx.Node, fn: str, a, b) -> Wire | None:
        """One rotary box where node n computes a rotary position embedding of a tensor x
        written out, `x * cos + rotate_half(x) * sin` (Hugging Face's LLaMA, GPT-NeoX) or with
        GPT-J's interleaved pairs, its cos and sin tables made without reading the inputs
        (buffers, sliced to the length, or built from torch.arange); else None, and the ops
        import one by one. Recognised by values: the positions' dim and the frequencies
        θ_i = base^(−2i/d) are read off the cos table (rows 0, 1, …; which features share a
        frequency tells the pairing), then the ops from x to n run again on a random x and
        must give what the rotary box gives."""
        for m1 in (a, b) if fn == "add" else (a,):
            if not isinstance(m1, fx.Node) or _op(m1) != "mul" or len(m1.args) != 2:
                continue
            for x, c in (m1.args, m1.args[::-1]):
                found = self._rotary_table(x, c)
                if found is None:
                    continue
                seq, feat, candidates, eps = found
                region = self._rotary_region(n, x)
                if region is None or self.values[n].dtype != self.values[x].dtype:
                    return None
                errors = [(self._rotary_error(region, n, x, seq, feat, base, pairs, eps), base,
                           pairs) for base, pairs in candidates]  # fmt: skip
                err, base, pairs = min(errors, key=lambda e: e[0])
                w, units = self.bare(x)
                if err > 1 or units:
                    return None
                return self.b.rotary(w, w.axes[seq], w.axes[feat], base=base, pairs=pairs,
                                     name=self.box_name(n))  # fmt: skip
        return None

    def _rotary_table(self, x, c):
        """(seq dim, feature dim, [(base, pairs), ...] to try, the table's precision (its
        dtype's eps)) where x is a float tensor and c a table the model makes without reading
        its inputs whose values are cos(p·θ_i) at positions p = 0, 1, … along one of x's
        dims, pairs along another (other dims constant); else None."""
        vx, vc = self.values.get(x), self.values.get(c)
        if not (isinstance(vx, torch.Tensor) and isinstance(vc, torch.Tensor)):
            return None
        if not (vx.is_floating_point() and vc.is_floating_point()) or vc.numel() < 4:
            return None
        if vc.dim() > vx.dim() or not isinstance(c, fx.Node):
            return None
        r = vx.dim()
        t = vc.detach().to(torch.float64).reshape((1,) * (r - vc.dim()) + tuple(vc.shape))
        if any(t.shape[d] not in (1, vx.shape[d]) for d in range(r)):
            return None
        for d in range(r):  # dims along which the table is constant: one row of it
            if t.shape[d] > 1 and torch.equal(t, t.narrow(d, 0, 1).expand_as(t)):
                t = t.narrow(d, 0, 1)
        varying = [d for d in range(r) if t.shape[d] > 1]
        if len(varying) != 2:
            return None
        for seq, feat in (varying, varying[::-1]):
            F_, T = t.shape[feat], t.shape[seq]
            if F_ % 2 or T < 2:
                continue
            tab = t.movedim((seq, feat), (0, 1)).reshape(T, F_)
            eps = torch.finfo(vc.dtype).eps
            if (tab[0] - 1).abs().max() > 8 * eps:
                continue  # positions start at 0: cos 0 = 1
            angle = torch.arccos(tab[1].clamp(-1, 1))  # θ of each feature's pair (θ <= 1)
            out = []
            for pairs in ("half", "interleaved"):
                one, twin = ((tab[:, : F_ // 2], tab[:, F_ // 2 :]) if pairs == "half" else
                             (tab[:, 0::2], tab[:, 1::2]))  # fmt: skip
                theta = angle[: F_ // 2] if pairs == "half" else angle[0::2]
                if (one - twin).abs().max() > eps or abs(float(theta[0]) - 1) > max(1e-3, 64 * eps):
                    continue  # the features of a pair share a frequency; pair 0 turns by p
                if F_ == 2:
                    out.append((10000.0, pairs))  # θ_0 = 1 whatever the base
                    continue
                th = float(theta[1])  # refined at the position where its angle nears π/2
                p = int(min(T - 1, max(1, round(math.pi / 2 / max(th, 1e-12)))))
                th = float(torch.arccos(tab[p, 2 if pairs == "interleaved" else 1].clamp(-1, 1)))
                th /= p
                if not 0 < th < 1:
                    continue
                base = th ** (-F_ / 2)  # (and the bases models use: a 16-bit table's
                # estimate is off by a percent or more)
                near = {float(f"{base:.{k}g}") for k in (2, 3, 6)} | {1e4, 5e5, 1e6}
                out += [(b_, pairs) for b_ in sorted(near) if 0.5 < b_ / base < 2]
            if out and not tracing.reads_values(c):  # (last: it walks the graph)
                return seq, feat, out, torch.finfo(vc.dtype).eps
        return None

    def _rotary_region(self, n: fx.Node, x: fx.Node) -> list[fx.Node] | None:
        """The ops from x to n (those of n's inputs that read x), in graph order, where every
        other tensor they read is made without reading the model's inputs; else None."""
        above, todo = set(), [n]
        while todo:
            m = todo.pop()
            if m in above or m is x:
                continue
            above.add(m)
            if len(above) > 64:
                return None
            todo += m.all_input_nodes
        region, reads = [], {x}
        for m in self.gm.graph.nodes:
            if m in above and any(i in reads for i in m.all_input_nodes):
                if m.op not in ("call_function", "call_method"):
                    return None
                region.append(m)
                reads.add(m)
        for m in region:
            for i in m.all_input_nodes:
                if i not in reads and tracing.reads_values(i):
                    return None
        return region if region and region[-1] is n else None

    def _rotary_error(self, region, n, x, seq, feat, base, pairs, eps) -> float:
        """How far the ops of `region` run on a random x are from runtime.rotary's result, in
        units of the precision of a table of that type (eps) at the positions there are: 1 or
        less where they agree; inf where they cannot run."""
        vx = self.values[x]
        gen = torch.Generator().manual_seed(0)
        probe = torch.randn(tuple(vx.shape), generator=gen, dtype=torch.float64)
        env: dict = {x: probe}

        def arg(v):
            return env[v] if v in env else self.values[v]

        if any(m.op == "call_method" and str(m.target).endswith("_") for m in region):
            return math.inf  # (in place: it could change a held tensor it is run on)
        try:
            for m in region:
                args = fx.node.map_arg(m.args, arg)
                kwargs = fx.node.map_arg(m.kwargs, arg)
                if m.op == "call_method":
                    env[m] = getattr(args[0], m.target)(*args[1:], **kwargs)
                else:
                    env[m] = m.target(*args, **kwargs)
            got = env[n]
            want = runtime.rotary(probe, seq, feat, base, interleaved=pairs == "interleaved")
        except Exception:
            return math.inf
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            return math.inf
        # the model's table rounded to its dtype (the probe's rotation is float64 throughout),
        # and its angles p·θ, off by p·θ·2^-24 at most in float32 (Hugging Face's), p·θ·2^-53
        # in float64
        angle_eps = 2.0**-50 if vx.dtype == torch.float64 else 2.0**-22
        tol = 4 * (eps + vx.shape[seq] * angle_eps) * float(probe.abs().max())
        return float((got.to(torch.float64) - want).abs().max()) / tol

    def norm_core(self, fn, a, b) -> tuple[str, fx.Node, float, int] | None:
        """(kind, x, eps, dim) where `a fn b` normalises x over one dim without an affine map,
        `c * rsqrt(r)` or `c / sqrt(r)` with r = v + eps: an RMS norm over x's last dim
        (c is x, v the mean of x squared) or a layer norm over any dim (c is x minus its mean,
        v the mean of c squared or x's variance without correction), written out as
        ConvNeXt's channels-first LayerNorm writes it; else None."""
        pairs = [(a, b), (b, a)] if fn == "mul" else [(a, b)]
        for c, r in pairs:
            if not (isinstance(c, fx.Node) and isinstance(r, fx.Node)):
                continue
            root = _call_arg(r, {"rsqrt"} if fn == "mul" else {"sqrt"})
            if root is None or root.op not in ("call_function", "call_method"):
                continue
            if _op(root) != "add" or len(root.args) != 2:
                continue
            rank = len(self.shape(c)) if isinstance(self.values.get(c), torch.Tensor) else 0
            for m, e in (root.args, root.args[::-1]):
                eps = e if isinstance(e, (int, float)) and not isinstance(e, bool) else None
                if eps is None or eps <= 0 or not isinstance(m, fx.Node) or not rank:
                    continue
                dim = self.reduced_dim(m, ("mean", "var"))
                if dim is None:
                    continue
                dim %= rank
                if _op(m) == "mean" and _squared_of(m.args[0]) is c and dim == rank - 1:
                    return "rmsnorm", c, float(eps), dim
                x = self.centered(c, dim)
                if x is None:
                    continue
                if _op(m) == "mean" and self.centered(_squared_of(m.args[0]), dim) is x:
                    return "layernorm", x, float(eps), dim
                uncorrected = self.const(self.arg(m, 2, "unbiased", True)) is False or (
                    self.const(m.kwargs.get("correction", 1)) == 0
                )
                if _op(m) == "var" and m.args[0] is x and uncorrected:
                    return "layernorm", x, float(eps), dim
        return None

    def reduced_dim(self, m, ops) -> int | None:
        """The one dim node m reduces over with keepdim, where m calls one of `ops` (`mean`,
        `var`); else None."""
        if not isinstance(m, fx.Node) or _op(m) not in ops or m.op == "call_module":
            return None
        dim = self.const(self.arg(m, 1, "dim"))
        dim = dim[0] if isinstance(dim, (list, tuple)) and len(dim) == 1 else dim
        keep = self.const(m.kwargs.get("keepdim", False)) or (
            _op(m) == "mean" and self.const(self.arg(m, 2, "keepdim", False))
        )
        return dim if isinstance(dim, int) and keep else None

    def centered(self, c, dim: int) -> fx.Node | None:
        """x where node c is `x - x.mean(dim, keepdim=True)`; else None."""
        if not isinstance(c, fx.Node) or _op(c) != "sub" or len(c.args) != 2:
            return None
        x, u = c.args
        k = self.reduced_dim(u, ("mean",))
        if not isinstance(x, fx.Node) or k is None or u.args[0] is not x:
            return None
        return x if k % len(self.shape(x)) == dim else None

    def operand(self, a):
        """An operand of an elementwise op: ("const", number, ()), ("lazy", _Lazy, shape) or
        ("wire", (wire, size-1 positions it leaves out), shape)."""
        if self.is_number(a):
            v = self.number(a)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise _Unmapped
            return ("const", v, ())
        w = self.wires.get(a)
        if isinstance(w, _Lazy) and id(w) not in self.made:
            return ("lazy", w, self.shape(a))
        return ("wire", self.bare(a), self.shape(a))

    def factor(self, f: float) -> str:
        """A scale factor as a size expression: `K**-0.5` where f is a square root (or its
        inverse) of an axis size, head features first (an attention's score scale, which
        code computes as a number); else the number."""
        if f <= 0:
            return _num(f)
        heads = [a for a in self.sizes if _role_of(a) in ("head", "value")]
        others = [a for a in self.sizes if a not in heads]
        simple = float(f).is_integer() or float(1 / f).is_integer()  # 0.5, 2: a number reads
        for name in heads if simple else [*heads, *others]:  # best, unless a head's scale
            size = self.sizes[name]
            for e in (-0.5, 0.5):  # to float32's precision (a scale held in a tensor)
                if size > 1 and math.isclose(f, size**e, rel_tol=1e-6):
                    return f"{name}**{e}"
        return _num(f)

    def is_number(self, a) -> bool:
        """A number: a plain value, or a 0-dim tensor the model makes without reading its
        inputs (`torch.full([], v.size(-1) ** 0.5)`, HF's GPT-2 score scale)."""
        if not _is_t(self, a):
            return True
        return _is_const_tensor(self, a) and self.values[a].dim() == 0

    def number(self, a):
        if _is_t(self, a):
            self.pin(a)  # `torch.full([], x.size(-1) ** 0.5)`: a size in a tensor
            return self.values[a].item()
        return self.const(a)

    # -- sizes the model's code reads (`x.shape[1]`, `x.size(0)`)
    def dim_sizes(self, x) -> list[str | tuple[str, ...] | None] | None:
        """Per dim of node x's tensor, in torch's order: the axis whose size it is, a number
        (a size-1 dim the wire leaves out, a held tensor's dim), the axes it may be (a tensor
        no wire carries) or None (unknown); None where x is no tensor."""
        w, v = self.wires.get(x), self.values.get(x)
        if not isinstance(v, torch.Tensor):
            return None
        if isinstance(w, _Lazy):  # a held tensor: its sizes are its weight's
            return [str(s) for s in v.shape]
        if not isinstance(w, Wire):  # (a complex tensor inside an opaque region): any axis
            # of the same size may be the one read
            return [tuple(a for a, s in self.sizes.items() if s == n) or str(n)
                    for n in v.shape]  # fmt: skip
        units, grown = self.units.get(x, ()), self.grown.get(x, {})
        axes = iter(w.axes)
        return [
            (None if d in grown else "1") if d in units else next(axes, None)
            for d in range(v.dim())
        ]

    def size_expr(self, a) -> tuple[str, frozenset[str]] | None:
        """A number the model computes from sizes (`x.shape[1] ** 0.5`, `x.size(0) // 2`) as a
        size expression of the axes it reads, with those axes; a plain number as itself; None
        where it is neither (a tuple, a tensor, an op the size language has no form for)."""
        if isinstance(a, bool) or (not isinstance(a, (int, float, fx.Node))):
            return None
        if not isinstance(a, fx.Node):
            return (_num(a), frozenset()) if math.isfinite(a) else None
        v = self.values.get(a)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None
        dim = self.read_dim(a)
        if dim is not None:
            x, d = dim
            sizes = self.dim_sizes(x)
            if sizes is None or not -len(sizes) <= d < len(sizes) or sizes[d] is None:
                return None
            s = sizes[d]
            if isinstance(s, tuple):
                return None  # one of several axes: no expression
            return (s, frozenset()) if s.isdigit() else (s, frozenset({s}))
        op = _SIZE_OPS.get(a.target) if a.op == "call_function" else None
        if op is None or a.kwargs:
            return None
        parts = [self.size_expr(x) for x in a.args]
        if any(p is None for p in parts):
            return None
        texts = [f"({t})" for t, _ in parts]
        return op.format(*texts), frozenset().union(*(names for _, names in parts))

    def read_dim(self, a: fx.Node) -> tuple[fx.Node, int] | None:
        """(x, d) where node a is the size of dim d of node x's tensor: `x.shape[d]`,
        `x.size(d)`, `x.size()[d]`; else None."""
        if a.op == "call_method" and a.target == "size" and len(a.args) + len(a.kwargs) == 2:
            d = self.arg(a, 1, "dim")
            return (a.args[0], d) if isinstance(d, int) else None
        if a.target is not operator.getitem or not isinstance(a.args[1], int):
            return None
        src = a.args[0]
        if not isinstance(src, fx.Node):
            return None
        whole = _is_shape(src) and (src.target is getattr or len(src.args) + len(src.kwargs) == 1)
        return (src.args[0], a.args[1]) if whole else None

    def size_axes(self, a: fx.Node) -> set[str] | None:
        """The axes whose sizes node a's value is computed from (walking back to the reads of
        a tensor's shape, as `tracing.reads_values` does); None where one read cannot be
        followed to an axis."""
        found: set[str] = set()
        seen, todo = set(), [a]
        while todo:
            m = todo.pop()
            if m in seen:
                continue
            seen.add(m)
            dim = self.read_dim(m)
            shape = _is_shape(m)
            if dim is not None or shape:
                x = dim[0] if dim is not None else m.args[0]
                sizes = self.dim_sizes(x)
                if sizes is None:
                    return None
                if dim is not None and -len(sizes) <= dim[1] < len(sizes):
                    sizes = [sizes[dim[1]]]  # one dim's size, else every dim's
                found |= {ax for s in sizes for ax in _axes_in(s)}
                continue
            if m.op == "placeholder" or (m.op == "call_method" and m.target == "dim") or (
                m.op == "call_function" and m.target is getattr
                and m.args[1] in ("dtype", "device", "ndim")
            ):  # fmt: skip
                continue  # a value fixed at its default, a rank, a dtype: no size
            todo += m.all_input_nodes
        return found

    def pin(self, a: fx.Node) -> None:
        """Fixes the axes whose sizes node a's value is computed from to the example's sizes,
        where the circuit holds that value as a number (an imported model run at other sizes
        is refused by the circuit's input check, not computed with the example's number)."""
        if not isinstance(a, fx.Node) or a.op == "placeholder":
            return
        axes = self.size_axes(a)
        if axes is None:
            raise TorchImportError(
                f"{self.where(a)}: the model's code reads a size ncd cannot follow to an "
                "axis of the circuit, as the example's number; compute it inside a "
                "submodule kept whole (keep=[path], `ncd import --keep PATH`)"
            )
        if axes:
            self.pending.append((axes, a))

    def pin_read_sizes(self, checked, live) -> bool:
        """Fixes the sizes the model's code took as the example's numbers (Python control flow
        on sizes: `range(x.shape[0] // 2)`, `if T > 1`, `int(T / 2)`: tracing.READ) and those
        live boxes hold as numbers (`pin`): each free size symbol they are made of is
        declared at the example's size, with a warning naming the axes and what read them
        (the compiled module then refuses other sizes). Whether any was."""
        self.pending = []
        for n in self.gm.graph.nodes:
            for d in n.meta.get(tracing.READ, ()):
                if d is None:
                    self.pin(n)
                    continue
                sizes = self.dim_sizes(n)
                if sizes is None or sizes[d] is None:
                    raise TorchImportError(
                        f"{self.where(n)}: the model's code takes the length of a tensor ncd "
                        "cannot follow to an axis of the circuit, as the example's number; "
                        "run that code inside a submodule kept whole (keep=[path], "
                        "`ncd import --keep PATH`)"
                    )
                if _axes_in(sizes[d]):
                    self.pending.append((_axes_in(sizes[d]), n))
        pins = [*((axes, m) for axes, m, boxes in self.pins
                  if boxes is None or set(live) & set(boxes)), *self.pending]  # fmt: skip
        declared = self.b._draft.axes
        fixed: dict[str, fx.Node] = {}
        for axes, m in pins:
            for ax in sorted(axes):
                for sym in sorted(checked.resolve(parse_size(ax)).names()):
                    if sym not in declared and sym in self.sizes:
                        fixed.setdefault(sym, m)
        for sym in fixed:
            self.b.axis(sym, self.sizes[sym])
        weighed = {  # sizes the weights fix anyway: fixing them again is no news
            sym for ps in checked.params.values() for t in ps.values() for ax in t.names
            for sym in checked.resolve(parse_size(ax)).names()
        }  # fmt: skip
        news = {sym: m for sym, m in fixed.items() if sym not in weighed}
        if news:
            said = "; ".join(f"{sym} = {self.sizes[sym]} (read by {self.where(m)})"
                             for sym, m in news.items())  # fmt: skip
            warnings.warn(
                f"{type(self.model).__name__}: the model's code reads sizes as numbers "
                f"(Python arithmetic or control flow on x.shape), so the circuit fixes {said}; "
                "import again with an example of the sizes wanted to run at others",
                stacklevel=4,
            )
        return bool(fixed)

    def fresh(self, like: str, size: int, avoid) -> str:
        """A new axis name of `like`'s role (a second sequence axis is a key axis)."""
        role = _role_of(like)
        return self.axis("key" if role == "seq" else role, size, avoid=avoid)

    def elementwise(self, n, fn, ops, out_shape, suffix="", dtype=None, make=None,
                    bare=False):  # fmt: skip
        """A binary box of fn on two operands (see `operand`), its axes in torch's order, or
        the box `make(wires, name)` builds from the operands (a compare or where box).
        `bare`: (wire, the size-1 dims it leaves out), an operand's pair."""
        R = len(out_shape)
        names: list = [None] * R
        ready: list = [None] * len(ops)
        rank = {"wire": 0, "lazy": 1, "const": 2}
        for i in sorted(range(len(ops)), key=lambda i: rank[ops[i][0]]):
            kind, x, shape = ops[i]
            if kind == "const":
                continue
            off = R - len(shape)
            if kind == "lazy":
                hints = [names[off + d] for d in range(len(shape))]
                drop = [d for d in range(len(shape)) if shape[d] == 1 and out_shape[off + d] != 1]
                w, units = self.materialize(x, hints, drop)
            else:
                w, units = x
            pos = [d for d in range(len(shape)) if d not in units]
            ren, cut = {}, []
            for ax, d in zip(w.axes, pos, strict=True):
                o = off + d
                if shape[d] == 1 and out_shape[o] != 1:
                    cut.append(ax)
                    continue
                want = names[o]
                if want is None:
                    taken = [*names, *w.axes]
                    want = ax if ax not in names else self.fresh(ax, shape[d], taken)
                    names[o] = want
                if want != ax:
                    ren[ax] = want
            for ax in cut:
                w = self.b.index(w, ax, 0, name=self.box_name(n, "squeeze"))
            if ren:
                w = self.b.rename(w, ren, name=self.box_name(n, "align"))
            ready[i] = w
        units = tuple(o for o in range(R) if names[o] is None)
        if all(r is None for r in ready) or any(out_shape[o] != 1 for o in units):
            raise _Unmapped
        for i, (kind, v, _) in enumerate(ops):
            if kind == "const":
                other = next(r for r in ready if r is not None)
                compares = fn in _NEGATED
                dt = dtype or (other.type.dtype if compares else _dtype(self.values[n]))
                if not dt.startswith(("float", "bfloat")) and not compares:
                    dt = other.type.dtype
                ready[i] = self.constant(v, dt, n)
        name = self.box_name(n, suffix)
        y = make(ready, name) if make else self.b.binary(ready[0], ready[1], fn, name=name)
        y = self.order(y, [a for a in names if a is not None], n)
        if bare:
            return y, units
        if suffix:  # an intermediate of a longer mapping: its size-1 dims made axes
            return self.with_units(y, units, out_shape, n) if units else y
        self.units[n] = units  # size-1 dims no operand carries stay off the wire
        return y

    def constant(self, value, dtype: str, n) -> Wire:
        """A number as a constant box (a buffer holding it)."""
        if not dtype.startswith(("float", "bfloat")):
            if value != int(value):
                raise _Unmapped
            value = int(value)
        name = self.box_name(n, "const")
        w = self.b.box("constant", {}, name, axes=[], dtype=dtype, value=_num(value))
        self.weights[name] = {"value": torch.tensor(value, dtype=getattr(torch, dtype))}
        self.buffers.add(name)
        return w

    @imports("where")
    def where_(self, n):
        """torch.where(c, x, y): a mask box where c is made from sizes alone and y is -inf
        (see `mask_of`), else a where box (`select`)."""
        c, x, y = (self.arg(n, i, k) for i, k in enumerate(("condition", "input", "other")))
        with contextlib.suppress(_Unmapped):  # a causal mask: where(keep, scores, -inf)
            if _is_t(self, x) and (not _is_t(self, y) or _is_const_tensor(self, y)):
                return self.mask_of(n, x, c, y, keep=True)
            if _is_t(self, y) and (not _is_t(self, x) or _is_const_tensor(self, x)):
                return self.mask_of(n, y, c, x, keep=False)
        return self.select(n, c, x, y)

    def select(self, n, c, x, y, negate: bool = False) -> Wire:
        """A where box: x where condition c holds (`negate`: where it does not), y elsewhere.
        A number y of -inf, 0 or inf is the box's fill, and so is a very negative one
        (`finfo(dtype).min`, -1e9) where only softmaxes read the result, as -inf; any other
        number is a constant box."""
        if not _is_t(self, x) or self.is_number(x):  # where(c, number, t): c's complement
            x, y, negate = y, x, not negate
        if not _is_t(self, x) or self.is_number(x):
            raise _Unmapped
        ops = [self.condition(n, c, negate), self.operand(x)]
        fill = None
        if self.is_number(y):
            v = self.number(y)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise _Unmapped
            if v == float("-inf") or (v <= _VERY_NEGATIVE and self.feeds_only_softmaxes(n)):
                fill = "-inf"
            elif v in (0, float("inf")):
                fill = "0" if v == 0 else "inf"
        if fill is None:
            ops.append(self.operand(y))

        def make(wires, name):
            return self.b.box("where", dict(zip(("cond", "a", "b"), wires)), name, fill=fill)

        return self.elementwise(n, "where", ops, self.shape(n), make=make)

    def condition(self, n, c, negate: bool) -> tuple:
        """Condition c of node n's where (`negate`: its complement) as an operand holding a
        boolean wire with all of c's dims: a comparison as a compare box of its two values
        (negated by the opposite comparison), `~` flips, any other tensor compared with 0
        (a boolean one as it is)."""
        while isinstance(c, fx.Node) and (
            c.target in _NOTS or (c.op == "call_method" and c.target in ("logical_not",
                                                                         "bitwise_not"))
        ):  # fmt: skip
            c, negate = c.args[0], not negate
        if not _is_t(self, c):
            raise _Unmapped
        fn = (
            _COMPARISONS.get(c.target) if c.op == "call_function"
            else c.target if c.op == "call_method" and c.target in _NEGATED else None
        )  # fmt: skip
        if fn is not None and len(c.args) == 2 and not c.kwargs:
            ops = [self.operand(a) for a in c.args]
        elif self.values[c].dtype == torch.bool and not negate:
            return self.operand(c)
        else:
            fn, ops = "ne", [self.operand(c), ("const", 0, ())]
        fn = _NEGATED[fn] if negate else fn

        def make(wires, name):
            return self.b.box("compare", {"a": wires[0], "b": wires[1]}, name, fn=fn)

        return ("wire", self.elementwise(n, fn, ops, self.shape(c), "cond", make=make, bare=True),
                self.shape(c))  # fmt: skip

    @imports("index", "slice")
    def getitem(self, n, a, idx):
        """Basic indexing (slices, integers, None, ...) as slice and index boxes; None adds a
        size-1 dim the wire carries only where needed."""
        src = self.wires.get(a)
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

    def is_table(self, src: _Lazy, i) -> bool:
        """Whether `src[i]` reads rows of a 2-d float tensor the model holds by an integer
        tensor of indices."""
        v = self.values.get(i) if isinstance(i, fx.Node) else None
        return (
            src.parent is None and src.value.dim() == 2 and src.value.is_floating_point()
            and isinstance(v, torch.Tensor) and v.dtype in (torch.int32, torch.int64)
        )  # fmt: skip

    def lookup(self, n, table: _Lazy, index: fx.Node) -> Wire:
        """`table[index]`, rows of a 2-d float tensor the model holds read by an integer tensor
        (Swin's relative position bias table by its index buffer): an embedding box holding
        the table."""
        t, x = table.value, self.wire(index)
        vocab = self.axis("vocab", t.shape[0], avoid=x.axes)
        out = self.axis("feature", t.shape[1], avoid=[*x.axes, vocab])
        name = self.box_name(n)
        y = self.b.embedding(x, vocab, out, name=name)
        self.weights[name] = {"weight": t}
        if table.node.target not in dict(self.model.named_parameters()):
            self.buffers.add(name)
        return y

    def apply_index(self, n, w: Wire, shape, idx, names=None) -> tuple[Wire, tuple[int, ...]]:
        items = self.const(list(idx) if isinstance(idx, tuple) else [idx])
        items = [slice(*self.const([i.start, i.stop, i.step])) if isinstance(i, slice) else i
                 for i in items]  # fmt: skip
        used = sum(1 for i in items if i is not None and i is not Ellipsis)
        if used > len(shape) or sum(1 for i in items if i is Ellipsis) > 1:
            raise _Unmapped
        full = []
        for i in items:
            full += [slice(None)] * (len(shape) - used) if i is Ellipsis else [i]
        full += [slice(None)] * (len(shape) - sum(1 for i in full if i is not None))
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

    def index_lazy(self, lazy: _Lazy, hints) -> tuple[Wire, tuple[int, ...]]:
        """A getitem of a tensor the model holds: the tensor's param box named after `hints`
        (the dims sliced get a name of the hint's role), then the getitem."""
        parent = lazy.parent
        items = self.const(list(lazy.index) if isinstance(lazy.index, tuple) else [lazy.index])
        pshape = tuple(parent.value.shape)
        used = sum(1 for i in items if i is not None and i is not Ellipsis)
        full = []
        for i in items:
            full += [slice(None)] * (len(pshape) - used) if i is Ellipsis else [i]
        full += [slice(None)] * (len(pshape) - sum(1 for i in full if i is not None))
        phints: list = []
        o = 0
        for i in full:
            if i is None:
                o += 1
                continue
            h = hints[o] if o < len(hints) and not isinstance(i, int) else None
            if (
                isinstance(i, slice)
                and h
                and slice(*self.const([i.start, i.stop, i.step])).indices(pshape[len(phints)])
                != (0, pshape[len(phints)], 1)
            ):
                role = _role_of(h)
                h = self.axis(role, pshape[len(phints)], avoid=hints)
            phints.append(h)
            o += 0 if isinstance(i, int) else 1
        w = self.wire_of_lazy(parent, phints)
        return self.apply_index(lazy.node, w, pshape, lazy.index, names=hints)

    def wire_of_lazy(self, lazy: _Lazy, hints) -> Wire:
        w, units = self.materialize(lazy, hints)
        if units:
            w = self.with_units(w, units, tuple(lazy.value.shape), lazy.node)
        return w

    @imports("contract")
    def matmul(self, n, a: Wire, b: Wire):
        if len(a.axes) < 2 or len(b.axes) < 2 or len(a.axes) != len(b.axes):
            raise _Unmapped
        ka, kb = a.axes[-1], b.axes[-2]
        if ka != kb:
            b = self.b.rename(b, {kb: ka}, name=self.box_name(n, "align"))
        m_, n_ = a.axes[-2], b.axes[-1]
        if n_ == m_ or n_ in a.axes[:-2]:
            b = self.b.rename(b, {n_: self.axis("key", self.sizes[n_], avoid=a.axes)},
                              name=self.box_name(n, "keys"))  # fmt: skip
        batch_a, batch_b = a.axes[:-2], b.axes[:-2]
        if batch_a != batch_b:
            b = self.b.rename(b, dict(zip(batch_b, batch_a, strict=True)),
                              name=self.box_name(n, "batch"))  # fmt: skip
        out = [*batch_a, m_, b.axes[-1]]
        return self.b.contract(a, b, over=ka, out=out, name=self.box_name(n))

    def linear_fn(self, n, x, weight, bias, transposed: bool) -> Wire:
        """`F.linear(x, W, b)`, or `torch.addmm(b, x, W)` (HF's GPT-2 `Conv1D`: W stored
        [in, out]), with W and b tensors the model holds: one linear box over x's last axis,
        named after the module holding W, which keeps W as nn.Linear's [out, in]."""
        lw = self.wires.get(weight) if isinstance(weight, fx.Node) else None
        lb = self.wires.get(bias) if isinstance(bias, fx.Node) else None
        if not isinstance(lw, _Lazy) or lw.parent is not None or lw.value.dim() != 2:
            raise _Unmapped
        w = lw.value.t() if transposed else lw.value
        if bias is not None and (
            not isinstance(lb, _Lazy) or lb.parent is not None
            or tuple(lb.value.shape) != (w.shape[0],)
        ):  # fmt: skip
            raise _Unmapped
        x = self.wire(x)
        if self.sizes[x.axes[-1]] != w.shape[1]:
            raise _Unmapped
        out = self.out_axis(n, w.shape[0], x)
        owner = str(weight.target).rpartition(".")[0]
        name = self.box_name(n) if not owner else self._fresh(owner.replace(".", "_"))
        y = self.b.linear(x, x.axes[-1], out, bias=bias is not None, name=name)
        self.weights[name] = {"weight": w, **({"bias": lb.value} if bias is not None else {})}
        self.linear_out[n] = out
        return y

    def einsum(self, n):
        """`torch.einsum("bhqd,bhkd->bhqk", q, k)`: one contraction, each letter one axis (an
        operand's axis renamed where its letter already names another axis); ellipses and a
        letter twice in one operand (diagonals) stay opaque."""
        eq = str(self.const(n.args[0])).replace(" ", "")
        ops = n.args[1:]
        if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
            ops = ops[0]
        lhs, arrow, rhs = eq.partition("->")
        terms = lhs.split(",")
        if "." in eq or len(terms) != len(ops) or not 1 <= len(ops) <= 8:
            raise _Unmapped
        if not arrow:  # implicit output: the letters seen once, in alphabetical order
            rhs = "".join(sorted(c for c in set(lhs) - {","} if lhs.count(c) == 1))
        axis_of: dict[str, str] = {}
        wires = []
        for i, (term, op) in enumerate(zip(terms, ops, strict=True)):
            w = self.wire(op)
            if len(term) != len(w.axes) or len(set(term)) != len(term):
                raise _Unmapped
            rename = {}
            for letter, ax in zip(term, w.axes, strict=True):
                if letter not in axis_of:
                    taken = set(axis_of.values())
                    axis_of[letter] = (
                        ax
                        if ax not in taken
                        else self.fresh(ax, self.sizes[ax], avoid=taken | set(w.axes))
                    )
                if axis_of[letter] != ax:
                    rename[ax] = axis_of[letter]
            if rename:
                w = self.b.rename(w, rename, name=self.box_name(n, f"axes{i}"))
            wires.append(w)
        if set(rhs) - set(axis_of) or len(set(rhs)) != len(rhs):
            raise _Unmapped
        over = [axis_of[c] for c in axis_of if c not in rhs]
        out = [axis_of[c] for c in rhs]
        return self.b.contract(*wires, over=over, out=out, name=self.box_name(n))

    def einops(self, n, a, pattern: str, lengths: dict, reduction) -> Wire:
        """einops' `rearrange(x, "b n (h d) -> b h n d", h=4)` and `reduce(x, pattern, op)`:
        the reshape splitting the left side's groups, a permute (and a reduce box over the
        letters the right side leaves out), the reshape merging the right side's groups.
        Ellipses, unit groups and new letters (`repeat`) stay opaque."""
        left, arrow, right = str(pattern).partition("->")
        L, R = ParsedExpression(left.strip()), ParsedExpression(right.strip())
        shape = self.shape(a)
        if not arrow or L.has_ellipsis or R.has_ellipsis or len(L.composition) != len(shape):
            raise _Unmapped
        if any(not g for g in (*L.composition, *R.composition)):
            raise _Unmapped
        size: dict[str, int] = {}
        for group, s in zip(L.composition, shape, strict=True):
            known = math.prod(int(lengths[c]) for c in group if c in lengths)
            unknown = [c for c in group if c not in lengths]
            if len(unknown) > 1 or known == 0 or s % known:
                raise _Unmapped
            size.update({c: int(lengths[c]) for c in group if c in lengths})
            if unknown:
                size[unknown[0]] = s // known
        lefts = [c for g in L.composition for c in g]
        rights = [c for g in R.composition for c in g]
        gone = [c for c in lefts if c not in rights]
        if set(rights) - set(lefts) or (gone and reduction is None):
            raise _Unmapped
        x = self.wire(a)
        y = self.view(n, x, [size[c] for c in lefts])  # one axis per letter
        named = dict(zip(lefts, y.axes, strict=True))
        if gone:
            op = self.const(reduction)
            if op not in ("sum", "mean", "max", "min", "prod"):
                raise _Unmapped
            y = self.b.reduce(y, [named[c] for c in gone], op, name=self.box_name(n, "reduce"))
        y = self.order(y, [named[c] for c in rights], n)
        return self.view(n, y, [math.prod(size[c] for c in g) for g in R.composition])

    def einops_repeat(self, n, a, pattern: str) -> Wire:
        """einops' `repeat(cls, "1 1 d -> b 1 d", b=B)`: size-1 positions given a new letter
        are copies along them (as `expand`); other repeats stay opaque."""
        left, _, right = str(pattern).partition("->")
        L, R = ParsedExpression(left.strip()), ParsedExpression(right.strip())
        if L.has_ellipsis or R.has_ellipsis or len(L.composition) != len(R.composition):
            raise _Unmapped
        lefts = {c for g in L.composition for c in g}
        for lg, rg in zip(L.composition, R.composition, strict=True):
            if lg != rg and not (not lg and len(rg) == 1 and rg[0] not in lefts):
                raise _Unmapped
        return self.expand(n, a)

    def norm_fn(self, n, kind: str):
        """`F.layer_norm(x, shape, weight, bias, eps)` / `F.rms_norm(...)`: the norm without
        its affine map, then the weight's product and the bias's sum as elementwise boxes."""
        x = self.wire(n.args[0])
        shape = self.const(self.arg(n, 1, "normalized_shape"))
        over = list(x.axes[-len(shape) :])
        eps = self.const(self.arg(n, 4 if kind == "layernorm" else 3, "eps"))
        if eps is None:
            eps = torch.finfo(torch.float32).eps
        y = self.b.box(kind, {"x": x}, self.box_name(n), over=over, affine=False, eps=eps)
        weight = self.arg(n, 2, "weight")
        bias = self.arg(n, 3, "bias") if kind == "layernorm" else None
        for fn, p in (("mul", weight), ("add", bias)):
            if p is not None:
                ops = [("wire", (y, ()), self.shape(n)), self.operand(p)]
                suffix = "weight" if fn == "mul" else "bias"
                y = self.elementwise(n, fn, ops, self.shape(n), suffix=suffix)
        return y

    @imports("mask")
    def masked_fill(self, n):
        """`scores.masked_fill(mask, float("-inf"))` (or 0) where the mask, made from sizes
        alone (never from an input's values), is causal (key > query) or a causal window over
        the last two axes: a mask box. Any other mask (a padding mask read from an input) is a
        where box (`select`)."""
        mask, value = n.args[1], self.arg(n, 2, "value")
        with contextlib.suppress(_Unmapped):
            return self.mask_of(n, n.args[0], mask, value, keep=False)
        return self.select(n, mask, n.args[0], value, negate=True)

    def mask_of(self, n, scores, mask, value, keep: bool) -> Wire:
        """The mask box of `masked_fill` (`keep` False: the mask's True entries are filled) or
        of `torch.where(mask, scores, value)` (`keep` True). The fill is -inf or 0; a very
        negative one (HF's `torch.finfo(dtype).min`, GPT-2's -1e4) counts as -inf where only
        softmaxes read the result, whose weights it makes exactly 0 as -inf does."""
        x, units = self.bare(scores)
        if units or not isinstance(mask, fx.Node) or tracing.reads_values(mask):
            raise _Unmapped
        if isinstance(value, fx.Node):  # a number held in a tensor (torch.full([], v))
            v = self.values[value]
            if tracing.reads_values(value) or not isinstance(v, torch.Tensor) or v.numel() != 1:
                raise _Unmapped
            value = v.item()
        value = self.const(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Unmapped
        low = value <= _VERY_NEGATIVE and self.feeds_only_softmaxes(n)
        if value == float("-inf") or low:
            fill = "-inf"
        elif value == 0:
            fill = "0"
        else:
            raise _Unmapped
        drop = self.values[mask]
        if not isinstance(drop, torch.Tensor) or drop.dtype != torch.bool:
            raise _Unmapped
        pattern, window = _mask_pattern(~drop if keep else drop, self.shape(n))
        return self.b.mask(x, x.axes[-2], x.axes[-1], pattern=pattern, window=window,
                           fill=fill, name=self.box_name(n))  # fmt: skip

    def dropped(self, mask, keeps: bool) -> torch.Tensor:
        """The entries an attention mask made from sizes alone leaves out: a boolean one is
        True where attended (`keeps`, SDPA's convention) or where not (nn.MultiheadAttention's);
        an additive one holds 0 and -inf."""
        m = self.values.get(mask) if isinstance(mask, fx.Node) else None
        if not isinstance(m, torch.Tensor) or tracing.reads_values(mask):
            raise _Unmapped
        if m.dtype == torch.bool:
            return ~m if keeps else m
        if m.is_floating_point() and bool(((m == 0) | torch.isneginf(m)).all()):
            return torch.isneginf(m)
        raise _Unmapped

    def additive_mask(self, n, scores, mask) -> Wire:
        """`scores + mask` where the mask, made from sizes alone, holds 0 and -inf (torch's
        `generate_square_subsequent_mask`, `triu(full(-inf), 1)`), or 0 and a very negative
        number read only by a softmax: a mask box filling -inf where it is not 0."""
        v = self.values.get(mask)
        if (
            not isinstance(mask, fx.Node)
            or tracing.reads_values(mask)
            or not isinstance(v, torch.Tensor)
        ):
            raise _Unmapped
        if not v.is_floating_point() or v.shape != self.shape(n)[-v.dim() :] or v.dim() < 2:
            raise _Unmapped
        low = v < 0
        if not torch.all((v == 0) | torch.isneginf(v)) and not (
            torch.all((v == 0) | (v <= _VERY_NEGATIVE)) and self.feeds_only_softmaxes(n)
        ):
            raise _Unmapped
        x, units = self.bare(scores)
        if units or tuple(self.shape(scores)) != tuple(self.shape(n)):
            raise _Unmapped
        pattern, window = _mask_pattern(low, self.shape(n))
        return self.b.mask(x, x.axes[-2], x.axes[-1], pattern=pattern, window=window,
                           fill="-inf", name=self.box_name(n))  # fmt: skip

    @imports("normalize")
    def normalize(self, n):
        """`F.normalize(x, p, dim)`: x over its p-norm along one axis."""
        x = self.wire(n.args[0])
        p = self.const(self.arg(n, 1, "p", 2.0))
        d = self.const(self.arg(n, 2, "dim", 1))
        eps = self.const(self.arg(n, 3, "eps", 1e-12))
        if p not in (1, 2) or not 0 < eps <= 1:
            raise _Unmapped
        return self.b.box("normalize", {"x": x}, self.box_name(n), over=x.axes[d], p=int(p),
                          eps=eps)  # fmt: skip

    @imports("attention")
    def sdpa(self, n):
        q, k, v = (self.wire(n.args[i]) for i in range(3))
        causal = bool(self.const(self.arg(n, 5, "is_causal", False)))
        mask = self.arg(n, 3, "attn_mask")
        if mask is not None:  # a causal mask made from sizes: True (or 0.0) where attended
            if causal:
                raise _Unmapped
            drop = self.dropped(mask, keeps=True)
            if _mask_pattern(drop, self.shape(n.args[0])[:-1] + self.shape(n.args[1])[-2:-1]) != (
                "causal", 0):  # fmt: skip
                raise _Unmapped
            causal = True
        p = float(self.const(self.arg(n, 4, "dropout_p", 0.0)))
        grouped = {}  # grouped heads: each key/value head read by hq/hk query heads, as the
        # attention box's heads/kv_heads (the keys and values are not repeated)
        if self.const(self.arg(n, 7, "enable_gqa", False)) and len(q.axes) >= 3:
            hq, hk = self.shape(n.args[0])[-3], self.shape(n.args[1])[-3]
            if hq != hk:
                G = k.axes[-3]
                if G in q.axes:
                    G = self.axis("heads", hk, avoid=[*q.axes, *k.axes, *v.axes])
                grouped = {"heads": q.axes[-3], "kv_heads": G}
        scale = self.const(n.kwargs.get("scale"))
        T, K = q.axes[-2], q.axes[-1]
        S = k.axes[-2]
        if S == T:
            S = self.axis("key", self.sizes[T], avoid=q.axes)
        ren = {k.axes[-2]: S} if k.axes[-2] != S else {}
        if k.axes[-1] != K:
            ren[k.axes[-1]] = K
        if len(k.axes) != len(q.axes) or len(v.axes) != len(q.axes):
            raise _Unmapped
        kv_batch = list(q.axes[:-2])  # q's batch axes, with the key/value heads' own
        if grouped:
            kv_batch[-1] = grouped["kv_heads"]
        ren.update({a: b for a, b in zip(k.axes[:-2], kv_batch, strict=True) if a != b})
        if ren:
            k = self.b.rename(k, ren, name=self.box_name(n, "keys"))
        V = v.axes[-1]
        ren = {v.axes[-2]: S} if v.axes[-2] != S else {}
        batch = dict(zip(v.axes[:-2], kv_batch, strict=True))
        ren.update({a: b for a, b in batch.items() if a != b})
        if V == K:
            V = self.axis("value", self.sizes[K], avoid=q.axes)
            ren[v.axes[-1]] = V
        if ren:
            v = self.b.rename(v, ren, name=self.box_name(n, "values"))
        kw = {"scale": repr(float(scale))} if scale is not None else {}
        y = self.b.attention(
            q, k, v, name=self.box_name(n), query=T, key=S, head=K, value=V, causal=causal,
            **grouped, **kw,
        )  # fmt: skip
        if p:
            warnings.warn(
                f"{self.where(n)}: the attention dropout (dropout_p={p}) is dropped: the "
                "circuit's attention box has none",
                stacklevel=2,
            )
        return y

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
        patches) joins as one position, without that axis, and one expanded from size 1
        (`cls.expand(B, -1, -1)`) repeats along the axes it was expanded over."""
        args = list(self.arg(n, 0, "tensors"))
        shapes = [self.shape(a) for a in args]
        R = len(shapes[0])
        d = self.const(self.arg(n, 1, "dim", 0)) % R
        ref = next((i for i, sh in enumerate(shapes) if sh[d] != 1 and args[i] not in self.grown),
                   0)  # fmt: skip
        first = self.wire(args[ref])
        axis = first.axes[d]
        xs = []
        for i, a in enumerate(args):
            w, units = (first, ()) if i == ref else self.bare(a)
            grown = self.grown.get(a, {})
            if any(u not in grown and u != d for u in units):
                w, units = self.wire(a), ()  # its size-1 dims as axes
            pos = [p for p in range(R) if p not in units]
            if d in pos and w.axes[pos.index(d)] != axis and shapes[i][d] == 1:
                w = self.b.index(w, w.axes[pos.index(d)], 0, name=self.box_name(n, f"one{i}"))
                pos.remove(d)
            # axes meeting at one position take the reference operand's names
            ren = {ax: first.axes[p] for ax, p in zip(w.axes, pos, strict=True)
                   if ax != first.axes[p]}  # fmt: skip
            if ren:
                w = self.b.rename(w, ren, name=self.box_name(n, f"align{i}"))
            if any(ax not in first.axes for ax in w.axes):
                raise _Unmapped
            xs.append(w)
        y = self.b.concat(*xs, axis=axis, name=self.box_name(n))
        new = self.axis("feature", self.shape(n)[d % len(first.axes)], avoid=first.axes)
        return self.b.rename(y, {axis: new}, name=self.box_name(n, "sizes"))

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

    def spread(self, n, op: str, a) -> Wire:
        """`var` and `std` over some dims: the mean, the centred square's mean, scaled by
        N / (N - correction) for the N positions reduced (a size expression), its root for
        `std`."""
        x = self.wire(a)
        third = self.const(n.args[2]) if len(n.args) > 2 else None
        if isinstance(third, bool):  # var(x, dim, unbiased, keepdim)
            corr = int(third)
            keep = self.const(self.arg(n, 3, "keepdim", False))
        else:
            corr = n.kwargs.get("correction", n.kwargs.get("unbiased", True))
            corr = int(self.const(corr) if corr is not None else 1)
            keep = self.const(n.kwargs.get("keepdim", False))
        if not x.axes or not isinstance(corr, int):
            raise _Unmapped
        dims = self.dims_of(n, x)
        over = [x.axes[d] for d in dims]
        mean = self.b.reduce(x, over, "mean", name=self.box_name(n, "mean"))
        c = self.b.binary(x, mean, "sub", name=self.box_name(n, "centre"))
        sq = self.b.unary(c, "square", name=self.box_name(n, "square"))
        y = self.b.reduce(sq, over, "mean", name=self.box_name(n, "var" if op == "std" else ""))
        if corr:
            count = "*".join(over)
            y = self.b.scale(y, f"({count})/({count} - {corr})", name=self.box_name(n, "correct"))
        if op == "std":
            y = self.b.unary(y, "sqrt", name=self.box_name(n))
        if keep:
            self.units[n] = tuple(dims)
        return y

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

    def extreme(self, n, op: str):
        """`x.max(dim)` / `x.min(dim)` (keepdim or not) read for its values alone (`[0]`,
        `.values`): those values as a reduce box, the indices None; `x.max()` the reduce over
        every axis. Read for its indices (ties broken as torch does), opaque."""
        x, dim = self.wire(n.args[0]), self.const(self.arg(n, 1, "dim"))
        if dim is None:
            return self.b.reduce(x, list(x.axes), op, name=self.box_name(n))
        if not isinstance(dim, int) or not all(
            (u.target is operator.getitem and u.args[1] == 0)
            or (u.target is getattr and u.args[1] == "values")
            for u in n.users
        ):
            raise _Unmapped
        d = dim % len(x.axes)
        y = self.b.reduce(x, [x.axes[d]], op, name=self.box_name(n))
        if self.const(self.arg(n, 2, "keepdim", False)):  # the kept dim off the wire, as the
            self.units[n] = (d,)  # other reductions' (`[0]` and `.values` read it)
        return (y, None)

    def division(self, n, name: str) -> str:
        """The binary op of a division: `div` (true division), or `floordiv` for
        `rounding_mode="floor"`, `floor_divide` and `//`; truncation stays opaque."""
        mode = "floor" if name in ("floor_divide", "floordiv") else None
        mode = self.const(n.kwargs.get("rounding_mode", mode))
        if mode not in (None, "floor"):
            raise _Unmapped
        return "div" if mode is None else "floordiv"

    def in_place(self, n, meth: str) -> Wire:
        """`y.add_(z)`, `y.relu_()`, ...: the op out of place (an opaque box on a copy of y
        where it has none), and y rebound to its result, so that readers of y after it read
        the new value as in PyTorch (an input or a held tensor changed in place is not changed
        for the caller); where y is a view of another tensor or has one, the import stops with
        that reason."""
        y = n.args[0] if n.args else None
        if not isinstance(y, fx.Node) or y in self.islands:
            raise _Unmapped

        def alias(m):
            return _op(m) in _ALIASES or m.target is operator.getitem

        if alias(y) or any(alias(u) for u in y.users if u is not n):
            raise TorchImportError(
                f"`{meth}` changes a tensor in place that {'is' if alias(y) else 'has'} a view "
                "of another: a circuit has no shared memory to follow the change (write it "
                "out of place, or keep the submodule whole)"
            )
        try:
            out = self.map_method(n, meth[:-1])
        except (_Unmapped, BuildError):
            out = self.opaque(n)
        same = self.same_tensor.setdefault(self.same_tensor.get(y, [y])[0], [y])
        same.append(n)  # y, and each in-place result of it: one tensor, all read the new value
        for m in same:
            self.same_tensor[m] = same
            self.wires[m] = out
            self.units[m] = self.units.get(n, ())
        return out

    def composed(self, n, x: Wire, kind: str, *opts) -> Wire:
        """An activation as the boxes of its definition: leaky ReLU with slope a as max(x, a x)
        (min for a > 1), hardtanh as a clamp, hardsigmoid as clamp(x / 6 + 1/2, 0, 1), mish as
        x tanh(softplus(x)), softsign as x / (1 + |x|)."""

        def box(suffix):
            return self.box_name(n, suffix)

        dt = x.type.dtype
        if kind == "leaky_relu":
            (a,) = opts
            if a < 0:  # (a negative slope: no max or min of the two)
                raise _Unmapped
            ax = self.b.scale(x, self.factor(float(a)), name=box("slope"))
            return self.b.binary(x, ax, "maximum" if a <= 1 else "minimum", name=box(""))
        if kind == "hardtanh":
            lo, hi = opts
            return self.b.box("clamp", {"x": x}, box(""), low=_num(float(lo)),
                              high=_num(float(hi)))  # fmt: skip
        if kind == "hardsigmoid":
            y = self.b.binary(self.b.scale(x, "1/6", name=box("sixth")),
                              self.constant(0.5, dt, n), "add", name=box("shift"))  # fmt: skip
            return self.b.box("clamp", {"x": y}, box(""), low="0", high="1")
        if kind == "mish":
            t = self.b.unary(self.b.unary(x, "softplus", name=box("softplus")), "tanh",
                             name=box("tanh"))  # fmt: skip
            return self.b.binary(x, t, "mul", name=box(""))
        if kind == "softsign":
            d = self.b.binary(self.b.unary(x, "abs", name=box("abs")), self.constant(1, dt, n),
                              "add", name=box("plus_one"))  # fmt: skip
            return self.b.binary(x, d, "div", name=box(""))
        raise _Unmapped

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

    @imports("split_axis", "merge_axes")
    def view(self, n, x: Wire, out_shape):
        """A reshape as splits and merges of axes, when it is one (else opaque)."""
        in_shape = [self.sizes[a] for a in x.axes]
        out_shape = list(out_shape)
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
                        new = self.axis(_role_of(group[0]), want[k],
                                        avoid=[*y.axes, *names, *parts, *taken])  # fmt: skip
                        self.b.axis(new, "*".join(group))
                        names.append(new)
                    y = self.b.split_axis(y, a, names, name=self.box_name(n, "split"))
                    continue
                else:
                    # the last two parts are heads and their features (`view(B, T, H, K)`,
                    # timm's `reshape(B, N, 3, H, K)`)
                    roles = ["feature"] * (len(gj) - 2) + ["heads", "head"]
                    names = []
                    for r, j_ in zip(roles, gj, strict=True):
                        names.append(self.axis(r, out_shape[j_], avoid=[*y.axes, *names]))
                try:
                    y = self.b.split_axis(y, a, names, name=self.box_name(n, "split"))
                except BuildError:  # `a` names a product of other sizes (D = H K) that a
                    # linear map's output of the same width took by its size: again, with
                    # a name of its own for that output (a kv map of width 2 G K = D)
                    maker = self.renamed_maker(n.args[0], a)
                    if maker is None:
                        raise
                    raise _Rename(maker) from None
            else:  # merge
                parts = [x.axes[k] for k in gi]
                roles = [_role_of(a) for a in parts]
                heads = roles[0] == "heads" and {"head", "value"} & set(roles[1:])
                role = "feature" if heads else roles[0]
                into = self.axis(role, out_shape[gj[0]], avoid=y.axes)
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
        self.callables[name] = _Replay(self.gm, region, tensors, consts, whole, bools)
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

    def __init__(self, gm, nodes: list[fx.Node], tensors, consts, pick=None, bools=()):
        super().__init__()
        self.consts = consts
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
                # `view` -> `reshape`: the circuit does not keep `contiguous()` calls; an
                # in-place method (`add_`) works on a copy: the box's input is another box's
                # output, which others may read
                method = "reshape" if target == "view" else target
                this = (
                    args[0].clone()
                    if method.endswith("_") and node is self.steps[0][0]
                    else (args[0])
                )
                out = getattr(this, method)(*args[1:], **kwargs)
            else:
                out = target(*args, **kwargs)
            env[node] = out
        if self.pick is None:
            return out
        outs = tuple(_at(out, p) for p in self.pick)
        return outs if len(outs) > 1 else outs[0]


def _complex(v) -> bool:
    if isinstance(v, (tuple, list)):
        return any(_complex(t) for t in v)
    return isinstance(v, torch.Tensor) and v.is_complex()


def _target_name(gm, n: fx.Node) -> str:
    """What an opaque box stands for, for people: `torch.nn.GRU`, `torch.cumsum`."""
    if n.op == "call_module":
        t = type(gm.get_submodule(n.target))
        return f"{t.__module__}.{t.__qualname__}"
    if n.op == "call_method":
        return f"torch.Tensor.{n.target}"
    mod = getattr(n.target, "__module__", None) or "torch"
    return f"{mod}.{getattr(n.target, '__qualname__', getattr(n.target, '__name__', 'op'))}"


def _flat(a) -> list:
    if isinstance(a, (tuple, list)):
        return [x for y in a for x in _flat(y)]
    return [a]


def _is_const_tensor(imp: _Importer, a) -> bool:
    """A one-element tensor the model makes without reading its inputs (`torch.full([], v)`,
    a scalar buffer)."""
    if not isinstance(a, fx.Node) or tracing.reads_values(a):
        return False
    v = imp.values.get(a)
    return isinstance(v, torch.Tensor) and v.numel() == 1


def _is_t(imp: _Importer, a) -> bool:
    return isinstance(a, fx.Node) and isinstance(imp.values.get(a), torch.Tensor)


def _is_shape(n: fx.Node) -> bool:
    """Whether node n reads a tensor's sizes: `x.shape`, `x.size()`, `x.size(d)`."""
    if n.op == "call_function" and n.target is getattr:
        return n.args[1] == "shape"
    return n.op == "call_method" and n.target == "size"


def _axes_in(size) -> set[str]:
    """The axes an entry of `_Importer.dim_sizes` names (none for a number or None)."""
    if size is None or (isinstance(size, str) and size.isdigit()):
        return set()
    return {size} if isinstance(size, str) else set(size)


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


def to_spec(model: nn.Module, example_inputs, name: str | None = None) -> str:
    """The imported circuit as JSON (callables and weights stay behind)."""
    return from_torch(model, example_inputs, name).to_json()


# Integer-only inference: no float PyTorch layer is an integer map or a dyadic requantisation.
IMPORTS.exempt.update(dict.fromkeys(("requantize", "int_linear"), _UNMAPPED))


__all__ = ["from_torch", "to_spec"]

IMPORTS.exempt["add_norm"] = "made by the compiler's rewrite of an add and a norm, not imported"
IMPORTS.exempt["long_conv"] = (
    "no PyTorch call maps to it: an FFT convolution written out (rfft, product, irfft) imports"
    " as an opaque box"
)
IMPORTS.exempt["short_conv"] = (
    "made by the compiler's rewrite of a depthwise conv, its causal slice and SiLU; those import"
)

# Routing: torch.gather, scatter_add and F.one_hot import as opaque boxes for now.
IMPORTS.exempt.update(dict.fromkeys(("gather", "scatter", "one_hot"), _UNMAPPED))
