"""What the importer maps, and to what: the `IMPORTS` registry (box kind -> the method that
makes it, or why none does) and the tables of torch.nn layers, functions and methods that map to
box kinds."""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import nn

from ncd.circuits.kinds.registry import Registry

# Kind -> the method that maps PyTorch calls to it. Kinds no PyTorch call maps to are exempt:
# such calls import as opaque boxes.
_UNMAPPED = "no PyTorch call maps to it yet (one imports as an opaque box)"
IMPORTS = Registry(
    "importer mapping",
    "compiler/importer/",
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

# Integer-only inference: no float PyTorch layer is an integer map or a dyadic requantisation.
IMPORTS.exempt.update(dict.fromkeys(("requantize", "int_linear"), _UNMAPPED))

IMPORTS.exempt["add_norm"] = "made by the compiler's rewrite of an add and a norm, not imported"
IMPORTS.exempt["short_conv"] = (
    "made by the compiler's rewrite of a depthwise conv, its causal slice and SiLU; those import"
)

# Routing: F.one_hot imports as an opaque box for now.
IMPORTS.exempt["one_hot"] = _UNMAPPED

imports = IMPORTS.register

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
_MAKERS = (torch.arange, torch.ones, torch.zeros, torch.full, torch.empty, torch.eye,
           torch.linspace)  # fmt: skip
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

_LOGICAL_FNS = {
    operator.and_: "and", operator.or_: "or", operator.xor: "xor", operator.invert: "not",
    torch.bitwise_and: "and", torch.bitwise_or: "or", torch.bitwise_xor: "xor",
    torch.bitwise_not: "not",
}  # fmt: skip
"""`a & b`, `a | b`, `a ^ b`, `~a` and torch's bitwise functions: logical ops of booleans
(bitwise ones of integers stay opaque) -> the op."""
_LOGICAL_ANY = {torch.logical_and: "and", torch.logical_or: "or", torch.logical_xor: "xor",
                torch.logical_not: "not"}  # fmt: skip
"""torch's logical functions, of tensors of any type (nonzero: true) -> the op."""
_LOGICAL_METHODS = {
    **{f"bitwise_{op}": (op, False) for op in ("and", "or", "xor", "not")},
    **{f"logical_{op}": (op, True) for op in ("and", "or", "xor", "not")},
}
"""Tensor methods of logical ops -> (the op, whether of tensors of any type)."""
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

_COMMON_METHODS = {m: m for m in (
    "mean", "sum", "clamp", "clamp_min", "clamp_max", "to", "type_as", *_CASTS, "cumsum",
    "cumprod", "unbind", "unsqueeze", "repeat_interleave", "expand", "expand_as", "detach",
    "topk", *_REDUCTIONS, *_MOVES, "var", "std", "repeat", "tile",
)}  # fmt: skip
_COMMON_FNS = {
    **{getattr(torch, m): m for m in (*_REDUCTIONS, *_MOVES, "stack", "var", "std", "tile",
                                      "var_mean", "std_mean") if hasattr(torch, m)},
    torch.clamp: "clamp", torch.clamp_min: "clamp_min",
    torch.clamp_max: "clamp_max", torch.cumsum: "cumsum", torch.cumprod: "cumprod",
    torch.where: "where", torch.unbind: "unbind", torch.unsqueeze: "unsqueeze",
    torch.repeat_interleave: "repeat_interleave", F.dropout: "dropout", F.pad: "pad",
    torch.topk: "topk", F.interpolate: "interpolate",
    **dict.fromkeys(_MAKERS, "make"),
    **dict.fromkeys((torch.zeros_like, torch.ones_like, torch.full_like), "like"),
}  # fmt: skip
