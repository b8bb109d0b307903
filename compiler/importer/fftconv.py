"""A causal convolution by FFT written out (safari's `fftconv_ref`, Hyena, H3, S4's
convolution mode) as one `long_conv` box:

    u_f = torch.fft.rfft(u, n=n)                 # u [.., T], n >= T + L - 1
    k_f = torch.fft.rfft(k, n=n) / n             # k [.., L], L <= T, broadcast against u
    y = torch.fft.irfft(u_f * k_f, n=n, norm="forward")[..., :T]

The complex values from the rffts to the irfft have no type in a circuit; the convolution
exists only after the slice that keeps the first T outputs. So the irfft, where that region
ends, is recognised first: its one reader must be that slice, and the region run again on a
random u and k (float64) must give what `runtime.long_conv` gives. The box is made there and
held as a pending wire that the slice resolves to; anything else stays one opaque box. The
region runs again at two other lengths (the FFT length and the slice's stop, where the code
computes them from sizes, evaluated there): where it is not the convolution there (`n=64`
written as a number), the sequence axis is fixed to the example's length."""

from __future__ import annotations

import math
import operator

import torch
from torch import fx

from ncd.circuits.builder import Wire
from ncd.circuits.sizes import evaluate, parse_size

from .. import runtime
from .common import _Lazy, _Unmapped
from .tables import imports

_IRFFT = {torch.fft.irfft}


class _PendingConv:
    """The long_conv box an irfft begins, its wire given to the slice `at` that keeps the
    first T outputs (the irfft itself, n long, has no wire); `seq` its sequence axis, and
    whether the filter's taps are that axis (`taps_follow`)."""

    def __init__(self, wire: Wire, at: fx.Node, seq: str, taps_follow: bool):
        self.wire, self.at, self.seq, self.taps_follow = wire, at, seq, taps_follow


def _first(idx, rank: int) -> int | None:
    """The stop of an index that keeps the first `stop` positions of the last dim and all of
    every other (`[..., :T]`, `[:, :, :T]`, `[..., 0:T]`), numbers already read; else None."""
    items = list(idx) if isinstance(idx, tuple) else [idx]
    if items.count(Ellipsis) == 1 and items[0] is Ellipsis:
        items = [slice(None)] * (rank - len(items) + 1) + items[1:]
    if len(items) != rank or not all(isinstance(i, slice) for i in items):
        return None
    *rest, last = items
    if any((i.start, i.stop, i.step) != (None, None, None) for i in rest):
        return None
    if last.start not in (None, 0) or last.step not in (None, 1) or not isinstance(last.stop, int):
        return None
    return last.stop


def _pure(m: fx.Node) -> bool:
    """Whether node m is a call that can run again on other tensors (not in place)."""
    if m.op == "call_method":
        return not str(m.target).endswith("_")
    return m.op == "call_function"


class _FFTConv:
    """FFT convolutions written out (a mixin of `_Importer`, core.py)."""

    @imports("long_conv")
    def fft_conv(self, n: fx.Node, region: list[fx.Node]) -> _PendingConv | None:
        """A long_conv box where node n is an irfft ending a region of complex values that
        computes, with the slice reading it, a causal convolution of two of the model's real
        tensors (the module docstring's form); else None, and the region is one opaque box."""
        if n.op != "call_function" or n.target not in _IRFFT or len(n.users) != 1:
            return None
        (s,) = n.users
        if s.op != "call_function" or s.target is not operator.getitem:
            return None
        vy = self.values.get(n)
        if not isinstance(vy, torch.Tensor) or not vy.is_floating_point():
            return None
        idx = fx.node.map_arg(s.args[1], lambda a: self.values[a])
        T = _first(idx, vy.dim())
        inside = [*region, n]
        read = [a for m in inside for a in m.all_input_nodes if a not in inside]
        leaves = list(dict.fromkeys(a for a in read if isinstance(self.values[a], torch.Tensor)))
        if T is None or len(leaves) != 2 or not all(_pure(m) for m in region):
            return None
        vs = [self.values[a] for a in leaves]
        want = tuple(self.values[s].shape)
        if not all(v.is_floating_point() and v.dim() >= 1 for v in vs):
            return None
        # x has the output's shape (a filter as long as the sequence may too: x is then the
        # one the model does not hold)
        pairs = sorted(((x, h) for x, h in (leaves, leaves[::-1])
                        if tuple(self.values[x].shape) == want),
                       key=lambda p: isinstance(self.wires.get(p[0]), _Lazy))  # fmt: skip
        if not pairs or want[-1] != T:
            return None
        x, h = pairs[0]
        vx, vh = self.values[x], self.values[h]
        if vh.shape[-1] > T or vh.dim() > vx.dim():
            return None
        if self.values[s].dtype != torch.promote_types(vx.dtype, vh.dtype):
            return None
        nodes = [*region, n, s]
        if self._fft_conv_error(nodes, x, h) > 1:
            return None
        w = self._fft_conv_box(n, s, x, h)
        if any(self._fft_conv_error(nodes, x, h, w.seq, T2, w.taps_follow) > 1
               for T2 in (T + 3, 4 * T + 1)):  # fmt: skip
            # the code's sizes (fft length, slice stop) convolve only at the example's length
            self.pending.append(({w.seq}, s))
        return w

    def _sizes_at(self, a, seq: str, T2: int):
        """Number node a's value where axis `seq` is T2 long (its size expression evaluated);
        None where it has none."""
        found = self.size_expr(a)
        if found is None:
            return None
        return evaluate(parse_size(found[0]), {**self.sizes, seq: T2})

    def _fft_conv_error(self, nodes, x, h, seq=None, T2=0, taps_follow=False) -> float:
        """How far the ops of `nodes` (in graph order, the slice last) run on a random x and h
        in float64 are from runtime.long_conv(x, h) along the last dim, relative to float64's
        rounding over a transform: 1 or less where they agree; inf where they cannot run.
        With `seq` (x's last axis), at length T2 (the filter too where its taps follow the
        sequence), the sizes the code computes from that axis evaluated there."""
        sx, sh = list(self.values[x].shape), list(self.values[h].shape)
        if seq is not None:
            sx[-1] = T2
            sh[-1] = T2 if taps_follow else sh[-1]
        gen = torch.Generator().manual_seed(0)
        px, ph = (torch.randn(s, generator=gen, dtype=torch.float64) for s in (sx, sh))
        env: dict = {x: px, h: ph}

        def arg(v):
            if v in env:
                return env[v]
            value = self.values[v]
            if seq is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
                found = self._sizes_at(v, seq, T2)
                if found is None:
                    raise _Unmapped
                return found
            return value

        try:
            for m in nodes:
                args, kwargs = fx.node.map_arg(m.args, arg), fx.node.map_arg(m.kwargs, arg)
                if m.op == "call_method":
                    env[m] = getattr(args[0], m.target)(*args[1:], **kwargs)
                else:
                    env[m] = m.target(*args, **kwargs)
            got, want = env[nodes[-1]], runtime.long_conv(px, ph, -1)
        except Exception:
            return math.inf
        if not isinstance(got, torch.Tensor) or got.shape != want.shape or got.is_complex():
            return math.inf
        scale = float(px.abs().max() * ph.abs().sum(-1).max())
        tol = 1e-9 * max(scale, 1e-300)
        return float((got.to(torch.float64) - want).abs().max()) / tol

    def _fft_conv_box(self, n: fx.Node, s: fx.Node, x: fx.Node, h: fx.Node) -> _PendingConv:
        """The long_conv box of x [.., T] and filter h [.., L]: the sequence axis is x's last
        axis; h's channel dims take the names of x's they align with (from the right), its
        taps axis is that sequence axis where L = T, else an axis of its own."""
        xw = self.wire(x)
        vx, vh = self.values[x], self.values[h]
        seq, L, T = xw.axes[-1], vh.shape[-1], vx.shape[-1]
        lead = vx.dim() - vh.dim()
        hints = [xw.axes[lead + d] for d in range(vh.dim() - 1)] + [seq if L == T else None]
        broadcast = [d for d in range(vh.dim() - 1) if vh.shape[d] == 1 != vx.shape[lead + d]]
        held = self.wires.get(h)
        if isinstance(held, _Lazy):
            hw, units = self.materialize(held, hints, drop=broadcast)
        else:
            hw, units = self.bare(h)
        if set(units) != set(broadcast):
            raise _Unmapped
        kept = [d for d in range(vh.dim()) if d not in units]
        mapping = {}
        for d, ax in zip(kept, hw.axes, strict=True):
            if d == vh.dim() - 1:
                want = seq if L == T else ax
                if want != seq and (want in xw.axes or want in mapping.values()):
                    want = self.fresh(seq, L, avoid=[*xw.axes, *hw.axes])
            else:
                want = hints[d]
            if want != ax:
                mapping[ax] = want
        if mapping:
            hw = self.b.rename(hw, mapping, name=self.box_name(n, "taps"))
        y = self.b.long_conv(xw, hw, seq, name=self.box_name(n))
        self.units[s] = ()
        return _PendingConv(y, s, seq, L == T)
