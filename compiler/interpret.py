"""The interpreter: runs a checked circuit box by box with plain PyTorch, by axis names.

It is the reference the compiler is checked against, so it shares no code with the lowering:
every value is a tensor with its axis names, operands are aligned by name, contractions are
products summed over named axes, recurrences are loops. Slow and plain on purpose.

Parameters come in a state_dict keyed as the compiled module's (`q_proj.weight`,
`blocks.0.ff_up.bias`), so `interpret(c, xs, compiled.state_dict())` runs the same model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ncd.circuits.circuit import Circuit
from ncd.circuits.kinds.registry import Registry
from ncd.circuits.sizes import parse_size
from ncd.circuits.types import TensorType
from ncd.circuits.validate import Checked, check

from .errors import CompileError
from .names import scope_names
from .passes import live_boxes

INTERPRETERS = Registry("interpreter rule", "compiler/interpret.py", "@interprets")
interprets = INTERPRETERS.register


@dataclass
class NT:
    """A tensor and the names of its axes, in order."""

    t: torch.Tensor
    names: tuple[str, ...]

    def dim(self, name: str) -> int:
        return self.names.index(name)

    def to(self, names) -> torch.Tensor:
        """The tensor laid out over `names` (a superset of its own): permuted, size-1 axes
        where it has none."""
        names = list(names)
        mine = [a for a in names if a in self.names]
        t = self.t.permute([self.names.index(a) for a in mine]) if self.names else self.t
        shape = [t.shape[mine.index(a)] if a in mine else 1 for a in names]
        return t.reshape(shape)


def interpret(
    circuit: Circuit | Checked,
    inputs,
    params: dict[str, torch.Tensor],
    sizes: dict[str, int] | None = None,
    *,
    training: bool = False,
    opaque: dict | None = None,
):
    """Run `circuit` on `inputs` (a list in input order, or a dict by name).

    Returns the output tensor, or a dict by output name when there are several (as compiled
    modules do). Batch-norm running statistics in `params` are updated in training mode.
    """
    c = circuit if isinstance(circuit, Checked) else check(circuit, sizes, require_bound=True)
    if not isinstance(inputs, dict):
        inputs = {i.name: x for i, x in zip(c.circuit.inputs, inputs, strict=True)}
    out = _Run(c, params, "", training, opaque or {}).run(inputs)
    return next(iter(out.values())) if len(out) == 1 else out


class _Run:
    def __init__(self, c: Checked, params, prefix, training, opaque):
        self.c, self.params, self.prefix = c, params, prefix
        self.training, self.opaque = training, opaque
        _, self.idents = scope_names(c.circuit, c.order)

    def p(self, box: str, name: str) -> torch.Tensor:
        key = f"{self.prefix}{self.idents[box]}.{name}"
        if key not in self.params:
            raise CompileError(f"box '{box}'", "parameter missing", key, "no such key")
        return self.params[key]

    def num(self, expr):
        return self.c.number(expr)

    def run(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.c
        self.inputs = inputs
        env: dict[tuple[str, str], object] = {}
        for name, t in c.inputs.items():
            env[("", name)] = NT(inputs[name], t.names)
        live = live_boxes(c)  # dead boxes have no parameters in a compiled module
        for name in c.order:
            if name not in live:
                continue
            b = c.box(name)
            ins = {p: env[src] for p, src in c.sources[name].items()}
            rule = INTERPRETERS.get(b.kind)
            if rule is None:
                raise CompileError(
                    f"box '{name}'", "no interpreter rule for this kind", "a rule", b.kind
                )
            outs = rule(self, b, ins, c.ins[name], c.outs[name])
            for port, v in outs.items():
                want = c.outs[name][port]
                if isinstance(want, TensorType) and tuple(v.names) != want.names:
                    raise CompileError(
                        f"box '{name}'", "interpreter layout", want.names, v.names
                    )  # a bug here, not in the circuit
                env[(name, port)] = v
        return {o: _plain(env[src]) for o, src in c.output_sources.items()}

    # -- learned
    @interprets("linear")
    def k_linear(self, b, x, tin, tout):
        x = x["x"]
        out = [self.num(tout["out"].axis(a).size) for a in b.out]
        over = [x.t.shape[x.dim(a)] for a in b.over]
        w = self._matrix(b, "weight", (math.prod(out), math.prod(over))).reshape(*out, *over)
        if b.product != "exact":
            return {"out": _lmul_linear_by_names(self, b, x, w, tout["out"])}
        n_out = len(b.out)
        y = torch.tensordot(
            x.t, w, dims=([x.dim(a) for a in b.over], [n_out + i for i in range(len(b.over))])
        )
        names = tuple(a for a in x.names if a not in b.over) + tuple(b.out)
        if b.bias:
            y = y + self._matrix(b, "bias", (math.prod(out),)).reshape(out)
        return {"out": _as(NT(y, names), tout["out"])}

    def _matrix(self, b, name, shape) -> torch.Tensor:
        """A linear map's parameter as nn.Linear holds it: weight [prod(out), prod(over)],
        bias [prod(out)]."""
        t = self.p(b.name, name)
        if tuple(t.shape) != tuple(shape):
            raise CompileError(
                f"box '{b.name}'",
                f"parameter {self.prefix}{self.idents[b.name]}.{name} has the wrong shape",
                f"nn.Linear's {list(shape)}",
                str(list(t.shape)),
            )
        return t

    @interprets("param")
    def k_param(self, b, x, tin, tout):
        return {"out": NT(self.p(b.name, "weight"), tout["out"].names)}

    @interprets("embedding")
    def k_embedding(self, b, x, tin, tout):
        w = self.p(b.name, "weight")
        return {"out": NT(w[x["x"].t], tout["out"].names)}

    # -- contraction
    @interprets("contract")
    def k_contract(self, b, x, tin, tout):
        ops = [x[p] for p in b.operands]
        union = []
        for o in ops:
            union += [a for a in o.names if a not in union]
        prod = ops[0].to(union)
        for o in ops[1:]:
            prod = prod * o.to(union)
        keep = [a for a in union if a not in b.over]
        y = prod.sum([union.index(a) for a in b.over]) if b.over else prod
        return {"out": _as(NT(y, tuple(keep)), tout["out"])}

    @interprets("diagonal")
    def k_diagonal(self, b, x, tin, tout):
        x = x["x"]
        y = torch.diagonal(x.t, 0, x.dim(b.axes[0]), x.dim(b.axes[1]))
        names = tuple(a for a in x.names if a not in b.axes) + (b.into,)
        return {"out": _as(NT(y, names), tout["out"])}

    # -- elementwise
    @interprets("unary")
    def k_unary(self, b, x, tin, tout):
        t = x["x"].t
        f = {
            "relu": lambda t: t.clamp(min=0),
            "gelu": lambda t: 0.5 * t * (1 + torch.erf(t / math.sqrt(2))),
            "gelu_tanh": lambda t: (
                0.5 * t * (1 + torch.tanh(math.sqrt(2 / math.pi) * (t + 0.044715 * t**3)))
            ),
            "silu": lambda t: t / (1 + torch.exp(-t)),
            "sigmoid": lambda t: 1 / (1 + torch.exp(-t)),
            "tanh": torch.tanh,
            "exp": torch.exp,
            "log": torch.log,
            "neg": lambda t: -t,
            "abs": torch.abs,
            "sqrt": torch.sqrt,
            "rsqrt": lambda t: 1 / torch.sqrt(t),
            "square": lambda t: t * t,
            "reciprocal": lambda t: 1 / t,
            "softplus": lambda t: torch.where(t > 20, t, torch.log1p(torch.exp(t.clamp(max=20)))),
            "elu": lambda t: torch.where(t > 0, t, torch.expm1(t.clamp(max=0))),
            "sin": torch.sin,
            "cos": torch.cos,
            "identity": lambda t: t,
            "logsigmoid": lambda t: -torch.log1p(torch.exp(-t)),
            "sign": torch.sign,
            "elu_plus_one": lambda t: torch.where(t > 0, t + 1, torch.exp(t.clamp(max=0))),
            "relu6": lambda t: t.clamp(0, 6),
            "hardswish": lambda t: t * (t + 3).clamp(0, 6) / 6,
            "round": _round_half_even,
            "floor": _floor,
        }[b.fn]
        return {"out": NT(f(t), x["x"].names)}

    @interprets("binary")
    def k_binary(self, b, x, tin, tout):
        names = tout["out"].names
        a, c = x["a"].to(names), x["b"].to(names)
        f = {
            "add": lambda a, c: a + c,
            "sub": lambda a, c: a - c,
            "mul": lambda a, c: a * c,
            "div": lambda a, c: a / c,
            "maximum": torch.maximum,
            "minimum": torch.minimum,
            "pow": lambda a, c: a**c,
            "ge": lambda a, c: (a >= c).to(torch.promote_types(a.dtype, c.dtype)),
            "gt": lambda a, c: (a > c).to(torch.promote_types(a.dtype, c.dtype)),
            "le": lambda a, c: (a <= c).to(torch.promote_types(a.dtype, c.dtype)),
            "lt": lambda a, c: (a < c).to(torch.promote_types(a.dtype, c.dtype)),
            "eq": lambda a, c: (a == c).to(torch.promote_types(a.dtype, c.dtype)),
            "shift_left": _shift_left,
            "shift_right": _shift_right,
            "floordiv": lambda a, c: torch.div(a, c, rounding_mode="floor"),
        }[b.fn]
        return {"out": NT(f(a, c), names)}

    @interprets("scale")
    def k_scale(self, b, x, tin, tout):
        return {"out": NT(x["x"].t * self.num(parse_size(b.factor)), x["x"].names)}

    @interprets("cast")
    def k_cast(self, b, x, tin, tout):
        if b.bits:  # the same bytes read as the new type
            t = x["x"].t.contiguous().view(torch.uint8).view(getattr(torch, b.dtype))
            return {"out": NT(t, x["x"].names)}
        return {"out": NT(x["x"].t.to(getattr(torch, b.dtype)), x["x"].names)}

    @interprets("dropout")
    def k_dropout(self, b, x, tin, tout):
        t = x["x"].t
        if self.training and b.p > 0:
            t = t * (torch.rand_like(t) >= b.p) / (1 - b.p)
        return {"out": NT(t, x["x"].names)}

    @interprets("mask")
    def k_mask(self, b, x, tin, tout):
        x = x["x"]
        i = torch.arange(x.t.shape[x.dim(b.query)])
        j = torch.arange(x.t.shape[x.dim(b.key)])
        keep = j[None, :] <= i[:, None]
        if b.pattern == "window":
            keep = keep & (j[None, :] > i[:, None] - b.window)
        keep = NT(keep, (b.query, b.key)).to(x.names)
        fill = float("-inf") if b.fill == "-inf" else 0.0
        return {"out": NT(torch.where(keep, x.t, torch.full_like(x.t, fill)), x.names)}

    # -- normalisation
    @interprets("softmax")
    def k_softmax(self, b, x, tin, tout):
        x = x["x"]
        d = x.dim(b.over)
        t = -x.t if b.variant == "softmin" else x.t
        z = t - t.amax(d, keepdim=True)
        if b.variant == "log_softmax":
            y = z - torch.log(torch.exp(z).sum(d, keepdim=True))
        else:
            e = torch.exp(z)
            y = e / e.sum(d, keepdim=True)
        return {"out": NT(y, x.names)}

    def _affine(self, b, y, names, over, shift=True):
        if getattr(b, "affine", False):
            y = y * NT(self.p(b.name, "weight"), tuple(over)).to(names)
            if shift:
                y = y + NT(self.p(b.name, "bias"), tuple(over)).to(names)
        return y

    @interprets("layernorm")
    def k_layernorm(self, b, x, tin, tout):
        x = x["x"]
        dims = [x.dim(a) for a in b.over]
        mu = x.t.mean(dims, keepdim=True)
        var = ((x.t - mu) ** 2).mean(dims, keepdim=True)
        y = (x.t - mu) / torch.sqrt(var + b.eps)
        return {"out": NT(self._affine(b, y, x.names, b.over), x.names)}

    @interprets("rmsnorm")
    def k_rmsnorm(self, b, x, tin, tout):
        x = x["x"]
        dims = [x.dim(a) for a in b.over]
        y = x.t / torch.sqrt((x.t**2).mean(dims, keepdim=True) + b.eps)
        return {"out": NT(self._affine(b, y, x.names, b.over, shift=False), x.names)}

    def _channel_stats(self, x, channel):
        dims = [i for i, a in enumerate(x.names) if a != channel]
        mu = x.t.mean(dims)
        var = ((x.t - NT(mu, (channel,)).to(x.names)) ** 2).mean(dims)
        n = x.t.numel() // x.t.shape[x.dim(channel)]
        return mu, var, n

    @interprets("batchnorm")
    def k_batchnorm(self, b, x, tin, tout):
        x = x["x"]
        rm, rv = self.p(b.name, "running_mean"), self.p(b.name, "running_var")
        if self.training:
            mu, var, n = self._channel_stats(x, b.channel)
            with torch.no_grad():
                rm.mul_(1 - b.momentum).add_(b.momentum * mu)
                rv.mul_(1 - b.momentum).add_(b.momentum * var * n / max(n - 1, 1))
        else:
            mu, var = rm, rv
        y = (x.t - NT(mu, (b.channel,)).to(x.names)) / torch.sqrt(
            NT(var, (b.channel,)).to(x.names) + b.eps
        )
        return {"out": NT(self._affine(b, y, x.names, (b.channel,)), x.names)}

    @interprets("unifiednorm")
    def k_unifiednorm(self, b, x, tin, tout):
        x = x["x"]
        per_channel = [1] * x.t.dim()
        per_channel[x.dim(b.channel)] = -1
        if not self.training:
            rv = self.p(b.name, "running_var").reshape(per_channel)
            y = x.t / torch.sqrt(rv + b.eps)
            return {"out": NT(self._affine(b, y, x.names, (b.channel,)), x.names)}
        state = {k: self.p(b.name, k) for k in _UN_STATE}
        w = self.p(b.name, "weight").reshape(per_channel) if b.affine else None
        bias = self.p(b.name, "bias").reshape(per_channel) if b.affine else None
        y = _UnifiedNormStep.apply(x.t, w, bias, b, state, x.dim(b.channel))
        return {"out": NT(y, x.names)}

    @interprets("groupnorm")
    def k_groupnorm(self, b, x, tin, tout):
        x = x["x"]
        c = x.t.shape[x.dim(b.channel)]
        split = ("_g", "_cg")
        names = []
        for a in x.names:
            names += list(split) if a == b.channel else [a]
        g = int(self.num(b.n_groups()))
        t = x.t.unflatten(x.dim(b.channel), (g, c // g))
        dims = [names.index(a) for a in ("_cg", *b.over)]
        mu = t.mean(dims, keepdim=True)
        var = ((t - mu) ** 2).mean(dims, keepdim=True)
        y = ((t - mu) / torch.sqrt(var + b.eps)).flatten(names.index("_g"), names.index("_cg"))
        return {"out": NT(self._affine(b, y, x.names, (b.channel,)), x.names)}

    @interprets("normalize")
    def k_normalize(self, b, x, tin, tout):
        x = x["x"]
        d = x.dim(b.over)
        norm = x.t.abs().sum(d, keepdim=True) if b.p == 1 else (x.t**2).sum(d, keepdim=True)
        norm = norm if b.p == 1 else torch.sqrt(norm)
        return {"out": NT(x.t / norm.clamp(min=b.eps), x.names)}

    # -- reductions
    @interprets("reduce")
    def k_reduce(self, b, x, tin, tout):
        x = x["x"]
        dims = [x.dim(a) for a in b.over]
        t = x.t
        if b.op == "logsumexp":
            m = t.amax(dims, keepdim=True)
            t = (torch.log(torch.exp(t - m).sum(dims, keepdim=True)) + m).squeeze(dims)
        else:
            for d in sorted(dims, reverse=True):
                if b.op in ("max", "min"):
                    t = getattr(t, b.op)(d).values
                else:
                    t = getattr(t, b.op)(d)
        if tout["out"].dtype.startswith("int"):  # the type's width, not torch's int64 sum
            t = t.to(getattr(torch, tout["out"].dtype))
        return {"out": NT(t, tout["out"].names)}

    @interprets("scan")
    def k_scan(self, b, x, tin, tout):
        x = x["x"]
        d = x.dim(b.over)
        pieces = list(x.t.unbind(d))
        if b.reverse:
            pieces = pieces[::-1]
        acc, out = None, []
        for p in pieces:
            if acc is None:
                acc = p
            elif b.op == "sum":
                acc = acc + p
            elif b.op == "prod":
                acc = acc * p
            else:
                acc = torch.maximum(acc, p)
            out.append(acc)
        if b.reverse:
            out = out[::-1]
        return {"out": NT(torch.stack(out, d), x.names)}

    @interprets("topk")
    def k_topk(self, b, x, tin, tout):
        x = x["x"]
        vals, idx = torch.sort(x.t, dim=x.dim(b.over), descending=True, stable=True)
        sl = [slice(None)] * x.t.dim()
        sl[x.dim(b.over)] = slice(0, int(self.num(b.n_kept())))
        names = tout["values"].names
        return {"values": NT(vals[tuple(sl)], names), "indices": NT(idx[tuple(sl)], names)}

    # -- rearrangements
    @interprets("split_axis")
    def k_split_axis(self, b, x, tin, tout):
        x = x["x"]
        sizes = [self.num(tout["out"].axis(a).size) for a in b.into]
        shape = list(x.t.shape)
        d = x.dim(b.axis)
        shape[d : d + 1] = sizes
        return {"out": NT(x.t.reshape(shape), tout["out"].names)}

    @interprets("merge_axes")
    def k_merge_axes(self, b, x, tin, tout):
        x = x["x"]
        out = tout["out"].names
        full = []
        for a in out:
            full += list(b.axes) if a == b.into else [a]
        t = x.t.permute([x.dim(a) for a in full])
        return {"out": NT(t.reshape([self.num(a.size) for a in tout["out"].axes]), out)}

    @interprets("permute")
    def k_permute(self, b, x, tin, tout):
        x = x["x"]
        return {"out": NT(x.t.permute([x.dim(a) for a in b.order]), tuple(b.order))}

    @interprets("rename")
    def k_rename(self, b, x, tin, tout):
        return {"out": NT(x["x"].t, tuple(b.mapping.get(a, a) for a in x["x"].names))}

    @interprets("copy")
    def k_copy(self, b, x, tin, tout):
        return {p: x["x"] for p in tout}

    @interprets("pack")
    def k_pack(self, b, x, tin, tout):
        return {"out": tuple(x[n] for n in b.items)}

    @interprets("unpack")
    def k_unpack(self, b, x, tin, tout):
        return {n: v for (n, _), v in zip(tin["x"].items, x["x"], strict=True)}

    @interprets("concat")
    def k_concat(self, b, x, tin, tout):
        # an operand without the axis: one position along it; without another: repeated
        names = tout["out"].names
        shape = [1 if a.name == b.axis else self.num(a.size) for a in tout["out"].axes]
        ops = [NT(x[p].t, tuple(b.axis if a == b.along.get(p) else a for a in x[p].names))
               for p in b.operands]  # fmt: skip
        ops = [t.to(names) for t in ops]
        ops = [t.expand([-1 if s_ == 1 else s_ for s_ in shape]) for t in ops]
        return {"out": NT(torch.cat(ops, names.index(b.axis)), names)}

    @interprets("split")
    def k_split(self, b, x, tin, tout):
        x = x["x"]
        out, start = {}, 0
        for port, t in tout.items():
            n = self.num(t.axis(b.axis).size)
            out[port] = NT(x.t.narrow(x.dim(b.axis), start, n), x.names)
            start += n
        return out

    @interprets("index")
    def k_index(self, b, x, tin, tout):
        x = x["x"]
        t = x.t.movedim(x.dim(b.axis), 0)[b.index]
        return {"out": NT(t, tuple(a for a in x.names if a != b.axis))}

    @interprets("slice")
    def k_slice(self, b, x, tin, tout):
        x = x["x"]
        n = x.t.shape[x.dim(b.axis)]
        stop = n if b.stop is None else self.num(parse_size(b.stop))
        idx = torch.arange(b.start, stop, b.step)
        return {"out": NT(x.t.index_select(x.dim(b.axis), idx), x.names)}

    # -- spatial: PyTorch's functional ops, on channels-first layouts built by name
    def _nchw(self, x, channel, spatial):
        rest = [a for a in x.names if a != channel and a not in spatial]
        t = x.to([*rest, channel, *spatial])
        return t.reshape(-1, *t.shape[len(rest) :]), rest, [x.t.shape[x.dim(a)] for a in rest]

    @interprets("conv")
    def k_conv(self, b, x, tin, tout):
        x = x["x"]
        t, rest, rs = self._nchw(x, b.channel, b.spatial)
        w = self.p(b.name, "weight")
        bias = self.p(b.name, "bias") if b.bias else None
        n = len(b.spatial)
        k, s, p, d, op = (
            tuple(b._norm(f)) for f in ("kernel", "stride", "padding", "dilation", "output_padding")
        )
        groups = self.num(b.n_groups(tin["x"].axis(b.channel).size))
        if b.transposed:
            fn = getattr(F, f"conv_transpose{n}d")
            y = fn(t, w, bias, s, p, op, groups, d)
        else:
            y = getattr(F, f"conv{n}d")(t, w, bias, s, p, d, groups)
        y = NT(y.reshape(*rs, *y.shape[1:]), (*rest, b.out, *b.spatial))
        return {"out": _as(y, tout["out"])}

    @interprets("short_conv")
    def k_short_conv(self, b, x, tin, tout):
        """Σ_j w[c, j] x[t - kernel + 1 + j] (+ bias) over zero-padded positions before the
        first (packed: before the first of t's sequence), then x σ(x) for SiLU."""
        offsets = x.get("offsets")
        x = x["x"]
        t, rest, rs = self._nchw(x, b.channel, [b.axis])  # [N, C, T]
        w = self.p(b.name, "weight")[:, 0]  # [C, kernel]
        T, W = t.shape[-1], b.kernel
        padded = torch.cat([t.new_zeros((*t.shape[:-1], W - 1)), t], dim=-1)
        keep = torch.ones(W, T, dtype=torch.bool)  # tap j at position p reads p - (W - 1 - j)
        if b.packed:  # ... only from p's own sequence
            pos = torch.arange(T)
            off = offsets.t.to(torch.int64)
            start = off[(torch.searchsorted(off, pos, right=True) - 1).clamp(min=0)]
            keep = torch.stack([pos - (W - 1 - j) >= start for j in range(W)])
        y = sum(padded[..., j : j + T] * w[:, j, None] * keep[j] for j in range(W))
        if b.bias:
            y = y + self.p(b.name, "bias")[:, None]
        if b.activation == "silu":
            y = y / (1 + torch.exp(-y))
        y = NT(y.reshape(*rs, *y.shape[1:]), (*rest, b.channel, b.axis))
        return {"out": _as(y, tout["out"])}

    @interprets("pool")
    def k_pool(self, b, x, tin, tout):
        x = x["x"]
        rest = [a for a in x.names if a not in b.spatial]
        t = x.to([*rest, *b.spatial])
        rs = t.shape[: len(rest)]
        t = t.reshape(-1, 1, *t.shape[len(rest) :])
        w = tuple(b._norm("window"))
        s = tuple(b._norm("stride")) if b.stride else w
        p = tuple(b._norm("padding"))
        fn = getattr(F, f"{b.op}_pool{len(b.spatial)}d")
        y = fn(t, w, s, p)
        y = NT(y.reshape(*rs, *y.shape[2:]), (*rest, *b.spatial))
        return {"out": _as(y, tout["out"])}

    @interprets("upsample")
    def k_upsample(self, b, x, tin, tout):
        x = x["x"]
        t = x.t
        for a in b.spatial:  # nearest: repeat; linear: PyTorch's interpolation per axis set
            if b.mode == "nearest":
                t = t.repeat_interleave(b.factor, dim=x.dim(a))
        if b.mode == "linear":
            rest = [a for a in x.names if a not in b.spatial]
            u = x.to([*rest, *b.spatial])
            rs = u.shape[: len(rest)]
            u = u.reshape(-1, 1, *u.shape[len(rest) :])
            mode = ("linear", "bilinear", "trilinear")[len(b.spatial) - 1]
            u = F.interpolate(u, scale_factor=b.factor, mode=mode, align_corners=False)
            return {"out": _as(NT(u.reshape(*rs, *u.shape[2:]), (*rest, *b.spatial)), tout["out"])}
        return {"out": NT(t, x.names)}

    # -- fused boxes, written out
    def _scale_of(self, b, default):
        return default if b.scale is None else self.num(parse_size(b.scale))

    @interprets("attention")
    def k_attention(self, b, x, tin, tout):
        q, k, v = x["q"], x["k"], x["v"]
        if b.kv_heads is not None:  # each key/value head repeated for its group of queries
            group = q.t.shape[q.dim(b.heads)] // k.t.shape[k.dim(b.kv_heads)]
            k, v = (
                NT(t.t.repeat_interleave(group, t.dim(b.kv_heads)),
                   tuple(b.heads if a == b.kv_heads else a for a in t.names))
                for t in (k, v)
            )  # fmt: skip
        batch = [a for a in q.names if a not in (b.query, b.key, b.head, b.value)]
        kq = q.t.shape[q.dim(b.head)]
        scale = self._scale_of(b, kq**-0.5)
        s_names = [*batch, b.query, b.key]
        s = (q.to([*batch, b.query, "_k", b.head]) * k.to([*batch, "_q", b.key, b.head])).sum(-1)
        s = s * scale
        if b.masked:  # laid out over the scores' axes by name, size 1 along the others
            m = x["mask"].to(s_names)
            s = s.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else s + m.to(s.dtype)
        if b.causal:
            s = self.k_mask(_Mask(b.query, b.key), {"x": NT(s, tuple(s_names))}, None, None)
            s = s["out"].t
        # a query left no key attends to nothing: 0, where the softmax would give 0/0
        alive = s.amax(-1, keepdim=True) > float("-inf")
        p = torch.softmax(s.masked_fill(~alive, 0.0), -1) * alive
        o = (p[..., None] * v.to([*batch, "_q", b.key, b.value])).sum(-2)
        return {"out": _as(NT(o, (*batch, b.query, b.value)), tout["out"])}

    @interprets("linear_attention")
    def k_linear_attention(self, b, x, tin, tout):
        q, k, v = x["q"], x["k"], x["v"]
        if b.heads is not None:  # grouped: value head h reads query/key group h // (H/G)
            n = v.t.shape[v.dim(b.heads)]
            if b.qk_heads is None:  # one group: a unit group axis
                q, k = (NT(t.t[..., None], (*t.names, "(group)")) for t in (q, k))
            g_ax = b.qk_heads or "(group)"  # (not an axis name)
            q, k = (
                NT(t.t.repeat_interleave(n // t.t.shape[t.dim(g_ax)], t.dim(g_ax)),
                   tuple(b.heads if a == g_ax else a for a in t.names))
                for t in (q, k)
            )  # fmt: skip
        batch = [a for a in q.names if a not in (b.query, b.key, b.head, b.value, b.heads)]
        batch += [b.heads] if b.heads is not None else []  # the heads last (lightning's)
        out_dtype = torch.promote_types(q.t.dtype, v.t.dtype)
        ct = torch.promote_types(out_dtype, torch.float32)  # the recurrence in float32 at least
        scale = self._scale_of(b, 1.0)
        qt = q.to([*batch, b.query, b.head]).to(ct) * scale
        kt = k.to([*batch, b.key, b.head]).to(ct)
        vt = v.to([*batch, b.key, b.value]).to(ct)
        T = qt.shape[-2]
        if b.packed and not b.causal:  # every pair of tokens in one window
            bounds = x["offsets"].t.tolist()[1:-1]
            window = torch.tensor([sum(t >= e for e in bounds) for t in range(T)])
            same = (window[:, None] == window[None, :]).to(ct)
            a = (qt[..., :, None, :] * kt[..., None, :, :]).sum(-1) * same  # [..., T, S]
            o = (a[..., None] * vt[..., None, :, :]).sum(-2)
            if b.normalize:
                o = o / (a.sum(-1, keepdim=True) + 1e-10)
            return {"out": _as(NT(o.to(out_dtype), (*batch, b.query, b.value)), tout["out"])}
        if not b.causal:
            kv = (kt[..., :, None] * vt[..., None, :]).sum(-3)
            o = (qt[..., :, :, None] * kv[..., None, :, :]).sum(-2)
            if b.normalize:
                o = o / (qt * kt.sum(-2, keepdim=True)).sum(-1, keepdim=True)
            o = o.to(out_dtype)
            return {"out": _as(NT(o, (*batch, b.query, b.value)), tout["out"])}
        state = torch.zeros(*qt.shape[:-2], qt.shape[-1], vt.shape[-1], dtype=ct)
        z = torch.zeros(*qt.shape[:-2], qt.shape[-1], dtype=ct)
        decay = None
        if b.variant == "lightning":
            heads = qt.shape[len(batch) - 1] if batch else 1
            rate = 1.0 if b.decay_scale is None else float(self.num(parse_size(b.decay_scale)))
            decay = torch.tensor(b.lightning_decay(heads, rate), dtype=ct)[:, None, None]
        # gates by axis names: [*batch, T] (a constant one broadcast), gla's [*batch, T, K]
        tokens = [*batch, b.key]
        g = None
        if b.variant == "gla":
            g = x["g"].to([*tokens, b.head]).to(ct)
        elif "g" in x:
            g = x["g"].to(tokens).to(ct).expand(qt.shape[:-1])
        beta = x["beta"].to(tokens).to(ct) if "beta" in x else None
        starts = set(x["offsets"].t.tolist()[:-1]) if b.packed else set()
        outs = []
        for t in range(T):
            if t in starts:  # a packed sequence begins: its own zero state
                state, z = torch.zeros_like(state), torch.zeros_like(z)
            kk, vv = kt[..., t, :], vt[..., t, :]
            if decay is not None:
                state, z = state * decay, z * decay[..., 0]
            if b.variant == "gla":
                state = state * torch.exp(g[..., t, :])[..., None]
            elif g is not None:
                state = state * torch.exp(g[..., t])[..., None, None]
            if beta is not None:  # the delta rules: write beta (v - k S) at k
                err = vv - (kk[..., :, None] * state).sum(-2)
                state = state + beta[..., t, None, None] * kk[..., :, None] * err[..., None, :]
            else:
                state = state + kk[..., :, None] * vv[..., None, :]
                z = z + kk
            o = (qt[..., t, :, None] * state).sum(-2)
            if b.normalize:  # a row whose denominator is 0 reads 0, as ncd.ops.linear_attention
                den = (qt[..., t, :] * z).sum(-1, keepdim=True)
                o = torch.where(den == 0, 0.0, o / torch.where(den == 0, 1.0, den + 1e-10))
            outs.append(o)
        o = torch.stack(outs, -2).to(out_dtype)
        return {"out": _as(NT(o, (*batch, b.query, b.value)), tout["out"])}

    # -- structure
    @interprets("call")
    def k_call(self, b, x, tin, tout):
        sub = self.c.calls[b.name]
        n = int(self.num(parse_size(b.repeat)))
        ident = self.idents[b.name]
        vals = {p: _plain(v) for p, v in x.items()}
        ins_names = [i.name for i in sub.circuit.inputs]
        for i in range(n):
            pre = f"{self.prefix}{ident}." + (f"{i}." if n > 1 else "")
            outs = _Run(sub, self.params, pre, self.training, self.opaque).run(vals)
            if len(outs) == 1 and len(ins_names) == 1:
                vals = {ins_names[0]: next(iter(outs.values()))}
            else:
                vals = {**vals, **{o: t for o, t in outs.items() if o in vals}}
        return {o: NT(t, tout[o].names) for o, t in outs.items()}

    @interprets("opaque")
    def k_opaque(self, b, x, tin, tout):
        fn = self.opaque.get(b.name)
        if fn is None:
            raise CompileError(f"box '{b.name}'", "opaque box has no callable", "a callable")
        r = fn(*[_plain(x[p]) for p in b.in_ports])
        ports = list(b.outputs)
        rs = [r] if len(ports) == 1 else list(r)
        return {p: NT(t, tout[p].names) for p, t in zip(ports, rs, strict=True)}


@dataclass
class _Mask:
    query: str
    key: str
    pattern: str = "causal"
    window: int = 0
    fill: str = "-inf"


def _as(v: NT, want: TensorType) -> NT:
    """v permuted to the axis order the validator gave the port."""
    return NT(v.t.permute([v.names.index(a) for a in want.names]), want.names)


def _plain(v):
    if isinstance(v, NT):
        return v.t
    if isinstance(v, tuple):
        return tuple(_plain(i) for i in v)
    return v


_UN_STATE = ("running_var", "running_gz", "window_var", "window_gz", "steps", "skips")


class _UnifiedNormStep(torch.autograd.Function):
    """One training step of Unified Normalization with the channel axis at `ch` in place:
    statistics are means over every other axis, the state is updated in place."""

    @staticmethod
    def forward(ctx, x, w, bias, b, state, ch):
        others = [d for d in range(x.dim()) if d != ch]
        shape = [-1 if d == ch else 1 for d in range(x.dim())]
        state["steps"] += 1
        step, m = int(state["steps"]), b.window
        slot = step % m
        hist = state["window_var"]
        sqrt_spread = torch.var(torch.sqrt(hist))
        batch = (x * x).mean(others)
        hist[slot] = batch
        skipped = m == 1
        if b.outlier and step >= b.warmup:
            arith = hist.sum(0) / m
            geo = torch.exp(torch.log(hist).sum(0) / m)
            if torch.any(arith - geo > m * sqrt_spread):
                hist[slot] = state["running_var"]
                state["skips"] += 1
                skipped = True
        if skipped or step <= m or step < b.warmup:
            stat = batch
        else:
            stat = torch.exp(torch.log(hist).sum(0) / m)
        if skipped or step <= max(b.compensate_after, b.warmup):
            ratio = torch.ones_like(stat)
        else:
            ratio = torch.sqrt((stat + b.eps) / (state["running_var"] + b.eps))
            ratio = torch.clamp(ratio, 1 / 5, 5)
        state["running_var"].copy_((1 - b.momentum) * state["running_var"] + b.momentum * stat)
        z = x / torch.sqrt(stat + b.eps).reshape(shape)
        ctx.info = (b, state, ch, slot, skipped, step)
        ctx.save_for_backward(z, stat, ratio, w)
        return z if w is None else w * z + bias

    @staticmethod
    def backward(ctx, dy):
        b, state, ch, slot, skipped, step = ctx.info
        z, stat, ratio, w = ctx.saved_tensors
        others = [d for d in range(dy.dim()) if d != ch]
        shape = [-1 if d == ch else 1 for d in range(dy.dim())]
        g = dy * ratio.reshape(shape) * (1 if w is None else w)
        gz = (g * z).mean(others)
        state["window_gz"][slot] = state["running_gz"] if skipped else gz
        own = skipped or step <= b.window or step < b.warmup
        smoothed = gz if own else state["window_gz"].sum(0) / b.window
        state["running_gz"].copy_((1 - b.momentum) * state["running_gz"] + b.momentum * smoothed)
        sub = smoothed if skipped else state["running_gz"]
        dx = (g - sub.reshape(shape) * z) / torch.sqrt(stat + b.eps).reshape(shape)
        if w is None:
            return dx, None, None, None, None, None
        dw = (dy * ratio.reshape(shape) * z).sum(others, keepdim=True)
        return dx, dw, dy.sum(others, keepdim=True), None, None, None


def _lmul_linear_by_names(run, b, x: NT, w: torch.Tensor, want: TensorType) -> NT:
    """`linear` with L-Mul products: every product x[.., over] · w[out, over] replaced by
    (1 + x_m + w_m + 2^-l) 2^(x_e + w_e) (x_m, w_m cut to m bits; where the mantissa sum
    s = x_m + w_m + 2^-l reaches 1 it carries: s 2^(x_e + w_e + 1)), then summed over `over`;
    the gradient that of the exact map."""
    m = int(b.product[-1])
    lead = [a for a in x.names if a not in b.over]
    inner = {a: f"{a} (in)" if a in b.out else a for a in b.over}  # a map D -> D: two D axes
    over = list(inner.values())
    names = [*lead, *b.out, *over]
    xa = NT(x.t, tuple(inner.get(a, a) for a in x.names)).to(names)
    wa = NT(w, (*b.out, *over)).to(names)
    lo, hi = (-1022, 1023) if xa.dtype == torch.float64 else (-126, 127)

    def cut(v):  # |v| = (1 + frac) 2^exp, frac to m bits; values below the normal range: 0
        exp = torch.floor(torch.log2(v.abs()))
        exp = exp + (v.abs() >= torch.exp2(exp + 1)).to(v.dtype)
        exp = exp - (v.abs() < torch.exp2(exp)).to(v.dtype)
        frac = torch.floor((v.abs() / torch.exp2(exp) - 1) * 2**m) / 2**m
        return frac, exp, v.abs() < 2.0**lo

    (fx, ex, zx), (fw, ew, zw) = cut(xa.detach()), cut(wa.detach())
    s = fx + fw + 2.0 ** -(m if m <= 3 else 3)
    carry = s >= 1
    e = ex + ew + carry.to(s.dtype)
    mag = torch.where(carry, s, 1 + s) * torch.exp2(e)
    mag = torch.where(e > hi, torch.inf, mag).masked_fill((e < lo) | zx | zw, 0.0)
    prod = torch.where((xa < 0) ^ (wa < 0), -mag, mag)
    dims = [names.index(a) for a in over]
    y = prod.sum(dims)
    exact = (xa * wa).sum(dims)
    y = y + (exact - exact.detach())
    if b.bias:
        y = y + NT(run.p(b.name, "bias"), tuple(b.out)).to([*lead, *b.out])
    return _as(NT(y, (*lead, *b.out)), want)


# -- integer arithmetic: by value, in int64 where a step could leave int32
def _round_half_even(t):
    if not t.is_floating_point():
        return t
    r = torch.floor(t + 0.5)
    tie = (r - t == 0.5) & (torch.remainder(r, 2) == 1)
    return torch.copysign(r - tie.to(t.dtype), t)  # -0.3 rounds to -0


def _floor(t):
    if not t.is_floating_point():
        return t
    frac = torch.remainder(t, 1)
    return torch.where(frac == 0, t, t - frac)  # whole numbers (and -0) as they are


def _shift_left(a, c):
    """a · 2^c, wrapped to a's width as a shift register drops the bits above it."""
    dtype = torch.promote_types(a.dtype, c.dtype)
    bits = torch.iinfo(dtype).bits
    y = a.to(torch.int64) * torch.pow(2, c.to(torch.int64))
    if bits < 64:
        y = torch.remainder(y + 2 ** (bits - 1), 2**bits) - 2 ** (bits - 1)
    return y.to(dtype)


def _shift_right(a, c):
    """⌊a / 2^c⌋: an arithmetic shift."""
    dtype = torch.promote_types(a.dtype, c.dtype)
    return torch.div(a.to(torch.int64), torch.pow(2, c.to(torch.int64)), rounding_mode="floor").to(
        dtype
    )


@interprets("clamp")
def _interpret_clamp(run, b, x, tin, tout):
    t = x["x"].t
    if b.low is not None:
        t = torch.maximum(t, torch.tensor(run.num(parse_size(b.low)), dtype=t.dtype))
    if b.high is not None:
        t = torch.minimum(t, torch.tensor(run.num(parse_size(b.high)), dtype=t.dtype))
    return {"out": NT(t, x["x"].names)}


@interprets("constant")
def _interpret_constant(run, b, x, tin, tout):
    return {"out": NT(run.p(b.name, "value"), tout["out"].names)}


@interprets("requantize")
def _interpret_requantize(run, b, x, tin, tout):
    """round(x · b / 2^c), halves up, then clipped to the range of the result's type."""
    x = x["x"]
    m = NT(run.p(b.name, "multiplier").to(torch.int64), tuple(b.axes)).to(x.names)
    c = NT(run.p(b.name, "shift").to(torch.int64), tuple(b.axes)).to(x.names)
    p = torch.pow(2, c)
    y = torch.div(x.t.to(torch.int64) * m * 2 + p, 2 * p, rounding_mode="floor")
    bits = 8 if b.dtype == "int8" else 32
    y = y.clamp(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return {"out": NT(y.to(getattr(torch, b.dtype)), x.names)}


@interprets("int_linear")
def _interpret_int_linear(run, b, x, tin, tout):
    """Σ over `over` of int8 x times the int8 weight, in int64, checked to fit int32."""
    x = x["x"]
    w = run.p(b.name, "weight").to(torch.int64)
    n_out = len(b.out)
    y = torch.tensordot(
        x.t.to(torch.int64),
        w,
        dims=([x.dim(a) for a in b.over], [n_out + i for i in range(len(b.over))]),
    )
    if b.bias:
        y = y + run.p(b.name, "bias").to(torch.int64)
    if y.numel() and (y.abs().max() >= 2**31):
        raise CompileError(f"box '{b.name}'", "int32 accumulator overflows", "|y| < 2^31",
                           str(int(y.abs().max())))  # fmt: skip
    names = tuple(a for a in x.names if a not in b.over) + tuple(b.out)
    return {"out": _as(NT(y.to(torch.int32), names), tout["out"])}


@interprets("add_norm")
def _interpret_add_norm(run, b, x, tin, tout):
    """The sum x + h (aligned by name), then the norm's own rule on it."""
    xs = x["x"]
    s = NT(xs.t + x["h"].to(xs.names), xs.names)
    rule = run.k_layernorm if b.norm == "layernorm" else run.k_rmsnorm
    return {"out": rule(b, {"x": s}, tin, tout)["out"], "sum": s}


# -- routing: positions compared with every position of the axis (a one-hot), by names
def _hits(index: NT, names, n: int) -> torch.Tensor:
    """[index == p for p in 0 … n-1] laid out over `names` and a last axis of size n."""
    return index.to(names)[..., None] == torch.arange(n, device=index.t.device)


@interprets("gather")
def _interpret_gather(run, b, x, tin, tout):
    """out[…, j] = Σ_n x[…, n] · [index[…, j] = n] (the selected entry, exactly)."""
    xs, index = x["x"], x["index"]
    rest = [a for a in xs.names if a != b.axis]
    names = [*rest, *b.into]
    n = xs.t.shape[xs.dim(b.axis)]
    data = xs.to([*names, b.axis])
    y = torch.where(_hits(index, names, n), data, torch.zeros((), dtype=data.dtype)).sum(-1)
    return {"out": _as(NT(y.to(data.dtype), tuple(names)), tout["out"])}


@interprets("scatter")
def _interpret_scatter(run, b, x, tin, tout):
    """out[…, n] = Σ_over src[…, j] · [index[…, j] = n]."""
    src, index = x["src"], x["index"]
    rest = [a for a in src.names if a not in b.over]
    names = [*rest, *b.over]
    n = run.num(tout["out"].axis(b.axis).size)
    data = src.to(names)[..., None]
    y = torch.where(_hits(index, names, n), data, torch.zeros((), dtype=data.dtype))
    y = y.sum(tuple(range(len(rest), len(names)))) if b.over else y
    return {"out": _as(NT(y.to(data.dtype), (*rest, b.axis)), tout["out"])}


@interprets("one_hot")
def _interpret_one_hot(run, b, x, tin, tout):
    xs = x["x"]
    n = run.num(tout["out"].axis(b.into).size)
    y = _hits(xs, xs.names, n).to(getattr(torch, b.dtype))
    return {"out": NT(y, (*xs.names, b.into))}


@interprets("compare")
def _interpret_compare(run, b, x, tin, tout):
    names = tout["out"].names
    a, c = x["a"].to(names), x["b"].to(names)
    f = {
        "eq": lambda a, c: a == c,
        "ne": lambda a, c: a != c,
        "lt": lambda a, c: a < c,
        "le": lambda a, c: a <= c,
        "gt": lambda a, c: a > c,
        "ge": lambda a, c: a >= c,
    }[b.fn]
    return {"out": NT(f(a, c), names)}


@interprets("where")
def _interpret_where(run, b, x, tin, tout):
    """a where cond holds plus b where it does not, each zeroed elsewhere (masked_fill)."""
    names = tout["out"].names
    shape = [run.num(a.size) for a in tout["out"].axes]
    cond = x["cond"].to(names).expand(shape)
    dtype = (
        x["a"].t.dtype
        if b.fill is not None
        else torch.promote_types(x["a"].t.dtype, x["b"].t.dtype)
    )
    a = x["a"].to(names).to(dtype).expand(shape)
    if b.fill is not None:
        return {"out": NT(a.masked_fill(~cond, float(b.fill)), names)}
    c = x["b"].to(names).to(dtype).expand(shape)
    return {"out": NT(a.masked_fill(~cond, 0) + c.masked_fill(cond, 0), names)}


@interprets("rotary")
def _interpret_rotary(run, b, x, tin, tout):
    """y = R(p) x at each position, R(p) RoFormer's block-diagonal rotation matrix: for pair
    k of the d rotated features, (i, j) = (k, k + d/2) (half) or (2k, 2k + 1) (interleaved),
    the block [[cos pθ_k, −sin pθ_k], [sin pθ_k, cos pθ_k]] with θ_k = base^(−2k/d); 1 on the
    diagonal elsewhere. p: the index along seq, plus start, or counted from the first position
    of p's packed sequence. A product with the matrix, summed over the input features."""
    xs = x["x"]
    rows = [a for a in xs.names if a not in (b.seq, b.feature)]
    T, n = xs.t.shape[xs.dim(b.seq)], xs.t.shape[xs.dim(b.feature)]
    d = n if b.rotated is None else int(run.num(parse_size(b.rotated)))
    p = torch.arange(T, dtype=torch.float64)
    if b.packed:
        firsts = x["offsets"].t.tolist()[:-1]
        p = torch.tensor([float(t - max(f for f in firsts if f <= t)) for t in range(T)],
                         dtype=torch.float64)  # fmt: skip
    p_names: tuple[str, ...] = (b.seq,)
    if b.start:
        p = x["start"].t.to(torch.float64)[..., None] + p
        p_names = (*x["start"].names, b.seq)
    R = torch.zeros(*p.shape, n, n, dtype=torch.float64)
    R[..., range(n), range(n)] = 1.0
    for k in range(d // 2):
        i, j = (k, k + d // 2) if b.pairs == "half" else (2 * k, 2 * k + 1)
        angle = p * b.base ** (-2.0 * k / d)
        R[..., i, i], R[..., i, j] = torch.cos(angle), -torch.sin(angle)
        R[..., j, i], R[..., j, j] = torch.sin(angle), torch.cos(angle)
    into = "_rotary_out"  # the output features' own name while both are held
    names = [*rows, b.seq, into, b.feature]
    m = NT(R.to(xs.t.dtype), (*p_names, into, b.feature)).to(names)
    y = (m * xs.to([*rows, b.seq, b.feature]).unsqueeze(-2)).sum(-1)
    return {"out": _as(NT(y, (*rows, b.seq, b.feature)), tout["out"])}


@interprets("long_conv")
def _interpret_long_conv(run, b, x, tin, tout):
    """y[t] = Σ_s M[t, s] x[s] per channel, M the lower-triangular Toeplitz matrix of the
    filter (M[t, s] = h[t − s] where 0 ≤ t − s < L, 0 elsewhere): a product summed over the
    positions by name, in float64, then in the inputs' promoted type (no FFT)."""
    xs, h = x["x"], x["filter"]
    tap = b.taps(tin["x"], tin["filter"])
    T, L = xs.t.shape[xs.dim(b.seq)], h.t.shape[h.dim(tap)]
    lag = torch.arange(T)[:, None] - torch.arange(T)[None, :]  # [t, s]: t − s
    taps = h.t.to(torch.float64).movedim(h.dim(tap), -1)  # [channels…, L]
    M = taps[..., lag.clamp(0, L - 1)] * ((lag >= 0) & (lag < L))  # [channels…, t, s]
    into = "_long_conv_out"  # the output positions' own name while both are held
    channels = tuple(a for a in h.names if a != tap)
    rows = [a for a in xs.names if a != b.seq]
    m = NT(M, (*channels, into, b.seq)).to([*rows, into, b.seq])
    y = (m * xs.to([*rows, b.seq]).to(torch.float64).unsqueeze(-2)).sum(-1)
    y = y.to(torch.promote_types(xs.t.dtype, h.t.dtype))
    return {"out": _as(NT(y, (*rows, b.seq)), tout["out"])}


@interprets("positions")
def _interpret_positions(run, b, x, tin, tout):
    """Position t along the axis is the number t, counted from its row's start (start + t),
    or from the first position of its packed sequence; in the box's type, float32 standing
    for the type of the circuit's first float input (the type the module runs in)."""
    n = run.num(tout["out"].axis(b.axis).size)
    p = list(range(n))
    if b.packed:
        firsts = x["offsets"].t.tolist()[:-1]
        p = [t - max(f for f in firsts if f <= t) for t in p]
    p = torch.tensor(p, dtype=torch.int64)
    names: tuple[str, ...] = (b.axis,)
    if b.start:
        p = x["start"].t.to(torch.int64)[..., None] + p
        names = (*x["start"].names, b.axis)
    dtype = getattr(torch, b.dtype)
    if b.dtype == "float32":
        floats = [run.inputs[i.name].dtype for i in run.c.circuit.inputs
                  if i.dtype.startswith(("float", "bfloat"))]  # fmt: skip
        dtype = floats[0] if floats else dtype
    return {"out": _as(NT(p.to(dtype), names), tout["out"])}
