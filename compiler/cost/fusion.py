"""Regions of the diagram that one kernel runs under the `fused` lowering.

A fused region keeps its inner wires on chip: only the wires that cross its border move
between HBM and the chip ("FlashAttention on a napkin"). Four kinds of region:

- softmax attention and linear attention: exactly the matches of compiler/patterns.py, the
  regions the compiler's rewrite replaces by a fused box (patterns.py says which chains
  qualify); priced as a FlashAttention-2 kernel, which PyTorch's SDPA or
  `ncd.ops.softmax_attention` runs by the compiler's choices (ops/attention/cost.py gives its
  IO, and what it keeps: q, k, v, o, log-sum-exp; a masked one, SDPA, also the mask as its
  bias: `rules.mask_cost`), and `ncd.ops.linear_attention` (keeps q, k, v; normalised, also
  the float32 output and denominator);
- the pre-norm residual step add → layernorm | rmsnorm (the `add_norm` match), priced as
  `ncd.ops.add_layer_norm` / `add_rms_norm` (ops/norm/cost.py: x and h read, the sum and the
  output written once; the sum and the float32 statistics kept) where the compiler's choices
  run that kernel on CUDA (else the add and PyTorch's norm, each its own kernel);
- the causal short convolution conv → slice → [silu] (the `short_conv` match), priced as
  `ncd.ops.short_conv` (ops/short_conv/cost.py: x read, y written, only x kept) where the
  compiler's choices run that kernel on CUDA;
- chains of pointwise boxes (`rules.POINTWISE`) whose inner wires have no other reader (as
  torch.compile fuses); no rewrite makes these.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..choices import choose, short_conv_kernels
from ..patterns import Graph, Match, find_matches
from .rules import POINTWISE


@dataclass
class Region:
    kind: str  # "attention", "linear_attention", "add_norm", "pointwise"
    boxes: list[str]
    inputs: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Role (q, k, v; a masked attention's mask) -> source wire, for the attention regions."""
    output: tuple[str, str] = ("", "")
    causal: bool = False
    dims: dict[str, str] = field(default_factory=dict)
    """Role -> axis names (query, key, head, value) for the attention regions."""
    normalize: bool = False
    """Linear attention divided by q . (running sum of k), as `normalize=True` runs it."""

    @property
    def name(self) -> str:
        return f"{self.kind}[{self.boxes[0]}…{self.boxes[-1]}]"

    @classmethod
    def of(cls, m: Match) -> Region:
        return cls(m.kind, list(m.boxes), dict(m.inputs), m.output, m.causal, dict(m.dims),
                   m.normalize)  # fmt: skip


def find_regions(checked, matched=None, platform: str = "cuda") -> list[Region]:
    """Regions in `checked` (one circuit level; calls are analysed on their own). The fused
    attention regions are the matches found in `matched` (by default `checked` itself; for a
    call, its subcircuit checked on its own, as the rewrite matches it). `platform`: the torch
    device type the compiler's choices are read for."""
    c = checked
    g = Graph(c)

    # A short convolution or a residual add and norm is priced as ncd.ops' kernel only where
    # the compiler runs it on the GPU (compiler/choices.py; short convolutions up to the
    # kernels' widest filter; norms' kernels on CUDA only, compiler/fused.py): PyTorch's
    # conv1d, where it runs instead, keeps the padded output that the kernel does not, and
    # PyTorch's add and norm move the sum twice.
    def runs_kernel(m) -> bool:
        if m.kind == "short_conv":
            return short_conv_kernels(c.box(m.boxes[0])._norm("kernel")[0], platform)
        if m.kind == "add_norm":
            return platform == "cuda" and choose("norm", platform) == "ncd"
        return True

    regions = [Region.of(m) for m in find_matches(matched or c) if runs_kernel(m)]
    taken = {b for r in regions for b in r.boxes}
    kind = {b: c.box(b).kind for b in c.order}
    only_reader = g.only_reader
    # pointwise chains: join a pointwise box to its pointwise producer when it is the only reader
    parent: dict[str, str] = {}

    def find(x):  # the group's root, halving the path on the way (a chain stays short)
        while parent.get(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for b in c.order:
        if kind[b] not in POINTWISE or b in taken:
            continue
        parent.setdefault(b, b)
        for src, _ in c.sources[b].values():
            if src and kind[src] in POINTWISE and src not in taken and only_reader(src) == b:
                parent.setdefault(src, src)
                parent[find(src)] = find(b)
    groups: dict[str, list[str]] = {}
    for b in c.order:
        if b in parent:
            groups.setdefault(find(b), []).append(b)
    regions += [Region("pointwise", grp) for grp in groups.values() if len(grp) > 1]
    return regions
