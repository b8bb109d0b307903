"""Per-kernel times of the op library on the GPU (a tuning aid, not a test).

- attn: each Triton softmax kernel (forward, dK/dV in both score layouts and 2-d or 4-d
  tiles, dQ) launched with explicit configurations, with its median time, registers, spills
  and whether the PTX uses Hopper's wgmma; PyTorch SDPA in the same run for scale. The
  winners go into the configuration lists of ops/attention/fused.py.
- gluon: each pass's backends side by side (the Gluon forward and dK/dV against the Triton
  kernels that would run without them, as the library launches them) and SDPA's forward.
- lin: the linear-attention forward and backward kernels (ops/linear_attention/chunk.py).
- prep: the delta rule's prepare kernel (ops/delta_rule/chunk.py), ungated and gated, at
  each configuration of its list and at tighter register caps (more programs an SM, some
  spills).

    python bench/diagnose/ops_sweep.py --T 8192 --what attn,gluon,lin,prep
"""

import argparse

import torch
import torch.nn.functional as F
import triton
from triton.testing import do_bench

from ncd.ops import _backend, config
from ncd.ops.attention import fused
from ncd.ops.attention.gluon import dkdv as gluon_dkdv
from ncd.ops.attention.gluon import forward as gluon_forward
from ncd.ops.delta_rule import chunk as delta_chunk
from ncd.ops.linear_attention import chunk

# (BLOCK_M, BLOCK_N, warps, stages[, constexprs]) candidates beyond the library's lists.
FWD = [*fused.FWD_CONFIGS, (64, 64, 4, 4), (64, 128, 4, 2)]
DKDV = [*fused.DKDV_CONFIGS, (64, 64, 4, 3, {"KV_SMEM": False}), (16, 64, 4, 2, {"KV_SMEM": False})]
DQ = [*fused.DQ_CONFIGS, (128, 128, 8, 3), (64, 128, 4, 3)]
LA_FWD = [(64, 64, 4, 3), (64, 64, 4, 4), (64, 32, 4, 3), (64, 128, 8, 3), (128, 64, 8, 3)]
LA_BWD = [(64, 64, 64, 4, 3), (64, 64, 64, 4, 4), (64, 64, 64, 8, 3), (64, 32, 32, 4, 3),
          (64, 32, 64, 4, 3)]  # fmt: skip
PREP = [*delta_chunk.PREP_CONFIGS,
        *(triton.Config({"BV": bv}, num_warps=4, num_stages=1, maxnreg=r)
          for bv, r in ((64, 144), (64, 128), (32, 128)))]  # fmt: skip


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


def _go(kernel, grid, descs, rest, meta, c):
    kw = dict(BLOCK_M=c[0], BLOCK_N=c[1], num_warps=c[2], num_stages=c[3], **(c[4:] or [{}])[0])
    fused._set_blocks({**descs, **meta, **kw})
    return kernel[grid](*descs.values(), *rest, **meta, **kw)


def _inputs(T, B, H, D):
    """q, k, v, dO of the reference shapes (bf16, [B, T, H, D]) and the causal score count."""
    g = torch.Generator(device="cuda").manual_seed(T)
    q, k, v, do = (
        torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(4)
    )
    return q, k, v, do, B * H * T * (T + 1) / 2


def _saved(q, k, v, do, s):
    """What the backward kernels read: o, lse (the Triton forward) and delta."""
    with config.override(gluon_forward=False):
        o, lse = fused._forward(q, k, v, True, s)
    return o, lse, (o.float() * do.float()).sum(-1).transpose(1, 2).contiguous()


def sweep_attention(T, B=4, H=16, D=128):
    s = D**-0.5
    q, k, v, do, pairs = _inputs(T, B, H, D)
    print(f"T={T}")
    qt, kt, vt, dot = (x.transpose(1, 2).requires_grad_() for x in (q, k, v, do))
    sb = do_bench(
        lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=True).backward(dot),
        return_mode="median",
        grad_to_none=[qt, kt, vt],
    )
    print(f"  sdpa fwd+bwd {sb:.3f} ms")
    o, lse, delta = _saved(q, k, v, do, s)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    sc = (s * fused.LOG2E, s)
    meta = dict(BLOCK_D=D, BLOCK_DV=D, CAUSAL=True)
    d4 = {n: fused._desc(x) for n, x in zip(("q_desc", "k_desc", "v_desc"), (q, k, v))}
    fwd = run(
        "fwd 4d",
        lambda c: _go(fused._fwd_kernel, (triton.cdiv(T, c[0]), B * H),
                      {**d4, "o_desc": fused._desc(o)}, (lse, T, T, H, H, sc[0]), meta, c),
        FWD, 4 * pairs * D,
    )  # fmt: skip
    best_dkdv = float("inf")
    for flat in (True, False):
        names = ("q_desc", "k_desc", "v_desc", "do_desc")
        descs = {n: fused._desc(x, flat) for n, x in zip(names, (q, k, v, do))}
        descs.update(dk_desc=fused._desc(dk), dv_desc=fused._desc(dv))
        res = run(
            f"dkdv {'2d' if flat else '4d'}",
            lambda c, descs=descs, flat=flat: _go(
                fused._bwd_dkdv_kernel, (triton.cdiv(T, c[1]), B * H), descs,
                (lse, delta, T, T, H, H, *sc), dict(meta, FLAT=flat), c),
            DKDV, 8 * pairs * D,
        )  # fmt: skip
        best_dkdv = min([best_dkdv] + [r[0] for r in res])
    dqs = run(
        "dq 4d",
        lambda c: _go(fused._bwd_dq_kernel, (triton.cdiv(T, c[0]), B * H),
                      {**d4, "do_desc": fused._desc(do), "dq_desc": fused._desc(dq)},
                      (lse, delta, T, T, H, H, *sc), meta, c),
        DQ, 6 * pairs * D,
    )  # fmt: skip
    est = fwd[0][0] + best_dkdv + dqs[0][0]
    print(f"  best fwd {fwd[0][0]:.3f}, dK/dV {best_dkdv:.3f}, dQ {dqs[0][0]:.3f} ms: "
          f"{est:.3f} ms (+ delta) vs sdpa fwd+bwd {sb:.3f}: {sb / est:.3f}x")  # fmt: skip


def sweep_gluon(T, B=4, H=16, D=128):
    """Each softmax pass by its backends, as the library launches them."""
    s = D**-0.5
    q, k, v, do, pairs = _inputs(T, B, H, D)
    o, lse, delta = _saved(q, k, v, do, s)
    print(f"T={T} (causal, bf16; TFLOP/s from each pass's products)")

    def report(what, fn, products):
        ms = do_bench(fn, warmup=25, rep=100, return_mode="median")
        print(f"  {what:40s} {ms:8.3f} ms {2 * products * pairs * D / ms / 1e9:6.0f} TFLOP/s")

    for kind, ok in (("forward", gluon_forward.supports(q, k, v, True)),
                     ("dkdv", gluon_dkdv.supports(q, k, v, True))):  # fmt: skip
        print(f"  gluon {kind}: {'takes these inputs' if ok[0] else ok[1]}")
    report("gluon forward", lambda: gluon_forward.run(q, k, v, True, s), 2)
    with config.override(gluon_forward=False):
        report("triton forward (autotuned)", lambda: fused._forward(q, k, v, True, s), 2)
    qt, kt, vt = (x.transpose(1, 2).contiguous() for x in (q, k, v))
    report("sdpa forward", lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=True), 2)
    report("gluon dK/dV", lambda: gluon_dkdv.run(q, k, v, do, lse, delta, True, s), 4)
    with config.override(gluon_dkdv=False):
        # the Triton backward's dK/dV alone: its whole backward less its dQ pass and delta
        report("triton backward (delta, dK/dV, dQ)",
               lambda: fused._backward(q, k, v, o, lse, do, True, s), 7)  # fmt: skip
    report("triton dQ pass", lambda: fused._dq_pass(q, k, v, do, lse, delta, True, s, None), 3)


def sweep_linear(T, B=4, H=16, D=128):
    s = D**-0.5
    q, k, v, do, _ = _inputs(T, B, H, D)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    lmeta = dict(K_DIM=D, V_DIM=D, HAS_DECAY=False, USE_S0=False, VARLEN=False, PRECISE=False,
                 DOT="tf32")  # fmt: skip
    lo = torch.empty_like(v)
    st = _backend.token_strides(q, v)
    run(
        "lin fwd",
        lambda c: chunk._fwd_kernel[(triton.cdiv(D, c[1]), B * H)](
            q, k, v, lo, lo, lo, lo, q, T, H, *st, s, BLOCK_K=D, STORE_ST=False, **lmeta,
            BLOCK_T=c[0], BLOCK_V=c[1], num_warps=c[2], num_stages=c[3],
        ),
        LA_FWD,
    )  # fmt: skip
    run(
        "lin bwd",
        lambda c: chunk._bwd_kernel[(2 * D // c[1] + D // c[2], B * H)](
            q, k, v, do, dq, dk, dv, dq, dq, dq, dq, q, T, H, *st, s, **lmeta, USE_DST=False,
            STORE_DS0=False, BLOCK_KF=D, BLOCK_VF=D, BLOCK_T=c[0], BLOCK_KS=c[1],
            BLOCK_VS=c[2], num_warps=c[3], num_stages=c[4],
        ),
        LA_BWD,
    )  # fmt: skip


def sweep_prep(T, B=4, H=16, D=128):
    """The prepare kernel as the library launches it (T, -W and U written), one configuration
    at a time: the plan cache is cleared so that each list of one is tuned and launched."""
    torch.manual_seed(0)
    k = F.normalize(torch.randn(B, T, H, D, device="cuda"), dim=-1).to(torch.bfloat16)
    v = torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16)
    beta = torch.rand(B, T, H, device="cuda")
    g = F.logsigmoid(torch.randn(B, T, H, device="cuda")) / 16
    lay = delta_chunk._Layout(k, None, delta_chunk.CHUNK, delta_chunk.CHECKPOINT_CHUNKS)
    print(f"T={T} delta rule prepare kernel (bf16, B={B}, H={H}, K=V={D})")
    configs = delta_chunk.PREP_CONFIGS
    for gated in (False, True):
        gc = delta_chunk._chunk_gates(g, lay) if gated else None
        for cfg in PREP:
            delta_chunk.PREP_CONFIGS = [cfg]
            _backend._plans.clear()
            what = f"{'gated' if gated else 'ungated':8s} {cfg}"
            try:
                fn = lambda gc=gc: delta_chunk._prepare(k, v, gc, beta, lay, True)  # noqa: E731
                fn()
                ms = do_bench(fn, warmup=10, rep=50, return_mode="median")
                print(f"  {what:86s} {ms:8.3f} ms")
            except Exception as e:  # a config that does not compile or fit is reported
                print(f"  {what}: {type(e).__name__}: {str(e)[:160]}")
    delta_chunk.PREP_CONFIGS = configs
    _backend._plans.clear()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", default="8192")
    ap.add_argument("--what", default="attn,gluon,lin")
    args = ap.parse_args()
    what = args.what.split(",")
    for T in [int(t) for t in args.T.split(",")]:
        if "attn" in what:
            sweep_attention(T)
        if "gluon" in what:
            sweep_gluon(T)
        if "lin" in what:
            sweep_linear(T)
        if "prep" in what:
            sweep_prep(T)


if __name__ == "__main__":
    main()
