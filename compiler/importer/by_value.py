"""Chains of elementwise ops recognised by their values: a unary function of the vocabulary
written out (GPT-2's GELU, `x * sigmoid(x)`), and a rotary position embedding written out
(`x * cos + rotate_half(x) * sin`, GPT-J's interleaved pairs), each one box."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import fx

from ncd.circuits.builder import Wire

from .. import runtime, tracing
from ..lowerings import UNARY
from .common import _op
from .tables import imports

_BY_VALUE = ("gelu", "gelu_tanh", "silu", "sigmoid", "softplus", "logsigmoid", "elu",
             "hardswish", "relu6", "tanh")  # fmt: skip
"""Unary functions a chain of elementwise ops is recognised as (`unary_by_value`)."""
_TREE_OPS = {"add", "sub", "mul", "div", "pow", "neg", "tanh", "sigmoid", "exp", "log",
             "sqrt", "rsqrt", "reciprocal", "erf", "abs", "square", "softplus"}  # fmt: skip
_TREE_FNS = {torch.erf: "erf", torch.special.erf: "erf", F.softplus: "softplus"}
_TREE_MOST = 32  # ops of one recognised chain


def _tree_op(n) -> str | None:
    if not isinstance(n, fx.Node) or n.op not in ("call_function", "call_method"):
        return None
    op = _TREE_FNS.get(n.target) if n.op == "call_function" else None
    op = op or _op(n)
    return op if op in _TREE_OPS else None


def _elementwise_tree(n: fx.Node, stop: fx.Node | None = None) -> set[fx.Node]:
    """The elementwise ops (of `_TREE_OPS`, with numbers as other operands) that n computes
    from, n included, walking back until `stop` or a node of another kind; empty where one
    has an argument that is neither a node nor a number, or past _TREE_MOST ops."""
    found: set[fx.Node] = set()
    todo = [n]
    while todo:
        m = todo.pop()
        if m in found or m is stop or _tree_op(m) is None:
            continue
        found.add(m)
        if len(found) > _TREE_MOST:
            return set()
        for a in [*m.args, *m.kwargs.values()]:
            if isinstance(a, fx.Node):
                todo.append(a)
            elif isinstance(a, bool) or not isinstance(a, (int, float)):
                return set()
    return found


def _leaves(tree: set[fx.Node]) -> set[fx.Node]:
    """The nodes the ops of `tree` read that are not in it."""
    return {a for m in tree for a in m.all_input_nodes if a not in tree}


def _replay_on(nodes: list[fx.Node], x: fx.Node, grid: torch.Tensor) -> torch.Tensor:
    """The value of the last of `nodes` (in graph order) with x's value replaced by `grid`."""
    env = {x: grid}
    for m in nodes:
        args = fx.node.map_arg(m.args, lambda a: env[a])
        kwargs = fx.node.map_arg(m.kwargs, lambda a: env[a])
        if m.op == "call_method":
            env[m] = getattr(args[0], m.target)(*args[1:], **kwargs)
        else:
            env[m] = m.target(*args, **kwargs)
    return env[nodes[-1]]


class _ByValue:
    """Chains of ops recognised by their values (a mixin of `_Importer`, core.py)."""

    def unary_by_value(self, n: fx.Node) -> tuple[fx.Node, str] | None:
        """(x, name) where node n ends a chain of elementwise ops of one tensor x and numbers
        that computes a function of the vocabulary (`0.5 * x * (1 + tanh(c (x + 0.044715
        x^3)))` is gelu_tanh, `x * sigmoid(x)` silu), recognised by its values on a grid of
        points; else None."""
        inner = _elementwise_tree(n)
        if len(inner) < 2:
            return None
        order = {m: i for i, m in enumerate(self.gm.graph.nodes)}
        best = None
        for x in sorted({*inner, *_leaves(inner)} - {n}, key=order.get):
            region = _elementwise_tree(n, stop=x)
            if (
                len(region) >= 2
                and _leaves(region) == {x}
                and (best is None or len(region) > len(best[1]))
            ):
                best = (x, region)
        if best is None or not isinstance(self.values.get(best[0]), torch.Tensor):
            return None
        x, region = best
        if not self.values[x].is_floating_point() or self.shape(x) != self.shape(n):
            return None
        grid = torch.linspace(-8, 8, 321, dtype=torch.float64)
        try:
            got = _replay_on(sorted(region, key=order.get), x, grid)
        except Exception:
            return None
        for name in _BY_VALUE:
            fn, kw = UNARY[name]
            if torch.allclose(got, fn(grid, **kw), rtol=1e-6, atol=1e-7):
                return x, name
        return None

    @imports("rotary")
    def rotary_by_value(self, n: fx.Node, fn: str, a, b) -> Wire | None:
        """One rotary box where node n computes a rotary position embedding of a tensor x
        written out, `x * cos + rotate_half(x) * sin` (Hugging Face's LLaMA, GPT-NeoX) or with
        GPT-J's interleaved pairs, its cos and sin tables made without reading the inputs
        (buffers, sliced to the length, or built from torch.arange); else None, and the ops
        import one by one. Recognised by values: the positions' dim and the frequencies
        θ_i = base^(−2i/d) are read off the cos table (rows 0, 1, …; which features share a
        frequency tells the pairing), then the ops from x to n run again on a random x and
        must give what the rotary box gives."""
        for m1 in (a, b) if fn == "add" else (a,):
            if not isinstance(m1, fx.Node) or _op(m1) != "mul" or len(m1.args) != 2:
                continue
            for x, c in (m1.args, m1.args[::-1]):
                found = self._rotary_table(x, c)
                if found is None:
                    continue
                seq, feat, candidates, eps = found
                region = self._rotary_region(n, x)
                if region is None or self.values[n].dtype != self.values[x].dtype:
                    return None
                errors = [(self._rotary_error(region, n, x, seq, feat, base, pairs, eps), base,
                           pairs) for base, pairs in candidates]  # fmt: skip
                err, base, pairs = min(errors, key=lambda e: e[0])
                w, units = self.bare(x)
                if err > 1 or units:
                    return None
                return self.b.rotary(w, w.axes[seq], w.axes[feat], base=base, pairs=pairs,
                                     name=self.box_name(n))  # fmt: skip
        return None

    def _rotary_table(self, x, c):
        """(seq dim, feature dim, [(base, pairs), ...] to try, the table's precision (its
        dtype's eps)) where x is a float tensor and c a table the model makes without reading
        its inputs whose values are cos(p·θ_i) at positions p = 0, 1, … along one of x's
        dims, pairs along another (other dims constant); else None."""
        vx, vc = self.values.get(x), self.values.get(c)
        if not (isinstance(vx, torch.Tensor) and isinstance(vc, torch.Tensor)):
            return None
        if not (vx.is_floating_point() and vc.is_floating_point()) or vc.numel() < 4:
            return None
        if vc.dim() > vx.dim() or not isinstance(c, fx.Node):
            return None
        r = vx.dim()
        t = vc.detach().to(torch.float64).reshape((1,) * (r - vc.dim()) + tuple(vc.shape))
        if any(t.shape[d] not in (1, vx.shape[d]) for d in range(r)):
            return None
        for d in range(r):  # dims along which the table is constant: one row of it
            if t.shape[d] > 1 and torch.equal(t, t.narrow(d, 0, 1).expand_as(t)):
                t = t.narrow(d, 0, 1)
        varying = [d for d in range(r) if t.shape[d] > 1]
        if len(varying) != 2:
            return None
        for seq, feat in (varying, varying[::-1]):
            F_, T = t.shape[feat], t.shape[seq]
            if F_ % 2 or T < 2:
                continue
            tab = t.movedim((seq, feat), (0, 1)).reshape(T, F_)
            eps = torch.finfo(vc.dtype).eps
            if (tab[0] - 1).abs().max() > 8 * eps:
                continue  # positions start at 0: cos 0 = 1
            angle = torch.arccos(tab[1].clamp(-1, 1))  # θ of each feature's pair (θ <= 1)
            out = []
            for pairs in ("half", "interleaved"):
                one, twin = ((tab[:, : F_ // 2], tab[:, F_ // 2 :]) if pairs == "half" else
                             (tab[:, 0::2], tab[:, 1::2]))  # fmt: skip
                theta = angle[: F_ // 2] if pairs == "half" else angle[0::2]
                if (one - twin).abs().max() > eps or abs(float(theta[0]) - 1) > max(1e-3, 64 * eps):
                    continue  # the features of a pair share a frequency; pair 0 turns by p
                if F_ == 2:
                    out.append((10000.0, pairs))  # θ_0 = 1 whatever the base
                    continue
                th = float(theta[1])  # refined at the position where its angle nears π/2
                p = int(min(T - 1, max(1, round(math.pi / 2 / max(th, 1e-12)))))
                th = float(torch.arccos(tab[p, 2 if pairs == "interleaved" else 1].clamp(-1, 1)))
                th /= p
                if not 0 < th < 1:
                    continue
                base = th ** (-F_ / 2)  # (and the bases models use: a 16-bit table's
                # estimate is off by a percent or more)
                near = {float(f"{base:.{k}g}") for k in (2, 3, 6)} | {1e4, 5e5, 1e6}
                out += [(b_, pairs) for b_ in sorted(near) if 0.5 < b_ / base < 2]
            if out and not tracing.reads_values(c):  # (last: it walks the graph)
                return seq, feat, out, torch.finfo(vc.dtype).eps
        return None

    def _rotary_region(self, n: fx.Node, x: fx.Node) -> list[fx.Node] | None:
        """The ops from x to n (those of n's inputs that read x), in graph order, where every
        other tensor they read is made without reading the model's inputs; else None."""
        above, todo = set(), [n]
        while todo:
            m = todo.pop()
            if m in above or m is x:
                continue
            above.add(m)
            if len(above) > 64:
                return None
            todo += m.all_input_nodes
        region, reads = [], {x}
        for m in self.gm.graph.nodes:
            if m in above and any(i in reads for i in m.all_input_nodes):
                if m.op not in ("call_function", "call_method"):
                    return None
                region.append(m)
                reads.add(m)
        for m in region:
            for i in m.all_input_nodes:
                if i not in reads and tracing.reads_values(i):
                    return None
        return region if region and region[-1] is n else None

    def _rotary_error(self, region, n, x, seq, feat, base, pairs, eps) -> float:
        """How far the ops of `region` run on a random x are from runtime.rotary's result, in
        units of the precision of a table of that type (eps) at the positions there are: 1 or
        less where they agree; inf where they cannot run."""
        vx = self.values[x]
        gen = torch.Generator().manual_seed(0)
        probe = torch.randn(tuple(vx.shape), generator=gen, dtype=torch.float64)
        env: dict = {x: probe}

        def arg(v):
            return env[v] if v in env else self.values[v]

        if any(m.op == "call_method" and str(m.target).endswith("_") for m in region):
            return math.inf  # (in place: it could change a held tensor it is run on)
        try:
            for m in region:
                args = fx.node.map_arg(m.args, arg)
                kwargs = fx.node.map_arg(m.kwargs, arg)
                if m.op == "call_method":
                    env[m] = getattr(args[0], m.target)(*args[1:], **kwargs)
                else:
                    env[m] = m.target(*args, **kwargs)
            got = env[n]
            want = runtime.rotary(probe, seq, feat, base, interleaved=pairs == "interleaved")
        except Exception:
            return math.inf
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            return math.inf
        # the model's table rounded to its dtype (the probe's rotation is float64 throughout),
        # and its angles p·θ, off by p·θ·2^-24 at most in float32 (Hugging Face's), p·θ·2^-53
        # in float64
        angle_eps = 2.0**-50 if vx.dtype == torch.float64 else 2.0**-22
        tol = 4 * (eps + vx.shape[seq] * angle_eps) * float(probe.abs().max())
        return float((got.to(torch.float64) - want).abs().max()) / tol
