"""One lowering per box kind: fx nodes for the box, emitted through a `Lowerer`.

A lowering gets the box, its input values (fx nodes, or tuples for tuple wires), and the input
and output types; it returns a node per output port. Dimensions are read off the types by
axis name. Where a kind has a PyTorch layer or function in PyTorch's own layout, the lowering
uses it (`F.linear`, `self.conv1(x)`), so the generated source reads as people write it.
"""

from __future__ import annotations

import operator

import sympy
import torch
import torch.nn.functional as F
from torch import nn

from ncd import ops
from ncd.circuits.types import FLOAT_DTYPES, TensorType

from . import runtime
from .choices import choose, short_conv_kernels
from .fused import lower_attention, lower_linear_attention, lower_norm, runs_norm_kernels
from .lower import Call, Holder, Lowerer, listed, lower, lowers, plain
from .names import letters


def _dim(t: TensorType, axis: str) -> int:
    return t.names.index(axis)


# ---------------------------------------------------------------- learned
@lowers("linear")
def _linear(L: Lowerer, b, x, tin, tout):
    """nn.Linear on the axes `over` merged into one, giving the axes `out` merged into one:
    its weight is the matrix [prod(out), prod(over)], its bias [prod(out)]."""
    t = tin["x"]
    out_sizes = [tout["out"].axis(a).size for a in b.out]
    in_sizes = [t.axis(a).size for a in b.over]
    out_shape = tuple(L.num(s) for s in out_sizes)
    in_shape = tuple(L.num(s) for s in in_sizes)
    # the merged sizes written as the products of the axes' sizes, in the axes' order
    n_out = L.num(sympy.Mul(*out_sizes, evaluate=False))
    n_in = L.num(sympy.Mul(*in_sizes, evaluate=False))
    kw = {} if b.bias else {"bias": False}
    ident = L.hold(
        nn.Linear(plain(n_in), plain(n_out), bias=b.bias), Call("nn.Linear", n_in, n_out, **kw)
    )
    w = L.param(ident, "weight")
    bias = L.param(ident, "bias") if b.bias else None
    if b.backward != "exact" or b.product != "exact":
        return {"out": _linear_sampled_or_lmul(L, b, x["x"], t, tout, w, bias, out_shape)}
    if tuple(t.names[len(t.names) - len(b.over) :]) == tuple(b.over):
        # the map acts on the trailing axes (the common case): nn.Linear as PyTorch runs it
        y = L.fn(F.linear, _merge_trailing(L, x["x"], len(b.over)), w, bias)
        return {"out": _split_trailing(L, y, out_shape)}
    # the weight viewed [*out, *over]; a map D -> D has a weight [D D]: the consumed axis gets
    # its own einsum letter
    if len(out_shape) != 1 or len(in_shape) != 1:
        w = L.method("view", w, *out_shape, *in_shape)
    inner = {a: f"{a}_in" if a in b.out else a for a in b.over}
    xs = [inner.get(a, a) for a in t.names]
    y = L.einsum([(x["x"], xs), (w, (*b.out, *inner.values()))], tout["out"].names)
    if b.bias:
        if len(out_shape) != 1:
            bias = L.method("view", bias, *out_shape)
        y = L.fn(operator.add, y, L.align(bias, b.out, tout["out"].names))
    return {"out": y}


def _merge_trailing(L: Lowerer, x, n: int):
    """x's `n` trailing axes as one (a new one of size 1 where n is 0)."""
    if n == 0:
        return L.method("unsqueeze", x, -1)
    return L.method("flatten", x, -n) if n > 1 else x


def _split_trailing(L: Lowerer, y, shape):
    """y's trailing axis split into `shape` (dropped where `shape` is empty)."""
    if not shape:
        return L.method("squeeze", y, -1)
    return L.method("unflatten", y, -1, shape) if len(shape) > 1 else y


@lowers("param")
def _param(L: Lowerer, b, x, tin, tout):
    shape = tuple(L.num(a.size) for a in tout["out"].axes)
    held = {} if b.trained else {"held": "state"}  # fixed data: a buffer
    holder = runtime.Param(plain(shape), b.init, **held)
    ident = L.hold(holder, Call("Param", shape, b.init, **held))
    return {"out": L.param(ident, "weight")}


@lowers("embedding")
def _embedding(L: Lowerer, b, x, tin, tout):
    rows = L.num(L.c.params[b.name]["weight"].axes[0].size)
    out = [L.num(a.size) for a in L.c.params[b.name]["weight"].axes[1:]]
    if len(out) == 1:
        ident = L.hold(nn.Embedding(plain(rows), plain(out[0])), Call("nn.Embedding", rows, out[0]))
        return {"out": L.module(ident, x["x"])}
    shape = (rows, *out)
    ident = L.hold(runtime.Param(plain(shape), "normal", 1.0), Call("Param", shape, "normal", 1.0))
    w = L.param(ident, "weight")
    return {"out": L.fn(operator.getitem, w, x["x"])}


# ---------------------------------------------------------------- contraction
@lowers("contract")
def _contract(L: Lowerer, b, x, tin, tout):
    y = _int8_contract(L, b, x, tin, tout)  # products of int8 values (integer arithmetic)
    if y is not None:
        return {"out": y}
    ops = [(x[p], tin[p].names) for p in b.operands]
    dtype = tout["out"].dtype
    if dtype.startswith("int") and _int_path(L) == "float64":
        # torch has no integer matrix product on CUDA: float64, exact while |sums| < 2^53
        ops = [(L.method("to", node, torch.float64), names) for node, names in ops]
        return {"out": L.method("to", L.einsum(ops, tout["out"].names), getattr(torch, dtype))}
    return {"out": L.einsum(ops, tout["out"].names)}


@lowers("diagonal")
def _diagonal(L: Lowerer, b, x, tin, tout):
    a1, a2 = b.axes
    names = [b.into if a in (a1, a2) else a for a in tin["x"].names]
    m = letters([*names, *tout["out"].names])
    spec = "".join(m[a] for a in names) + "->" + "".join(m[a] for a in tout["out"].names)
    return {"out": L.fn(torch.einsum, spec, x["x"])}


# ---------------------------------------------------------------- elementwise
UNARY = {
    "relu": (F.relu, {}),
    "gelu": (F.gelu, {}),
    "gelu_tanh": (F.gelu, {"approximate": "tanh"}),
    "silu": (F.silu, {}),
    "sigmoid": (torch.sigmoid, {}),
    "tanh": (torch.tanh, {}),
    "exp": (torch.exp, {}),
    "log": (torch.log, {}),
    "neg": (torch.neg, {}),
    "abs": (torch.abs, {}),
    "sqrt": (torch.sqrt, {}),
    "rsqrt": (torch.rsqrt, {}),
    "square": (torch.square, {}),
    "reciprocal": (torch.reciprocal, {}),
    "softplus": (F.softplus, {}),
    "elu": (F.elu, {}),
    "sin": (torch.sin, {}),
    "cos": (torch.cos, {}),
    "logsigmoid": (F.logsigmoid, {}),
    "sign": (torch.sign, {}),
    "relu6": (F.relu6, {}),
    "hardswish": (F.hardswish, {}),
}
BINARY = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
    "maximum": torch.maximum,
    "minimum": torch.minimum,
    "pow": torch.pow,
}


@lowers("unary")
def _unary(L: Lowerer, b, x, tin, tout):
    if b.fn == "identity":
        return {"out": x["x"]}
    if b.fn == "elu_plus_one":
        return {"out": L.fn(operator.add, L.fn(F.elu, x["x"]), 1.0)}
    fn, kw = UNARY[b.fn]
    return {"out": L.fn(fn, x["x"], **kw)}


def _pairwise(L: Lowerer, fn, x, tin, tout):
    """fn(a, b) of the ports a and b, each aligned by axis name to the output's axes."""
    out = tout["out"].names
    a = L.align(x["a"], tin["a"].names, out)
    c = L.align(x["b"], tin["b"].names, out)
    return {"out": L.fn(fn, a, c)}


@lowers("binary")
def _binary(L: Lowerer, b, x, tin, tout):
    return _pairwise(L, BINARY[b.fn], x, tin, tout)


@lowers("scale")
def _scale(L: Lowerer, b, x, tin, tout):
    from ncd.circuits.sizes import parse_size

    expr = parse_size(b.factor)
    # an integer tensor's factor is an integer (the kind's rule): the product stays integer
    f = L.real(expr) if "float" in tin["x"].dtype else L.num(expr)
    if f == 1:
        return {"out": x["x"]}
    return {"out": L.fn(operator.mul, x["x"], f)}


@lowers("cast")
def _cast(L: Lowerer, b, x, tin, tout):
    if b.bits:  # the bit pattern reinterpreted: a view
        return {"out": L.method("view", x["x"], getattr(torch, b.dtype))}
    return {"out": L.method("to", x["x"], getattr(torch, b.dtype))}  # torch names every dtype


@lowers("dropout")
def _dropout(L: Lowerer, b, x, tin, tout):
    ident = L.hold(nn.Dropout(b.p), f"nn.Dropout({b.p!r})")
    return {"out": L.module(ident, x["x"])}


@lowers("mask")
def _mask(L: Lowerer, b, x, tin, tout):
    t = tin["x"]
    window = b.window if b.pattern == "window" else 0
    fill = float("-inf") if b.fill == "-inf" else 0.0
    return {
        "out": L.fn(
            runtime.causal_mask,
            x["x"],
            query=_dim(t, b.query),
            key=_dim(t, b.key),
            window=window,
            fill=fill,
        )  # fmt: skip
    }


@lowers("rotary")
def _rotary(L: Lowerer, b, x, tin, tout):
    """runtime.rotary on x's seq and feature dims; the start positions aligned to x's other
    axes, in their order."""
    from ncd.circuits.sizes import parse_size

    t = tin["x"]
    kw = {}
    if b.base != 10000.0:
        kw["base"] = b.base
    if b.rotated is not None:
        d = L.num(parse_size(b.rotated))
        if d != L.num(t.axis(b.feature).size):
            kw["rotated"] = d
    if b.pairs == "interleaved":
        kw["interleaved"] = True
    if b.start:
        rows = [a for a in t.names if a not in (b.seq, b.feature)]
        kw["start"] = L.align(x["start"], tin["start"].names, rows)
    if b.packed:
        kw["cu_seqlens"] = x["offsets"]
    return {"out": L.fn(runtime.rotary, x["x"], _dim(t, b.seq), _dim(t, b.feature), **kw)}


@lowers("positions")
def _positions(L: Lowerer, b, x, tin, tout):
    """runtime.positions on the device of the circuit's first float input (else its first
    input), whose dtype float32 positions take, as a float32 one_hot does; the start
    already in the output's order (its axes, then the positions')."""
    n = L.num(tout["out"].axis(b.axis).size)
    kw = {}
    like = _float_input(L)
    like = _first_input(L) if like is None else like
    if like is not None:
        kw["like"] = like
    if b.start:
        kw["start"] = x["start"]
    if b.packed:
        kw["cu_seqlens"] = x["offsets"]
    return {"out": L.fn(runtime.positions, n, getattr(torch, b.dtype), **kw)}


def _first_input(L: Lowerer):
    """The placeholder of the circuit's first input, or None where it has none."""
    inputs = L.c.circuit.inputs
    return L.env[("", inputs[0].name)] if inputs else None


# ---------------------------------------------------------------- normalisation
@lowers("softmax")
def _softmax(L: Lowerer, b, x, tin, tout):
    d = _dim(tin["x"], b.over)
    if b.variant == "softmin":
        return {"out": L.fn(F.softmin, x["x"], d)}
    if b.variant == "log_softmax":
        return {"out": L.fn(runtime.softmax, x["x"], d, log=True)}
    return {"out": L.fn(runtime.softmax, x["x"], d)}


def _last(L: Lowerer, node, names, axes, call):
    """Applies `call(node)` (which acts on the trailing axes) with `axes` moved last."""
    names = list(names)
    rest = [a for a in names if a not in axes]
    want = [*rest, *axes]
    y = call(L.permute(node, names, want))
    return L.permute(y, want, names)


def _norm_holder(L: Lowerer, b, norm: str, t):
    """The nn.LayerNorm (norm "layernorm") or nn.RMSNorm holding the parameters of box b's
    norm over its axes `b.over` of t, as the written file constructs it."""
    shape = tuple(L.num(t.axis(a).size) for a in b.over)
    cls = nn.LayerNorm if norm == "layernorm" else nn.RMSNorm
    mod = cls(plain(shape), eps=b.eps, elementwise_affine=b.affine)
    kw = {} if norm == "layernorm" and b.eps == 1e-5 else {"eps": b.eps}
    if not b.affine:
        kw["elementwise_affine"] = False
    return L.hold(mod, Call(f"nn.{cls.__name__}", shape[0] if len(shape) == 1 else shape, **kw))


@lowers("layernorm", "rmsnorm")
def _layernorm(L: Lowerer, b, x, tin, tout):
    t = tin["x"]
    ident = _norm_holder(L, b, b.kind, t)
    if runs_norm_kernels(L):  # CUDA: ncd.ops' row kernels on the holder's parameters
        return {"out": lower_norm(L, b, ident, x["x"], t)[0]}
    return {"out": _last(L, x["x"], t.names, b.over, lambda n: L.module(ident, n))}


@lowers("batchnorm", "unifiednorm")
def _channelnorm(L: Lowerer, b, x, tin, tout):
    t = tin["x"]
    c, d = L.num(t.axis(b.channel).size), _dim(t, b.channel)
    if b.kind == "batchnorm" and d == 1 and 2 <= len(t.names) <= 5:  # PyTorch's own layout
        name = f"BatchNorm{max(1, len(t.names) - 2)}d"
        ident = L.hold(
            getattr(nn, name)(plain(c), eps=b.eps, momentum=b.momentum, affine=b.affine),
            Call(f"nn.{name}", c, eps=b.eps, momentum=b.momentum, affine=b.affine),
        )
        return {"out": L.module(ident, x["x"])}
    cls = runtime.ChannelBatchNorm if b.kind == "batchnorm" else runtime.UnifiedNorm
    kw = {"eps": b.eps, "momentum": b.momentum, "affine": b.affine}
    if b.kind == "unifiednorm":
        kw |= {f: getattr(b, f) for f in ("window", "warmup", "outlier", "compensate_after")}
    ident = L.hold(cls(plain(c), d, **kw), Call(cls.__name__, c, dim=d, **kw))
    return {"out": L.module(ident, x["x"])}


@lowers("groupnorm")
def _groupnorm(L: Lowerer, b, x, tin, tout):
    t = tin["x"]
    c, groups = L.num(t.axis(b.channel).size), L.num(b.n_groups())
    ident = L.hold(
        nn.GroupNorm(plain(groups), plain(c), eps=b.eps, affine=b.affine),
        Call("nn.GroupNorm", groups, c, eps=b.eps, affine=b.affine),
    )
    w = L.param(ident, "weight") if b.affine else None
    bias = L.param(ident, "bias") if b.affine else None
    over = tuple(_dim(t, a) for a in b.over)
    return {
        "out": L.fn(
            runtime.group_norm,
            x["x"],
            groups,
            w,
            bias,
            b.eps,
            channel=_dim(t, b.channel),
            over=over,
        )  # fmt: skip
    }


@lowers("normalize")
def _normalize(L: Lowerer, b, x, tin, tout):
    if b.p == 2 and runs_norm_kernels(L, "l2_norm"):  # CUDA: ncd.ops' row kernels
        names = list(tin["x"].names)
        rows = [*(a for a in names if a != b.over), b.over]
        y = L.fn(ops.l2_norm, L.permute(x["x"], names, rows), eps=float(b.eps))
        return {"out": L.permute(y, rows, names)}
    return {"out": L.fn(F.normalize, x["x"], p=float(b.p), dim=_dim(tin["x"], b.over), eps=b.eps)}


# ---------------------------------------------------------------- reductions
@lowers("reduce")
def _reduce(L: Lowerer, b, x, tin, tout):
    dims = tuple(_dim(tin["x"], a) for a in b.over)
    if b.op == "prod":
        y = x["x"]
        for d in sorted(dims, reverse=True):
            y = L.fn(torch.prod, y, d)
        return {"out": y}
    fn = {
        "sum": torch.sum,
        "mean": torch.mean,
        "max": torch.amax,
        "min": torch.amin,
        "logsumexp": torch.logsumexp,
    }[b.op]
    if b.op == "sum" and tout["out"].dtype.startswith("int"):  # torch would sum in int64
        return {"out": L.fn(fn, x["x"], dims, dtype=getattr(torch, tout["out"].dtype))}
    return {"out": L.fn(fn, x["x"], dims)}


@lowers("scan")
def _scan(L: Lowerer, b, x, tin, tout):
    d = _dim(tin["x"], b.over)
    y = L.fn(torch.flip, x["x"], (d,)) if b.reverse else x["x"]
    if b.op == "max":
        y = L.fn(operator.getitem, L.fn(torch.cummax, y, d), 0)
    else:
        y = L.fn(torch.cumsum if b.op == "sum" else torch.cumprod, y, d)
    if b.reverse:
        y = L.fn(torch.flip, y, (d,))
    return {"out": y}


@lowers("topk")
def _topk(L: Lowerer, b, x, tin, tout):
    r = L.fn(torch.topk, x["x"], L.num(b.n_kept()), _dim(tin["x"], b.over))
    return {"values": L.fn(operator.getitem, r, 0), "indices": L.fn(operator.getitem, r, 1)}


# ---------------------------------------------------------------- rearrangements
@lowers("split_axis")
def _split_axis(L: Lowerer, b, x, tin, tout):
    parts = [tout["out"].axis(a).size for a in b.into]
    units = [L.c.resolve(s) == 1 for s in parts]
    if units.count(False) == 1:  # unit axes split off (`B -> B U`): torch infers the one
        # other part (-1), so that the module does not fix its size
        sizes = tuple(1 if u else -1 for u in units)
    else:
        sizes = tuple(L.num(s) for s in parts)
    return {"out": L.method("unflatten", x["x"], _dim(tin["x"], b.axis), sizes)}


@lowers("merge_axes")
def _merge_axes(L: Lowerer, b, x, tin, tout):
    names = list(tin["x"].names)
    first = min(names.index(a) for a in b.axes)
    rest = [a for a in names if a not in b.axes]
    at = sum(1 for a in names[:first] if a not in b.axes)
    want = rest[:at] + list(b.axes) + rest[at:]
    y = L.permute(x["x"], names, want)
    return {"out": L.method("flatten", y, at, at + len(b.axes) - 1)}


@lowers("permute")
def _permute(L: Lowerer, b, x, tin, tout):
    return {"out": L.permute(x["x"], tin["x"].names, b.order)}


@lowers("rename")
def _rename(L: Lowerer, b, x, tin, tout):
    return {"out": x["x"]}


@lowers("copy")
def _copy(L: Lowerer, b, x, tin, tout):
    return {p: x["x"] for p in tout}


@lowers("pack")
def _pack(L: Lowerer, b, x, tin, tout):
    return {"out": tuple(x[n] for n in b.items)}


@lowers("unpack")
def _unpack(L: Lowerer, b, x, tin, tout):
    v = x["x"]
    items = [n for n, _ in tin["x"].items]
    if isinstance(v, tuple):
        return {n: v[i] for i, n in enumerate(items)}
    return {n: L.fn(operator.getitem, v, i) for i, n in enumerate(items)}


@lowers("concat")
def _concat(L: Lowerer, b, x, tin, tout):
    """torch.cat of the operands laid out as the output (an operand joining `along` an axis of
    its own name: that axis in the joined one's place), each one lacking axes expanded (a
    view): one position along the joined axis, along another axis the size an operand with
    every axis has there."""
    out = tout["out"].names
    full = max(b.operands, key=lambda p: len(tin[p].names))  # every axis but, in a stack, b.axis
    parts = []
    for p in b.operands:
        own = b.along.get(p)
        names = tuple(b.axis if a == own else a for a in tin[p].names)
        t = L.align(x[p], names, out)
        if len(names) < len(out):
            sizes = [-1 if a in names else 1 if a == b.axis else
                     L.method("size", x[full], tin[full].names.index(a)) for a in out]  # fmt: skip
            t = L.method("expand", t, *sizes)
        parts.append(t)
    return {"out": L.fn(torch.cat, parts, out.index(b.axis))}


@lowers("split")
def _split(L: Lowerer, b, x, tin, tout):
    d = _dim(tin["x"], b.axis)
    ports = list(tout)
    sizes = [L.num(tout[p].axis(b.axis).size) for p in ports]
    r = L.fn(torch.split, x["x"], sizes, d)
    return {p: L.fn(operator.getitem, r, i) for i, p in enumerate(ports)}


@lowers("index")
def _index(L: Lowerer, b, x, tin, tout):
    return {"out": L.fn(torch.select, x["x"], _dim(tin["x"], b.axis), b.index)}


@lowers("slice")
def _slice(L: Lowerer, b, x, tin, tout):
    from ncd.circuits.sizes import parse_size

    t = tin["x"]
    d = _dim(t, b.axis)
    stop = None
    if b.stop is not None:
        # a stop a fixed number of places before the axis' end (a causal convolution's
        # padded output cut back to T: T+3 -> T) is written from the end, so that the
        # module is not specialised to the length
        short = L.c.resolve(t.axis(b.axis).size) - L.c.resolve(parse_size(b.stop))
        if short.is_Integer and int(short) >= 0:
            stop = -int(short) or None
        else:
            stop = L.num(parse_size(b.stop))
    idx = (slice(None),) * d + (slice(b.start or None, stop, b.step if b.step != 1 else None),)
    return {"out": L.fn(operator.getitem, x["x"], idx)}


# ---------------------------------------------------------------- spatial
@lowers("conv")
def _conv(L: Lowerer, b, x, tin, tout):
    t = tin["x"]
    n = len(b.spatial)
    cin, cout = L.num(t.axis(b.channel).size), L.num(tout["out"].axis(b.out).size)
    k, s, p, d, op = (
        tuple(b._norm(f)) for f in ("kernel", "stride", "padding", "dilation", "output_padding")
    )
    groups = L.num(b.n_groups(t.axis(b.channel).size))  # depthwise: one group per channel
    if b.transposed:
        name = f"ConvTranspose{n}d"
        mod = getattr(nn, name)(*plain((cin, cout, k, s, p, op, groups)), b.bias, d)
        src = Call(f"nn.{name}", cin, cout, k, stride=s, padding=p, output_padding=op,
                   groups=groups, bias=b.bias, dilation=d)  # fmt: skip
    else:
        name = f"Conv{n}d"
        mod = getattr(nn, name)(*plain((cin, cout, k, s, p, d, groups)), b.bias)
        src = Call(f"nn.{name}", cin, cout, k, stride=s, padding=p, dilation=d, groups=groups,
                   bias=b.bias)  # fmt: skip
    ident = L.hold(mod, src)
    w = L.param(ident, "weight")
    bias = L.param(ident, "bias") if b.bias else None
    sp = tuple(_dim(t, a) for a in b.spatial)
    n_sp = len(sp)
    if len(t.names) == n_sp + 2 and _dim(t, b.channel) == 1 and sp == tuple(range(2, n_sp + 2)):
        return {"out": L.module(ident, x["x"])}  # PyTorch's own layout: call the layer
    kw = {"channel": _dim(t, b.channel), "spatial": sp, "stride": s, "padding": p,
          "dilation": d, "groups": groups}  # fmt: skip
    if b.transposed:
        kw.update(transposed=True, output_padding=op)
    return {"out": L.fn(runtime.conv, x["x"], w, bias, **kw)}


@lowers("pool")
def _pool(L: Lowerer, b, x, tin, tout):
    t = tin["x"]
    w = tuple(b._norm("window"))
    s = tuple(b._norm("stride")) if b.stride else w
    p = tuple(b._norm("padding"))
    sp = tuple(_dim(t, a) for a in b.spatial)
    if len(t.names) == len(sp) + 2 and sp == tuple(range(2, len(sp) + 2)):
        fn = getattr(F, f"{b.op}_pool{len(sp)}d")  # PyTorch's own layout
        return {"out": L.fn(fn, x["x"], w, s, p)}
    return {"out": L.fn(runtime.pool, x["x"], sp, b.op, window=w, stride=s, padding=p)}


@lowers("upsample")
def _upsample(L: Lowerer, b, x, tin, tout):
    sp = tuple(_dim(tin["x"], a) for a in b.spatial)
    return {"out": L.fn(runtime.upsample, x["x"], sp, factor=b.factor, mode=b.mode)}


# ---------------------------------------------------------------- fused
lowers("attention")(lower_attention)
lowers("linear_attention")(lower_linear_attention)


# ---------------------------------------------------------------- structure
@lowers("call")
def _call(L: Lowerer, b, x, tin, tout):
    from ncd.circuits.sizes import parse_size

    sub = L.c.calls[b.name]
    n = L.num(parse_size(b.repeat))
    prefix = f"{L.prefix}in subcircuit '{sub.circuit.name}' (called by box '{b.name}'), "
    parts = [lower(sub, L.opts, prefix) for _ in range(n)]
    ident = L.box_idents[b.name]
    if not listed(n):
        L.root.add_module(ident, parts[0].module)
        L.holders.append(Holder(ident, b.name, parts[0].module, f"{parts[0].class_name}()"))
        paths = [ident]
    else:
        L.root.add_module(ident, nn.ModuleList([p.module for p in parts]))
        L.holders.append(
            Holder(
                ident,
                b.name,
                L.root.get_submodule(ident),
                f"nn.ModuleList([{parts[0].class_name}() for _ in range({n})])",
            )
        )
        paths = [f"{ident}.{i}" for i in range(n)]
    L.calls[b.name] = (ident, n, parts[0])
    in_names = [i.name for i in sub.circuit.inputs]
    out_names = list(sub.outputs)
    vals = {p: x[p] for p in in_names}
    for path in paths:
        r = L.module(path, *[vals[p] for p in in_names])
        if len(out_names) == 1:
            outs = {out_names[0]: r}
        else:
            outs = {o: L.fn(operator.getitem, r, o) for o in out_names}
        if len(out_names) == 1 and len(in_names) == 1:
            vals = {in_names[0]: r}
        else:
            vals = {**vals, **{o: v for o, v in outs.items() if o in vals}}
    return outs


@lowers("opaque")
def _opaque(L: Lowerer, b, x, tin, tout):
    fn = L.opts.opaque.get(b.name)
    key = L.box_idents[b.name]  # the written file's constructor takes them by identifier
    ident = L.hold(runtime.Opaque(fn, b.name), f"Opaque(opaque.get({key!r}), {key!r})")
    r = L.module(ident, *[x[p] for p in b.in_ports])
    ports = list(b.outputs)
    if len(ports) == 1:
        return {ports[0]: r}
    return {p: L.fn(operator.getitem, r, i) for i, p in enumerate(ports)}


# ---------------------------------------------------------------- comparisons (binary)
for _op in ("ge", "gt", "le", "lt", "eq"):
    BINARY[_op] = getattr(runtime, f"compare_{_op}")


# ---------------------------------------------------------------- linear: backward and product
def _linear_sampled_or_lmul(L: Lowerer, b, x, t, tout, w, bias, out_shape):
    """`linear` with a WTA-CRS backward or L-Mul products: ncd.ops.wtacrs_linear or
    ncd.ops.lmul_linear on x laid out [rows, over] and the weight [out, over]."""
    lead = [a for a in t.names if a not in b.over]
    h = _merge_trailing(L, L.permute(x, t.names, [*lead, *b.over]), len(b.over))
    if b.backward == "wtacrs":
        y = L.fn(ops.wtacrs_linear, h, w, bias, budget=float(b.budget))
    else:
        y = L.fn(ops.lmul_linear, h, w, bias, mantissa_bits=int(b.product[-1]))
    y = _split_trailing(L, y, out_shape)
    return L.permute(y, [*lead, *b.out], tout["out"].names)


# ---------------------------------------------------------------- integer arithmetic
UNARY.update({"round": (torch.round, {}), "floor": (torch.floor, {})})
BINARY.update(
    {
        "shift_left": torch.bitwise_left_shift,
        "shift_right": torch.bitwise_right_shift,  # arithmetic: the sign bit shifts in
        "floordiv": torch.floor_divide,  # an integer division of integers, rounding down
    }
)
_RANGES = {"int8": (-(2**7), 2**7 - 1), "int32": (-(2**31), 2**31 - 1)}


@lowers("clamp")
def _clamp(L: Lowerer, b, x, tin, tout):
    from ncd.circuits.sizes import parse_size

    integer = not tin["x"].dtype.startswith(("float", "bfloat"))

    def bound(v):
        if v is None:
            return None
        n = L.num(parse_size(v))
        return n if integer or isinstance(n, float) else float(n)

    return {"out": L.fn(torch.clamp, x["x"], bound(b.low), bound(b.high))}


@lowers("constant")
def _constant(L: Lowerer, b, x, tin, tout):
    from ncd.circuits.sizes import parse_size

    shape = tuple(L.num(a.size) for a in tout["out"].axes)
    fill = L.num(parse_size(b.value))
    dtype = getattr(torch, b.dtype)
    ident = L.hold(runtime.Constant(plain(shape), dtype, plain(fill)),
                   Call("Constant", shape, dtype, fill))  # fmt: skip
    return {"out": L.param(ident, "value")}


@lowers("requantize")
def _requantize(L: Lowerer, b, x, tin, tout):
    t = tin["x"]
    shape = tuple(L.num(t.axis(a).size) for a in b.axes)
    ident = L.hold(runtime.Requantize(plain(shape)), Call("Requantize", shape))
    m = L.align(L.param(ident, "multiplier"), b.axes, t.names)
    c = L.align(L.param(ident, "shift"), b.axes, t.names)
    low, high = _RANGES[b.dtype]
    return {"out": L.fn(runtime.requantize, x["x"], m, c, low, high, getattr(torch, b.dtype))}


def _int_path(L: Lowerer) -> str:
    """How int8 x int8 -> int32 products run (compiler/choices.py, "int_matmul"): "ncd"
    (ncd.ops.int8_matmul: Triton on CUDA, its integer reference on the CPU), "int32" (torch's
    einsum in int32, on the CPU) or "float64" (torch's einsum in float64, exact for int8
    operands, elsewhere: torch has no integer matrix product on CUDA)."""
    if choose("int_matmul", L.opts.device, L.opts.fused) == "ncd":
        return "ncd"
    return "int32" if L.opts.device.type == "cpu" else "float64"


@lowers("int_linear")
def _int_linear(L: Lowerer, b, x, tin, tout):
    """ "ncd": ncd.ops.int8_matmul on x laid out [rows, over] and the weight [out, over] read
    as [over, out], the bias added in its epilogue. Otherwise the int8 operands widened
    (`_int_path`) and multiplied by einsum, the int32 bias added after."""
    t = tin["x"]
    out_sizes = [tout["out"].axis(a).size for a in b.out]
    in_sizes = [t.axis(a).size for a in b.over]
    out_shape = tuple(L.num(s) for s in out_sizes)
    in_shape = tuple(L.num(s) for s in in_sizes)
    ident = L.hold(
        runtime.IntLinear(plain(out_shape), plain(in_shape), bias=b.bias),
        Call("IntLinear", out_shape, in_shape, **({} if b.bias else {"bias": False})),
    )
    path = _int_path(L)
    if path == "ncd":
        lead = [a for a in t.names if a not in b.over]
        h = _merge_trailing(L, L.permute(x["x"], t.names, [*lead, *b.over]), len(b.over))
        w = L.param(ident, "weight")
        bias = L.param(ident, "bias") if b.bias else None
        if len(out_shape) != 1 or len(in_shape) != 1:
            n_out = L.num(sympy.Mul(*out_sizes, evaluate=False))
            n_in = L.num(sympy.Mul(*in_sizes, evaluate=False))
            w = L.method("reshape", w, n_out, n_in)
            if bias is not None and len(out_shape) != 1:
                bias = L.method("reshape", bias, n_out)
        y = L.fn(ops.int8_matmul, h, L.method("t", w), bias)
        y = _split_trailing(L, y, out_shape)
        return {"out": L.permute(y, [*lead, *b.out], tout["out"].names)}
    wide = torch.int32 if path == "int32" else torch.float64
    w = L.method("to", L.param(ident, "weight"), wide)
    h = L.method("to", x["x"], wide)
    inner = {a: f"{a}_in" if a in b.out else a for a in b.over}
    xs = [inner.get(a, a) for a in t.names]
    y = L.einsum([(h, xs), (w, (*b.out, *inner.values()))], tout["out"].names)
    if path == "float64":
        y = L.method("to", y, torch.int32)
    if b.bias:
        y = L.fn(operator.add, y, L.align(L.param(ident, "bias"), b.out, tout["out"].names))
    return {"out": y}


def _int8_source(L: Lowerer, box: str, port: str, t):
    """The int8 value behind an integer contract operand: the operand where it is int8; the
    input of the cast where it is an int8 value widened by one (cast box, the int8 node);
    else None."""
    if t.dtype == "int8":
        return None, L.env[L.c.sources[box][port]]
    src, _ = L.c.sources[box][port]
    if not src or not t.dtype.startswith("int"):
        return None
    cast = L.c.box(src)
    if cast.kind != "cast" or cast.bits or L.c.ins[src]["x"].dtype != "int8":
        return None
    return src, L.env[L.c.sources[src]["x"]]


def _only_consumer(L: Lowerer, src: str, box: str) -> bool:
    """Whether `box` is the only reader of `src`'s outputs (boxes merged into `src` as common
    subexpressions read them too; so does the circuit's output)."""
    from .passes import common_subexpressions, live_boxes

    c = L.c
    alias = common_subexpressions(c, live_boxes(c))
    root = alias.get(src, src)
    same = {root} | {a for a, e in alias.items() if e == root}
    if any(sb in same for sb, _ in c.output_sources.values()):
        return False
    return all(
        sb not in same or reader == box
        for reader, srcs in c.sources.items()
        for sb, _ in srcs.values()
    )


def _int8_contract(L: Lowerer, b, x, tin, tout):
    """A contraction of two int8 values (or int8 values widened by a cast) as a batched
    matrix product on the "ncd" path (`_int_path`): ncd.ops.int8_matmul on a laid out
    [*batch, *m, *k] and b [*batch, *k, *n] (each group of axes merged into one), one call
    per batch element (runtime.BatchedMatmul). The widening casts it reads through, when
    nothing else reads them, are dropped. None where this does not apply (other dtypes,
    other paths, axes summed in one operand alone)."""
    if len(b.operands) != 2 or tout["out"].dtype != "int32" or _int_path(L) != "ncd":
        return None
    p, q = b.operands
    ta, tb, out = tin[p], tin[q], list(tout["out"].names)
    srcs = [_int8_source(L, L.box, port, t) for port, t in ((p, ta), (q, tb))]
    if None in srcs:
        return None
    an, bn = list(ta.names), list(tb.names)
    batch = [a for a in out if a in an and a in bn]
    m = [a for a in out if a in an and a not in bn]
    n = [a for a in out if a in bn and a not in an]
    k = [a for a in an if a in bn and a not in out]
    if not k or len(an) != len(batch) + len(m) + len(k) or len(bn) != len(batch) + len(n) + len(k):
        return None
    for cast in {s for s, _ in srcs if s is not None}:
        node = L.env[(cast, "out")]
        if not node.users and _only_consumer(L, cast, L.box):
            L.g.erase_node(node)

    def matrix(node, names, rows, cols):  # [*batch, rows merged into one, cols into one]
        y = L.permute(node, names, [*batch, *rows, *cols])
        if len(cols) != 1:
            y = L.method("flatten", y, -len(cols)) if cols else L.method("unsqueeze", y, -1)
        if len(rows) != 1:
            y = L.method("flatten", y, -len(rows) - 1, -2) if rows else L.method("unsqueeze", y, -2)
        return y

    a = matrix(srcs[0][1], an, m, k)
    w = matrix(srcs[1][1], bn, k, n)
    if batch:
        ident = L.hold(runtime.BatchedMatmul(ops.int8_matmul),
                       Call("BatchedMatmul", ops.int8_matmul))  # fmt: skip
        y = L.module(ident, a, w)
    else:
        y = L.fn(ops.int8_matmul, a, w)
    if len(m) != 1:
        shape = tuple(L.num(tout["out"].axis(a).size) for a in m)
        y = L.method("unflatten", y, -2, shape) if m else L.method("squeeze", y, -2)
    y = _split_trailing(L, y, tuple(L.num(tout["out"].axis(a).size) for a in n))
    return L.permute(y, [*batch, *m, *n], out)


# ---------------------------------------------------------------- add_norm (residual add + norm)
@lowers("add_norm")
def _add_norm(L: Lowerer, b, x, tin, tout):
    """CUDA (`fused="ncd"`): ncd.ops.add_layer_norm / add_rms_norm, the sum and the normed sum
    in one pass. Elsewhere: the add, then the norm's nn.LayerNorm / nn.RMSNorm, as the two
    boxes it replaces lower (the same parameters, names and results)."""
    t = tin["x"]
    ident = _norm_holder(L, b, b.norm, t)
    if runs_norm_kernels(L):
        y, s = lower_norm(L, b, ident, x["x"], t, residual=x["h"])
        return {"out": y, "sum": s}
    s = L.fn(operator.add, x["x"], x["h"])
    return {"out": _last(L, s, t.names, b.over, lambda n: L.module(ident, n)), "sum": s}


# ---------------------------------------------------------------- long_conv (by FFT)
@lowers("long_conv")
def _long_conv(L: Lowerer, b, x, tin, tout):
    """runtime.long_conv along x's seq dim, in x's layout; the filter laid out to broadcast
    against x, its taps where x has seq."""
    t, h = tin["x"], tin["filter"]
    tap = b.taps(t, h)
    names = [b.seq if a == tap else a for a in h.names]
    return {"out": L.fn(runtime.long_conv, x["x"], L.align(x["filter"], names, t.names),
                        dim=_dim(t, b.seq))}  # fmt: skip


# ---------------------------------------------------------------- short_conv (conv + slice + SiLU)
@lowers("short_conv")
def _short_conv(L: Lowerer, b, x, tin, tout):
    """x laid out [rest..., axis, channel] (rest folded into one batch axis), then
    ncd.ops.short_conv (`fused="ncd"`, or on CUDA where `choices` picks it and the filter is
    no wider than its kernels take: the Triton kernels on CUDA, the reference elsewhere) or
    the conv1d, slice and SiLU of the boxes it replaces (`runtime.short_conv`; also on the
    meta device that `to_source` writes from, unless `fused="ncd"`). The weights are held
    by an nn.Conv1d named after the box, as the `conv` box held them."""
    t = tin["x"]
    C = L.num(t.axis(b.channel).size)
    mod = nn.Conv1d(*plain((C, C, b.kernel)), padding=b.kernel - 1, groups=plain(C), bias=b.bias)
    ident = L.hold(mod, Call("nn.Conv1d", C, C, b.kernel, padding=b.kernel - 1, groups=C,
                             bias=b.bias))  # fmt: skip
    w = L.param(ident, "weight")
    bias = L.param(ident, "bias") if b.bias else None
    rest = [a for a in t.names if a not in (b.axis, b.channel)]
    want = [*rest, b.axis, b.channel]
    h = L.permute(x["x"], t.names, want)
    if len(rest) != 1:
        h = L.method("flatten", h, 0, len(rest) - 1) if rest else L.method("unsqueeze", h, 0)
    device = torch.device(L.opts.device)
    kernels = L.opts.fused == "ncd" or (
        device.type == "cuda" and short_conv_kernels(b.kernel, device, L.opts.fused)
    )
    act = "silu" if b.activation == "silu" else None
    packed = {"cu_seqlens": x["offsets"]} if b.packed else {}
    fn = ops.short_conv if kernels else runtime.short_conv
    y = L.fn(fn, h, w, bias, activation=act, **packed)
    if len(rest) != 1:
        shape = tuple(L.num(t.axis(a).size) for a in rest)
        y = L.method("unflatten", y, 0, shape) if rest else L.method("squeeze", y, 0)
    return {"out": L.permute(y, want, tout["out"].names)}


# ---------------------------------------------------------------- routing
def _full(L: Lowerer, node, names, target):
    """`node` (axes `names`, a subset of `target`) permuted into `target`'s order with a
    size-1 axis wherever it has none: of `target`'s rank (torch.take_along_dim and
    scatter_add want operands of one rank)."""
    names = list(names)
    node = L.permute(node, names, [a for a in target if a in names])
    idx = tuple(slice(None) if a in names else None for a in target)
    return node if None not in idx else L.fn(operator.getitem, node, idx)


def _long(L: Lowerer, node, t: TensorType):
    """Positions as int64, which torch's indexing functions take."""
    return node if t.dtype == "int64" else L.method("long", node)


@lowers("gather")
def _gather(L: Lowerer, b, x, tin, tout):
    """torch.gather along `axis` of x as it is laid out, the positions laid out as x with the
    axes `into` in the place of `axis` (flattened into one, or one position where there are
    none) and expanded over the axes of x they lack. x is neither expanded along `into` nor
    reordered: its backward scatters into zeros of x's shape and layout, which are x's
    gradient as they are; over x expanded along `into` it made zeros k times as large (a
    routed gather of k = T/8 tokens held B·D·T²/8 elements)."""
    t, ti = tin["x"], tin["index"]
    into, d = list(b.into), t.names.index(b.axis)
    before, after = list(t.names[:d]), list(t.names[d + 1 :])
    ii = _full(L, _long(L, x["index"], ti), ti.names, [*before, *(into or [None]), *after])
    # Sizes are read off the operands as they run, not the bound sizes, so that the batch
    # and the length stay free (a mixture of experts runs at any batch size).
    kept = L.fn(operator.getitem, L.method("size", ii), slice(d, d + len(into)))
    if len(into) > 1:
        ii = L.method("flatten", ii, d, d + len(into) - 1)
    if set(ti.names) - set(into) != {*before, *after}:
        size = L.method("size", x["x"])
        lead, tail = (L.fn(operator.getitem, size, s) for s in (slice(None, d), slice(d + 1, None)))
        ii = L.method("expand", ii, L.fn(operator.add, L.fn(operator.add, lead, (-1,)), tail))
    y = L.fn(torch.gather, x["x"], d, ii)
    if len(into) != 1:
        y = L.method("unflatten", y, d, kept) if into else L.method("squeeze", y, d)
    return {"out": L.permute(y, [*before, *into, *after], tout["out"].names)}


@lowers("scatter")
def _scatter(L: Lowerer, b, x, tin, tout):
    """Tensor.scatter_add_ into zeros [*rest, axis] from src laid out [*rest, over] (the axes
    `over` flattened into one) with the positions expanded to src's shape."""
    t, ti = tin["src"], tin["index"]
    rest = [a for a in t.names if a not in b.over]
    target = [*rest, *b.over]
    s = L.permute(x["src"], t.names, target)
    i = _full(L, _long(L, x["index"], ti), ti.names, target)
    if tuple(ti.names) != tuple(target):
        i = L.method("expand_as", i, s)
    if len(b.over) > 1:
        s = L.method("flatten", s, len(rest))
        i = L.method("flatten", i, len(rest))
    n = L.num(tout["out"].axis(b.axis).size)
    # the zeros' leading sizes are src's as it runs, so that the batch stays free
    lead = L.fn(operator.getitem, L.method("size", s), slice(None, len(rest)))
    zeros = L.method("new_zeros", s, L.fn(operator.add, lead, (n,)))
    y = L.method("scatter_add", zeros, -1, i, s)
    return {"out": L.permute(y, [*rest, b.axis], tout["out"].names)}


@lowers("one_hot")
def _one_hot(L: Lowerer, b, x, tin, tout):
    """A float32 one-hot (the circuit's float type, the box's default) takes the dtype of the
    circuit's first float input, so that a module run in bfloat16 (`compile(dtype=...)`,
    `module.to(...)`) masks in bfloat16 rather than promoting what it multiplies to float32;
    other dtypes are kept as written."""
    n = L.num(tout["out"].axis(b.into).size)
    y = L.fn(F.one_hot, _long(L, x["x"], tin["x"]), n)
    like = _float_input(L) if b.dtype == "float32" else None
    if like is not None:
        return {"out": L.method("type_as", y, like)}
    return {"out": L.method("to", y, getattr(torch, b.dtype))}


def _float_input(L: Lowerer):
    """The placeholder of the circuit's first floating-point input, or None."""
    for inp in L.c.circuit.inputs:
        if inp.dtype in FLOAT_DTYPES:
            return L.env[("", inp.name)]
    return None


COMPARE = {"eq": torch.eq, "ne": torch.ne, "lt": torch.lt, "le": torch.le, "gt": torch.gt,
           "ge": torch.ge}  # fmt: skip


@lowers("compare")
def _compare(L: Lowerer, b, x, tin, tout):
    return _pairwise(L, COMPARE[b.fn], x, tin, tout)


@lowers("where")
def _where(L: Lowerer, b, x, tin, tout):
    out = tout["out"].names
    cond = L.align(x["cond"], tin["cond"].names, out)
    a = L.align(x["a"], tin["a"].names, out)
    if b.fill is not None:
        return {"out": L.fn(torch.where, cond, a, float(b.fill))}
    c = L.align(x["b"], tin["b"].names, out)
    return {"out": L.fn(torch.where, cond, a, c)}
