"""Named fused boxes: softmax attention and the linear-attention family (ops/ kernels)."""

from __future__ import annotations

import math
from typing import Literal

from ..errors import ShapeProblem
from .base import AxisName, BoxBase, SizeExpr, need, promote, replace_axes, tensor
from .registry import box_kind


class _AttentionLike(BoxBase):
    query: AxisName = "T"
    """Axis of query positions."""
    key: AxisName = "S"
    """Axis of key/value positions."""
    head: AxisName = "K"
    """Axis of query/key features (contracted in the scores)."""
    value: AxisName = "V"
    """Axis of value features (carried to the output)."""
    causal: bool = False
    """Query i attends to keys j <= i."""
    family = "attention"

    def extra_ports(self) -> list[str]:
        return []

    def ports(self):
        return ["q", "k", "v", *self.extra_ports()]

    def infer(self, ins, ctx):
        q, k, v = tensor(ins, "q"), tensor(ins, "k"), tensor(ins, "v")
        need(q, (self.query, self.head), "q")
        need(k, (self.key, self.head), "k")
        need(v, (self.key, self.value), "v")
        ctx.unify(q.axis(self.head).size, k.axis(self.head).size, "k", f"size of {self.head}")
        ctx.unify(k.axis(self.key).size, v.axis(self.key).size, "v", f"size of {self.key}")
        if self.causal:
            ctx.unify(
                q.axis(self.query).size,
                k.axis(self.key).size,
                "k",
                f"causal: size of {self.key} = size of {self.query}",
            )
        own = {self.query, self.key, self.head, self.value}
        qb = [a.name for a in q.axes if a.name not in own]
        for port, t in (("k", k), ("v", v)):
            tb = [a.name for a in t.axes if a.name not in own]
            if tb != qb:
                raise ShapeProblem(
                    "batch axes must match the query's", port, " ".join(qb), " ".join(tb)
                )
            for name in qb:
                ctx.unify(q.axis(name).size, t.axis(name).size, port, f"size of {name}")
        for port in self.extra_ports():
            tensor(ins, port)
        out = replace_axes(q, (self.head,), [v.axis(self.value)], promote([q.dtype, v.dtype]))
        return {"out": out}

    def acts_on(self):
        return (self.query, self.key, self.head, self.value)


@box_kind
class Attention(_AttentionLike):
    """Fused softmax attention softmax(q·k * scale [+ causal mask]) · v, one box.

    Lowers to the FlashAttention-style kernel of ncd.ops; no T×S matrix is kept.
    """

    kind: Literal["attention"] = "attention"
    scale: SizeExpr | None = None
    """Score scale; `K**-0.5` (in the head axis' size) when empty."""


@box_kind
class LinearAttention(_AttentionLike):
    """Fused causal linear attention: o_t = Σ_{s<=t} decay^(t-s) (q_t·k_s) v_s, chunked.

    Variants: `linear` (plain), `lightning` (fixed per-head decay λ_h = exp(-2^(-8h/H)),
    h = 1 … H, the ALiBi slopes of Lightning Attention / TransNormerLLM; `lightning_decay`),
    `gla` (data-dependent gates, port `g` shaped like k), `delta` (delta rule, port `beta` of the
    query's axes without the feature axis). Feature maps are separate boxes before it.
    """

    kind: Literal["linear_attention"] = "linear_attention"
    variant: Literal["linear", "lightning", "gla", "delta"] = "linear"
    """Which member of the family."""
    causal: bool = True
    """Linear attention here is causal (the running-state form)."""
    normalize: bool = False
    """Divide by the running sum of q·k (the classic normaliser of linear attention)."""
    scale: SizeExpr | None = None
    """Query scale; 1 when empty."""

    @staticmethod
    def lightning_decay(heads: int) -> list[float]:
        """Per-head decay factors of the `lightning` variant, for `heads` heads."""
        return [math.exp(-(2.0 ** (-8.0 * h / heads))) for h in range(1, heads + 1)]

    def extra_ports(self):
        return {"gla": ["g"], "delta": ["beta"]}.get(self.variant, [])

    def infer(self, ins, ctx):
        out = super().infer(ins, ctx)
        k = tensor(ins, "k")
        if self.variant == "gla":
            g = tensor(ins, "g")
            if g.names != k.names:
                raise ShapeProblem(
                    "gates must have the keys' axes", "g", " ".join(k.names), " ".join(g.names)
                )
        if self.variant == "delta":
            beta = tensor(ins, "beta")
            want = [a for a in k.names if a != self.head]
            if list(beta.names) != want:
                raise ShapeProblem(
                    "beta has the keys' axes without the feature axis",
                    "beta",
                    " ".join(want),
                    " ".join(beta.names),
                )
        return out
