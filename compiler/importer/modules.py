"""torch.nn layers (`call_module` nodes): linear maps, norms, convolutions, pooling,
upsampling, embeddings, dropout, activations, paddings, softmaxes, einops layers; their weights
kept under the box's name."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ncd.circuits.builder import Wire

from .common import _Unmapped
from .reshape import _EINOPS_LAYERS
from .tables import (
    _COMPOSED_MODULES,
    _COMPOSED_OPTIONS,
    _SOFTMAX_MODULES,
    _UNARY_DEFAULTS,
    _UNARY_MODULES,
    imports,
)


class _Modules:
    """The mapping of torch.nn layers (a mixin of `_Importer`, core.py)."""

    @imports(
        "linear",
        "layernorm",
        "rmsnorm",
        "conv",
        "batchnorm",
        "groupnorm",
        "embedding",
        "dropout",
        "unary",
        "softmax",
    )
    def map_module(self, n, m):
        x = self.wire(n.args[0]) if n.args else None
        if isinstance(m, nn.Identity):
            return x
        if isinstance(m, nn.Linear):
            out = self.out_axis(n, m.out_features, x)
            name = self.box_name(n)
            y = self.b.linear(x, x.axes[-1], out, bias=m.bias is not None, name=name)
            self.keep(name, m, "weight", "bias")
            self.linear_out[n] = out
            return y
        if isinstance(m, (nn.LayerNorm, nn.RMSNorm)):
            over = list(x.axes[-len(m.normalized_shape) :])
            name = self.box_name(n)
            kind = "layernorm" if isinstance(m, nn.LayerNorm) else "rmsnorm"
            affine = m.elementwise_affine and (kind == "rmsnorm" or m.bias is not None)
            if m.elementwise_affine and not affine:
                raise _Unmapped
            eps = m.eps if m.eps is not None else torch.finfo(torch.float32).eps
            y = self.b.box(kind, {"x": x}, name, over=over, affine=affine, eps=eps)
            self.keep(name, m, "weight", "bias")
            return y
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            if m.padding_mode != "zeros" or isinstance(m.padding, str):
                raise _Unmapped
            nsp = len(m.kernel_size)
            chan, spatial = x.axes[-nsp - 1], list(x.axes[-nsp:])
            # as many channels out as in: the same axis (a depthwise conv, a residual branch)
            out = self.axis("channel", m.out_channels, avoid=[a for a in x.axes if a != chan])
            name = self.box_name(n)
            y = self.b.conv(
                x,
                spatial,
                chan,
                out,
                list(m.kernel_size),
                name=name,
                stride=list(m.stride),
                padding=list(m.padding),
                dilation=list(m.dilation),
                groups=m.groups,
                bias=m.bias is not None,
            )
            self.keep(name, m, "weight", "bias")
            return self.resize(y, n)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            if not m.track_running_stats:
                raise _Unmapped
            name = self.box_name(n)
            y = self.b.box(
                "batchnorm",
                {"x": x},
                name,
                channel=x.axes[1],
                eps=m.eps,
                momentum=m.momentum or 0.1,
                affine=m.affine,
            )
            self.keep(name, m, "weight", "bias", "running_mean", "running_var")
            if not m.momentum:
                warnings.warn(
                    f"{n.target}: batch norm momentum={m.momentum} "
                    f"({'a cumulative average' if m.momentum is None else 'frozen statistics'}"
                    ") is dropped: the circuit's batchnorm box updates its running statistics "
                    "with momentum 0.1 in training (eval outputs are unchanged)",
                    stacklevel=2,
                )
            return y
        if isinstance(m, nn.GroupNorm):
            name = self.box_name(n)
            y = self.b.groupnorm(x, x.axes[1], m.num_groups, list(x.axes[2:]), name=name)
            if not m.affine or m.eps != 1e-5:
                raise _Unmapped
            self.keep(name, m, "weight", "bias")
            return y
        if isinstance(m, nn.Embedding):
            vocab = self.axis("vocab", m.num_embeddings)
            out = self.axis("feature", m.embedding_dim, avoid=x.axes)
            name = self.box_name(n)
            y = self.b.embedding(x, vocab, out, name=name)
            self.keep(name, m, "weight")
            return y
        if isinstance(m, nn.Dropout):  # (timm writes Dropout(0.0): nothing to draw)
            return x if m.p == 0 else self.b.dropout(x, m.p, name=self.box_name(n))
        if type(m) in _COMPOSED_MODULES:
            kind = _COMPOSED_MODULES[type(m)]
            opts = (getattr(m, k) for k, _ in _COMPOSED_OPTIONS.get(kind, ()))
            return self.composed(n, x, kind, *opts)
        if type(m) in _UNARY_MODULES:
            if isinstance(m, nn.GELU) and m.approximate == "tanh":
                return self.b.unary(x, "gelu_tanh", name=self.box_name(n))
            name = _UNARY_MODULES[type(m)]
            if any(getattr(m, k) != v for k, v in _UNARY_DEFAULTS.get(name, {}).items()):
                raise _Unmapped  # nn.Softplus(beta=2): not the box's function
            return self.b.unary(x, name, name=self.box_name(n))
        if isinstance(m, (nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d,
                          nn.ConstantPad2d, nn.ConstantPad3d)):  # fmt: skip
            return self.pad(n, n.args[0], m.padding, m.value)
        if isinstance(m, _EINOPS_LAYERS):
            how = getattr(m, "reduction", None)
            return self.einops(n, n.args[0], m.pattern, dict(m.axes_lengths), how)
        if isinstance(m, nn.Upsample):
            return self.upsample(n, n.args[0], m.size, m.scale_factor, m.mode, m.align_corners)
        if type(m) in _SOFTMAX_MODULES:
            if m.dim is None:
                raise _Unmapped  # torch's implicit dim, chosen by rank
            return self.b.softmax(x, x.axes[m.dim], variant=_SOFTMAX_MODULES[type(m)],
                                  name=self.box_name(n))  # fmt: skip
        if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)):
            return self.pool(n, x, m)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            want = m.output_size if isinstance(m.output_size, tuple) else (m.output_size,) * 2
            if tuple(want) != (1, 1):
                raise _Unmapped
            sp = list(x.axes[-2:])
            win = [self.sizes_of(x)[a] for a in sp]
            y = self.b.pool(x, sp, win, op="avg", name=self.box_name(n))
            return self.resize(y, n)
        if isinstance(m, (nn.Flatten, nn.Unflatten)):
            return self.view(n, x, self.shape(n))
        if isinstance(m, (nn.PixelShuffle, nn.PixelUnshuffle)):
            up = isinstance(m, nn.PixelShuffle)
            return self.pixel_shuffle(n, x, m.upscale_factor if up else m.downscale_factor, up)
        if isinstance(m, nn.MultiheadAttention):
            return self.mha(n, m)
        raise _Unmapped

    def resize(self, y: Wire, n) -> Wire:
        """After a box whose output axes keep their names but change size (conv, pool), gives
        the changed axes fresh names so that one name keeps one size."""
        shape = self.shape(n)
        mapping = {}
        for a, s in zip(y.axes, shape, strict=True):
            if self.sizes.get(a) != s:
                role = "spatial" if a[0] in "XYZ" else "unit" if s == 1 else "feature"
                mapping[a] = self.axis(role, s, avoid=[*y.axes, *mapping.values()])
        if not mapping:
            return y
        # the box's output already carries the new sizes symbolically; a rename pins names
        return self.b.rename(y, mapping, name=self.box_name(n, "sizes"))

    @imports("pool")
    def pool(self, n, x, m):
        nsp = 1 if isinstance(m, (nn.MaxPool1d, nn.AvgPool1d)) else 2
        if getattr(m, "ceil_mode", False) or getattr(m, "dilation", 1) not in (1, (1, 1)):
            raise _Unmapped
        if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)) and (
            not m.count_include_pad or getattr(m, "divisor_override", None) is not None
        ):
            raise _Unmapped  # a divisor other than the window's size
        if getattr(m, "return_indices", False):
            raise _Unmapped
        op = "max" if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)) else "avg"

        def per(v):
            return list(v) if isinstance(v, (tuple, list)) else [v] * nsp

        y = self.b.pool(
            x,
            list(x.axes[-nsp:]),
            per(m.kernel_size),
            op=op,
            stride=per(m.stride or m.kernel_size),
            padding=per(m.padding),
            name=self.box_name(n),
        )
        return self.resize(y, n)

    def keep(self, box: str, m: nn.Module, *names):
        ws = {}
        for p in names:
            t = getattr(m, p, None)
            if isinstance(t, torch.Tensor):
                ws[p] = t
        self.weights[box] = ws

    @imports("upsample")
    def upsample(self, n, a, size, factor, mode, align) -> Wire:
        """`F.interpolate` / `nn.Upsample` of the spatial axes (all but the first two) by one
        integer factor, nearest or (bi/tri)linear without aligned corners."""
        x = self.wire(a)
        shape, out = self.shape(a), self.shape(n)
        mode = self.const(mode)
        if mode not in ("nearest", "linear", "bilinear", "trilinear") or self.const(align):
            raise _Unmapped
        if len(shape) < 3 or any(o % i for i, o in zip(shape[2:], out[2:], strict=True)):
            raise _Unmapped
        factors = {o // i for i, o in zip(shape[2:], out[2:], strict=True)}
        if len(factors) != 1 or out[:2] != shape[:2]:
            raise _Unmapped
        kind = "nearest" if mode == "nearest" else "linear"
        y = self.b.box("upsample", {"x": x}, self.box_name(n), spatial=list(x.axes[2:]),
                       factor=factors.pop(), mode=kind)  # fmt: skip
        return self.resize(y, n)
