"""Products over an axis: `matmul`, `einsum` (one contraction box) and `F.linear` /
`torch.addmm` with weights the model holds (one linear box)."""

from __future__ import annotations

from torch import fx

from ncd.circuits.builder import Wire

from .common import _Lazy, _Unmapped
from .tables import imports


class _Contractions:
    """Products over an axis (a mixin of `_Importer`, core.py)."""

    @imports("contract")
    def matmul(self, n, a: Wire, b: Wire):
        if len(a.axes) < 2 or len(b.axes) < 2 or len(a.axes) != len(b.axes):
            raise _Unmapped
        ka, kb = a.axes[-1], b.axes[-2]
        if ka != kb:
            b = self.b.rename(b, {kb: ka}, name=self.box_name(n, "align"))
        m_, n_ = a.axes[-2], b.axes[-1]
        if n_ == m_ or n_ in a.axes[:-2]:
            b = self.b.rename(b, {n_: self.axis("key", self.sizes[n_], avoid=a.axes)},
                              name=self.box_name(n, "keys"))  # fmt: skip
        batch_a, batch_b = a.axes[:-2], b.axes[:-2]
        if batch_a != batch_b:
            b = self.b.rename(b, dict(zip(batch_b, batch_a, strict=True)),
                              name=self.box_name(n, "batch"))  # fmt: skip
        out = [*batch_a, m_, b.axes[-1]]
        return self.b.contract(a, b, over=ka, out=out, name=self.box_name(n))

    def linear_fn(self, n, x, weight, bias, transposed: bool) -> Wire:
        """`F.linear(x, W, b)`, or `torch.addmm(b, x, W)` (HF's GPT-2 `Conv1D`: W stored
        [in, out]), with W and b tensors the model holds: one linear box over x's last axis,
        named after the module holding W, which keeps W as nn.Linear's [out, in]."""
        lw = self.wires.get(weight) if isinstance(weight, fx.Node) else None
        lb = self.wires.get(bias) if isinstance(bias, fx.Node) else None
        if not isinstance(lw, _Lazy) or lw.parent is not None or lw.value.dim() != 2:
            raise _Unmapped
        w = lw.value.t() if transposed else lw.value
        if bias is not None and (
            not isinstance(lb, _Lazy) or lb.parent is not None
            or tuple(lb.value.shape) != (w.shape[0],)
        ):  # fmt: skip
            raise _Unmapped
        x = self.wire(x)
        if self.sizes[x.axes[-1]] != w.shape[1]:
            raise _Unmapped
        out = self.out_axis(n, w.shape[0], x)
        owner = str(weight.target).rpartition(".")[0]
        name = self.box_name(n) if not owner else self._fresh(owner.replace(".", "_"))
        y = self.b.linear(x, x.axes[-1], out, bias=bias is not None, name=name)
        self.weights[name] = {"weight": w, **({"bias": lb.value} if bias is not None else {})}
        self.linear_out[n] = out
        return y

    def einsum(self, n):
        """`torch.einsum("bhqd,bhkd->bhqk", q, k)`: one contraction, each letter one axis (an
        operand's axis renamed where its letter already names another axis); ellipses and a
        letter twice in one operand (diagonals) stay opaque."""
        eq = str(self.const(n.args[0])).replace(" ", "")
        ops = n.args[1:]
        if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
            ops = ops[0]
        lhs, arrow, rhs = eq.partition("->")
        terms = lhs.split(",")
        if "." in eq or len(terms) != len(ops) or not 1 <= len(ops) <= 8:
            raise _Unmapped
        if not arrow:  # implicit output: the letters seen once, in alphabetical order
            rhs = "".join(sorted(c for c in set(lhs) - {","} if lhs.count(c) == 1))
        axis_of: dict[str, str] = {}
        wires = []
        for i, (term, op) in enumerate(zip(terms, ops, strict=True)):
            w = self.wire(op)
            if len(term) != len(w.axes) or len(set(term)) != len(term):
                raise _Unmapped
            rename = {}
            for letter, ax in zip(term, w.axes, strict=True):
                if letter not in axis_of:
                    taken = set(axis_of.values())
                    axis_of[letter] = (
                        ax
                        if ax not in taken
                        else self.fresh(ax, self.sizes[ax], avoid=taken | set(w.axes))
                    )
                if axis_of[letter] != ax:
                    rename[ax] = axis_of[letter]
            if rename:
                w = self.b.rename(w, rename, name=self.box_name(n, f"axes{i}"))
            wires.append(w)
        if set(rhs) - set(axis_of) or len(set(rhs)) != len(rhs):
            raise _Unmapped
        over = [axis_of[c] for c in axis_of if c not in rhs]
        out = [axis_of[c] for c in rhs]
        return self.b.contract(*wires, over=over, out=out, name=self.box_name(n))
