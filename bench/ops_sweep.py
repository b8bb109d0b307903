"""Block-size sweep of the op library's kernels on the GPU (a tuning aid, not a test).

Launches each kernel with explicit configurations at the BENCHMARKS.md shapes and prints,
per kernel, the median time, registers, spills and whether the PTX uses Hopper's wgmma;
PyTorch SDPA is timed in the same run for scale. The winners go into the config lists of
ops/attention/fused.py and ops/linear_attention/chunk.py.

    python bench/ops_sweep.py --T 4096,16384
"""

import argparse

import torch
import torch.nn.functional as F
import triton
from triton.testing import do_bench

from ncd.ops.attention import fused
from ncd.ops.linear_attention import chunk

# (BLOCK_M, BLOCK_N, warps, stages[, constexprs]) candidates. The dK/dV lists start from
# the library's own (those that fit in registers in one loop); the three-loop kernel's
# atomic-dQ variants spilled 20-474 registers and ran 1.9-4x slower than the split schedule
# on 2026-11-28.
ATOMIC = True
FWD = [
    (64, 64, 4, 3),
    (128, 64, 8, 3),
    (128, 128, 8, 3),
    (128, 128, 8, 3, {"WS": True}),
    (64, 64, 4, 3, {"AHEAD": True}),
    (128, 128, 8, 2, {"AHEAD": True}),
]
DKDV_SMEM = [(64, 64, 4, 2), (64, 64, 4, 3), (16, 64, 4, 3)]
DKDV_REG = [c[:4] for c in fused.DKDV_CONFIGS] + [(64, 128, 8, 2), (16, 64, 4, 2)]
ATOMIC_SMEM = [(16, 64, 4, 3)]
ATOMIC_REG = [c[:4] for c in fused.ATOMIC_DKDV_CONFIGS] + [(32, 64, 4, 2)]
# --what atomic: only the dK/dV + dQ kernels, with copy-engine reductions (TMA) or per-element
# reductions from registers (FlashAttention-2's way), 2-d tiles, against the split best.
ATOMIC_ONLY = [
    (64, 64, 4, 2, {"KV_SMEM": True}),
    (64, 128, 8, 2, {"KV_SMEM": False}),
    (32, 128, 8, 2, {"KV_SMEM": False}),
    (32, 64, 4, 2, {"KV_SMEM": False}),
    (16, 64, 4, 3, {"KV_SMEM": False}),
]
DQ = [(64, 64, 4, 3), (128, 64, 8, 3), (64, 32, 4, 3), (64, 64, 4, 2), (128, 128, 8, 3),
      (64, 128, 4, 3)]  # fmt: skip
LA_FWD = [
    (64, 64, 4, 3),
    (64, 64, 4, 4),
    (64, 32, 4, 3),
    (64, 128, 8, 3),
    (128, 64, 8, 3),
    (64, 64, 8, 3),
]
LA_BWD = [
    (64, 64, 64, 4, 3),
    (64, 64, 64, 4, 4),
    (64, 64, 64, 8, 3),
    (64, 32, 32, 4, 3),
    (128, 64, 64, 8, 3),
    (64, 32, 64, 4, 3),
]


def run(name, launch, cfgs, flops=None):
    res = []
    for cfg in cfgs:
        try:
            compiled = launch(cfg)
            ms = do_bench(lambda cfg=cfg: launch(cfg), warmup=10, rep=50, return_mode="median")
            wg = "wgmma" in compiled.asm.get("ptx", "")
            res.append((ms, cfg, compiled.n_regs, compiled.n_spills, wg))
        except Exception as e:  # a config that does not compile or fit is reported, not fatal
            print(f"  {name} {cfg}: {type(e).__name__}: {str(e)[:160]}")
    res.sort(key=lambda r: r[0])
    for ms, cfg, regs, spills, wg in res:
        tf = f"{flops / ms / 1e9:6.0f} TFLOP/s" if flops else ""
        print(f"  {name:12s} {cfg!s:40s} {ms:8.3f} ms {tf} regs {regs} spills {spills} wgmma {wg}")
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", default="4096,16384")
    ap.add_argument("--what", default="attn,lin")
    args = ap.parse_args()
    for T in [int(t) for t in args.T.split(",")]:
        sweep(T, args.what.split(","))


def _kw(c, extra=()):
    meta = dict(c[4] if len(c) > 4 else {})
    meta.update(extra)
    return dict(BLOCK_M=c[0], BLOCK_N=c[1], num_warps=c[2], num_stages=c[3], **meta)


def _go(kernel, grid, descs, rest, meta, c, extra=()):
    kw = _kw(c, extra)
    fused._set_blocks({**descs, **meta, **kw})
    return kernel[grid](*descs.values(), *rest, **meta, **kw)


def _inputs(T, B, H, D):
    """q, k, v, dO of the BENCHMARKS.md shapes (bf16, [B, T, H, D]) and the causal score count."""
    g = torch.Generator(device="cuda").manual_seed(T)
    q, k, v, do = (
        torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(4)
    )
    return q, k, v, do, B * H * T * (T + 1) / 2


def _saved(q, k, v, do, s):
    """What the backward kernels read: o, lse (the library's causal forward) and delta."""
    o, lse = fused._forward(q, k, v, True, s)
    return o, lse, (o.float() * do.float()).sum(-1).transpose(1, 2).contiguous()


def sweep_attention(T, B=4, H=16, D=128):
    s = D**-0.5
    q, k, v, do, pairs = _inputs(T, B, H, D)
    print(f"T={T}")
    qt, kt, vt, dot = (x.transpose(1, 2).requires_grad_() for x in (q, k, v, do))
    sd = do_bench(
        lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=True), return_mode="median"
    )
    sb = do_bench(
        lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=True).backward(dot),
        return_mode="median",
        grad_to_none=[qt, kt, vt],
    )
    print(f"  sdpa fwd {sd:.3f} ms {4 * pairs * D / sd / 1e9:.0f} TFLOP/s; fwd+bwd {sb:.3f} ms")
    o, lse, delta = _saved(q, k, v, do, s)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    dq32 = torch.zeros(q.shape, device="cuda", dtype=torch.float32)
    sc = (s * fused.LOG2E, s)
    best = {}
    for flat in (True, False):  # inputs through 2-d or 4-d tiles (outputs always 4-d)

        def d(x, inp=True, flat=flat):
            return fused._desc(x, flat and inp)

        meta = dict(BLOCK_D=D, BLOCK_DV=D, CAUSAL=True, FLAT=flat)
        tag = "2d" if flat else "4d"
        fwd = run(
            f"fwd {tag}",
            lambda c, d=d, meta=meta: _go(
                fused._fwd_kernel, (triton.cdiv(T, c[0]), B * H),
                dict(q_desc=d(q), k_desc=d(k), v_desc=d(v), o_desc=d(o, False)),
                (lse, T, T, H, H, sc[0]), meta, c,
                {"WS": False, "AHEAD": False, **(c[4:] or [{}])[0]},
            ),
            FWD,
            4 * pairs * D,
        )  # fmt: skip

        def dkdv(c, atomic, kv_smem, d=d, meta=meta):
            descs = dict(q_desc=d(q), k_desc=d(k), v_desc=d(v), do_desc=d(do),
                         dk_desc=d(dk, False), dv_desc=d(dv, False),
                         dq_desc=d(dq32, False))  # fmt: skip
            extra = dict(ATOMIC_DQ=atomic, DQ_TMA=True, KV_SMEM=kv_smem)
            return _go(
                fused._bwd_dkdv_kernel, (triton.cdiv(T, c[1]), B * H), descs,
                (dq32, lse, delta, T, T, H, H, *sc, D), meta, c, extra,
            )  # fmt: skip

        for atomic in (False, True) if ATOMIC else (False,):
            lists = ((True, ATOMIC_SMEM), (False, ATOMIC_REG)) if atomic else (
                (True, DKDV_SMEM), (False, DKDV_REG))  # fmt: skip
            for kv_smem, cfgs in lists:
                name = f"dkdv{'+dq' if atomic else ''} {'smem' if kv_smem else 'reg'} {tag}"
                res = run(
                    name,
                    lambda c, a=atomic, m=kv_smem: dkdv(c, a, m),
                    cfgs,
                    (10 if atomic else 8) * pairs * D,
                )
                best[(flat, atomic, kv_smem)] = res[0][0] if res else float("inf")
        dqs = run(
            f"dq {tag}",
            lambda c, d=d, meta=meta: _go(
                fused._bwd_dq_kernel, (triton.cdiv(T, c[0]), B * H),
                dict(q_desc=d(q), k_desc=d(k), v_desc=d(v), do_desc=d(do), dq_desc=d(dq, False)),
                (lse, delta, T, T, H, H, *sc), meta, c,
            ),
            DQ,
            6 * pairs * D,
        )  # fmt: skip
        best[(flat, "fwd")] = fwd[0][0] if fwd else float("inf")
        best[(flat, "dq")] = dqs[0][0] if dqs else float("inf")
    f0 = min(best[(f, "fwd")] for f in (True, False))
    dkdv_best = min(best[(f, False, m)] for f in (True, False) for m in (True, False))
    dq_best = min(best[(f, "dq")] for f in (True, False))
    est = f0 + dkdv_best + dq_best
    print(
        f"  best fwd {f0:.3f}, dK/dV {dkdv_best:.3f}, dQ {dq_best:.3f} ms; kernels "
        f"{est:.3f} ms (+ delta) vs sdpa fwd+bwd {sb:.3f}: {sb / est:.3f}x"
    )
    if ATOMIC:  # dK/dV adding dQ, plus the float32-to-bf16 cast of dQ
        both = min(best[(f, True, m)] for f in (True, False) for m in (True, False))
        cast = do_bench(lambda: dq32.to(q.dtype), return_mode="median")
        est = f0 + both + cast
        print(
            f"  atomic: fwd {f0:.3f}, dK/dV+dQ {both:.3f}, cast {cast:.3f} ms; kernels "
            f"{est:.3f} ms (+ delta) vs sdpa fwd+bwd {sb:.3f}: {sb / est:.3f}x"
        )


def sweep_atomic(T, B=4, H=16, D=128):
    s = D**-0.5
    q, k, v, do, pairs = _inputs(T, B, H, D)
    o, lse, delta = _saved(q, k, v, do, s)
    dk, dv = torch.empty_like(k), torch.empty_like(v)
    dq32 = torch.zeros(q.shape, device="cuda", dtype=torch.float32)
    meta = dict(BLOCK_D=D, BLOCK_DV=D, CAUSAL=True, FLAT=True)
    print(f"T={T} (dK/dV + dQ added atomically; 10 products' FLOPs counted)")
    for tma in (True, False):
        descs = {
            f"{n}_desc": fused._desc(x, True) for n, x in zip(("q", "k", "v", "do"), (q, k, v, do))
        }
        descs.update(dk_desc=fused._desc(dk), dv_desc=fused._desc(dv), dq_desc=fused._desc(dq32))
        run(
            f"atomic {'tma' if tma else 'red'}",
            lambda c, descs=descs, tma=tma: _go(
                fused._bwd_dkdv_kernel, (triton.cdiv(T, c[1]), B * H), descs,
                (dq32, lse, delta, T, T, H, H, s * fused.LOG2E, s, D), meta, c,
                dict(ATOMIC_DQ=True, DQ_TMA=tma),
            ),
            ATOMIC_ONLY,
            10 * pairs * D,
        )  # fmt: skip
    fwd4 = [(64, 64, 4, 3, {"AHEAD": True}), (64, 64, 4, 4, {"AHEAD": True}),
            (128, 64, 8, 3, {"AHEAD": True}), (64, 128, 4, 2, {"AHEAD": True}),
            (128, 128, 8, 3, {"AHEAD": True}), (64, 64, 4, 3)]  # fmt: skip
    fdescs = dict(q_desc=fused._desc(q), k_desc=fused._desc(k), v_desc=fused._desc(v),
                  o_desc=fused._desc(o))  # fmt: skip
    run(
        "fwd 4d",
        lambda c: _go(
            fused._fwd_kernel, (triton.cdiv(T, c[0]), B * H), fdescs,
            (lse, T, T, H, H, s * fused.LOG2E), dict(meta, FLAT=False), c,
            {"WS": False, "AHEAD": False, **(c[4:] or [{}])[0]},
        ),
        fwd4,
        4 * pairs * D,
    )  # fmt: skip
    for atomic in (False, True):  # the library's whole backward, each schedule
        ms = do_bench(
            lambda a=atomic: fused._backward(q, k, v, o, lse, do, True, s, a), return_mode="median"
        )
        print(f"  fused._backward atomic_dq={atomic}: {ms:.3f} ms")


# --what dkdv: the one-loop dK/dV kernel in every configuration that compiles for sm_90 with
# no spills (bench/sm90_report.py, Triton 3.6), 2-d tiles, with the causal mask on every key
# block or only on those that cross the diagonal (DIAG); each checked against the first.
DKDV_ONE_LOOP = [
    *[(*c, {"KV_SMEM": True}) for c in [(64, 64, 4, 2), (64, 64, 4, 1), (64, 64, 8, 1),
      (64, 64, 8, 2), (64, 64, 8, 3), (128, 64, 8, 1), (128, 64, 8, 2), (128, 64, 8, 3),
      (64, 32, 4, 2), (128, 32, 8, 2)]],
    *[(*c, {"KV_SMEM": False}) for c in [(32, 64, 4, 2), (32, 64, 4, 3), (64, 64, 4, 1),
      (64, 64, 8, 1), (64, 64, 8, 2), (64, 64, 8, 3), (64, 128, 8, 1), (64, 128, 8, 2),
      (32, 128, 8, 2)]],
]  # fmt: skip


def sweep_dkdv(T, B=4, H=16, D=128):
    s = D**-0.5
    q, k, v, do, pairs = _inputs(T, B, H, D)
    o, lse, delta = _saved(q, k, v, do, s)
    dk, dv = torch.empty_like(k), torch.empty_like(v)
    meta = dict(BLOCK_D=D, BLOCK_DV=D, CAUSAL=True, FLAT=True)
    names = ("q_desc", "k_desc", "v_desc", "do_desc")
    descs = {n: fused._desc(x, True) for n, x in zip(names, (q, k, v, do))}
    descs.update(dk_desc=fused._desc(dk), dv_desc=fused._desc(dv), dq_desc=None)
    print(f"T={T} (one-loop dK/dV, 2-d tiles; 8 products' FLOPs counted)")
    ref = None
    for diag in (False, True):

        def go(c, diag=diag):
            return _go(
                fused._bwd_dkdv_kernel, (triton.cdiv(T, c[1]), B * H), descs,
                (None, lse, delta, T, T, H, H, s * fused.LOG2E, s, D), meta, c,
                dict(ATOMIC_DQ=False, DQ_TMA=False, DIAG=diag),
            )  # fmt: skip

        for c in DKDV_ONE_LOOP:  # correctness first: each against the first configuration
            dk.fill_(float("nan")), dv.fill_(float("nan"))
            try:
                go(c)
            except Exception as e:  # run() below reports it
                print(f"  {c}: {type(e).__name__}")
                continue
            got = torch.cat([dk.float().flatten(), dv.float().flatten()])
            ref = got if ref is None else ref
            err = ((got - ref).pow(2).mean() / ref.pow(2).mean()).sqrt().nan_to_num(float("inf"))
            if err > 1e-2:
                print(f"  WRONG diag={diag} {c}: rel rms {err:.2e} against {DKDV_ONE_LOOP[0]}")
        run(f"dkdv diag={diag}", go, DKDV_ONE_LOOP, 8 * pairs * D)
    ms = do_bench(lambda: fused._backward(q, k, v, o, lse, do, True, s), return_mode="median")
    print(f"  fused._backward (library's lists): {ms:.3f} ms")


def sweep(T, what, B=4, H=16, D=128):
    if "dkdv" in what:
        sweep_dkdv(T, B, H, D)
    if "atomic" in what:
        sweep_atomic(T, B, H, D)
    if "attn" in what:
        sweep_attention(T, B, H, D)
    if "lin" not in what:
        return
    s = D**-0.5
    q, k, v, do, _ = _inputs(T, B, H, D)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    lmeta = dict(K_DIM=D, V_DIM=D, HAS_DECAY=False, USE_S0=False, VARLEN=False, PRECISE=False,
                 DOT="tf32")  # fmt: skip
    lo = torch.empty_like(v)
    run(
        "lin fwd",
        lambda c: chunk._fwd_kernel[(triton.cdiv(D, c[1]), B * H)](
            q,
            k,
            v,
            lo,
            lo,
            lo,
            lo,
            q,
            T,
            H,
            *chunk._strides(q, v),
            s,
            BLOCK_K=D,
            STORE_ST=False,
            **lmeta,
            BLOCK_T=c[0],
            BLOCK_V=c[1],
            num_warps=c[2],
            num_stages=c[3],
        ),
        LA_FWD,
    )
    run(
        "lin bwd",
        lambda c: chunk._bwd_kernel[(2 * D // c[1] + D // c[2], B * H)](
            q,
            k,
            v,
            do,
            dq,
            dk,
            dv,
            dq,
            dq,
            dq,
            dq,
            q,
            T,
            H,
            *chunk._strides(q, v),
            s,
            **lmeta,
            USE_DST=False,
            STORE_DS0=False,
            BLOCK_KF=D,
            BLOCK_VF=D,
            BLOCK_T=c[0],
            BLOCK_KS=c[1],
            BLOCK_VS=c[2],
            num_warps=c[3],
            num_stages=c[4],
        ),
        LA_BWD,
    )


if __name__ == "__main__":
    main()
