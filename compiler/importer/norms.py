"""Norms: `F.layer_norm`, `F.rms_norm` and `F.normalize`, and an RMS or layer norm written out
(`x * rsqrt(mean(x^2) + eps)`, ConvNeXt's channels-first layer norm) recognised as one box."""

from __future__ import annotations

import torch
from torch import fx

from .common import _call_arg, _op, _squared_of, _Unmapped
from .tables import imports


class _Norms:
    """Norms, called or written out (a mixin of `_Importer`, core.py)."""

    def norm_core(self, fn, a, b) -> tuple[str, fx.Node, float, int] | None:
        """(kind, x, eps, dim) where `a fn b` normalises x over one dim without an affine map,
        `c * rsqrt(r)` or `c / sqrt(r)` with r = v + eps: an RMS norm over x's last dim
        (c is x, v the mean of x squared) or a layer norm over any dim (c is x minus its mean,
        v the mean of c squared or x's variance without correction), written out as
        ConvNeXt's channels-first LayerNorm writes it; else None."""
        pairs = [(a, b), (b, a)] if fn == "mul" else [(a, b)]
        for c, r in pairs:
            if not (isinstance(c, fx.Node) and isinstance(r, fx.Node)):
                continue
            root = _call_arg(r, {"rsqrt"} if fn == "mul" else {"sqrt"})
            if root is None or root.op not in ("call_function", "call_method"):
                continue
            if _op(root) != "add" or len(root.args) != 2:
                continue
            rank = len(self.shape(c)) if isinstance(self.values.get(c), torch.Tensor) else 0
            for m, e in (root.args, root.args[::-1]):
                eps = e if isinstance(e, (int, float)) and not isinstance(e, bool) else None
                if eps is None or eps <= 0 or not isinstance(m, fx.Node) or not rank:
                    continue
                dim = self.reduced_dim(m, ("mean", "var"))
                if dim is None:
                    continue
                dim %= rank
                if _op(m) == "mean" and _squared_of(m.args[0]) is c and dim == rank - 1:
                    return "rmsnorm", c, float(eps), dim
                x = self.centered(c, dim)
                if x is None:
                    continue
                if _op(m) == "mean" and self.centered(_squared_of(m.args[0]), dim) is x:
                    return "layernorm", x, float(eps), dim
                uncorrected = self.const(self.arg(m, 2, "unbiased", True)) is False or (
                    self.const(m.kwargs.get("correction", 1)) == 0
                )
                if _op(m) == "var" and m.args[0] is x and uncorrected:
                    return "layernorm", x, float(eps), dim
        return None

    def reduced_dim(self, m, ops) -> int | None:
        """The one dim node m reduces over with keepdim, where m calls one of `ops` (`mean`,
        `var`); else None."""
        if not isinstance(m, fx.Node) or _op(m) not in ops or m.op == "call_module":
            return None
        dim = self.const(self.arg(m, 1, "dim"))
        dim = dim[0] if isinstance(dim, (list, tuple)) and len(dim) == 1 else dim
        keep = self.const(m.kwargs.get("keepdim", False)) or (
            _op(m) == "mean" and self.const(self.arg(m, 2, "keepdim", False))
        )
        return dim if isinstance(dim, int) and keep else None

    def centered(self, c, dim: int) -> fx.Node | None:
        """x where node c is `x - x.mean(dim, keepdim=True)`; else None."""
        if not isinstance(c, fx.Node) or _op(c) != "sub" or len(c.args) != 2:
            return None
        x, u = c.args
        k = self.reduced_dim(u, ("mean",))
        if not isinstance(x, fx.Node) or k is None or u.args[0] is not x:
            return None
        return x if k % len(self.shape(x)) == dim else None

    def norm_fn(self, n, kind: str):
        """`F.layer_norm(x, shape, weight, bias, eps)` / `F.rms_norm(...)`: the norm without
        its affine map, then the weight's product and the bias's sum as elementwise boxes."""
        x = self.wire(n.args[0])
        shape = self.const(self.arg(n, 1, "normalized_shape"))
        over = list(x.axes[-len(shape) :])
        eps = self.const(self.arg(n, 4 if kind == "layernorm" else 3, "eps"))
        if eps is None:
            eps = torch.finfo(torch.float32).eps
        y = self.b.box(kind, {"x": x}, self.box_name(n), over=over, affine=False, eps=eps)
        weight = self.arg(n, 2, "weight")
        bias = self.arg(n, 3, "bias") if kind == "layernorm" else None
        for fn, p in (("mul", weight), ("add", bias)):
            if p is not None:
                ops = [("wire", (y, ()), self.shape(n)), self.operand(p)]
                suffix = "weight" if fn == "mul" else "bias"
                y = self.elementwise(n, fn, ops, self.shape(n), suffix=suffix)
        return y

    @imports("normalize")
    def normalize(self, n):
        """`F.normalize(x, p, dim)`: x over its p-norm along one axis."""
        x = self.wire(n.args[0])
        p = self.const(self.arg(n, 1, "p", 2.0))
        d = self.const(self.arg(n, 2, "dim", 1))
        eps = self.const(self.arg(n, 3, "eps", 1e-12))
        if p not in (1, 2) or not 0 < eps <= 1:
            raise _Unmapped
        return self.b.box("normalize", {"x": x}, self.box_name(n), over=x.axes[d], p=int(p),
                          eps=eps)  # fmt: skip
