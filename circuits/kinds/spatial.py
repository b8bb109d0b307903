"""Convolutions (★), pooling and upsampling over named spatial axes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ..errors import ShapeProblem
from ..sizes import Size, floor, show, simplify
from ..types import FLOAT_DTYPES, Axis, TensorType, promote
from .base import AxisList, AxisName, BoxBase, need, new_axes, tensor
from .registry import box_kind

# Per-axis integers, bounded so that sizes stay sane whatever a spec says.
PosInts = tuple[Annotated[int, Field(ge=1, le=2**20)], ...]
NonNegInts = tuple[Annotated[int, Field(ge=0, le=2**20)], ...]


def _per_axis(v):
    return (v,) if isinstance(v, int) and not isinstance(v, bool) else v


def out_size(n, k, s, p, d=1):
    """floor((n + 2p - d(k-1) - 1) / s) + 1, PyTorch's rule."""
    return floor((n + 2 * p - d * (k - 1) - 1) / s) + 1


class _Spatial(BoxBase):
    spatial: AxisList = Field(min_length=1, max_length=3)
    """Spatial axes, in order (`X`, or `Y X`)."""

    def _norm(self, field):
        v = getattr(self, field)
        return v * len(self.spatial) if len(v) == 1 else v

    @model_validator(mode="after")
    def _lengths(self):
        for f in ("kernel", "stride", "padding", "dilation", "output_padding", "window"):
            v = getattr(self, f, None)
            if v is None or (f == "stride" and v == () and self.kind == "pool"):
                continue  # a pool's stride defaults to its window
            if len(v) not in (1, len(self.spatial)):
                raise ValueError(f"{f} has {len(v)} entries for {len(self.spatial)} axes")
        return self


@box_kind
class Conv(_Spatial):
    """N-d convolution (`★k`), strided (trapezoid), dilated, grouped, or transposed (`★ᵀ`)."""

    kind: Literal["conv"] = "conv"
    channel: AxisName
    """Input channel axis (contracted)."""
    out: AxisName
    """Output channel axis; its size comes from the circuit's axis table."""
    kernel: PosInts = Field(min_length=1, max_length=3)
    """Kernel size per spatial axis (one number for all)."""
    stride: PosInts = (1,)
    """Stride per spatial axis."""
    padding: NonNegInts = (0,)
    """Zero padding per spatial axis."""
    dilation: PosInts = (1,)
    """Dilation per spatial axis."""
    output_padding: NonNegInts = (0,)
    """Extra size on one side of a transposed convolution's output."""
    groups: int = Field(default=1, ge=1, le=2**20)
    """Channel groups (groups = channels: depthwise)."""
    depthwise: bool = False
    """Groups = input channels (one filter bank per channel); the channel count may be symbolic."""
    transposed: bool = False
    """A transposed convolution (upsampling by the stride)."""
    bias: bool = True
    """A learned bias per output channel."""
    family = "convolution"
    learned = True

    _v = field_validator(
        "kernel", "stride", "padding", "dilation", "output_padding", mode="before"
    )(_per_axis)

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        need(x, (*self.spatial, self.channel), "x")
        cin, cout = ctx.resolve(x.axis(self.channel).size), ctx.resolve(ctx.size(self.out))
        g = self.n_groups(cin)
        for name, c in ((self.channel, cin), (self.out, cout)):
            ratio = c / g
            if ratio.is_number and not ratio.is_integer:
                raise ShapeProblem(f"groups must divide {name}", "x", f"a multiple of {g}",
                                   f"{name}={c}")  # fmt: skip
        k, s, p, d = (self._norm(f) for f in ("kernel", "stride", "padding", "dilation"))
        op = self._norm("output_padding")
        axes = []
        for a in x.axes:
            if a.name == self.channel:
                axes.append(Axis(self.out, ctx.size(self.out)))
            elif a.name in self.spatial:
                i = self.spatial.index(a.name)
                if self.transposed:
                    n = (a.size - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + op[i] + 1
                else:
                    n = out_size(a.size, k[i], s[i], p[i], d[i])
                n = simplify(n)
                if n.is_number and n < 1:
                    raise ShapeProblem(
                        f"output axis {a.name} would be empty", "x", "a size >= 1", str(n)
                    )
                axes.append(Axis(a.name, n))
            else:
                axes.append(a)
        return {"out": x.with_axes(axes)}

    def n_groups(self, cin: Size) -> Size:
        """The number of channel groups (the input channel count when depthwise)."""
        return cin if self.depthwise else Size.number(self.groups)

    def params(self, ins, ctx):
        x = tensor(ins, "x")
        cin, cout = x.axis(self.channel), Axis(self.out, ctx.size(self.out))
        g = self.n_groups(cin.size)
        # weight axes: PyTorch's (out, in/groups, k...) or, transposed, (in, out/groups, k...)
        first, other = (cin, cout) if self.transposed else (cout, cin)
        suffix = "_g" if g != 1 else ("_in" if first.name == other.name else "")
        per = Axis(f"{other.name}{suffix}", other.size / g)
        ks = [Axis(f"k{n}", Size.number(k)) for n, k in zip(self.spatial, self._norm("kernel"))]
        ps = {"weight": TensorType((first, per, *ks), x.dtype)}
        if self.bias:
            ps["bias"] = TensorType((cout,), x.dtype)
        return ps

    def acts_on(self):
        return (*self.spatial, self.channel, self.out)


@box_kind
class LongConv(BoxBase):
    """A causal convolution along `seq` with a filter that is an input, as long as the
    sequence and one per channel: y[…, t, c] = Σ_{s ≤ t} h[t − s, c] x[…, s, c] (Hyena's and
    H3's long convolutions, S4 and S4D in convolution mode), computed with FFTs in
    O(T log T).

    Port `x`: any axes, `seq` among them. Port `filter`: its taps along one axis (`seq` where
    the filter has that axis, else its one axis x lacks: `L` for a filter of L taps) and
    channel axes among x's, of equal sizes; x's axes the filter lacks are broadcast over (a
    filter per head `H` for heads of features `K`; a filter per batch row where it has `B`).
    A filter of fewer taps than the sequence is zero past its last tap; one of more is an
    error. The output has x's axes, in x's element type promoted with the filter's.

    Causal only. A non-causal mode was left out: no model this box was made for needs it
    (Hyena, H3, HyenaDNA and S4/S4D's unidirectional layers convolve causally); a circular
    convolution is a different operation (no zero padding, FFT length T), and S4's
    bidirectional kernel is a causal convolution plus one of the reversed sequence. A `mode`
    field with `causal` as its default can be added later without changing any circuit.
    """

    kind: Literal["long_conv"] = "long_conv"
    seq: AxisName
    """Axis of the sequence convolved over (position t sees positions 0 … t)."""
    family = "convolution"
    named_ports = True  # x and its filter can carry the same axes (a filter of T taps)

    def ports(self):
        return ["x", "filter"]

    def taps(self, x: TensorType, h: TensorType) -> str:
        """The filter's axis of taps: `seq` where the filter has it, else its one axis x
        lacks (a ShapeProblem when there is none or more than one)."""
        if h.axis(self.seq) is not None:
            return self.seq
        lack = [a for a in h.names if x.axis(a) is None]
        if len(lack) != 1:
            raise ShapeProblem(
                "the filter's taps lie along one axis: seq or the one axis x lacks", "filter",
                f"{self.seq} or one axis not on x, then channel axes among x's "
                f"({' '.join(a for a in x.names if a != self.seq) or 'none'})",
                f"{h} ({len(lack)} axes not on x)",
            )  # fmt: skip
        return lack[0]

    def infer(self, ins, ctx):
        x, h = tensor(ins, "x"), tensor(ins, "filter")
        need(x, (self.seq,), "x", "the sequence")
        for port, t in (("x", x), ("filter", h)):
            if t.dtype not in FLOAT_DTYPES:
                raise ShapeProblem("convolves floating point", port, "a float dtype", t.dtype)
        tap = self.taps(x, h)
        stray = [a for a in h.names if a != tap and x.axis(a) is None]
        if stray:
            raise ShapeProblem(
                f"filter axis {' '.join(stray)} is not on x: a filter's channels are x's",
                "filter", f"{tap} and axes among x's", str(h),
            )  # fmt: skip
        for a in h.names:
            if a != tap:
                ctx.unify(x.axis(a).size, h.axis(a).size, "filter", f"size of channel axis {a}")
        T, L = ctx.resolve(x.axis(self.seq).size), ctx.resolve(h.axis(tap).size)
        if (L - T).is_number and L - T > 0:
            raise ShapeProblem(
                "the filter is no longer than the sequence", "filter",
                f"at most {self.seq}={show(T)} taps along {tap}", f"{tap}={show(L)}",
            )  # fmt: skip
        return {"out": x.with_axes(x.axes, promote([x.dtype, h.dtype]))}

    def acts_on(self):
        return (self.seq,)


@box_kind
class Pool(_Spatial):
    """Max or average pooling over a window of the spatial axes."""

    kind: Literal["pool"] = "pool"
    op: Literal["max", "avg"] = "max"
    """The pooling function."""
    window: PosInts = Field(min_length=1, max_length=3)
    """Window size per spatial axis."""
    stride: PosInts = ()
    """Stride per axis (the window when empty)."""
    padding: NonNegInts = (0,)
    """Padding per axis."""
    family = "reduction"

    _v = field_validator("window", "stride", "padding", mode="before")(_per_axis)

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        need(x, self.spatial, "x")
        w = self._norm("window")
        s = self._norm("stride") if self.stride else w
        p = self._norm("padding")
        axes = []
        for a in x.axes:
            if a.name in self.spatial:
                i = self.spatial.index(a.name)
                n = simplify(out_size(a.size, w[i], s[i], p[i]))
                if n.is_number and n < 1:
                    raise ShapeProblem(
                        f"pooled axis {a.name} would be empty", "x", "a size >= 1", str(n)
                    )
                axes.append(Axis(a.name, n))
            else:
                axes.append(a)
        return {"out": x.with_axes(axes)}

    def acts_on(self):
        return self.spatial


@box_kind
class Upsample(_Spatial):
    """Upsampling of the spatial axes by an integer factor."""

    kind: Literal["upsample"] = "upsample"
    factor: int = Field(default=2, ge=1, le=1024)
    """Scale factor on every spatial axis."""
    mode: Literal["nearest", "linear"] = "nearest"
    """Interpolation (linear means bi/trilinear by the number of axes)."""
    family = "rearrangement"

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        need(x, self.spatial, "x")
        return {
            "out": x.with_axes(
                [
                    Axis(a.name, a.size * self.factor) if a.name in self.spatial else a
                    for a in x.axes
                ]
            )
        }

    def acts_on(self):
        return self.spatial


__all__ = ["Conv", "LongConv", "Pool", "Upsample", "new_axes"]
