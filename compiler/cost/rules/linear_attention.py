"""Cost rule of the linear-attention box: each variant by its ops/ kernel's formulas."""

from __future__ import annotations

import copy as _copy_module
import dataclasses

import sympy

from ncd.circuits.types import TensorType
from ncd.ops import config as ops_config
from ncd.ops import delta_rule_cost, gla_cost, linear_attention_cost, simple_gla_cost

from ..symbolic import chunk_tail
from .common import ZERO, BoxView, Rule, Saved, _if, _in, _own, costs, numel
from .contraction import _Operand, einsum
from .fused import _attention_dims, _bytes_per, _copies, kernel_order


@costs("linear_attention")
def linear_attention_box(v: BoxView) -> Rule:
    """Each variant with the formulas of the kernel it lowers to (compiler/fused.py), as on
    CUDA: `linear` and `lightning` ncd.ops.linear_attention, `decay` (and packed `linear`,
    `lightning`) simple_gla, `gla` gla, `delta` and `gated_delta` the delta rules. What each
    keeps is what its autograd Function saves. Where ncd.ops runs its chunked PyTorch form
    instead (CPU tensors, float64, wide heads: `_runs_chunked_form`), that form's
    (`_simple_gla_chunked`, `_gla_chunked`, `_delta_chunked`). Non-causal `linear` is two
    einsums on every device (`_non_causal`). Grouped heads: `_grouped`."""
    if v.box.heads is not None:
        return _grouped(v)
    return _linear_attention_rule(v)


def _linear_attention_rule(v: BoxView) -> Rule:
    b = v.box
    if b.packed and not b.causal:
        return _packed_windows(v)
    if not b.causal and b.variant == "linear":
        return _non_causal(v)
    chunked = _runs_chunked_form(v, *_attention_dims(v)[3:])
    if b.variant in ("linear", "lightning") and not b.packed:
        return _simple_gla_chunked(v) if chunked else _plain_linear_attention(v)
    if b.variant in ("linear", "lightning", "decay"):
        return _simple_gla_chunked(v) if chunked else _simple_gla(v)
    if b.variant == "gla":
        return _gla(v)
    return _delta_chunked(v) if chunked else _delta_rule(v)


# The variants whose ops read grouped q and k in place (compiler/fused.py, `reads_groups`).
GROUPED_OPS = ("linear", "lightning", "decay", "gla", "delta", "gated_delta")


def _grouped(v: BoxView) -> Rule:
    """A grouped box as the lowering runs it (compiler/fused.py, `_repeat_to_heads`): the
    kernel of H heads, priced by the rule of an ungrouped box whose q and k have the H value
    heads, the heads last of the batch axes as the kernels take them, plus:

    - the causal ops of GROUPED_OPS (every variant but non-causal `linear`) read q and k of
      G groups in place: they keep the inputs (or their own contiguous copy of them where q
      and k are laid out differently; GLA's chunked PyTorch form its float32 copy of G
      heads), and their backward writes dq and dk per value head (temporaries of H heads)
      and sums them over each group's heads (an add per element beyond the first of each
      group, read and written); GLA's kernels write them into their float32 inter-chunk
      parts (already priced), and the sums are float32 (a temporary before 16-bit q's cast);
    - the other variants (`_repeated`) run on q and k repeated to the H heads (contiguous
      copies in their own axis order with H in the group axis' place): the copies' traffic
      (q, k read, H/G times as much written), kept in the inputs' place (or, where the kernel
      copies them again, freed in the forward), and backward the same sum of the kernel's
      gradients of the copies."""
    b = v.box
    native = b.causal and b.variant in GROUPED_OPS
    wide = {p: b.per_head(v.x(p), v.x("v")) for p in ("q", "k")}
    own = (b.query, b.key, b.head, b.value, b.heads)
    inner = _copy_module.copy(v)
    inner.ins, inner.layouts = dict(v.ins), dict(v.layouts)
    for p, t in wide.items():
        batch = [t.axis(a) for a in t.names if a not in own]
        seq = b.query if p == "q" else b.key
        # type order: the heads last of the batch (the kernels' H); memory: the copy's own, or
        # the input's read in place (the group axis as the heads', or a unit heads axis)
        order = [*batch, t.axis(b.heads), t.axis(seq), t.axis(b.head)]
        layout = t.names
        if native:
            layout = [b.heads if a == b.qk_heads else a for a in v.layouts.get(p, v.x(p).names)]
            if b.qk_heads is None:
                layout.insert(layout.index(b.head), b.heads)
        inner.ins[p], inner.layouts[p] = t.with_axes(order), tuple(layout)
    inner.groups_one = b.qk_heads is None or b.qk_heads in v.units  # (the chunked forms')
    groups = v.size(v.x("q"), b.qk_heads) if b.qk_heads is not None else 1
    inner.qk_share = groups / v.size(v.x("v"), b.heads) if native else 1
    r = _linear_attention_rule(inner)
    gla_kernel = b.variant == "gla" and r.fused == "ncd.ops.gla"
    H = v.size(v.x("v"), b.heads)
    G = v.size(v.x("q"), b.qk_heads) if b.qk_heads is not None else 1
    io = io_bwd = flops_bwd = temps = bwd_temps = ZERO
    saved = list(r.saved)
    for p in ("q", "k"):
        small, big = v.nbytes(v.x(p)), v.nbytes(wide[p])
        if native:
            for i, s in enumerate(saved):  # the op's contiguous copy is of q (k) as it came
                if s.where == "own" and s.ref == f"{p}_copy":
                    saved[i] = _own(s.ref, small, f"{p}, copied to [B, T, G, K]")
                elif s.where == "own" and s.ref == f"{p}32":  # GLA's chunked form: G heads
                    w = 8 if _bytes_per(v) == 8 else 4
                    saved[i] = _own(s.ref, w * numel(v.x(p)), f"{p}, float32 copy of G heads")
        else:
            io += small + big
            if r.io is None:  # the analyser's default reads q (k) at the box's G heads, and
                # writes its gradient so: the op reads the copy of H heads, writes its gradient
                io += big - small
                io_bwd += (big - small) if v.grad(p) else ZERO
            kept = [i for i, s in enumerate(saved) if s.where == "in" and s.ref == p]
            for i in kept:
                saved[i] = _own(f"{p}_heads", big, f"{p}, repeated to the {b.heads} heads")
            if not kept:  # the kernel keeps a copy of its own: the repeated one is freed
                temps += big
        # the gradients of the H heads summed per group: by the op itself (dq and dk both,
        # whichever is needed), or by autograd through the repeat
        if native and gla_kernel and sympy.simplify(H - G) != 0:
            io_bwd += 4 * (numel(wide[p]) + numel(v.x(p)))
            flops_bwd += numel(wide[p]) - numel(v.x(p))
            bwd_temps += 4 * numel(v.x(p)) if _bytes_per(v) != 4 else ZERO
        elif (native and sympy.simplify(H - G) != 0) or (not native and v.grad(p)):
            io_bwd += small + big
            flops_bwd += numel(wide[p]) - numel(v.x(p))
            bwd_temps += big
    if native:
        note = (
            f"grouped heads: q and k of {G} group(s) read in place by the {H} heads (FLOPs of "
            "every head; dq and dk formed per head and summed per group)"
        )
    else:
        note = (
            f"grouped heads: q and k of {G} group(s) repeated to the {H} heads before the kernel "
            "(FLOPs of every head; the copies kept; their gradients summed per group)"
        )
    base_bwd = r.flops_bwd if r.flops_bwd is not None else 2 * (r.flops - r.mm) + r.mm_bwd
    priced = r.io is not None  # else (packed windows) the analyser's default, from the ports
    return dataclasses.replace(
        r,
        flops_bwd=base_bwd + flops_bwd,
        saved=saved,
        temps=r.temps + temps,
        bwd_temps=r.bwd_temps + bwd_temps,
        io=r.io + io if priced else None,
        extra_io=r.extra_io + (ZERO if priced else io),
        io_bwd=r.io_bwd + io_bwd if r.io_bwd is not None else None,
        extra_io_bwd=r.extra_io_bwd + (ZERO if r.io_bwd is not None else io_bwd),
        notes=[*r.notes, note],
    )


def _plain_linear_attention(v: BoxView) -> Rule:
    b = v.box
    B, T, _, K, V = _attention_dims(v)
    bp = _bytes_per(v)
    notes = ["FLOPs, IO and saved tensors: ops/linear_attention/cost.py (chunked kernel, C=64)"]
    la, nz = linear_attention_cost, bool(b.normalize)
    kept, do_copy = _copies(v)
    precise = bp < 4  # normalised 16-bit inputs: float32 operands as hi + lo pairs
    flops = la.flops_forward(B, T, 1, K, V, normalize=nz, precise=precise)
    flops_bwd = la.flops_backward(B, T, 1, K, V, normalize=nz, precise=precise)
    norm = _own("o32_den", 4 * B * T * (V + 1), "output and denominator (float32)")
    return Rule(
        flops=flops,
        mm=flops,
        flops_bwd=flops_bwd,
        mm_bwd=flops_bwd,
        saved=[*kept, *_if(nz, norm)],
        bwd_temps=la.backward_temp_bytes(B, T, 1, K, V, bytes_per=bp, normalize=nz) + do_copy,
        io=la.io_forward(B, T, 1, K, V, bytes_per=bp, normalize=nz),
        io_bwd=la.io_backward(B, T, 1, K, V, bytes_per=bp, normalize=nz),
        fused="ncd.ops.linear_attention",
        notes=notes,
    )


def _token_gate(v: BoxView, port: str, what: str) -> Saved:
    """A scalar gate as the kernels keep it, float32 [B, T, H]: the input itself where it is
    float32 and laid out so already, else the op's copy."""
    b = v.box
    t = v.x(port)
    B, T, *_ = _attention_dims(v)
    batch = [a for a in v.x("q").names if a not in (b.query, b.key, b.head, b.value)]
    in_place = (
        b.key in t.names
        and v.nbytes(TensorType((), t.dtype)) == 4
        and tuple(v.layouts.get(port, t.names)) == kernel_order(batch, b.key, b.head)[:-1]
    )
    return _in(port) if in_place else _own(f"{port}32", 4 * B * T, f"{what}, float32 [B, T, H]")


def _packed_note(v: BoxView) -> list[str]:
    return ["packed sequences: priced per token (a chunk per sequence end not counted)"] * bool(
        v.box.packed
    )


def _sequences(v: BoxView):
    """The sequences packed along the box's tokens (N - 1 for N offsets); 1 unpacked."""
    return numel(v.x("offsets")) - 1 if v.box.packed else 1


def _packed_chunks_note(v: BoxView) -> list[str]:
    return [
        "packed sequences: each takes chunks of its own, priced as the most N - 1 sequences "
        "of T tokens can take (one more chunk a sequence, the products as one sequence's)"
    ] * bool(v.box.packed)


def _simple_gla(v: BoxView) -> Rule:
    B, T, _, K, V = _attention_dims(v)
    bp = _bytes_per(v)
    sg = simple_gla_cost
    dg = "g" in v.ins and v.grad("g")
    kept, do_copy = _copies(v, "linear_attention")  # read through their strides, as linear's
    # the kernels keep the gates' in-chunk cumulative sums, float32 [H, B T], whatever g is
    what = "gates' in-chunk cumulative sums" if "g" in v.ins else "decay"
    gate = _own("g32", 4 * B * T, f"{what}, float32")
    flops = sg.flops_forward(B, T, 1, K, V, tail=chunk_tail)  # whole chunks of 64
    flops_bwd = sg.flops_backward(B, T, 1, K, V, want_dg=dg, precise=dg and bp != 4,
                                  tail=chunk_tail)  # fmt: skip
    return Rule(
        flops=flops,
        mm=flops,
        flops_bwd=flops_bwd,
        mm_bwd=flops_bwd,
        saved=[*kept, gate],
        bwd_temps=sg.backward_temp_bytes(B, T, 1, K, V, want_dg=dg) + do_copy,
        io=sg.io_forward(B, T, 1, K, V, bytes_per=bp),
        io_bwd=sg.io_backward(B, T, 1, K, V, bytes_per=bp, want_dg=dg),
        fused="ncd.ops.simple_gla",
        notes=[
            "FLOPs, IO and saved tensors: ops/simple_gla/cost.py (chunked kernel, C=64)",
            *_packed_note(v),
        ],  # fmt: skip
    )


# Heads wider than this run ncd.ops' chunked PyTorch forms on every device (compiler/fused.py).
MAX_KERNEL_WIDTH = 128


def _runs_chunked_form(v: BoxView, K, V) -> bool:
    """Whether ncd.ops runs its chunked PyTorch form rather than the Triton kernels: on CPU
    tensors, in float64, for heads wider than the kernels take (the delta rules: keys), and
    for the delta rules' heads narrower than their kernels take on CUDA (widths under the
    bound sizes; where they are free, the kernels)."""
    widths = [v.number(w) for w in (K, V)]
    delta = v.box.variant in ("delta", "gated_delta")
    wide = any(w is not None and w > MAX_KERNEL_WIDTH for w in widths[: 1 if delta else 2])
    narrow = delta and any(w is not None and w < delta_rule_cost.MIN_GPU_WIDTH for w in widths)
    return v.platform == "cpu" or _bytes_per(v) == 8 or wide or narrow


def _gla_chunked(v: BoxView) -> Rule:
    """ops/gla/reference.py's `gla_chunked`, through autograd: float32 (float64) compute, the
    sequence's own chunks (a short one is not a 64-token tile), q, k and g kept at the compute
    width (16-bit ones as float32 copies) with each chunk's exponentials, einsum operands,
    scores and entering state."""
    B, T, _, K, V = _attention_dims(v)
    bp = _bytes_per(v)
    w = 8 if bp == 8 else 4  # the compute dtype: float32 at least
    gb = v.nbytes(TensorType((), v.x("g").dtype))
    kept = [
        _in(p) if width == w else _own(f"{p}32", w * B * T * K, f"{p}, float32 copy")
        for p, width in (("q", bp), ("k", bp), ("g", gb))
    ]
    sizes = dict(tail=chunk_tail, minimum=sympy.Min)  # symbolic T: bounded terms of their own
    chunks = gla_cost.chunked_kept_bytes(B, T, 1, K, V, compute_bytes=w,
                                         sequences=_sequences(v), **sizes)  # fmt: skip
    mm = gla_cost.chunked_flops_forward(B, T, 1, K, V, tail=chunk_tail)
    temps = gla_cost.chunked_temp_bytes(B, T, 1, K, V, compute_bytes=w, minimum=sympy.Min)
    return Rule(
        flops=mm + 10 * B * T * K,  # the cumulative gates, their differences, exps and products
        mm=mm,
        mm_bwd=gla_cost.chunked_flops_backward(B, T, 1, K, V, **sizes),
        saved=[*kept, _own("chunks", chunks, "per chunk: exponentials, einsum operands, scores")],
        temps=temps,
        bwd_temps=ZERO,  # (chunked_temp_bytes says why)
        frees_kept=True,
        extra_io=chunks,
        fused="ncd.ops.gla (chunked PyTorch form)",
        notes=[
            "FLOPs and saved tensors: ops/gla/cost.py, chunked_* (the chunked PyTorch form "
            "that runs here: the sequence's own chunks of at most 64 tokens)",
            "chunks whose gates span more than 40 nats from their middle row take the exact "
            "form: the same products, each weight e^(b_i - b_j) kept (about 3 n K floats more "
            "a token, n the chunk's length)",
            *_packed_chunks_note(v),
        ],
    )


def _gla(v: BoxView) -> Rule:
    b = v.box
    if _runs_chunked_form(v, *_attention_dims(v)[3:]):
        return _gla_chunked(v)
    B, T, _, K, V = _attention_dims(v)
    bp = _bytes_per(v)
    gb = v.nbytes(TensorType((), v.x("g").dtype))
    kept, do_copy = _copies(v, "attention")  # contiguous copies of permuted inputs
    g = v.x("g")
    batch = [a for a in v.x("q").names if a not in (b.query, b.key, b.head, b.value)]
    gate = (
        _in("g")
        if tuple(v.layouts.get("g", g.names)) == kernel_order(batch, b.key, b.head)
        else _own("g_copy", v.nbytes(g), "g, copied to [B, T, H, K]")
    )
    C = 64
    A = _own("A", 4 * B * T * C, "intra-chunk scores A, float32 [B, T, H, 64]")
    flops = gla_cost.flops_forward(B, T, 1, K, V, C=C, tail=chunk_tail)  # whole chunks
    flops_bwd = gla_cost.flops_backward(B, T, 1, K, V, C=C, tail=chunk_tail)
    return Rule(
        flops=flops,
        mm=flops,
        flops_bwd=flops_bwd,
        mm_bwd=flops_bwd,
        saved=[*kept, gate, A],
        temps=gla_cost.forward_temp_bytes(B, T, 1, K, V, bytes_per=bp),
        bwd_temps=gla_cost.backward_temp_bytes(B, T, 1, K, V, C=C, bytes_per=bp) + do_copy,
        io=gla_cost.io_forward(B, T, 1, K, V, bytes_per=bp, gate_bytes=gb, C=C),
        io_bwd=gla_cost.io_backward(B, T, 1, K, V, bytes_per=bp, gate_bytes=gb, C=C),
        fused="ncd.ops.gla",
        notes=[
            "FLOPs, IO and saved tensors: ops/gla/cost.py (chunked kernel, C=64, BC=16)",
            *_packed_note(v),
        ],  # fmt: skip
    )


def _delta_rule(v: BoxView) -> Rule:
    B, T, _, K, V = _attention_dims(v)
    bp = _bytes_per(v)
    gated = v.box.variant == "gated_delta"
    dr = delta_rule_cost
    kept, do_copy = _copies(v, "attention")  # contiguous copies of permuted inputs
    gates = [_token_gate(v, "beta", "beta")] + ([_token_gate(v, "g", "gates")] if gated else [])
    inverse = _own("wy_inverse", B * T * 64 * bp, "T, each chunk's WY inverse (64 per token)")
    s = ops_config.settings
    keep = s.delta_keep_states  # the forward's scan also writes S and V'
    values = s.gated_delta_keep_values if gated else s.delta_keep_values  # V' in -W's place
    saved = (
        [] if values else [_own("wy_w", B * T * K * bp, "-W = -T diag(beta gamma) K (K per token)")]
    )
    if keep or values:
        saved.append(_own("v_new", B * T * V * bp, "V' = U - W S (V per token)"))
    if keep:
        saved.append(
            _own("chunk_states", B * T * K * V * bp / 64, "the state entering each chunk (K x V)")
        )
    ckpt = s.delta_checkpoint_states and not keep  # the forward's scan also writes checkpoints
    T_seg = sympy.sympify(T)  # (a sympy T: the checkpoints' count is a ceiling, which // gives)
    if ckpt:
        saved.append(
            _own(
                "state_checkpoints",
                dr.checkpoint_bytes(B, T_seg, 1, K, V),
                "the state entering every 16th chunk (float32 K x V)",
            )  # fmt: skip
        )
    prep = s.delta_prepared_qk  # the prepare kernel also forms Q K^T
    flops = dr.flops_forward(B, T, 1, K, V, gated=gated, prepared=prep)
    flops_bwd = dr.flops_backward(
        B, T, 1, K, V, gated=gated, keep_states=keep, prepared=prep, keep_values=values
    )
    name = "gated_delta_rule" if gated else "delta_rule"
    switches = dict(bytes_per=bp, gated=gated, keep_states=keep, prepared=prep, keep_values=values)
    io_switches = dict(switches, checkpoints=ckpt)
    return Rule(
        flops=flops,
        mm=flops,
        flops_bwd=flops_bwd,
        mm_bwd=flops_bwd,
        saved=[*kept, *gates, inverse, *saved],
        temps=dr.forward_temp_bytes(B, T, 1, K, V, **switches),
        bwd_temps=do_copy
        + dr.backward_temp_bytes(B, T, 1, K, V, bytes_per=bp, keep_states=keep, keep_values=values),
        io=dr.io_forward(B, T_seg, 1, K, V, **io_switches),
        io_bwd=dr.io_backward(B, T_seg, 1, K, V, **io_switches),
        fused=f"ncd.ops.{name}",
        notes=[
            "FLOPs, IO and saved tensors: ops/delta_rule/cost.py (WY chunked kernel, C=64)",
            *_packed_note(v),
            *(["ops switch delta_keep_states on: the chunk states and V' kept"] if keep else []),
            *([f"ops switch {name}_keep_values on: V' kept in place of -W"] if values else []),
            *(["ops switch delta_prepared_qk on: Q K^T formed once per chunk"] if prep else []),
            *(
                ["ops switch delta_checkpoint_states off: the states rescanned whole"]
                if not (s.delta_checkpoint_states or keep)
                else []
            ),
            *(
                ["ops switch gated_delta_factored off: the scans form the decay matrix"]
                if gated and not s.gated_delta_factored
                else []
            ),
        ],  # fmt: skip
    )


def _compute_width(v: BoxView) -> int:
    """Bytes of an element of the chunked forms' compute dtype: float32 at least."""
    return 8 if _bytes_per(v) == 8 else 4


def _at_width(v: BoxView, port: str, w, nbytes, what: str) -> Saved:
    """An input the chunked form keeps as converted to its compute dtype: the input itself
    where it has that width, else the form's copy."""
    t = v.x(port)
    same = v.nbytes(TensorType((), t.dtype)) == w
    return _in(port) if same else _own(f"{port}{8 * w}", nbytes, f"{what}, {8 * w}-bit copy")


def _in_place(v: BoxView) -> tuple[bool, bool]:
    """Whether the chunked forms' einsums read (q and k, v) without copies: their batch of
    sequences (the batch axes before the heads) is one, or q and k have one group (v one
    head). The operands are then views of [B, T, H, K] inputs."""
    b = v.box
    batch = [a for a in v.x("q").names if a not in (b.query, b.key, b.head, b.value)]
    one_sequence = all(a in v.units for a in batch[:-1])
    one_head = not batch or batch[-1] in v.units
    groups_one = getattr(v, "groups_one", one_head)  # set by `_grouped`
    heads_first = bool(batch) and all(
        lay.index(batch[-1]) < lay.index(seq)
        for p, seq in (("q", b.query), ("k", b.key))
        for lay in [list(v.layouts.get(p, v.x(p).names))]
        if batch[-1] in lay
    )  # q and k laid out [B, H, T, K]: (sequence, head) pairs fold in place
    return one_sequence or groups_one or heads_first, one_sequence or one_head


def _simple_gla_chunked(v: BoxView) -> Rule:
    """ops/simple_gla/reference.py's `simple_gla_chunked` through autograd, which CPU tensors
    and float64 run for `decay`, and for `linear` and `lightning` through
    ops/linear_attention/reference.py's `linear_attention_chunked` (a constant per-head
    log-decay, no gradient; `normalize`: one more value column of ones, and the division
    keeping the numerator, the denominator and where it is zero)."""
    b = v.box
    B, T, _, K, V = _attention_dims(v)
    w = _compute_width(v)
    nz = b.variant in ("linear", "lightning") and bool(b.normalize)
    Vc = V + 1 if nz else V
    dg = b.variant == "decay" and "g" in v.ins and v.grad("g")
    qk_view, v_view = _in_place(v)
    sizes = dict(tail=chunk_tail, minimum=sympy.Min)
    share = getattr(v, "qk_share", 1)  # grouped q and k: q k^T once per group
    chunks = simple_gla_cost.chunked_kept_bytes(
        B, T, 1, K, Vc, compute_bytes=w, want_dg=dg, qk_copies=not qk_view, v_copy=not v_view,
        share=share, sequences=_sequences(v), **sizes,
    )  # fmt: skip
    kept = [_own("chunks", chunks, "per chunk: decays, einsum operands, scores, states")]
    if qk_view:  # einsum keeps q and k themselves (at the compute width)
        kept += [_at_width(v, p, w, w * numel(v.x(p)) * share, p) for p in ("q", "k")]
    if dg:  # the keys' weights multiply v; the clamp of g keeps g
        kept += [_at_width(v, "v", w, w * B * T * V, "v"),
                 _at_width(v, "g", w, w * numel(v.x("g")), "g")]  # fmt: skip
    if nz:
        kept.append(_own("normalized", w * B * T * (Vc + 1) + B * T,
                         "numerator and denominator, where it is zero"))  # fmt: skip
    mm = simple_gla_cost.chunked_flops_forward(B, T, 1, K, Vc, share=share, tail=chunk_tail)
    name = "simple_gla" if b.variant == "decay" else "linear_attention"
    return Rule(
        flops=mm + 4 * B * T * Vc,  # the row weights on the reads and the values
        mm=mm,
        mm_bwd=simple_gla_cost.chunked_flops_backward(B, T, 1, K, Vc, share=share, **sizes),
        saved=kept,
        temps=simple_gla_cost.chunked_temp_bytes(
            B, T, 1, K, Vc, compute_bytes=w, want_dg=dg, minimum=sympy.Min, tail=chunk_tail
        ),
        bwd_temps=simple_gla_cost.chunked_backward_temp_bytes(
            B, T, 1, K, Vc, compute_bytes=w, want_dg=dg, minimum=sympy.Min
        )
        + (4 * w * B * T * V if nz else 0),  # the division's gradients, before the chunks'
        frees_kept=True,
        extra_io=chunks,
        fused=f"ncd.ops.{name} (chunked PyTorch form)",
        notes=[
            "FLOPs and saved tensors: ops/simple_gla/cost.py, chunked_* (the chunked PyTorch "
            "form that runs here: the sequence's own chunks of at most 64 tokens)",
            *_packed_chunks_note(v),
        ],
    )


def _delta_chunked(v: BoxView) -> Rule:
    """ops/delta_rule/chunked.py's `gated_delta_rule_chunked` through autograd, which CPU
    tensors and float64 run: the sequence padded to whole chunks of 64, every chunk's
    products at once, a loop over the chunks for the state. Packed sequences (N offsets)
    each take chunks of their own, priced as one sequence of N - 2 chunks more than T
    needs: the most N - 1 sequences of T tokens can take."""
    B, T, _, K, V = _attention_dims(v)
    if v.box.packed:  # each sequence in chunks of its own: at most one more chunk a sequence
        T = T + 64 * (numel(v.x("offsets")) - 2)
    w = _compute_width(v)
    gated = v.box.variant == "gated_delta"
    dr = delta_rule_cost
    chunks = dr.chunked_kept_bytes(B, T, 1, K, V, compute_bytes=w, gated=gated,
                                   copies=not _padded_views(v, T), tail=chunk_tail)  # fmt: skip
    kept = [_own("chunks", chunks, "padded inputs, einsum operands, C x C products, states")]
    if gated and v.grad("g"):
        kept.append(_at_width(v, "g", w, w * numel(v.x("g")), "g"))
    mm = dr.chunked_flops_forward(B, T, 1, K, V, tail=chunk_tail)
    P = dr.chunked_tokens(T, tail=chunk_tail)
    name = "gated_delta_rule" if gated else "delta_rule"
    return Rule(
        flops=mm + 2 * B * P * 64 * 64,  # (the triangular solves, not counted as products)
        mm=mm,
        mm_bwd=dr.chunked_flops_backward(B, T, 1, K, V, tail=chunk_tail),
        saved=kept,
        temps=dr.chunked_temp_bytes(B, T, 1, K, V, compute_bytes=w, gated=gated, tail=chunk_tail),
        bwd_temps=dr.chunked_backward_temp_bytes(
            B, T, 1, K, V, compute_bytes=w, gated=gated, tail=chunk_tail, minimum=sympy.Min
        ),
        extra_io=chunks,
        fused=f"ncd.ops.{name} (chunked PyTorch form)",
        notes=[
            "FLOPs and saved tensors: ops/delta_rule/cost.py, chunked_* (the chunked PyTorch "
            "form that runs here: the sequence padded to whole chunks of 64)",
        ],
    )


def _padded_views(v: BoxView, T) -> bool:
    """Whether the delta rules' chunked form multiplies views of its padded q and k (F.pad
    keeps their memory order): where both are laid out with the heads before the tokens, and
    the features last or the sequence a single chunk (at most 64 tokens)."""
    b = v.box
    batch = [a for a in v.x("q").names if a not in (b.query, b.key, b.head, b.value)]
    if not batch:
        return True
    for p, seq in (("q", b.query), ("k", b.key)):
        lay = [a for a in v.layouts.get(p, v.x(p).names) if a not in v.units]
        if batch[-1] in lay and lay.index(batch[-1]) > lay.index(seq):
            return False
        if lay[-1] != b.head and not (sympy.sympify(T).is_number and T <= 64):
            return False
    return True


def _non_causal(v: BoxView) -> Rule:
    """Non-causal `linear` as compiler/fused.py lowers it on every device: kv = kᵀ v over
    the keys, then q kv (two torch.einsum calls, priced as the contraction rule prices
    einsum); `normalize` also sums k over the keys, forms q · Σk and divides (the division
    keeping the numerator and the denominator); a scale other than 1 multiplies the result."""
    b = v.box
    q, k, vv, out = v.x("q"), v.x("k"), v.x("v"), v.out()
    batch = [a for a in q.names if a not in (b.query, b.key, b.head, b.value)]
    sizes = {a.name: a.size for t in (q, k, vv) for a in t.axes}

    def operand(port):
        t = v.x(port)
        return _Operand(t.names, v.layouts[port], _in(port), v.grad(port),
                        {a.name: a.size for a in t.axes})  # fmt: skip

    kv_t = TensorType(tuple(vv.axis(a) if a != b.head else k.axis(a)
                            for a in (*batch, b.head, b.value)), out.dtype)  # fmt: skip
    first = einsum(v, [operand("k"), operand("v")], kv_t, out.dtype)
    kv = _Operand(kv_t.names, first.layout, _own("kv", v.nbytes(kv_t), "kᵀ v"),
                  v.grad("k") or v.grad("v"), sizes)  # fmt: skip
    second = einsum(v, [operand("q"), kv], out, out.dtype)
    saved = [*first.saved, *second.saved]
    temps = first.temps + second.temps
    if not any(s.where == "own" and s.ref == "kv" for s in saved):
        temps += v.nbytes(kv_t)
    mm, mm_bwd = first.mm + second.mm, first.mm_bwd + second.mm_bwd
    flops, extra = first.flops + second.flops, first.io + second.io
    scale = b.scale is not None and sympy.sympify(v.resolve(sympy.sympify(b.scale))) != 1
    rows = numel(out) / out.axis(b.value).size
    bp = v.bytes_per(out)
    if b.normalize:
        ks = numel(k) / k.axis(b.key).size  # Σk: [batch, head]
        mm += 2 * rows * k.axis(b.head).size
        mm_bwd += 2 * rows * k.axis(b.head).size * (int(v.grad("q")) + int(v.grad("k")))
        flops += numel(k) + numel(out)
        saved += [_in("q", "q (for q · Σk)"), _own("ksum", bp * ks, "Σk over the keys"),
                  _own("num", v.nbytes(out), "numerator q kv"),
                  _own("den", bp * rows, "denominator q · Σk")]  # fmt: skip
    if scale:
        flops += numel(out)
        temps += v.nbytes(out)  # the unscaled result, freed once scaled
    return Rule(
        flops=flops,
        mm=mm,
        mm_bwd=mm_bwd,
        saved=saved,
        layout={"out": second.layout},
        extra_io=extra,
        temps=temps,
        notes=["non-causal linear attention: q (kᵀ v), two einsums (no kernel)"],
    )


def _packed_windows(v: BoxView) -> Rule:
    """`runtime.packed_window_attention`: q, k, v copied into windows padded to the longest
    (priced as if no window were padded), Σ kᵀv per window, q (Σ kᵀv); with `normalize`, Σ k
    per window and the per-token denominator. N windows: the offsets' length less one."""
    B, T, _, K, V = _attention_dims(v)  # B: the head axis (packed inputs have no other)
    n = numel(v.x("offsets")) - 1
    bp = _bytes_per(v)
    nz = bool(v.box.normalize)
    mm = 4 * B * T * K * V
    other = (3 * B * T * K + B * T * V) if nz else ZERO
    qkv = bp * B * T * (2 * K + V)
    kv = bp * n * B * K * V
    saved = [
        _own("padded", qkv, "q, k, v padded into windows"),
        _own("kv", kv, "Σ kᵀv per window"),
        _own("index", 16 * T, "each token's window and place (int64)"),
        *_if(nz, _own("z", bp * B * T * K, "Σ k of each token's window"),
             _own("den", bp * B * T, "denominators")),
    ]  # fmt: skip
    return Rule(
        flops=mm + other,
        mm=mm,
        mm_bwd=2 * mm,
        saved=saved,
        extra_io=2 * qkv + 2 * kv,
        fused="runtime.packed_window_attention",
        notes=[
            "packed windows: PyTorch (no ncd.ops kernel); padding of unequal windows not counted"
        ],  # fmt: skip
    )
