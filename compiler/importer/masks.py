"""Masks: a mask made from sizes alone (never from an input's values) and found causal or a
causal window by its value is a mask box (`masked_fill`, `torch.where`, an additive mask); a
very negative fill counts as -inf where only softmaxes read it. Any other mask stays compare and
where boxes."""

from __future__ import annotations

import contextlib
import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from ncd.circuits.builder import Wire
from ncd.circuits.limits import MAX_NUMBER

from .. import tracing
from ..in_place import changes_in_place
from .common import _op, _Unmapped
from .tables import _CASTS, imports


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


def _feeds_only_softmaxes(n: fx.Node, gm: fx.GraphModule, ndim, depth: int = 8,
                          readers=None) -> bool:  # fmt: skip
    """Whether all that node n's value reaches goes into softmaxes over their last dim, added
    to other terms (scores) or cast, viewed or indexed on the way (`ndim(node)`: a node's
    number of dims). Then a very negative entry of n weighs 0 in every softmax, as -inf
    does. `readers`: (node, the node whose value it reads) pairs that read n's value, where
    not n's users alone (an in-place change, read through the tensor it changed)."""

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

    readers = [(u, n) for u in n.users] if readers is None else readers
    if not readers or depth == 0:
        return False
    for u, x in readers:
        op = "getitem" if u.target is operator.getitem else _op(u)
        passes = op == "add" or (op in _VIEWS and u.args[0] is x)
        if not into_softmax(u, x) and not (
            passes and _feeds_only_softmaxes(u, gm, ndim, depth - 1)
        ):
            return False
    return True


class _Masks:
    """Attention masks (a mixin of `_Importer`, core.py)."""

    def feeds_only_softmaxes(self, n: fx.Node) -> bool:
        readers = None
        first = self.values.get(n.args[0]) if n.args and isinstance(n.args[0], fx.Node) else None
        if changes_in_place(n, self.gm, first):  # (`scores.masked_fill_(m, v)`, then
            # `scores.softmax(-1)`): the readers of the changed tensor after n, too
            order = {m: i for i, m in enumerate(self.gm.graph.nodes)}
            same = self.same_tensor.get(n.args[0], [n.args[0]])
            readers = [(u, n) for u in n.users] + [
                (u, m) for m in same for u in m.users if order[u] > order[n]
            ]
        return _feeds_only_softmaxes(n, self.gm, lambda x: len(self.shape(x)), readers=readers)

    def mask_factor(self, n: fx.Node, f: float) -> float:
        """A factor past the language's number limit that makes a very negative additive mask
        (BERT's `(1 - mask) * finfo(dtype).min`, read only by softmaxes): _VERY_NEGATIVE,
        which weighs the masked entries 0 as it does. Any other factor as it is."""
        if f < -MAX_NUMBER and self.feeds_only_softmaxes(n):
            return _VERY_NEGATIVE
        return f

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
