"""Cost rules of softmax attention, add + norm and short convolution, from ops/*/cost.py."""

from __future__ import annotations

from dataclasses import dataclass, field

from ncd.circuits.types import TensorType
from ncd.ops import attention_cost

from ...choices import attention_backend
from .common import (
    UNARY_FLOPS,
    ZERO,
    BoxView,
    Expr,
    Rule,
    Saved,
    _if,
    _in,
    _out,
    _own,
    costs,
    numel,
)
from .normalise import _rms_kept, _stat_bytes


def _attention_dims(v: BoxView):
    b = v.box
    q, k, vv = v.x("q"), v.x("k"), v.x("v")
    T, S = v.size(q, b.query), v.size(k, b.key)
    K, V = v.size(q, b.head), v.size(vv, b.value)
    batch = numel(q) / (T * K)
    return batch, T, S, K, V


def _bytes_per(v: BoxView) -> Expr:
    return v.nbytes(TensorType((), v.x("q").dtype))


def kernel_order(batch: list[str], seq: str, feat: str) -> tuple[str, ...]:
    """The axis order the kernels of ncd.ops read a tensor in (compiler/fused.py, `_to_bthk`):
    batch axes in q's own order, the last of them after the sequence axis."""
    if not batch:
        return (seq, feat)
    return (*batch[:-1], seq, batch[-1], feat)


def relayouts(kind, query, key, head, names, layouts) -> tuple[list[str], bool]:
    """Copies the fused attention ops make because of memory order: (which of q, k, v are
    copied into the kernels' ``[B, T, H, K]`` and kept for the backward, whether the output's
    gradient is copied). `names` and `layouts`: role (q, k, v, out) -> axis names in type
    order and in memory order; the output's gradient is taken to come in its names' order.
    Softmax attention copies every input the kernels would see permuted, and a cotangent not
    in the kernels' order; linear attention reads permuted inputs through their strides,
    copying q and k only when their layouts differ, and a cotangent not in v's layout
    (ops/linear_attention/chunk.py, `_readable`, `_backward`)."""
    if len(query.split()) != 1:  # several query axes are folded: treat as copied
        return ["q", "k", "v"], True
    batch = [a for a in names["q"] if a not in (query, key, head)]
    rest = [a for a in names["v"] if a not in batch and a != key]
    value = rest[0] if len(rest) == 1 else head
    want = {
        "q": kernel_order(batch, query, head),
        "k": kernel_order(batch, key, head),
        "v": kernel_order(batch, key, value),
    }
    grad_order = tuple(names["out"])
    if kind == "attention":
        permuted = [p for p in ("q", "k", "v") if tuple(layouts[p]) != want[p]]
        return permuted, grad_order != kernel_order(batch, query, value)
    order = [a for a in want["q"] if a != query]
    same = [a for a in layouts["q"] if a in order] == [a for a in layouts["k"] if a in order]
    return ([] if same else ["q", "k"]), grad_order != tuple(layouts["v"])


def _copies(v: BoxView, kind: str = "") -> tuple[list[Saved], Expr]:
    """Kept tensors for q, k, v (the op's copies where it makes them) and the bytes of a
    copied cotangent, from the box's input layouts (`relayouts`; `kind` "attention": the op
    copies every permuted input, "linear_attention": it reads them through their strides)."""
    b = v.box
    names = {p: v.x(p).names for p in ("q", "k", "v")} | {"out": v.out().names}
    layouts = {p: v.layouts.get(p, names[p]) for p in ("q", "k", "v")}
    if getattr(b, "kv_heads", None) is not None:  # grouped: the head axes last of the batch
        rn = {b.kv_heads: b.heads}
        own = (b.query, b.key, b.head, b.value, b.heads)
        names["q"] = (*[a for a in names["q"] if a not in own], b.heads, b.query, b.head)
        for p in ("k", "v"):
            names[p] = tuple(rn.get(a, a) for a in names[p])
            layouts[p] = tuple(rn.get(a, a) for a in layouts[p])
    copied, do_copy = relayouts(kind or b.kind, b.query, b.key, b.head, names, layouts)
    saved = [
        _own(f"{p}_copy", v.nbytes(v.x(p)), f"{p}, copied to [B, T, H, K]")
        if p in copied
        else _in(p)
        for p in ("q", "k", "v")
    ]
    return saved, (v.nbytes(v.out()) if do_copy else ZERO)


@costs("attention")
def attention(v: BoxView) -> Rule:
    b = v.box
    B, T, S, K, V = _attention_dims(v)
    bp = _bytes_per(v)
    kept, do_copy = _copies(v)
    # ops' formulas take (B, T, H, ...); the batch axes of the box, whatever they are, are B,
    # except grouped heads: B the others, H the query heads, Hkv the key/value heads.
    H, G, notes = 1, None, []
    if b.kv_heads is not None:
        H, G = v.size(v.x("q"), b.heads), v.size(v.x("k"), b.kv_heads)
        B = B / H
        notes = [f"grouped heads: FLOPs of {H} query heads, keys and values of {G} heads"]
    # a mask takes the causal pattern in: the kernel then computes every (query, key) pair
    causal = b.causal and not b.masked
    mk = MaskCost()
    if b.masked:
        m = v.x("mask")
        mk = mask_cost(B * H, T, S, numel(m), v.bytes_per(m), _combined(v), m.dtype == "bool",
                       bp, v.nbytes(v.out()), b.causal, v.grad("mask"))  # fmt: skip
        if G is not None:  # SDPA reads keys and values repeated to the query heads
            kv = B * S * (K + V) * bp
            kept = [kept[0], _own("kv_heads", H * kv, f"k, v repeated to the {H} query heads")]
            mk.io += (G + H) * kv
            mk.io_bwd += (G + H) * kv  # the copies' gradients summed over each group
            mk.bwd_temps += H * kv
            notes = [f"grouped heads: k and v of {G} heads repeated to the {H} query heads"]
            G = None
    flops = attention_cost.flops_forward(B, T, H, K, V, S, causal=causal) + mk.flops
    flops_bwd = attention_cost.flops_backward(B, T, H, K, V, S, causal=causal) + mk.flops
    o = _own("o", v.nbytes(v.out()), "SDPA's output (before empty rows are zeroed)")
    # SDPA's backward also holds a float32 dQ accumulator (FlashAttention-2's schedule)
    temps = attention_cost.backward_temp_bytes(B, T, H, K, atomic_dq=_sdpa_on_cuda(b.masked))
    dims = (B, T, H, K, V, S)
    return Rule(
        flops=flops,
        mm=2 * B * H * T * S * (K + V),  # FlopCounterMode counts every (query, key) pair
        flops_bwd=flops_bwd,
        mm_bwd=2 * B * H * T * S * (2 * K + 3 * V),
        mm_run=flops if causal else None,  # the kernel's products: the pairs it computes
        mm_run_bwd=flops_bwd if causal else None,
        saved=[
            *kept,
            o if b.masked else _out(),
            _own("lse", 4 * B * H * T, "log-sum-exp per query (float32)"),
            *mk.saved,
        ],
        bwd_temps=temps + do_copy + mk.bwd_temps,
        io=attention_cost.io_forward(*dims, Hkv=G, causal=causal, bytes_per=bp) + mk.io,
        io_bwd=attention_cost.io_backward(*dims, Hkv=G, causal=causal, bytes_per=bp) + mk.io_bwd,
        fused=softmax_attention_kernel(b.masked),
        notes=[
            "FLOPs, IO and saved tensors: ops/attention/cost.py (FlashAttention-2 kernel)",
            *notes,
            *mk.notes,
        ],  # fmt: skip
    )


def _combined(v: BoxView) -> Expr:
    """Elements of the mask SDPA takes: the mask's own, or with `causal` the mask and the
    causal pattern combined, over the mask's axes and the query and key axes."""
    b, m = v.box, v.x("mask")
    n = numel(m)
    if b.causal:
        for a, t in ((b.query, v.x("q")), (b.key, v.x("k"))):
            if m.axis(a) is None:
                n *= v.size(t, a)
    return n


@dataclass
class MaskCost:
    """What a mask adds to softmax attention, as `runtime.masked_attention` runs it."""

    flops: Expr = ZERO
    io: Expr = ZERO
    io_bwd: Expr = ZERO
    saved: list[Saved] = field(default_factory=list)
    bwd_temps: Expr = ZERO
    notes: list[str] = field(default_factory=list)


def mask_cost(BH, T, S, n_mask, mask_bp, n_sdpa, keep, bp, out_bytes, causal, bias_grad):
    """The mask's costs around SDPA's memory-efficient kernel (CUDA's backend for a mask),
    as `runtime.masked_attention` runs it: with `causal`, the mask of `n_mask` elements
    combined with the causal pattern into `n_sdpa`; for a keep-mask (`keep`), `any` over the
    keys (the rows left no key) and an `or`, then SDPA's conversion to a bias in the
    queries' type; for a bias, the cast to it, `> -inf`, `any` and a fill; the kernel reads
    the bias once forward and once backward (its broadcast served from cache) and keeps it;
    the output is zeroed where no key was left (SDPA's output and the rows kept). A bias
    needing a gradient: the kernel writes it over every (query, key) pair of each head, then
    sums it to the mask's shape. One FLOP per pair for the mask's add."""
    rows = n_sdpa / S  # the bool `any` over the keys, kept by the output's fill
    io = n_mask * mask_bp + n_sdpa * mask_bp if causal else ZERO
    if keep:
        io += n_sdpa + 2 * n_sdpa + n_sdpa * (1 + bp)  # any; or; SDPA's conversion
    else:
        io += n_sdpa * (mask_bp + bp) if mask_bp != bp else ZERO  # the cast to the queries'
        io += n_sdpa * (bp + 1) + n_sdpa + 2 * n_sdpa * bp + rows  # > -inf; any; fill
    io += n_sdpa * bp + 2 * out_bytes + rows  # the kernel's read; the output's fill
    io_bwd = n_sdpa * bp + 2 * out_bytes + rows
    bwd_temps = out_bytes  # the gradient of SDPA's output, zeroed in the empty rows
    notes = ["mask: SDPA's memory-efficient kernel (every pair computed; the bias kept)"]
    if bias_grad:
        full = BH * T * S * bp
        io_bwd += 2 * full + n_mask * mask_bp
        bwd_temps += full
        notes.append("the bias' gradient is written per (query, key) pair of each head, "
                     "then summed to the mask's shape")  # fmt: skip
    saved = [
        _own("bias", n_sdpa * bp, "the mask as SDPA's bias (the queries' type)"),
        _own("rows", rows, "the rows left a key (bool)"),
    ]
    return MaskCost(BH * T * S, io, io_bwd, saved, bwd_temps, notes)


def _sdpa_on_cuda(masked: bool = False) -> bool:
    return attention_backend("cuda", masked=masked) == "torch"


def softmax_attention_kernel(masked: bool = False) -> str:
    """What a fused softmax attention runs on CUDA by the compiler's choices (compiler/
    choices.py): PyTorch's SDPA or ncd.ops' kernel, both priced as a FlashAttention-2 kernel
    (SDPA's backward with its float32 dQ accumulator); a masked one always SDPA."""
    if _sdpa_on_cuda(masked):
        return "F.scaled_dot_product_attention" + (" (mask)" if masked else "")
    return "ncd.ops.softmax_attention"


@costs("add_norm")
def add_norm(v: BoxView) -> Rule:
    """The add (one FLOP an element) and the norm on the sum, which the norm keeps with its
    statistics (the summands are not kept; the RMS norm's as `_rms_kept` says); as lowered
    without ncd.ops' kernel, the add then the norm's layer, the same kept tensors. Under the
    fused lowering on CUDA the box is priced as ncd.ops' kernel (analyse.py: reads x and h,
    writes the sum and the output once)."""
    b, x = v.box, v.x()
    rows = numel(x) / v.sizes_of(x, b.over)
    total = _out("sum", "the residual sum")
    if b.norm == "layernorm":
        stats = [_own("mean", _stat_bytes(v, rows), "mean"),
                 _own("rstd", _stat_bytes(v, rows), "1/std")]  # fmt: skip
        return Rule(flops=(6 + 2 * b.affine) * numel(x), saved=[total, *stats])
    return Rule(flops=(4 + b.affine) * numel(x), saved=_rms_kept(v, total, rows, b.affine))


@costs("short_conv")
def short_conv(v: BoxView) -> Rule:
    """As lowered by default (compiler/runtime.py's short_conv). One sequence: PyTorch's
    conv1d padded kernel - 1 on both sides, the first positions kept, SiLU; the products over
    the padded length (what FlopCounterMode counts), the bias's add and SiLU; kept: the input,
    and for SiLU the convolution's whole padded output (SiLU keeps its input, a view of it).
    Packed sequences: the W taps of every token gathered, those before its sequence's start
    masked to 0, multiplied by the filter and summed (elementwise work, no matrix product);
    kept: the masked taps (for the filter's gradient), the mask (for x's) and SiLU's input.
    Under the fused lowering the box is priced as ncd.ops.short_conv (analyse.py: x read and
    y written once, only x kept)."""
    b, x = v.box, v.x()
    T, W = v.size(x, b.axis), b.kernel
    extra = (numel(x) if b.bias else ZERO) + (
        UNARY_FLOPS["silu"] * numel(x) if b.activation == "silu" else ZERO
    )
    silu_in = _own("y", v.nbytes(x), "the convolution's output (SiLU's input)")
    if b.packed:
        taps = numel(x) * W * v.bytes_per(x)
        flops = 2 * numel(x) * W + extra
        saved = [
            _own("taps", taps, "each token's W taps, masked at its sequence's start"),
            *_if(v.grad("x"), _own("mask", T * W, "the taps' mask (bool)")),
            *_if(b.activation == "silu", silu_in),
        ]
        return Rule(flops=flops, flops_bwd=2 * flops, saved=saved, temps=taps)
    padded = numel(x) / T * (T + W - 1)
    mm = 2 * padded * W
    mm_bwd = mm * (2 if v.grad("x") else 1)
    saved = [_in("x")]
    if b.activation == "silu":
        saved.append(_own("padded", padded * v.nbytes(x) / numel(x),
                          "the convolution's padded output (SiLU's input)"))  # fmt: skip
    return Rule(flops=mm + extra, mm=mm, mm_bwd=mm_bwd, flops_bwd=mm_bwd + 2 * extra, saved=saved)
