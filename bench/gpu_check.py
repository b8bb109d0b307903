"""Correctness of the op library on the GPU, where the CPU tests cannot reach (bf16, the
compiled kernels, the Gluon backends). Not a test of the suite: run on a CUDA machine.

    bash bench/gpu.sh ops                                   # bf16 and fp16 (bench/README.md)
    python bench/gpu_check.py --dtypes float32              # where ncd imports
    TRITON_INTERPRET=1 python bench/gpu_check.py --device cpu --dtypes float32,float16

Families of cases (--ops):

- softmax, linear: every option of the public functions against the float64 references
  (outputs, final states and every gradient); softmax at whole-block lengths with the
  library's choice of backend (the Gluon kernels on Hopper), two of them also with the Triton
  kernels only.
- simple_gla: scalar-gate linear attention's kernels against its chunked float64 PyTorch form
  (itself tested against the recurrence), with gates per token or per head, weak (the
  factored chunks), strong (past the bound: the exact decay matrix) and mixed, initial and
  final states, packed sequences; every gradient, dg included.
- gla: GLA's kernels against its chunked float64 PyTorch form (itself tested against the
  recurrence), weak and strong gates, states, packed sequences; every gradient.
- linear, simple_gla, gla, delta_rule and gated_delta_rule also run grouped heads (labels
  "groups G/4": q and k of G = 1 or 2 heads read by the 4 heads of v, Mamba-2's B and C,
  Gated DeltaNet's more value heads), against the references on q and k repeated to the
  heads; `--match groups` runs only those (`--ops gated_delta_rule`: the gated delta rule's
  grouped cases alone).
- delta_rule: the delta rule's and gated delta rule's kernels (and, on Hopper, their Gluon
  chunk kernels) against the chunked float64 PyTorch form (ungated and gated, keys spread or
  nearly parallel, states, packed sequences, the forward that keeps its chunk states, the scan
  that reads the prepare kernel's Q K^T). A quantity's floor is how far one rounding of the
  inputs to the dtype moves it in float64; nearly parallel keys make the problem
  ill-conditioned (bench/RESULTS.md gives the floors), and a quantity whose floor passes the
  dtype's bound is held to twice its floor instead.
- short_conv: the causal short convolution's kernels against its float64 PyTorch reference
  (itself tested against F.conv1d): widths 1 to 8, with and without bias and SiLU, packed
  sequences, the channel counts of the gallery's blocks; outputs and every gradient.
- gluon: each Gluon kernel against the Triton kernel of the same pass (forward: o and lse;
  dK/dV: dk and dv from the same lse and delta), over dtypes, head widths, causal and not,
  S != T and grouped heads (forward).
- gluon_grouped: the grouped-heads Gluon dK/dV (config gluon_dkdv_grouped) against the Triton
  dK/dV, then the library's softmax cases with it on.

One line per case with the largest relative RMS error (and which output or gradient it was);
exit status 1 if any case exceeds its bound: 5e-3 for 16-bit dtypes, 1e-4 for float32
(three tf32 products per product on the GPU); Gluon against Triton 5e-3 for o, dk, dv and
1e-4 for lse (max |lse - ref| / max(1, |ref|)). Each checked step follows --repeat steps of
the same shape, so that it runs the compiled kernels' direct launches as training does.
"""

import argparse
import datetime
import json
import math
import re
import sys
from pathlib import Path

import torch
import triton

from ncd.ops import _gluon as gluon_common
from ncd.ops import config, linear_attention, softmax_attention
from ncd.ops.attention import fused
from ncd.ops.attention.gluon import dkdv as gluon_dkdv
from ncd.ops.attention.gluon import forward as gluon_forward
from ncd.ops.attention.reference import softmax_attention_reference
from ncd.ops.delta_rule import delta_rule, gated_delta_rule, gated_delta_rule_chunked
from ncd.ops.gla import gla, gla_chunked
from ncd.ops.linear_attention import linear_attention_reference
from ncd.ops.short_conv import short_conv, short_conv_reference
from ncd.ops.simple_gla import simple_gla, simple_gla_chunked

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: results_meta
from results_meta import commit  # noqa: E402

BOUND = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 5e-3}
BOUND_LSE = 1e-4
TRITON_ONLY = {"gluon_forward": False, "gluon_dkdv": False}


def rel_rms(x, ref):
    """Relative RMS error; NaN counts as infinity (a NaN passes every `<`)."""
    x, ref = x.double(), ref.double()
    err = ((x - ref).norm() / ref.norm()).item()
    return err if err == err else float("inf")


def lse_err(x, ref):
    d = ((x.double() - ref.double()).abs() / ref.double().abs().clamp(min=1.0)).max().item()
    return d if d == d else float("inf")


def grads_err(outs, refs, inputs, ref_inputs, g, names):
    """(largest error, its name) over the outputs and the gradients; names: outputs' then
    inputs' names."""
    cot = [torch.randn(o.shape, generator=g, device=o.device).to(o.dtype) for o in outs]
    grads = torch.autograd.grad(outs, inputs, cot)
    ref_grads = torch.autograd.grad(refs, ref_inputs, [c.double() for c in cot])
    errs = [rel_rms(a, b) for a, b in zip(outs, refs)]
    errs += [rel_rms(a, b) for a, b in zip(grads, ref_grads)]
    return max(zip(errs, names))


def softmax_case(dev, dtype, repeat, B, T, S, H, Hkv, D, causal, seed):
    g = torch.Generator(device=dev).manual_seed(seed)
    q = torch.randn(B, T, H, D, device=dev, generator=g).to(dtype).requires_grad_()
    k = torch.randn(B, S, Hkv, D, device=dev, generator=g).to(dtype).requires_grad_()
    v = torch.randn(B, S, Hkv, D, device=dev, generator=g).to(dtype).requires_grad_()
    for _ in range(repeat):
        softmax_attention(q, k, v, causal=causal, backend="triton").float().sum().backward()
    o = softmax_attention(q, k, v, causal=causal, backend="triton")
    ref_in = [x.detach().double().requires_grad_() for x in (q, k, v)]
    o_ref = softmax_attention_reference(*ref_in, causal=causal)
    return grads_err([o], [o_ref], [q, k, v], ref_in, g, ["o", "dq", "dk", "dv"])


def linear_case(dev, dtype, repeat, B, T, H, K, V, decay, state, normalize, cu, seed, G=None):
    """G: q and k of G heads read by the H heads of v (grouped; None: G = H), the reference
    on q and k repeated to the H heads."""
    g = torch.Generator(device=dev).manual_seed(seed)
    G = H if G is None else G
    q, k = (torch.randn(B, T, G, K, device=dev, generator=g) for _ in range(2))
    if normalize:
        q, k = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    else:
        q, k = (torch.nn.functional.normalize(x, dim=-1) for x in (q, k))
    v = torch.randn(B, T, H, V, device=dev, generator=g)
    inputs = [x.to(dtype).requires_grad_() for x in (q, k, v)]
    cu = None if cu is None else torch.tensor(cu, device=dev)
    N = B if cu is None else len(cu) - 1
    lam = (0.9 + 0.1 * torch.rand(H, device=dev, generator=g)) if decay else None
    s0 = None
    if state:
        s0 = torch.randn(N, H, K, V, device=dev, generator=g).requires_grad_()
        inputs.append(s0)
        if normalize:
            z0 = torch.rand(N, H, K, device=dev, generator=g).requires_grad_()
            inputs.append(z0)
            s0 = (s0, z0)
    kw = dict(decay=lam, output_final_state=state, normalize=normalize, cu_seqlens=cu, scale=0.2)
    for _ in range(repeat):
        o, _ = linear_attention(*inputs[:3], initial_state=s0, backend="triton", **kw)
        o.float().sum().backward()
    o, st = linear_attention(*inputs[:3], initial_state=s0, backend="triton", **kw)
    ref_in = [x.detach().double().requires_grad_() for x in inputs]
    ref_s0 = None if s0 is None else (tuple(ref_in[3:]) if normalize else ref_in[3])
    rq, rk = (x.repeat_interleave(H // G, 2) for x in ref_in[:2])
    o_ref, st_ref = linear_attention_reference(rq, rk, ref_in[2], initial_state=ref_s0, **kw)
    outs, refs, names = [o], [o_ref], ["o"]
    if state:
        outs += list(st) if normalize else [st]
        refs += list(st_ref) if normalize else [st_ref]
        names += ["S_T", "z_T"] if normalize else ["S_T"]
    names += ["dq", "dk", "dv", "dS0", "dz0"]  # zip stops at the inputs there are
    return grads_err(outs, refs, inputs, ref_in, g, names)


def _qkv(dev, dtype, B, T, S, H, Hkv, D, seed=0):
    g = torch.Generator(device=dev).manual_seed(seed)
    q = torch.randn(B, T, H, D, device=dev, dtype=dtype, generator=g)
    k = torch.randn(B, S, Hkv, D, device=dev, dtype=dtype, generator=g)
    v = torch.randn(B, S, Hkv, D, device=dev, dtype=dtype, generator=g)
    do = torch.randn(B, T, H, D, device=dev, dtype=dtype, generator=g)
    return q, k, v, do


def gluon_forward_case(dev, dtype, repeat, B, T, S, H, Hkv, D, causal):
    """o and lse of the Gluon forward against the Triton forward's."""
    q, k, v, _ = _qkv(dev, dtype, B, T, S, H, Hkv, D)
    scale = D**-0.5
    ok, why = gluon_forward.supports(q, k, v, causal)
    assert ok, f"outside gluon.forward.supports: {why}"
    with config.override(**TRITON_ONLY):
        o_ref, lse_ref = fused._forward(q, k, v, causal, scale)
    for _ in range(repeat + 1):
        o, lse = gluon_forward.run(q, k, v, causal, scale)
    e_o, e_l = rel_rms(o, o_ref), lse_err(lse, lse_ref)
    # lse's bound is 50x tighter than o's: report it on o's scale
    return max((e_o, "o"), (e_l * BOUND[dtype] / BOUND_LSE, "lse (scaled)"))


def gluon_dkdv_case(dev, dtype, repeat, B, T, S, H, Hkv, D, causal):
    """dK, dV of the Gluon kernel against the Triton dK/dV's, from the same lse and delta."""
    q, k, v, do = _qkv(dev, dtype, B, T, S, H, Hkv, D)
    scale = D**-0.5
    with config.override(**TRITON_ONLY):
        o, lse = fused._forward(q, k, v, causal, scale)
        _, dk_ref, dv_ref = fused._backward(q, k, v, o, lse, do, causal, scale)
    ok, why = gluon_dkdv.supports(q, k, v, causal, grouped=True)
    assert ok, f"outside gluon.dkdv.supports: {why}"
    delta = (o.float() * do.float()).sum(-1).transpose(1, 2).contiguous()  # [B, H, T]
    for _ in range(repeat + 1):
        dk, dv = gluon_dkdv.run(q, k, v, do, lse, delta, causal, scale)
    return max((rel_rms(dk, dk_ref), "dk"), (rel_rms(dv, dv_ref), "dv"))


def _state_and_packing(dev, g, inputs, B, H, K, V, state, cu):
    """(initial state or None, the op's keyword arguments) of a case with packed-sequence
    offsets cu (or None); a random initial state [N, H, K, V] is appended to inputs."""
    cu = None if cu is None else torch.tensor(cu, device=dev)
    N = B if cu is None else len(cu) - 1
    s0 = None
    if state:
        s0 = torch.randn(N, H, K, V, device=dev, generator=g).requires_grad_()
        inputs.append(s0)
    return s0, dict(output_final_state=state, cu_seqlens=cu, scale=0.5)


def simple_gla_case(dev, dtype, repeat, B, T, H, K, V, per_head, strength, state, cu, seed,
                    G=None):  # fmt: skip
    """strength: the log-gates' scale (logsigmoid(x) times it); 'mixed' alternates weak and
    strong stretches of 100 tokens; 'reset' puts a hard reset (-inf) on every 97th token from
    token 96 (the initial state still reaches the first 96 outputs: its gradient is more than
    the floor's exp(-64) times the gradient, which float16 flushes to 0). G: q and k of G heads
    read by the H heads of v (grouped; None: G = H), the reference on q and k repeated to the
    H heads."""
    g = torch.Generator(device=dev).manual_seed(seed)
    G = H if G is None else G
    q, k = (torch.randn(B, T, G, K, device=dev, generator=g) for _ in range(2))
    q, k = (torch.nn.functional.normalize(x, dim=-1) for x in (q, k))
    v = torch.randn(B, T, H, V, device=dev, generator=g)
    inputs = [x.to(dtype).requires_grad_() for x in (q, k, v)]
    x = torch.randn(H if per_head else (B, T, H), device=dev, generator=g)
    if strength == "mixed":
        scale = (torch.arange(T, device=dev) // 100 % 2 * 4.0 + 1 / 16)[None, :, None]
    else:
        scale = 1.0 if strength == "reset" else strength
    gates = torch.nn.functional.logsigmoid(x + 2.0) * scale
    if strength == "reset":
        gates[:, 96::97] = -float("inf")
    gates.requires_grad_()
    inputs.append(gates)
    s0, kw = _state_and_packing(dev, g, inputs, B, H, K, V, state, cu)
    for _ in range(repeat):
        o, _ = simple_gla(*inputs[:4], initial_state=s0, backend="triton", **kw)
        o.float().sum().backward()
    o, st = simple_gla(*inputs[:4], initial_state=s0, backend="triton", **kw)
    ref_in = [x.detach().double().requires_grad_() for x in inputs]
    rq, rk = (x.repeat_interleave(H // G, 2) for x in ref_in[:2])
    s0_ref = ref_in[4] if state else None
    o_ref, st_ref = simple_gla_chunked(rq, rk, *ref_in[2:4], initial_state=s0_ref, **kw)
    outs, refs = ([o, st], [o_ref, st_ref]) if state else ([o], [o_ref])
    names = ["o", "S_T"][: len(outs)] + ["dq", "dk", "dv", "dg", "dS0"]
    return grads_err(outs, refs, inputs, ref_in, g, names)


def gla_case(dev, dtype, repeat, B, T, H, K, V, strength, state, cu, seed, G=None):
    """GLA with log-gates logsigmoid(x + 2) times strength per key channel; G: q and k of G
    heads read by the H heads of v and g (grouped; None: G = H), the reference (the float64
    chunked form) on q and k repeated to the H heads; bounds from the rounding floor
    (`floored`), as the delta rules'."""
    g = torch.Generator(device=dev).manual_seed(seed)
    G = H if G is None else G
    q, k = (torch.randn(B, T, G, K, device=dev, generator=g) for _ in range(2))
    q, k = (torch.nn.functional.normalize(x, dim=-1) for x in (q, k))
    v = torch.randn(B, T, H, V, device=dev, generator=g)
    inputs = [x.to(dtype).requires_grad_() for x in (q, k, v)]
    x = torch.randn(B, T, H, K, device=dev, generator=g)
    inputs.append((torch.nn.functional.logsigmoid(x + 2.0) * strength).requires_grad_())
    s0, kw = _state_and_packing(dev, g, inputs, B, H, K, V, state, cu)
    for _ in range(repeat):
        o, _ = gla(*inputs[:4], initial_state=s0, backend="triton", **kw)
        o.float().sum().backward()
    o, st = gla(*inputs[:4], initial_state=s0, backend="triton", **kw)
    outs = [o, st] if state else [o]
    cot = [torch.randn(x.shape, generator=g, device=dev).to(x.dtype) for x in outs]
    got = outs + list(torch.autograd.grad(outs, inputs, cot))
    names = ["o", "S_T"][: len(outs)] + ["dq", "dk", "dv", "dg", "dS0"]

    def reference(xs):  # outputs and gradients of the float64 chunked form
        xs = [x.detach().double().requires_grad_() for x in xs]
        rq, rk = (x.repeat_interleave(H // G, 2) for x in xs[:2])  # autograd sums the groups
        o_ref, st_ref = gla_chunked(rq, rk, *xs[2:4], initial_state=xs[4] if state else None,
                                    **kw)  # fmt: skip
        refs = [o_ref, st_ref] if state else [o_ref]
        return refs + list(torch.autograd.grad(refs, xs, [c.double() for c in cot]))

    return floored(got, reference, inputs, names, dtype, g)


def delta_gluon_case(dev, dtype, repeat, programs, *args):
    """delta_rule_case with the rule's Gluon chunk kernel (gluon.py ungated, gluon_gated.py
    gated) taken whatever the number of chunk programs (MIN_CHUNKS lifted: the cases are
    small); it must run, not fall back. programs: its persistent grid (None: the launcher's,
    one program an SM; 2: each program walks many chunks, its barriers through many phases)."""
    from ncd.ops.delta_rule import gluon as gluon_chunk
    from ncd.ops.delta_rule import gluon_gated

    kernel = gluon_gated if args[5] else gluon_chunk  # args[5]: gated
    saved, run, calls = gluon_chunk.MIN_CHUNKS, kernel.run, []

    def counted(*a):
        calls.append(1)
        return run(*a[:-1], a[-1] if programs is None else programs)

    gluon_chunk.MIN_CHUNKS, kernel.run = 0, counted
    try:
        with config.override(delta_gluon=True, gated_delta_gluon=True):
            out = delta_rule_case(dev, dtype, repeat, *args)
    finally:
        gluon_chunk.MIN_CHUNKS, kernel.run = saved, run
    if not calls or kernel.OP in gluon_common.FAILED:
        raise RuntimeError("the Gluon chunk kernel did not run (not taken, or it failed)")
    return out


def delta_rule_case(dev, dtype, repeat, B, T, H, K, V, gated, near, state, cu, seed, shift=4.0,
                    reset=False, G=None):  # fmt: skip
    """The (gated) delta rule, keys L2-normalised; near: their share of one common direction
    (nearly parallel keys give the chunks' inverses their largest terms); log decays
    logsigmoid(x + shift), x standard normal (shift 4: about -0.02 a token; -2: about -2.1,
    chunks past the factored decay's bound); reset: a hard reset (-inf) every 97th token from
    token 96. G: q and k of G heads read by the H heads of v, g and beta (grouped; None:
    G = H), the reference on q and k repeated to the H heads."""
    g = torch.Generator(device=dev).manual_seed(seed)
    G = H if G is None else G
    q = torch.randn(B, T, G, K, device=dev, generator=g)
    base = torch.randn(1, 1, G, K, device=dev, generator=g)
    k = torch.randn(B, T, G, K, device=dev, generator=g) * (1 - near) + base * near
    k = torch.nn.functional.normalize(k, dim=-1)
    v = torch.randn(B, T, H, V, device=dev, generator=g)
    inputs = [x.to(dtype).requires_grad_() for x in (q, k, v)]
    gates = torch.nn.functional.logsigmoid(torch.randn(B, T, H, device=dev, generator=g) + shift)
    if reset:
        gates[:, 96::97] = -float("inf")
    beta = torch.sigmoid(torch.randn(B, T, H, device=dev, generator=g)).to(dtype)
    inputs += [gates.requires_grad_(), beta.requires_grad_()]
    s0, kw = _state_and_packing(dev, g, inputs, B, H, K, V, state, cu)

    def run(q, k, v, g_, b, s):
        if gated:
            return gated_delta_rule(q, k, v, g_, b, initial_state=s, backend="triton", **kw)
        return delta_rule(q, k, v, b, initial_state=s, backend="triton", **kw)

    for _ in range(repeat):
        o, _ = run(*inputs[:5], s0)
        o.float().sum().backward()
    o, st = run(*inputs[:5], s0)
    outs = [o, st] if state else [o]
    cot = [torch.randn(x.shape, generator=g, device=dev).to(x.dtype) for x in outs]
    used = inputs if gated else inputs[:3] + inputs[4:]
    names = ["o", "S_T"][: len(outs)] + ["dq", "dk", "dv"] + (["dg"] if gated else [])
    names += ["dbeta", "dS0"]
    got = outs + list(torch.autograd.grad(outs, used, cot))

    def reference(xs):  # outputs and gradients of the float64 chunked form
        xs = [x.detach().double().requires_grad_() for x in xs]
        g_ref = xs[3] if gated else xs[3] * 0
        rq, rk = (x.repeat_interleave(H // G, 2) for x in xs[:2])  # autograd sums the groups
        o_ref, st_ref = gated_delta_rule_chunked(rq, rk, xs[2], g_ref, xs[4],
                                                 initial_state=xs[5] if state else None,
                                                 **kw)  # fmt: skip
        refs = [o_ref, st_ref] if state else [o_ref]
        wrt = xs if gated else xs[:3] + xs[4:]
        return refs + list(torch.autograd.grad(refs, wrt, [c.double() for c in cot]))

    return floored(got, reference, inputs, names, dtype, g)


def floored(got, reference, inputs, names, dtype, g):
    """(largest error against its bound, its name, that bound, the quantities held to their
    floor) of the outputs and gradients `got` against `reference(inputs)` (float64). The
    floor: how far one rounding of the inputs to the dtype moves each quantity (relative noise
    uniform in +-u, u its unit roundoff), in float64. An ill-conditioned problem (nearly
    parallel keys) has floors past the dtype's bound: such a quantity is held to twice its
    floor (the kernels round several intermediates, each like an input's rounding)."""
    ref = reference(inputs)
    u = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11, torch.float32: 2.0**-24}[dtype]
    noisy = [x.detach().double() * (1 + u * (2 * torch.rand(x.shape, generator=g,
             device=x.device, dtype=torch.float64) - 1)) for x in inputs]  # fmt: skip
    floor = [rel_rms(a, b) for a, b in zip(reference(noisy), ref)]
    errs = [rel_rms(a, b) for a, b in zip(got, ref)]
    bounds = [BOUND[dtype] if f <= BOUND[dtype] else 2 * f for f in floor]
    i = max(range(len(errs)), key=lambda j: errs[j] / bounds[j])
    held = {n: (e, f) for n, e, f in zip(names, errs, floor) if f > BOUND[dtype]}
    return errs[i], names[i], bounds[i], held


def short_conv_case(dev, dtype, repeat, B, T, C, W, bias, silu, cu, seed):
    g = torch.Generator(device=dev).manual_seed(seed)
    x = torch.randn(B, T, C, device=dev, generator=g).to(dtype).requires_grad_()
    w = (torch.randn(C, 1, W, device=dev, generator=g) / W**0.5).to(dtype).requires_grad_()
    inputs = [x, w]
    b = None
    if bias:
        b = torch.randn(C, device=dev, generator=g).to(dtype).requires_grad_()
        inputs.append(b)
    act = "silu" if silu else None
    cu = None if cu is None else torch.tensor(cu, device=dev)
    for _ in range(repeat):
        short_conv(
            x, w, b, activation=act, cu_seqlens=cu, backend="triton"
        ).float().sum().backward()
    y = short_conv(x, w, b, activation=act, cu_seqlens=cu, backend="triton")
    ref_in = [t.detach().double().requires_grad_() for t in inputs]
    y_ref = short_conv_reference(ref_in[0], ref_in[1], ref_in[2] if bias else None, act, cu)
    return grads_err([y], [y_ref], inputs, ref_in, g, ["y", "dx", "dw", "db"])


def cases(families, dev, dtype):
    """(family, label, function, arguments, config changes) of every case."""
    small = dev == "cpu"  # the interpreter is slow: smaller shapes
    T = 63 if small else 1000
    T2 = 128 if small else 1024  # whole 128-row blocks: 2-d dK/dV tiles, the Gluon kernels
    D64, D128 = (32, 32) if small else (64, 128)
    out = []
    if "softmax" in families:
        for D in sorted({D64, D128}):
            for causal in (True, False):
                out.append((f"D={D} T={T} causal={causal} GQA 4/2", (2, T, T, 4, 2, D, causal, 1)))
            t, s_len = (20, 33) if small else (200, 333)
            out.append((f"D={D} T={t} S={s_len} non-causal", (1, t, s_len, 2, 2, D, False, 2)))
        d = 20 if small else 60
        out.append((f"D={d} T={T} causal (padded width) GQA 4/2", (2, T, T, 4, 2, d, True, 4)))
        whole = [(D128, T2, T2, True, 4, 2), (D64, T2, T2, False, 4, 2), (D128, T2, T2, True, 4, 4),
                 (D128, T2, T2, False, 4, 4), (D64, T2, T2, True, 4, 4),
                 (D64, T2, T2 // 2, False, 4, 4)]  # fmt: skip
        for D, t, s_len, causal, H, Hkv in dict.fromkeys(whole):  # (the CPU's widths coincide)
            args = (2, t, s_len, H, Hkv, D, causal, 5)
            label = f"D={D} T={t} S={s_len} causal={causal} heads {H}/{Hkv}"
            out.append((label, args))
            if (D, s_len, causal, Hkv) in ((D128, t, True, 4), (D64, t // 2, False, 4)):
                out.append((label + " Triton only", args, TRITON_ONLY))
        out = [("softmax", c[0], softmax_case, c[1], *c[2:]) for c in out]
    if "linear" in families:
        K = 32 if small else 128
        cu = [0, 17, 17, 40, T] if small else [0, 100, 100, 613, T]
        for decay, state, normalize, packed in [
            (False, False, False, False),
            (True, False, False, False),
            (True, True, False, False),
            (False, True, True, False),
            (True, True, False, True),
            (False, False, False, True),
        ]:
            label = f"decay={decay} state={state} normalize={normalize} packed={packed}"
            args = (1 if packed else 2, T, 3, K, K, decay, state, normalize,
                    cu if packed else None, 3)  # fmt: skip
            out.append(("linear", label, linear_case, args))
        # grouped heads: q and k of G heads read by H = 4 (--match groups selects these)
        for G, decay, state, normalize, packed in [
            (1, False, False, False, False),
            (2, True, True, False, False),
            (1, True, True, True, False),
            (2, True, True, False, True),
        ]:
            label = f"groups {G}/4 decay={decay} state={state} normalize={normalize} "
            label += f"packed={packed}"
            args = (1 if packed else 2, T, 4, K, K, decay, state, normalize,
                    cu if packed else None, 3, G)  # fmt: skip
            out.append(("linear", label, linear_case, args))
    if "short_conv" in families:
        C = 40 if small else 2048
        cu = [0, 17, 17, 40, T] if small else [0, 100, 100, 613, T]
        for W, bias, silu, packed in [(4, False, True, False), (4, True, True, False),
                                      (4, False, False, True), (1, True, False, False),
                                      (3, False, True, True), (8, True, True, False)]:  # fmt: skip
            label = f"W={W} bias={bias} silu={silu} packed={packed} C={C}"
            args = (1 if packed else 2, T, C, W, bias, silu, cu if packed else None, 7)
            out.append(("short_conv", label, short_conv_case, args))
    if "simple_gla" in families:
        K = 32 if small else 128
        cu = [0, 17, 17, 40, T] if small else [0, 100, 100, 613, T]
        for per_head, strength, state, packed in [
            (False, 1 / 16, False, False),
            (False, 1.0, True, False),
            (False, 8.0, True, False),
            (False, "mixed", True, False),
            (True, 1 / 16, True, False),
            (False, 1 / 16, True, True),
            (False, "mixed", False, True),
            (False, "reset", True, False),
            (False, "reset", False, True),
        ]:
            label = f"gates per {'head' if per_head else 'token'} x{strength} state={state} "
            label += f"packed={packed}"
            args = (1 if packed else 2, T, 3, K, K, per_head, strength, state,
                    cu if packed else None, 7)  # fmt: skip
            out.append(("simple_gla", label, simple_gla_case, args))
        # grouped heads (Mamba-2's B and C): q and k of G heads read by H = 4
        for G, per_head, strength, state, packed in [
            (1, False, 1 / 16, False, False),
            (1, False, 1.0, True, False),
            (2, False, 8.0, True, False),
            (2, True, 1 / 16, True, False),
            (1, False, "mixed", True, True),
        ]:
            label = f"groups {G}/4 gates per {'head' if per_head else 'token'} x{strength} "
            label += f"state={state} packed={packed}"
            args = (1 if packed else 2, T, 4, K, K, per_head, strength, state,
                    cu if packed else None, 7, G)  # fmt: skip
            out.append(("simple_gla", label, simple_gla_case, args))
    if "delta_rule" in families:
        K = 32 if small else 128
        hopper = (
            not small
            and gluon_common.available()
            and gluon_common.on_hopper(torch.empty(1, device=dev))
        )
        cu = [0, 17, 17, 40, T] if small else [0, 100, 100, 613, T]
        for gated, near, state, packed in [
            (False, 0.0, False, False),
            (False, 0.9, True, False),
            (True, 0.0, True, False),
            (True, 0.9, False, False),
            (False, 0.0, True, True),
            (True, 0.5, True, True),
        ]:
            label = f"{'gated ' if gated else ''}keys near={near} state={state} packed={packed}"
            args = (1 if packed else 2, T, 3, K, K, gated, near, state, cu if packed else None, 9)
            out.append(("delta_rule", label, delta_rule_case, args))
            if near == 0.0:  # the forward that keeps its chunk states (or V') for the backward
                keep = {"delta_keep_states": True}
                out.append(("delta_rule", label + " keep_states", delta_rule_case, args, keep))
                # V' in place of -W (config delta_keep_values, gated_delta_keep_values), and -W
                keep = {"delta_keep_values": True, "gated_delta_keep_values": True}
                out.append(("delta_rule", label + " keep_values", delta_rule_case, args, keep))
                keep = {"delta_keep_values": False, "gated_delta_keep_values": False}
                out.append(("delta_rule", label + " keep_w", delta_rule_case, args, keep))
            if not packed and dtype != torch.float32 and hopper:  # Gluon chunk pass
                whole = (args[0], -(-T // 64) * 64, *args[2:])  # whole chunks
                out.append(("delta_rule", label + " gluon", delta_gluon_case, (None, *whole)))
                out.append(("delta_rule", label + " gluon 2 programs", delta_gluon_case,
                            (2, *whole)))  # fmt: skip
            # the states rescanned whole rather than from the forward's checkpoints
            ck = {"delta_checkpoint_states": False}
            out.append(("delta_rule", label + " no checkpoints", delta_rule_case, args, ck))
            # the scan reading the prepare kernel's Q K^T and decayed keys, alone and keeping
            prep = {"delta_prepared_qk": True}
            out.append(("delta_rule", label + " prepared", delta_rule_case, args, prep))
            if near == 0.0 and gated:
                both = {**prep, "delta_keep_states": True}
                out.append(("delta_rule", label + " prepared keep", delta_rule_case, args, both))
            if gated:  # the scans' factored decay (the default) and the decay matrix; strong
                # gates: every chunk past its bound
                fac = {"gated_delta_factored": True}
                out.append(("delta_rule", label + " factored", delta_rule_case, args, fac))
                mat = {"gated_delta_factored": False}
                out.append(("delta_rule", label + " decay_matrix", delta_rule_case, args, mat))
                if near == 0.0:
                    out.append(("delta_rule", label + " factored strong", delta_rule_case,
                                (*args, -2.0), fac))  # fmt: skip
                    out.append(("delta_rule", label + " hard resets", delta_rule_case,
                                (*args, 4.0, True)))  # fmt: skip
        # grouped heads: q and k of G heads read by H = 4 (--match groups selects these)
        for G, near, state, packed in [(1, 0.0, True, False), (2, 0.5, False, True)]:
            label = f"groups {G}/4 keys near={near} state={state} packed={packed}"
            args = (1 if packed else 2, T, 4, K, K, False, near, state, cu if packed else None,
                    9, 4.0, False, G)  # fmt: skip
            out.append(("delta_rule", label, delta_rule_case, args))
            keep = {"delta_keep_states": True, "delta_prepared_qk": True}
            out.append(("delta_rule", label + " keep_states prepared", delta_rule_case, args,
                        keep))  # fmt: skip
        if not small:  # the narrowest widths the kernels take on CUDA (MIN_GPU_WIDTH)
            for gated, Kn, Vn in [(False, 64, 64), (True, 64, 64)]:
                label = f"{'gated ' if gated else ''}K={Kn} V={Vn}"
                args = (2, T, 3, Kn, Vn, gated, 0.0, True, None, 9)
                out.append(("delta_rule", label, delta_rule_case, args))
    if families & {"delta_rule", "gated_delta_rule"}:  # the gated rule's grouped heads
        K = 32 if small else 128
        cu = [0, 17, 17, 40, T] if small else [0, 100, 100, 613, T]
        for G, near, state, packed, change in [
            (1, 0.0, True, False, {}),
            (2, 0.5, True, True, {}),
            (2, 0.0, False, False, {"gated_delta_factored": False}),
            (1, 0.0, True, False, {"gated_delta_keep_values": True, "delta_prepared_qk": True}),
        ]:
            label = f"groups {G}/4 gated keys near={near} state={state} packed={packed}"
            label += "".join(f" {n}={on}" for n, on in change.items())
            args = (1 if packed else 2, T, 4, K, K, True, near, state, cu if packed else None,
                    9, 4.0, False, G)  # fmt: skip
            out.append(("gated_delta_rule", label, delta_rule_case, args, change))
    if "gla" in families:
        K = 32 if small else 128
        cu = [0, 17, 17, 40, T] if small else [0, 100, 100, 613, T]
        for G, strength, state, packed in [
            (None, 1.0, True, False),
            (None, 1.0, False, True),
            (1, 1.0, False, False),
            (2, 1.0, True, False),
            (2, 8.0, True, False),
            (1, 1.0, True, True),
        ]:
            label = f"groups {G}/4 " if G else ""
            label += f"gates x{strength} state={state} packed={packed}"
            args = (1 if packed else 2, T, 4, K, K, strength, state, cu if packed else None, 5, G)
            out.append(("gla", label, gla_case, args))
    if "gluon" in families and dtype != torch.float32:
        fwd = [(1, 256, 256, 2, 2, 128, True), (1, 256, 256, 2, 2, 128, False),
               (1, 256, 256, 2, 2, 64, True), (2, 1024, 1024, 4, 4, 128, True),
               (2, 1024, 1024, 4, 4, 64, False), (2, 256, 768, 4, 4, 128, False),
               (2, 768, 256, 4, 4, 64, False), (2, 1024, 1024, 8, 2, 128, True),
               (2, 768, 512, 8, 4, 64, False)]  # fmt: skip
        for B, t, s_len, H, Hkv, D, causal in fwd:
            label = f"forward D={D} T={t} S={s_len} causal={causal} heads {H}/{Hkv}"
            out.append(("gluon", label, gluon_forward_case, (B, t, s_len, H, Hkv, D, causal)))
        dkdv = [(1, 256, 256, 2, 128, True), (1, 256, 256, 2, 128, False),
                (2, 1024, 1024, 4, 128, True), (2, 256, 768, 4, 128, False),
                (2, 1024, 1024, 4, 64, True), (2, 1024, 512, 4, 64, False)]  # fmt: skip
        for B, t, s_len, H, D, causal in dkdv:
            label = f"dkdv D={D} T={t} S={s_len} causal={causal} heads {H}/{H}"
            out.append(("gluon", label, gluon_dkdv_case, (B, t, s_len, H, H, D, causal)))
    if "gluon_grouped" in families and dtype != torch.float32:
        grouped = {"gluon_dkdv_grouped": True}
        for B, t, s_len, H, Hkv, D, causal in [(2, 1024, 1024, 8, 4, 128, True),
                                               (2, 768, 512, 8, 2, 64, False)]:  # fmt: skip
            label = f"dkdv D={D} T={t} S={s_len} causal={causal} heads {H}/{Hkv}"
            out.append(("gluon_grouped", label, gluon_dkdv_case,
                        (B, t, s_len, H, Hkv, D, causal), grouped))  # fmt: skip
        for D, causal in ((128, True), (64, False)):
            label = f"library D={D} T=1024 causal={causal} heads 8/2"
            out.append(("gluon_grouped", label, softmax_case,
                        (2, 1024, 1024, 8, 2, D, causal, 6), grouped))  # fmt: skip
    return out


def meta(given):
    return {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "date": datetime.date.today().isoformat(),
        "commit": commit(given),
        "torch": torch.__version__,
        "triton": triton.__version__,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtypes", default="bfloat16,float16,float32")
    ap.add_argument(
        "--ops",
        default="softmax,linear",
        help="softmax, linear, simple_gla, gla, delta_rule, gated_delta_rule (its grouped "
        "cases), short_conv, gluon, gluon_grouped",
    )
    ap.add_argument("--repeat", type=int, help="steps before the checked one (GPU: 2, CPU: 0)")
    ap.add_argument("--commit", default=None, help="commit measured, where the copy has no .git")
    ap.add_argument("--out", default=None, help="JSON of every case's result")
    ap.add_argument(
        "--pin",
        type=int,
        default=-1,
        help="every kernel in configuration N of its list, untuned (config pin_config)",
    )
    ap.add_argument("--match", default=None, help="only the cases whose label has this regex")
    args = ap.parse_args()
    dev = args.device
    repeat = args.repeat if args.repeat is not None else (0 if dev == "cpu" else 2)
    families = set(args.ops.split(","))
    here = dev != "cpu" and gluon_common.available()
    if families & {"gluon", "gluon_grouped"} and not (
        here and gluon_common.on_hopper(torch.empty(1, device=dev))
    ):
        sys.exit("gpu_check: the gluon cases need Triton 3.6's Gluon and a Hopper GPU")
    rows, failed = [], 0
    for name in args.dtypes.split(","):
        dtype = getattr(torch, name)
        for family, label, fn, a, *changes in cases(families, dev, dtype):
            if args.match and not re.search(args.match, label):
                continue
            label += f" pin={args.pin}" if args.pin >= 0 else ""
            with config.override(**(changes[0] if changes else {}), pin_config=args.pin):
                try:
                    err, worst, *own = fn(dev, dtype, repeat, *a)
                except torch.OutOfMemoryError:
                    err, worst, own = math.inf, "out of memory", []
            bound = own[0] if own else BOUND[dtype]  # a case's own floor, where it has one
            held = own[1] if len(own) > 1 else {}  # quantities held to twice their floor
            ok = err <= bound
            failed += not ok
            rows.append({"family": family, "case": label, "dtype": name, "rel_err": err,
                         "worst": worst, "bound": bound, "ok": ok,
                         "floor_held": {n: {"rel_err": e, "floor": f}
                                        for n, (e, f) in held.items()}})  # fmt: skip
            extra = "".join(f"; {n} {e:.2e} (floor {f:.1e})" for n, (e, f) in held.items())
            print(f"{'ok  ' if ok else 'FAIL'} {name:9s} {family:13s} {label:50s} "
                  f"max rel err {err:.2e} ({worst}, bound {bound:.1e}){extra}",
                  flush=True)  # fmt: skip
    print(f"{failed} case(s) over the bound, {len(rows)} checked")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"meta": meta(args.commit), "rows": rows}, f, indent=1)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
