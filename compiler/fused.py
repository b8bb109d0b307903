"""Lowerings of the named fused boxes, `attention` and `linear_attention`, to ncd.ops.

The kernels take `[B, T, H, K]` tensors; a box's tensors have any axes in any order, so the
lowering permutes by axis names: batch axes (those the box does not name) in the query's
order, the last of them as the kernels' H and the others folded into B.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F

from ncd import ops
from ncd.circuits.sizes import parse_size

from . import runtime
from .choices import attention_backend, choose
from .lower import Call


def _own(b):
    return {b.query, b.key, b.head, b.value}


MAX_WIDTH = 256  # the widest head the softmax-attention kernels of ncd.ops take (K and V)
# ... the linear-attention families' (K and V; the delta rules' K): wider heads run their
# chunked PyTorch form (backend="reference")
MAX_LINEAR = 128


def _fits(L, q, k, v, b) -> bool:
    """Whether the kernels of ncd.ops take these head widths (else a plain PyTorch path)."""
    return max(L.num(q.axis(b.head).size), L.num(v.axis(b.value).size)) <= MAX_WIDTH


def _scale(L, b):
    return None if b.scale is None else L.real(parse_size(b.scale))


def _decay_rate(L, b):
    """The `lightning` decay rates' factor (`decay_scale`), 1.0 when empty."""
    return 1.0 if b.decay_scale is None else float(L.num(parse_size(b.decay_scale)))


def _to_bthk(L, node, names, batch, seq, feat):
    """node with axes `names` -> [B, T, H, F] where H is batch[-1] and B folds batch[:-1]."""
    if not batch:
        y = L.permute(node, names, [seq, feat])
        return L.fn(operator.getitem, y, (None, slice(None), None))
    want = [*batch[:-1], seq, batch[-1], feat]
    y = L.permute(node, names, want)
    if len(batch) == 1:
        return L.fn(operator.getitem, y, (None,))
    if len(batch) > 2:
        y = L.method("flatten", y, 0, len(batch) - 2)
    return y


def _from_bthk(L, node, t, batch, seq, feat, out_names):
    """Inverse of `_to_bthk` for an output [B, T, H, F] with axes `out_names` at the end. The
    unit axes `_to_bthk` added are squeezed (views whose gradient is a view too; indexing
    them would make the backward copy the output's gradient into a zero tensor)."""
    if not batch:
        y = L.method("squeeze", node, (0, 2))
        return L.permute(y, [seq, feat], out_names)
    if len(batch) == 1:
        y = L.method("squeeze", node, 0)
    elif len(batch) > 2:
        sizes = tuple(L.num(t.axis(a).size) for a in batch[:-1])
        y = L.method("unflatten", node, 0, sizes)
    else:
        y = node
    return L.permute(y, [*batch[:-1], seq, batch[-1], feat], out_names)


def lower_attention(L, b, x, tin, tout):
    q, k, v = tin["q"], tin["k"], tin["v"]
    batch = [a for a in q.names if a not in _own(b)]
    kv_batch, gqa = batch, {}
    if b.kv_heads is not None:  # grouped heads: the head axes last of the batch axes
        batch = [a for a in batch if a != b.heads] + [b.heads]
        kv_batch, gqa = [*batch[:-1], b.kv_heads], {"enable_gqa": True}
    out = tout["out"].names
    scale = _scale(L, b)
    backend = attention_backend(L.opts.device, L.opts.fused, b.masked)
    if backend == "torch" or not _fits(L, q, k, v, b):
        # PyTorch's own fused kernel: any leading batch axes, any head width
        qq = L.permute(x["q"], q.names, [*batch, b.query, b.head])
        kk = L.permute(x["k"], k.names, [*kv_batch, b.key, b.head])
        vv = L.permute(x["v"], v.names, [*kv_batch, b.key, b.value])
        if b.masked:
            o = _masked_sdpa(L, b, x, tin, batch, qq, kk, vv, scale)
        else:
            o = L.fn(F.scaled_dot_product_attention, qq, kk, vv, is_causal=b.causal,
                     scale=scale, **gqa)  # fmt: skip
        return {"out": L.permute(o, [*batch, b.query, b.value], out)}
    qq = _to_bthk(L, x["q"], q.names, batch, b.query, b.head)
    kk = _to_bthk(L, x["k"], k.names, kv_batch, b.key, b.head)
    vv = _to_bthk(L, x["v"], v.names, kv_batch, b.key, b.value)
    o = L.fn(ops.softmax_attention, qq, kk, vv, causal=b.causal, scale=scale)
    return {"out": _from_bthk(L, o, q, batch, b.query, b.value, out)}


def _masked_sdpa(L, b, x, tin, batch, qq, kk, vv, scale):
    """SDPA with the mask laid out by name against its `[*batch, T, S]` scores (size 1 along
    the axes it lacks; `runtime.masked_attention`). Grouped heads: the keys and values are
    repeated to the query heads first (copies kept by SDPA), as SDPA's kernels that take a
    mask on CUDA do not all take `enable_gqa`."""
    if b.kv_heads is not None:
        group = L.num(tin["q"].axis(b.heads).size / tin["k"].axis(b.kv_heads).size)
        kk, vv = (L.method("repeat_interleave", t, group, len(batch) - 1) for t in (kk, vv))
    names, target = tin["mask"].names, [*batch, b.query, b.key]
    m = L.align(x["mask"], names, target)
    first = min((target.index(a) for a in names), default=len(target))
    if first > len(target) - 2:  # SDPA's mask has a query axis, of size 1 where it has none
        m = L.fn(operator.getitem, m, (None,) * (first - len(target) + 2))
    return L.fn(runtime.masked_attention, qq, kk, vv, m, causal=b.causal, scale=scale)


def _repeat_to_heads(L, b, x, tin, repeat=True):
    """Grouped heads: q and k repeated to the value heads, each group's entries H/G times
    along its axis (head h reads group h // (H/G)), or, where q and k have no group axis,
    H times along a new one (`per_head`). Contiguous copies, kept by the kernels; autograd
    sums their gradients over each group's heads. Without `repeat` (the ops that read
    grouped heads themselves) nothing is copied: the group axis takes the heads' name, or a
    new axis of size 1 is put in where they have none, so that q and k are laid out as the
    values, G heads against H."""
    v = tin["v"]
    x, tin = dict(x), dict(tin)
    for p in ("q", "k"):
        t = tin[p]
        wide = b.per_head(t, v)
        if b.qk_heads is not None:
            node = x[p]
            if repeat:
                times = L.num(v.axis(b.heads).size / t.axis(b.qk_heads).size)
                node = L.method("repeat_interleave", node, times, t.names.index(b.qk_heads))
        else:
            at = wide.names.index(b.heads)
            node = L.method("unsqueeze", x[p], at)
            if repeat:
                node = L.method("repeat_interleave", node, L.num(v.axis(b.heads).size), at)
        x[p], tin[p] = node, wide  # (the type names H heads; the node holds G without repeat)
    return x, tin


# The variants whose ops (ncd.ops.linear_attention, simple_gla, gla, delta_rule,
# gated_delta_rule) read grouped q and k in place: value head h reads q/k head h // (H / G).
# The others' q and k are repeated to the heads.
GROUPED_OPS = ("linear", "lightning", "decay", "gla", "delta", "gated_delta")


def reads_groups(b) -> bool:
    """Whether a grouped box's op reads its grouped q and k without copies (the causal scans
    of GROUPED_OPS; non-causal `linear` is two products of repeated q and k)."""
    return b.causal and b.variant in GROUPED_OPS


def lower_linear_attention(L, b, x, tin, tout):
    if b.heads is not None:
        x, tin = _repeat_to_heads(L, b, x, tin, repeat=not reads_groups(b))
    q, k, v = tin["q"], tin["k"], tin["v"]
    batch = [a for a in q.names if a not in _own(b)]
    if b.heads is not None:  # the value heads are the kernels' H
        batch = [a for a in batch if a != b.heads] + [b.heads]
    out = tout["out"].names
    scale = _scale(L, b)
    scale = 1.0 if scale is None else scale
    if b.packed and not b.causal:  # windows of a packed sequence
        return {"out": _packed_windows(L, b, x, tin, tout, scale)}
    if not b.causal and b.variant == "linear":  # q (kᵀ v): two products, no kernel needed
        kv = L.einsum([(x["k"], k.names), (x["v"], v.names)], [*batch, b.head, b.value])
        o = L.einsum([(x["q"], q.names), (kv, [*batch, b.head, b.value])], out)
        if b.normalize:
            ks = L.method("sum", x["k"], k.names.index(b.key))
            kn = [a for a in k.names if a != b.key]
            den = L.einsum([(x["q"], q.names), (ks, kn)], [a for a in out if a != b.value])
            o = L.fn(operator.truediv, o, L.align(den, [a for a in out if a != b.value], out))
        if scale != 1.0:
            o = L.fn(operator.mul, o, scale)
        return {"out": o}
    dtypes = {tin[p].dtype for p in ("q", "k", "v")}
    if len(dtypes) > 1:  # the kernels take one dtype: that of the output (q's and v's promoted)
        want = getattr(torch, tout["out"].dtype)
        x = {**x, **{p: L.method("to", x[p], want) for p in ("q", "k", "v")}}
    qq = _to_bthk(L, x["q"], q.names, batch, b.query, b.head)
    kk = _to_bthk(L, x["k"], k.names, batch, b.key, b.head)
    vv = _to_bthk(L, x["v"], v.names, batch, b.key, b.value)
    heads = L.num(q.axis(batch[-1]).size) if batch else 1
    kw = {"scale": scale}
    widths = [q.axis(b.head).size] + ([] if "delta" in b.variant else [v.axis(b.value).size])
    if max(L.num(w) for w in widths) > MAX_LINEAR:
        kw["backend"] = "reference"  # wider than the Triton kernels take: the chunked form
    if b.variant in ("linear", "lightning") and not b.packed:
        decay = None
        if b.variant == "lightning":
            decay = L.fn(runtime.lightning_decay, heads, qq, _decay_rate(L, b))
        r = L.fn(ops.linear_attention, qq, kk, vv, decay=decay, normalize=b.normalize, **kw)
        return {"out": _from_bthk(L, L.fn(operator.getitem, r, 0), q, batch, b.query, b.value, out)}
    tokens = [*batch[:-1], b.key, *batch[-1:]]  # [B, T, H] before the folding
    if b.variant in ("linear", "lightning"):  # packed: as `decay` with a constant log-decay
        if b.variant == "lightning":
            g = L.method("log", L.fn(runtime.lightning_decay, heads, qq, _decay_rate(L, b)))
        else:
            g = L.method("new_zeros", qq, (heads,))
        scan, gates = ops.simple_gla, (g,)
    elif b.variant == "decay":
        g = _scalar_gate(L, x["g"], tin["g"].names, batch, b.key, tokens, k)
        scan, gates = ops.simple_gla, (g,)
    elif b.variant == "gla":
        g = _to_bthk(L, x["g"], tin["g"].names, batch, b.key, b.head)
        scan, gates = ops.gla, (g,)
    else:
        beta = _scalar_gate(L, x["beta"], tin["beta"].names, batch, b.key, tokens, k)
        if b.variant == "delta":
            scan, gates = ops.delta_rule, (beta,)
        else:
            g = _scalar_gate(L, x["g"], tin["g"].names, batch, b.key, tokens, k)
            scan, gates = ops.gated_delta_rule, (g, beta)
    if b.packed:  # with cu_seqlens when run, a reset per sequence when traced (PackedScan)
        gated = (ops.gated_delta_rule,) if scan is ops.delta_rule else ()
        ident = L.hold(runtime.PackedScan(scan, *gated), Call("PackedScan", scan, *gated))
        r = L.module(ident, qq, kk, vv, *gates, offsets=x["offsets"], **kw)
    else:
        r = L.fn(scan, qq, kk, vv, *gates, **kw)
    o = L.fn(operator.getitem, r, 0)
    return {"out": _from_bthk(L, o, q, batch, b.query, b.value, out)}


def _scalar_gate(L, node, names, batch, seq, tokens, k):
    """A gate of the keys' axes without the feature axis -> [B, T, H] (as k without its
    features); one without the key axis either (constant over tokens): as it is when its one
    axis is the kernels' H (their [H] form), else broadcast to [B, T, H] first."""
    names = list(names)
    if seq not in names:
        if batch and names == [batch[-1]]:
            return node
        node = L.align(node, names, tokens)
        sizes = tuple(L.num(k.axis(a).size) for a in tokens)
        node = L.method("expand", node, sizes)
        names = list(tokens)
    return _to_bthk_beta(L, node, names, batch, seq)


def _to_bthk_beta(L, node, names, batch, seq):
    """beta with axes (batch..., seq) -> [B, T, H] (the layout of k without its features)."""
    if not batch:
        y = L.permute(node, names, [seq])
        return L.fn(operator.getitem, y, (None, slice(None), None))
    y = L.permute(node, names, [*batch[:-1], seq, batch[-1]])
    if len(batch) == 1:
        return L.fn(operator.getitem, y, (None,))
    if len(batch) > 2:
        y = L.method("flatten", y, 0, len(batch) - 2)
    return y


def _packed_windows(L, b, x, tin, tout, scale):
    """Non-causal linear attention within each window of a packed sequence, in PyTorch
    (`runtime.packed_window_attention` on [T, H, K] tensors; no ncd.ops kernel)."""
    q = tin["q"]
    batch = [a for a in q.names if a not in _own(b)]  # at most the head axis
    if len({tin[p].dtype for p in ("q", "k", "v")}) > 1:
        want = getattr(torch, tout["out"].dtype)
        x = {**x, **{p: L.method("to", x[p], want) for p in ("q", "k", "v")}}
    roles = (("q", b.query, b.head), ("k", b.key, b.head), ("v", b.key, b.value))
    t = {}
    for p, seq, feat in roles:
        t[p] = L.permute(x[p], tin[p].names, [seq, *batch, feat])
        if not batch:
            t[p] = L.fn(operator.getitem, t[p], (slice(None), None))
    o = L.fn(runtime.packed_window_attention, t["q"], t["k"], t["v"], x["offsets"],
             normalize=b.normalize, scale=scale)  # fmt: skip
    if not batch:
        o = L.fn(operator.getitem, o, (slice(None), 0))
    return L.permute(o, [b.query, *batch, b.value], tout["out"].names)


# ---------------------------------------------------------------- normalisations
def runs_norm_kernels(L, kind: str = "norm") -> bool:
    """Whether norms (`kind` "norm") or L2 normalisations ("l2_norm") lower to ncd.ops' row
    kernels: on a CUDA device where `choices` picks "ncd" for them (`fused="ncd"`; "auto"
    keeps torch's: compiler/choices.py). Elsewhere (the CPU, the meta device that `to_source`
    writes from) they stay nn.LayerNorm / nn.RMSNorm / F.normalize calls, which is what
    ncd.ops runs on the CPU anyway."""
    device = torch.device(L.opts.device)
    return device.type == "cuda" and choose(kind, device, L.opts.fused) == "ncd"


def _flat_params(L, b, ident, n_over):
    """The holder's weight and bias (None where absent), viewed as one axis of features."""
    out = []
    shift = getattr(b, "norm", b.kind) == "layernorm"
    for name, present in (("weight", b.affine), ("bias", b.affine and shift)):
        p = L.param(ident, name) if present else None
        if p is not None and n_over > 1:
            p = L.method("flatten", p)
        out.append(p)
    return out


def lower_norm(L, b, ident, x, t, residual=None):
    """A `layernorm` / `rmsnorm` (held by `ident`) on x of type `t`, and with `residual` (same
    axes) added first, by ncd.ops: x laid out [rest..., over...], the normalised axes
    flattened into one. Returns the normed node and, with `residual`, the sum's node."""
    names = list(t.names)
    over = list(b.over)
    rest = [a for a in names if a not in over]
    want = [*rest, *over]

    def rows(node):
        node = L.permute(node, names, want)
        return L.method("flatten", node, len(rest)) if len(over) > 1 else node

    h = rows(x)
    w, bias = _flat_params(L, b, ident, len(over))
    rms = getattr(b, "norm", b.kind) == "rmsnorm"  # `add_norm` boxes name their norm
    if residual is None:
        fn = ops.rms_norm if rms else ops.layer_norm
        y, s = L.fn(fn, h, w, *([] if rms else [bias]), eps=float(b.eps)), None
    else:
        fn = ops.add_rms_norm if rms else ops.add_layer_norm
        r = L.fn(fn, h, rows(residual), w, *([] if rms else [bias]), eps=float(b.eps))
        y, s = L.fn(operator.getitem, r, 0), L.fn(operator.getitem, r, 1)

    def back(node):
        if len(over) > 1:
            node = L.method("unflatten", node, -1, tuple(L.num(t.axis(a).size) for a in over))
        return L.permute(node, want, names)

    return back(y), (None if s is None else back(s))
