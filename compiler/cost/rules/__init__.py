"""One cost rule per box kind: FLOPs, what autograd keeps for the backward pass, aliasing.

A rule reads a `BoxView` (the box's resolved input/output types, which inputs need a
gradient, the memory layout of each input) and returns a `Rule`. Conventions, stated in
every report:

- A multiply-add counts 2 FLOPs; a contraction of wires a, b, c summed over c costs 2·a·b·c.
- An elementwise function counts 1 FLOP per element per arithmetic step; a transcendental
  (exp, log, tanh, erf) counts 1.
- `mm` is the part a matrix engine does (contractions, linear maps, convolutions): the part
  `torch.utils.flop_counter.FlopCounterMode` counts. It counts elementwise work as zero.
- `saved` names the tensors PyTorch autograd keeps for the backward pass of the eager
  lowering (as torch 2.x `derivatives.yaml` says, checked with saved-tensor hooks).

Contractions and linear maps lower to `torch.einsum`, which permutes each operand to
(batch, free, summed) and flattens the groups for one batched matrix product; where the
operand's memory layout does not allow a view, einsum copies it and autograd keeps the copy.
The rules model that from the layout of each wire (axis order in memory), because it
decides whether a T×S score matrix is kept once or twice.

The rules are written one module per family of kinds, as `circuits/kinds/` files them, each
rule filed under its kind by `@costs` (the registry `RULES`, with `Rule`, `Saved`, `BoxView`
and the tables of unary functions and of pointwise and aliasing kinds in `common.py`):
`learned`, `contraction` (and torch.einsum's pricing), `elementwise`, `normalise`, `reduce`,
`rearrange`, `spatial`, `fused` (softmax attention, add + norm, the short convolution),
`linear_attention` (the fused linear-attention family), `structure` and `routing`.
"""

# Each family module files its rules in RULES (`@costs`) when it is imported.
from . import (  # noqa: F401
    contraction,
    elementwise,
    fused,
    learned,
    linear_attention,
    normalise,
    rearrange,
    reduce,
    routing,
    spatial,
    structure,
)
from .common import ALIAS_KINDS, POINTWISE, RULES, UNARY_FLOPS, UNARY_SAVES, BoxView, Saved
from .fused import MaskCost, mask_cost, relayouts, softmax_attention_kernel

__all__ = [
    "ALIAS_KINDS",
    "POINTWISE",
    "RULES",
    "UNARY_FLOPS",
    "UNARY_SAVES",
    "BoxView",
    "MaskCost",
    "Saved",
    "mask_cost",
    "relayouts",
    "softmax_attention_kernel",
]
