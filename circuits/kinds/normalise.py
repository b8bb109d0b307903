"""Softmax and its relatives (triangles) and normalisations (circles), over named axes."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..errors import ShapeProblem
from ..size_form import Size
from ..types import TensorType
from .base import AxisList, AxisName, BoxBase, count, count_or_size, need, tensor
from .registry import box_kind


@box_kind
class Softmax(BoxBase):
    """Softmax (or log-softmax, softmin) over one axis, broadcast over the rest."""

    kind: Literal["softmax"] = "softmax"
    over: AxisName
    """The axis normalised."""
    variant: Literal["softmax", "log_softmax", "softmin"] = "softmax"
    """Which normaliser."""
    family = "normalisation"

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        need(x, (self.over,), "x")
        return {"out": x}

    def acts_on(self):
        return (self.over,)


class _AffineNorm(BoxBase):
    over: AxisList
    """Axes the statistics are taken over."""
    affine: bool = True
    """Learned scale (and shift, where the norm has one) over `over`."""
    eps: float = Field(default=1e-5, gt=0, le=1)
    """Added to the variance."""
    family = "normalisation"
    learned = True
    shift: ClassVar[bool] = True  # layer norm shifts, RMS norm only scales

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        need(x, self.over, "x", "normalised")
        return {"out": x}

    def params(self, ins, ctx):
        if not self.affine:
            return {}
        x = tensor(ins, "x")
        t = TensorType(tuple(x.axis(a) for a in self.over), x.dtype)
        return {"weight": t, "bias": t} if self.shift else {"weight": t}

    def acts_on(self):
        return self.over

    def is_learned(self):
        return self.affine


@box_kind
class LayerNorm(_AffineNorm):
    """Layer normalisation over `over` (mean and variance), with optional scale and shift."""

    kind: Literal["layernorm"] = "layernorm"


@box_kind
class RMSNorm(_AffineNorm):
    """Root-mean-square normalisation over `over`, with optional scale."""

    kind: Literal["rmsnorm"] = "rmsnorm"
    shift: ClassVar[bool] = False


class _ChannelNorm(BoxBase):
    channel: AxisName
    """The channel axis; statistics are shared along every other axis of the input."""
    affine: bool = True
    """Learned per-channel scale and shift."""
    eps: float = Field(default=1e-5, gt=0, le=1)
    """Added to the variance."""
    momentum: float = Field(default=0.1, gt=0, le=1)
    """Update rate of the running statistics."""
    family = "normalisation"
    learned = True
    broadcasts = False  # the statistics couple every axis but the channel

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        need(x, (self.channel,), "x", "channel")
        return {"out": x}

    def params(self, ins, ctx):
        return _per_channel(self, ins)

    def acts_on(self):
        """The channel, which the scale and shift are indexed by; the other axes are not
        broadcast (`broadcasts`): the statistics are taken over all of them."""
        return (self.channel,)

    def is_learned(self):
        return self.affine


@box_kind
class BatchNorm(_ChannelNorm):
    """Batch normalisation: per channel, statistics over every other axis; running stats."""

    kind: Literal["batchnorm"] = "batchnorm"


@box_kind
class GroupNorm(BoxBase):
    """Group normalisation: channels split into `groups`; statistics per group over `over`."""

    kind: Literal["groupnorm"] = "groupnorm"
    channel: AxisName
    """The channel axis, split into groups."""
    over: AxisList = ()
    """Further axes (spatial) the statistics are taken over."""
    groups: count_or_size(2**20)
    """Number of groups; divides the channel size. A number, or a size (`"H"`: one group per
    head where the heads are merged into the channels) that follows its binding."""
    affine: bool = True
    """Learned per-channel scale and shift."""
    eps: float = Field(default=1e-5, gt=0, le=1)
    """Added to the variance."""
    family = "normalisation"
    learned = True

    def n_groups(self) -> Size:
        """The number of groups as a size expression (a number, or a size such as `H`)."""
        return count(self.groups)

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        need(x, (self.channel, *self.over), "x")
        c, g = ctx.resolve(x.axis(self.channel).size), ctx.resolve(self.n_groups())
        if g.is_number and not (g.is_Integer and int(g) >= 1):
            raise ShapeProblem(
                "groups is a whole number of at least 1", "", "groups >= 1", f"{self.groups} = {g}"
            )
        if c.is_Integer and g.is_Integer and int(c) % int(g):
            raise ShapeProblem(
                "groups must divide the channels",
                "x",
                f"a multiple of {self.groups}" + (f" = {g}" if str(g) != str(self.groups) else ""),
                f"{self.channel}={c}",
            )
        return {"out": x}

    def params(self, ins, ctx):
        return _per_channel(self, ins)

    def acts_on(self):
        return (self.channel, *self.over)

    def is_learned(self):
        return self.affine


@box_kind
class UnifiedNorm(_ChannelNorm):
    """Unified Normalization (Yang et al. 2022): x / sqrt(smoothed mean of x²) per channel, with
    offline statistics, so that at inference it is a fixed scale that folds into a linear map.

    In training the statistic is the geometric mean of the last `window` batches' quadratic
    means (after `warmup` steps); a batch whose window shows an outlier (arithmetic minus
    geometric mean above `window` times the window's spread) uses its own statistic; the
    backward subtracts the smoothed mean of g·z (gradient compensation). At inference it is
    weight · x / sqrt(running_var + eps) + bias."""

    kind: Literal["unifiednorm"] = "unifiednorm"
    window: int = Field(default=4, ge=1, le=1024)
    """Batches whose statistics are smoothed (forward: geometric mean; backward: mean)."""
    warmup: int = Field(default=4000, ge=0, le=2**40)
    """Training steps that use each batch's own statistics before smoothing starts."""
    outlier: bool = True
    """Adaptive outlier filtration: a batch that would make the window an outlier is skipped."""
    compensate_after: int = Field(default=1000, ge=0, le=2**40)
    """Steps (at least `warmup`) before the backward scales by the ratio of the smoothed to the
    running statistic's root (clamped to [1/5, 5])."""


@box_kind
class Normalize(BoxBase):
    """Divides by the p-norm over one axis (l2 for delta-rule keys, l1 for re-weighting)."""

    kind: Literal["normalize"] = "normalize"
    over: AxisName
    """The axis whose norm is taken."""
    p: Literal[1, 2] = 2
    """Which norm."""
    eps: float = Field(default=1e-6, gt=0, le=1)
    """Floor of the norm."""
    family = "normalisation"

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        need(x, (self.over,), "x")
        return {"out": x}

    def acts_on(self):
        return (self.over,)


def _per_channel(box, ins) -> dict[str, TensorType]:
    """A learned scale and shift per channel (batch, group and unified norms)."""
    if not box.affine:
        return {}
    x = tensor(ins, "x")
    t = TensorType((x.axis(box.channel),), x.dtype)
    return {"weight": t, "bias": t}
