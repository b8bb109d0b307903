"""Named fused boxes: softmax attention, the linear-attention family and the residual add +
norm (ops/ kernels)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from ..errors import ShapeProblem
from ..sizes import Size
from ..types import FLOAT_DTYPES, Axis, TensorType
from .base import AxisList, AxisName, BoxBase, SizeExpr, need, promote, replace_axes, tensor
from .registry import box_kind

GATES = {"decay": ["g"], "gla": ["g"], "delta": ["beta"], "gated_delta": ["g", "beta"]}
"""The gate ports of each variant of `linear_attention`."""
INT_DTYPES = ("int32", "int64")


def _check_offsets(ins) -> None:
    """The `offsets` port of a packed box: integer positions along one axis (`cu_seqlens`)."""
    off = tensor(ins, "offsets")
    if len(off.axes) != 1 or off.dtype not in INT_DTYPES:
        raise ShapeProblem(
            "packed sequences: the offsets are integers along one axis", "offsets",
            "one axis, int32 or int64", str(off),
        )  # fmt: skip


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
    named_ports = True

    def extra_ports(self) -> list[str]:
        return []

    def ports(self):
        return ["q", "k", "v", *self.extra_ports()]

    def infer(self, ins, ctx):
        q, k, v = tensor(ins, "q"), tensor(ins, "k"), tensor(ins, "v")
        need(q, (self.query, self.head), "q")
        for port, t, names in (("k", k, (self.key, self.head)), ("v", v, (self.key, self.value))):
            try:
                need(t, names, port)
            except ShapeProblem as e:
                if t.axis(self.key) is None and t.axis(self.query) is not None:
                    e.hint = (
                        f"keys and values run over the key axis {self.key}: rename theirs "
                        f'(b.rename({port}, {self.query}="{self.key}")), or set '
                        f'key="{self.query}"'
                    )
                raise
        ctx.unify(q.axis(self.head).size, k.axis(self.head).size, "k", f"size of {self.head}")
        ctx.unify(k.axis(self.key).size, v.axis(self.key).size, "v", f"size of {self.key}")
        if self.causal:
            try:
                ctx.unify(
                    q.axis(self.query).size,
                    k.axis(self.key).size,
                    "k",
                    f"causal: size of {self.key} = size of {self.query}",
                )
            except ShapeProblem as e:
                e.hint = (
                    f"causal pairs query t with keys s <= t, one key per query; for queries at "
                    f"the end of a longer run of keys (decoding after a cache) give mask= a "
                    f"keep-mask in place of causal=True: a `compare` box (fn 'le') of "
                    f'b.positions("{self.key}") and b.positions("{self.query}", start=...)'
                )
                raise
        own = {self.query, self.key, self.head, self.value}
        qb = [a.name for a in q.axes if a.name not in own]
        for port, t in (("k", k), ("v", v)):
            tb = [a.name for a in t.axes if a.name not in own]
            if tb != qb:
                want, batch = [], iter(qb)  # q's batch order, the own axes where they are
                if sorted(tb) == sorted(qb):
                    want = [a if a in own else next(batch) for a in t.names]
                raise ShapeProblem(
                    "batch axes must match the query's", port, " ".join(qb), " ".join(tb),
                    self._batch_hint(qb, tb) or _reorder_hint(t.names, want, port),
                )  # fmt: skip
            for name in qb:
                ctx.unify(q.axis(name).size, t.axis(name).size, port, f"size of {name}")
        for port in self.extra_ports():
            tensor(ins, port)
        out = replace_axes(q, (self.head,), [v.axis(self.value)], promote([q.dtype, v.dtype]))
        return {"out": out}

    def acts_on(self):
        return (self.query, self.key, self.head, self.value)

    def _batch_hint(self, qb: list[str], tb: list[str]) -> str:
        """What to do where the keys' or values' batch axes are not the query's."""
        return ""


def _reorder_hint(names, want, port: str) -> str:
    """Where a port has the axes it needs in another order: how to reorder them (a fused
    box reads each port's axes in one order, as its kernels lay them out)."""
    if not want or sorted(names) != sorted(want):
        return ""
    order = " ".join(want)
    return f'the same axes in another order: reorder them first, b.permute({port}, "{order}")'


@box_kind
class Attention(_AttentionLike):
    """Fused softmax attention softmax(q·k * scale [+ mask] [+ causal mask]) · v, one box.

    Lowers to the FlashAttention-style kernel of ncd.ops, or PyTorch's SDPA (masked boxes
    always: the kernel takes no mask); no T×S matrix is kept.

    With `masked`, port `mask` is a boolean keep-mask (True: attend) or a float bias added to
    the scaled scores (ALiBi, T5's relative bias; -inf: not attended), over some of the
    scores' axes (q's batch axes, `query`, `key`; key padding is `B S`), broadcast by name over
    the others. With `causal` too, both apply. A query that is left no key (every key masked)
    gives 0, with no gradient, where a softmax over nothing would give NaN.
    """

    kind: Literal["attention"] = "attention"
    scale: SizeExpr | None = None
    """Score scale; `K**-0.5` (in the head axis' size) when empty."""
    heads: AxisName | None = None
    """Grouped key/value heads: the query's head axis (size H), with `kv_heads`."""
    kv_heads: AxisName | None = None
    """Grouped key/value heads: the keys' and values' head axis (size G, H a multiple of G);
    query head h reads key/value head ⌊h / (H/G)⌋ (GQA; G = 1 is multi-query attention)."""
    masked: bool = False
    """Port `mask`: a boolean keep-mask (True: attend) or a float bias added to the scaled
    scores, over some of the scores' axes (q's batch axes, `query`, `key`), broadcast over
    the others; a query with no key left gives 0."""

    def extra_ports(self):
        return ["mask"] if self.masked else []

    def infer(self, ins, ctx):
        out = self._infer_qkv(ins, ctx)
        if self.masked:
            self._check_mask(ins, ctx)
        return out

    def scores(self, q: TensorType, k: TensorType) -> TensorType:
        """The type of the scores q·k (per query head), `[*batch, query, key]`: the axes a
        mask may have."""
        batch = [a for a in q.axes if a.name not in (self.query, self.head)]
        return q.with_axes([*batch, q.axis(self.query), k.axis(self.key)])

    def _check_mask(self, ins, ctx):
        m, q, k = tensor(ins, "mask"), tensor(ins, "q"), tensor(ins, "k")
        if m.dtype != "bool" and m.dtype not in FLOAT_DTYPES:
            raise ShapeProblem(
                "the mask is a boolean keep-mask or a float bias", "mask",
                "bool (True: attend) or a float dtype (added to the scores)", m.dtype,
            )  # fmt: skip
        s = self.scores(q, k)
        extra = [a for a in m.names if s.axis(a) is None]
        if extra:
            hint = ""
            if self.kv_heads in extra:
                hint = (
                    f"the scores are per query head: give the mask the query heads' axis "
                    f"{self.heads} (or no head axis, one mask for every head)"
                )
            raise ShapeProblem(
                f"axis {' '.join(extra)} not among the scores' axes", "mask",
                f"axes among {' '.join(s.names)} (broadcast over the others)", str(m), hint,
            )  # fmt: skip
        for a in m.axes:
            ctx.unify(s.axis(a.name).size, a.size, "mask", f"size of {a.name}")

    def _infer_qkv(self, ins, ctx):
        if self.heads is None and self.kv_heads is None:
            return super().infer(ins, ctx)
        if self.heads is None or self.kv_heads is None or self.heads == self.kv_heads:
            raise ShapeProblem(
                "grouped heads name two axes", "", "heads and kv_heads, distinct",
                f"heads={self.heads}, kv_heads={self.kv_heads}",
            )  # fmt: skip
        q = tensor(ins, "q")
        need(q, (self.heads,), "q", "query heads")
        if q.axis(self.kv_heads) is not None:
            raise ShapeProblem("the queries have the query heads only", "q",
                               f"no axis {self.kv_heads}", str(q))  # fmt: skip
        n_heads = q.axis(self.heads).size
        grouped = dict(ins)
        for port in ("k", "v"):
            t = tensor(ins, port)
            need(t, (self.kv_heads,), port, "key/value heads")
            if t.axis(self.heads) is not None:
                raise ShapeProblem("keys and values have the key/value heads only", port,
                                   f"no axis {self.heads}", str(t))  # fmt: skip
            # seen by the shared rule with H heads, so that it checks every other axis
            grouped[port] = t.with_axes(
                [Axis(self.heads, n_heads) if a.name == self.kv_heads else a for a in t.axes]
            )
        k, v = tensor(ins, "k"), tensor(ins, "v")
        n_kv = k.axis(self.kv_heads).size
        ctx.unify(n_kv, v.axis(self.kv_heads).size, "v", f"size of {self.kv_heads}")
        h, g = ctx.resolve(n_heads), ctx.resolve(n_kv)
        if h.is_Integer and g.is_Integer and int(h) % int(g):
            raise ShapeProblem(
                "the query heads are groups of the key/value heads", "k",
                f"size of {self.kv_heads} dividing {self.heads} = {h}", str(g),
            )  # fmt: skip
        return super().infer(grouped, ctx)

    def acts_on(self):
        grouping = tuple(a for a in (self.heads, self.kv_heads) if a is not None)
        return (*super().acts_on(), *grouping)

    def _batch_hint(self, qb, tb):
        only_q, only_t = set(qb) - set(tb), set(tb) - set(qb)
        if self.kv_heads is None and len(only_q) == len(only_t) == 1:
            h, g = next(iter(only_q)), next(iter(only_t))
            return f'for grouped key/value heads, set heads="{h}", kv_heads="{g}"'
        return ""


@box_kind
class LinearAttention(_AttentionLike):
    """Fused causal linear attention: o_t = scale q_t S_t with a running K×V state S, chunked.

    Variants (the state update of each; g are log-decays, <= 0):
    `linear`     S_t = S_{t-1} + k_tᵀ v_t;
    `lightning`  S_t = λ_h S_{t-1} + k_tᵀ v_t, a fixed per-head decay λ_h = exp(-c 2^(-8h/H)),
                 h = 1 … H (the ALiBi slopes of Lightning Attention / TransNormerLLM;
                 `lightning_decay`), c = `decay_scale` (1 when empty);
    `decay`      S_t = exp(g_t) S_{t-1} + k_tᵀ v_t, port `g` a scalar per token (the keys' axes
                 without the feature axis) or a constant (some of the keys' other axes: one
                 per head); RetNet, Mamba-2 style;
    `gla`        S_t = diag(exp g_t) S_{t-1} + k_tᵀ v_t, port `g` shaped like k (GLA);
    `delta`      S_t = S_{t-1} + β_t k_tᵀ (v_t - k_t S_{t-1}), port `beta` of the keys' axes
                 without the feature axis (DeltaNet);
    `gated_delta` S_t = a_t S_{t-1} + β_t k_tᵀ (v_t - a_t k_t S_{t-1}), a_t = exp(g_t), ports
                 `g` and `beta` both of the keys' axes without the feature axis (Gated DeltaNet).
    Gates may have any float element type; the output's is that of q and v. Feature maps
    (and the keys' L2 normalisation the delta rules want) are separate boxes before it.
    o_t reads the state after token t; RWKV's o_t = r_t S_{t-1} (before it) is the box given
    the next token's queries, its output shifted back one token (a slice and a concat with
    a zero each, as the README shows).

    Grouped heads (`heads`, `qk_heads`): queries and keys of G groups shared by the values'
    H heads (Mamba-2's C and B of `ngroups` groups, multi-value and GQA-style linear
    attention), head h reading group ⌊h / (H/G)⌋, or of no head axis (one group); every
    variant. Gates are per head, shaped like the keys as the box runs them, the head axis H
    in the group axis' place (or put in where the output has it): `gla`'s g so, the others'
    without the feature axis. The box runs H heads. The causal variants' kernels (every
    variant but non-causal `linear`) read q and k of G groups as they are (each value head at
    its group; their gradients formed per head and summed over each group's heads, nothing
    else kept); non-causal `linear` gets q and k repeated to the H heads (copies H/G times
    their size, kept for the backward).
    """

    kind: Literal["linear_attention"] = "linear_attention"
    variant: Literal["linear", "lightning", "decay", "gla", "delta", "gated_delta"] = "linear"
    """Which member of the family."""
    causal: bool = True
    """Linear attention here is causal (the running-state form); only `linear` has a
    non-causal form."""
    normalize: bool = False
    """Divide by the running sum of q·k (the classic normaliser; `linear` and `lightning`)."""
    scale: SizeExpr | None = None
    """Query scale; 1 when empty."""
    decay_scale: SizeExpr | None = None
    """`lightning` only: the factor c of the decay rates, λ_h = exp(-c 2^(-8h/H)); 1 when
    empty. TransNormerLLM's per-layer decay takes c = 1 - l/L in layer l of L."""
    packed: bool = False
    """The key (= query) axis holds several sequences end to end, each starting from a zero
    state: port `offsets`, an integer tensor of one axis with each sequence's first position
    and then the total length (N + 1 values for N sequences, as `cu_seqlens`). The inputs
    then have no batch axis other than one head axis. Non-causal (`linear` only): each
    token attends to every token of its own sequence (variable-length windows,
    o_t = q_t Σ_{s in w(t)} k_sᵀ v_s, normalised by q_t · Σ_{s in w(t)} k_s + 1e-10 with
    `normalize`)."""
    heads: AxisName | None = None
    """Grouped heads: the values' head axis (size H), which the output and the gates carry;
    with `qk_heads`, or alone where the queries and keys have no head axis (one group that
    every head reads: Mamba-2 with ngroups = 1)."""
    qk_heads: AxisName | None = None
    """Grouped heads: the queries' and keys' group axis (size G, H a multiple of G; with
    `heads`); value head h reads group ⌊h / (H/G)⌋, as Mamba-2's B and C with ngroups = G.
    The box runs H heads: the causal variants' kernels read the groups in place; non-causal
    `linear` gets q and k repeated to the heads (copies of H/G times their size, kept for
    the backward)."""

    @staticmethod
    def lightning_decay(heads: int, rate: float = 1.0) -> list[float]:
        """Per-head decay factors of the `lightning` variant, for `heads` heads, the rates
        multiplied by `rate` (the box's `decay_scale`)."""
        return [math.exp(-rate * 2.0 ** (-8.0 * h / heads)) for h in range(1, heads + 1)]

    def extra_ports(self):
        return [*GATES.get(self.variant, []), *(["offsets"] if self.packed else [])]

    def infer(self, ins, ctx):
        grouped = self.heads is not None or self.qk_heads is not None
        if grouped:  # seen by the rest with q and k of H heads, so that it checks every axis
            ins = self._per_head_inputs(ins, ctx)
        out = super().infer(ins, ctx)
        k = tensor(ins, "k")
        gated = self.variant in GATES
        if gated and not self.causal:
            raise ShapeProblem(
                f"variant {self.variant} is causal only", "", "causal", "causal=False"
            )
        if self.decay_scale is not None and self.variant != "lightning":
            raise ShapeProblem(
                "decay_scale scales the lightning variant's decays", "",
                "variant lightning", f"variant {self.variant}",
            )  # fmt: skip
        if self.normalize and self.variant not in ("linear", "lightning"):
            raise ShapeProblem(
                f"variant {self.variant} has no normaliser", "", "normalize=False", "True"
            )
        per_token = [a for a in k.names if a != self.head]
        batch = [a for a in per_token if a != self.key]
        for port in GATES.get(self.variant, []):
            t = tensor(ins, port)
            if t.dtype not in FLOAT_DTYPES:
                raise ShapeProblem("gates are floating point", port, "a float dtype", t.dtype)
            if self.variant == "gla":
                want, ok = " ".join(k.names), t.names == k.names
            elif self.variant == "decay" and self.key not in t.names:
                want = f"a subsequence of {' '.join(batch) or '(no axes)'} (constant over tokens)"
                ok = [a for a in batch if a in t.names] == list(t.names)
            else:
                want, ok = " ".join(per_token), list(t.names) == per_token
            if not ok:
                what = {"g": "gates", "beta": "beta"}[port]
                hint = _reorder_hint(t.names, want.split(), port)
                if grouped and self.qk_heads in t.names:
                    hint = (
                        f"gates are per head: give them the values' head axis "
                        f"{self.heads} in place of the group axis {self.qk_heads}"
                    )
                raise ShapeProblem(
                    f"{what} of variant {self.variant}", port, want, " ".join(t.names), hint
                )
            for a in t.names:
                ctx.unify(k.axis(a).size, t.axis(a).size, port, f"size of {a}")
        if self.packed:
            windows = not self.causal and self.variant == "linear"  # non-causal: each window
            if not windows and (not self.causal or self.normalize):
                raise ShapeProblem(
                    "packed sequences: causal without the normaliser, or non-causal `linear`",
                    "offsets", "causal=True, normalize=False; or causal=False, variant linear",
                    f"causal={self.causal}, normalize={self.normalize}, variant {self.variant}",
                )  # fmt: skip
            if windows:
                q = tensor(ins, "q")
                ctx.unify(
                    q.axis(self.query).size, k.axis(self.key).size, "k",
                    f"packed: size of {self.key} = size of {self.query} (one packing)",
                )  # fmt: skip
            _check_offsets(ins)
            if len(batch) > 1:
                raise ShapeProblem(
                    "packed sequences: no batch axis other than one head axis", "q",
                    f"{self.query}, at most one more axis, {self.head}", " ".join(batch),
                )  # fmt: skip
        return out

    def acts_on(self):
        grouping = tuple(a for a in (self.heads, self.qk_heads) if a is not None)
        return (*super().acts_on(), *grouping)

    def _batch_hint(self, qb, tb):
        only_q, only_t = set(qb) - set(tb), set(tb) - set(qb)
        if self.heads is None and len(only_t) == 1 and len(only_q) <= 1:
            h = next(iter(only_t))
            if only_q:
                return (
                    f'for queries and keys in groups of heads, set heads="{h}", '
                    f'qk_heads="{next(iter(only_q))}"'
                )
            return f'for queries and keys shared by all heads, set heads="{h}"'
        return ""

    def per_head(self, t: TensorType, v: TensorType) -> TensorType:
        """The queries or keys `t` of a grouped box as the box runs them, one per value
        head: the group axis renamed to the heads' (its size H), or, where they have none,
        the heads' axis put in: before the batch axis that follows it in `v`, else after the
        other batch axes and no later than the features."""
        n_heads = v.axis(self.heads).size
        if self.qk_heads is not None:
            return t.with_axes(
                [Axis(self.heads, n_heads) if a.name == self.qk_heads else a for a in t.axes]
            )
        own = {self.query, self.key, self.head, self.value}
        vb = [a for a in v.names if a not in own]
        names, i = list(t.names), vb.index(self.heads)
        if i + 1 < len(vb):
            pos = names.index(vb[i + 1])
        else:
            pos = names.index(self.head)
            if i > 0:
                pos = max(pos, names.index(vb[i - 1]) + 1)
        axes = list(t.axes)
        axes.insert(pos, Axis(self.heads, n_heads))
        return t.with_axes(axes)

    def _per_head_inputs(self, ins, ctx):
        """Checks the grouping (the axes on the right ports, the batch axes, G dividing H)
        and returns the inputs with q and k as the box runs them (`per_head`)."""
        H, G = self.heads, self.qk_heads
        if H is None or H == G:
            raise ShapeProblem(
                "grouped heads: `heads` names the values' head axis", "",
                "heads, and qk_heads another axis or empty", f"heads={H}, qk_heads={G}",
                'set heads="H" (the values\' head axis) and qk_heads="G" (the queries\' and '
                "keys' group axis), or heads alone where q and k have no head axis",
            )  # fmt: skip
        v = tensor(ins, "v")
        need(v, (H,), "v", "value heads")
        if G is not None and v.axis(G) is not None:
            raise ShapeProblem("the values have the value heads only", "v", f"no axis {G}",
                               str(v))  # fmt: skip
        own = {self.query, self.key, self.head, self.value}
        vb = [a for a in v.names if a not in own]
        want = [G if a == H else a for a in vb] if G is not None else [a for a in vb if a != H]
        sizes = []
        for port in ("q", "k"):
            t = tensor(ins, port)
            if t.axis(H) is not None:
                raise ShapeProblem(
                    "the queries and keys have the groups, the values the heads", port,
                    f"no axis {H}" + (f", axis {G}" if G else ""), str(t),
                    f'name their head axis in qk_heads (qk_heads="{G or "G"}"), of a size '
                    f"dividing {H}'s, or share one group: no head axis, qk_heads empty",
                )  # fmt: skip
            need(t, (self.head,), port)
            if G is not None:
                need(t, (G,), port, "query/key groups")
                sizes.append(t.axis(G).size)
            tb = [a for a in t.names if a not in own]
            if tb != want:
                with_g = f", {G} in the place of {H}" if G is not None else f", without {H}"
                extra = [a for a in tb if a not in want]
                hint = ""
                if G is None and len(extra) == 1:
                    hint = f'for queries and keys in groups, set qk_heads="{extra[0]}"'
                raise ShapeProblem(
                    f"batch axes must match the values'{with_g}", port, " ".join(want),
                    " ".join(tb), hint,
                )  # fmt: skip
        if G is not None:
            ctx.unify(sizes[0], sizes[1], "k", f"size of {G}")
            h, g = ctx.resolve(v.axis(H).size), ctx.resolve(sizes[0])
            if h.is_Integer and g.is_Integer and int(h) % int(g):
                raise ShapeProblem(
                    "each query/key group serves as many value heads", "q",
                    f"size of {G} dividing {H} = {h}", str(g),
                )  # fmt: skip
        return {**ins, **{p: self.per_head(tensor(ins, p), v) for p in ("q", "k")}}


@box_kind
class AddNorm(BoxBase):
    """The pre-norm residual step in one box: `sum = x + h`, `out = norm(sum)` over `over`
    (LayerNorm or RMSNorm, as the `layernorm` / `rmsnorm` boxes), both outputs read.

    The compiler's rewrite makes it from an `add` whose result a norm reads
    (compiler/patterns.py); it lowers to ncd.ops' `add_layer_norm` / `add_rms_norm` kernels on
    CUDA, which write the sum and the normed sum in one pass over the rows.
    """

    kind: Literal["add_norm"] = "add_norm"
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    """Which normalisation follows the add."""
    over: AxisList
    """Axes the statistics are taken over."""
    affine: bool = True
    """Learned scale (and shift, for LayerNorm) over `over`."""
    eps: float = Field(default=1e-5, gt=0, le=1)
    """Added to the variance."""
    family = "normalisation"
    learned = True

    def ports(self):
        return ["x", "h"]

    def infer(self, ins, ctx):
        x, h = tensor(ins, "x"), tensor(ins, "h")
        need(x, self.over, "x", "normalised")
        if h.names != x.names or h.dtype != x.dtype:
            raise ShapeProblem("the summands have one type", "h", str(x), str(h))
        for a in x.names:
            ctx.unify(x.axis(a).size, h.axis(a).size, "h", f"size of {a}")
        if x.dtype not in FLOAT_DTYPES:
            raise ShapeProblem("normalises floating point", "x", "a float dtype", x.dtype)
        return {"out": x, "sum": x}

    def params(self, ins, ctx):
        if not self.affine:
            return {}
        x = tensor(ins, "x")
        t = TensorType(tuple(x.axis(a) for a in self.over), x.dtype)
        return {"weight": t, "bias": t} if self.norm == "layernorm" else {"weight": t}

    def acts_on(self):
        return tuple(self.over)

    def is_learned(self):
        return self.affine


@box_kind
class ShortConv(BoxBase):
    """A causal depthwise convolution of width `kernel` over `axis`, each `channel` with its own
    filter, optionally followed by SiLU: out[t] = act(bias + Σ_j w[j] x[t - kernel + 1 + j]),
    zeros before the first position (the short convolution of Mamba, DeltaNet and Gated
    DeltaNet).

    The compiler's rewrite makes it from a depthwise `conv` over one axis padded `kernel - 1` on
    both sides, the `slice` keeping its first positions and an optional `silu` after them
    (compiler/patterns.py); it keeps the conv's name and parameters. It lowers to ncd.ops'
    `short_conv` kernels (`fused="ncd"`) or to the convolution, slice and SiLU it replaces.
    """

    kind: Literal["short_conv"] = "short_conv"
    axis: AxisName = "T"
    """Axis convolved over (causally: position t sees t - kernel + 1 … t)."""
    channel: AxisName
    """Channel axis; one filter per channel (depthwise)."""
    kernel: int = Field(default=4, ge=1, le=64)
    """Width of the filters."""
    bias: bool = False
    """A learned bias per channel."""
    activation: Literal["none", "silu"] = "none"
    """Applied to the convolution's output."""
    packed: bool = False
    """`axis` holds several sequences end to end, none seeing another's inputs: port
    `offsets`, an integer tensor of one axis with each sequence's first position and then the
    total length (N + 1 values, as `cu_seqlens` and a packed `linear_attention` take them).
    The input then has no axis but `axis` and `channel`."""
    family = "convolution"
    learned = True

    def ports(self):
        return ["x", "offsets"] if self.packed else ["x"]

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        need(x, (self.axis, self.channel), "x")
        if self.axis == self.channel:
            raise ShapeProblem("convolves over an axis other than its channels", "x",
                               "two different axes", self.axis)  # fmt: skip
        if x.dtype not in FLOAT_DTYPES:
            raise ShapeProblem("convolves floating point", "x", "a float dtype", x.dtype)
        if self.packed:
            _check_offsets(ins)
            if len(x.axes) != 2:
                raise ShapeProblem(
                    "packed sequences: no axis but the sequence's and the channels", "x",
                    f"{self.axis} {self.channel}", " ".join(x.names),
                )  # fmt: skip
        return {"out": x}

    def params(self, ins, ctx):
        # nn.Conv1d's depthwise layout (channels, 1, kernel), as the `conv` box it replaces
        x = tensor(ins, "x")
        c = x.axis(self.channel)
        w = (c, Axis(f"{self.channel}_g", Size.number(1)),
             Axis(f"k{self.axis}", Size.number(self.kernel)))  # fmt: skip
        ps = {"weight": TensorType(w, x.dtype)}
        if self.bias:
            ps["bias"] = TensorType((c,), x.dtype)
        return ps

    def acts_on(self):
        return (self.axis, self.channel)
