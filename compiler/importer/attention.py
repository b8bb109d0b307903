"""Attention: `nn.MultiheadAttention` as its projections around one attention box, and
`F.scaled_dot_product_attention` (causal masks, grouped heads) as one attention box; any mask
given to either that is not causal goes on the box's `mask` port."""

from __future__ import annotations

import operator
import warnings

import torch
from torch import fx, nn

from ncd.circuits.builder import Wire

from .common import _Unmapped
from .masks import _mask_pattern
from .tables import imports

_CANONICAL_MASK = getattr(torch.nn.functional, "_canonical_mask", None)


def _unconverted(mask):
    """The mask a transformer layer was given, where it converted a boolean one to -inf and 0
    (torch's `_canonical_mask`, as nn.TransformerEncoderLayer does) before its attention: the
    same keys dropped, in nn.MultiheadAttention's convention either way."""
    if _CANONICAL_MASK is not None and isinstance(mask, fx.Node) and mask.target is _CANONICAL_MASK:
        return mask.args[0] if mask.args else mask.kwargs.get("mask")
    return mask


class _Attention:
    """Attention layers and SDPA (a mixin of `_Importer`, core.py)."""

    def mha(self, n, m: nn.MultiheadAttention):
        q_in, k_in, v_in = (self.wire(n.args[i]) for i in range(3))
        kw = dict(n.kwargs)
        for i, key in enumerate(
            ["key_padding_mask", "need_weights", "attn_mask", "average_attn_weights", "is_causal"],
            start=3,
        ):
            if len(n.args) > i:
                kw[key] = n.args[i]
        pad, mask = (_unconverted(kw.get(key)) for key in ("key_padding_mask", "attn_mask"))
        if isinstance(pad, fx.Node) and self.values.get(pad) is None:
            pad = None  # (a node may hold None: torch's own check of an absent mask)
        if isinstance(mask, fx.Node) and self.values.get(mask) is None:
            mask = None
        if (pad is not None or mask is not None) and len(q_in.axes) != 3:
            raise _Unmapped  # (unbatched)
        causal = bool(self.const(kw.get("is_causal", False)))
        if mask is not None and self.is_causal_mask(mask, self.shape(mask), keeps=False):
            if len(self.shape(mask)) != 2:
                raise _Unmapped
            causal, mask = True, None  # made from sizes alone: True (or -inf) where not
            # attended, nn.MultiheadAttention's convention
        elif causal:
            raise _Unmapped  # is_causal is a hint that attn_mask is causal; it is not
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
        batch = q_in.axes[0] if m.batch_first else q_in.axes[1]
        masks = [self.mha_mask(n, pad, [batch, S], base) if pad is not None else None,
                 self.mha_mask(n, mask, [batch, heads, seq_q, S], base)
                 if mask is not None else None]  # fmt: skip
        masks = [w for w in masks if w is not None]
        if len(masks) == 2:  # one mask, as torch adds the two after making them floats
            masks = [self.both_masks(n, *masks, base, q_in.type.dtype)]
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
            mask=masks[0] if masks else None,
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

    def mha_mask(self, n, mask, axes: list[str], base: str) -> Wire:
        """nn.MultiheadAttention's key_padding_mask ([B, S], `axes` [B S]) or attn_mask ([T, S],
        or [B*H, T, S], the batch entry outer; `axes` [B H T S]) as a keep-mask (a boolean one
        is True where not attended: its complement) or a float bias."""
        op = self.mask_operand(n, mask, keeps=False)
        shape = self.shape(mask)
        if len(shape) == 3:  # B*H split into B and H: named apart, then split
            names = [None, *axes[2:]]
            w = self.broadcast_to(n, op, names, shape)
            if names[0] not in w.axes:
                return w  # (size 1: broadcast over every batch entry and head)
            return self.b.split_axis(w, names[0], axes[:2], name=self._fresh(f"{base}_mask_heads"))
        return self.broadcast_to(n, op, axes[-len(shape) :], shape)

    def both_masks(self, n, pad: Wire, mask: Wire, base: str, dtype: str) -> Wire:
        """nn.MultiheadAttention's two masks as one: keep-masks where both keep (their
        minimum), biases added, a keep-mask made a bias of 0 and -inf beside a bias."""
        name = self._fresh(f"{base}_masks")
        if pad.type.dtype == "bool" and mask.type.dtype == "bool":
            return self.b.binary(pad, mask, "minimum", name=name)
        pad, mask = (self.as_bias(n, w, base, dtype) for w in (pad, mask))
        return self.b.binary(pad, mask, "add", name=name)

    def as_bias(self, n, w: Wire, base: str, dtype: str) -> Wire:
        if w.type.dtype != "bool":
            return w
        zero = self.constant(0.0, dtype, n)
        return self.b.box("where", {"cond": w, "a": zero}, self._fresh(f"{base}_bias"),
                          fill="-inf")  # fmt: skip

    def is_causal_mask(self, mask, scores, keeps: bool) -> bool:
        """Whether an attention mask is made from sizes alone and is causal over the scores'
        last two dims (`keeps`: a boolean one is True where attended, SDPA's convention)."""
        try:
            return _mask_pattern(self.dropped(mask, keeps), scores) == ("causal", 0)
        except _Unmapped:
            return False

    def mask_operand(self, n, mask, keeps: bool) -> tuple:
        """An attention mask as an operand (see `operand`) the attention box's `mask` port
        takes: a boolean keep-mask (`keeps`: the model's is True where attended, SDPA's
        convention; else its complement, nn.MultiheadAttention's) or a float bias."""
        v = self.values.get(mask) if isinstance(mask, fx.Node) else None
        if not isinstance(v, torch.Tensor):
            raise _Unmapped
        if v.dtype == torch.bool:
            return self.condition(n, mask, negate=not keeps)
        if not v.is_floating_point():
            raise _Unmapped
        return self.operand(mask)

    @imports("attention")
    def sdpa(self, n):
        q, k, v = (self.wire(n.args[i]) for i in range(3))
        causal = bool(self.const(self.arg(n, 5, "is_causal", False)))
        mask = self.arg(n, 3, "attn_mask")
        scores = self.shape(n.args[0])[:-1] + self.shape(n.args[1])[-2:-1]  # [..., T, S]
        if mask is not None and self.is_causal_mask(mask, scores, keeps=True):
            causal, mask = True, None  # made from sizes: True (or 0.0) where attended
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
        if mask is not None:  # with is_causal too, both apply, as torch's CPU kernel does
            # (its documentation and its math kernel refuse the pair: a model that ran has both)
            op = self.mask_operand(n, mask, keeps=True)  # dims right-aligned, named so
            kw["mask"] = self.broadcast_to(n, op, [*q.axes[:-2], T, S], scores)
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
