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

FWD = [(128, 64, 8, 3), (128, 128, 8, 3), (128, 64, 8, 4), (64, 64, 4, 3)]
DKDV = [
    (64, 128, 8, 2),
    (64, 128, 8, 3),
    (32, 128, 8, 3),
    (32, 64, 4, 3),
    (64, 64, 4, 3),
    (64, 64, 8, 3),
    (128, 64, 8, 2),
    (128, 128, 8, 2),
]
DKDV_OLD = [(32, 64, 4, 3), (64, 128, 8, 3)]
DQ = [(128, 64, 8, 3), (128, 128, 8, 2), (128, 32, 8, 4)]
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
            print(f"  {name} {cfg}: {type(e).__name__}: {str(e)[:120]}")
    res.sort(key=lambda r: r[0])
    for ms, cfg, regs, spills, wg in res:
        tf = f"{flops / ms / 1e9:6.0f} TFLOP/s" if flops else ""
        print(f"  {name:12s} {cfg!s:24s} {ms:8.3f} ms {tf} regs {regs} spills {spills} wgmma {wg}")
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", default="4096,16384")
    args = ap.parse_args()
    for T in [int(t) for t in args.T.split(",")]:
        sweep(T)


def sweep(T, B=4, H=16, D=128):
    s = D**-0.5
    g = torch.Generator(device="cuda").manual_seed(T)
    q, k, v, do = (
        torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(4)
    )
    pairs = B * H * T * (T + 1) / 2
    print(f"T={T}")
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    sd = do_bench(
        lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=True), return_mode="median"
    )
    print(f"  sdpa fwd {sd:.3f} ms {4 * pairs * D / sd / 1e9:.0f} TFLOP/s")
    o, lse = fused._forward(q, k, v, True, s)
    delta = (o.float() * do.float()).sum(-1).transpose(1, 2).contiguous()
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    dq32 = torch.zeros(q.shape, device="cuda", dtype=torch.float32)
    meta = dict(D=D, DV=D, BLOCK_D=D, BLOCK_DV=D, CAUSAL=True)

    def kw(c):
        return dict(BLOCK_M=c[0], BLOCK_N=c[1], num_warps=c[2], num_stages=c[3])

    run(
        "attn fwd",
        lambda c: fused._fwd_kernel[(triton.cdiv(T, c[0]), B * H)](
            q, k, v, o, lse, T, T, H, H, s * fused.LOG2E, **meta, **kw(c)
        ),
        FWD,
        4 * pairs * D,
    )

    def dkdv(c, atomic, kv_smem):
        return fused._bwd_dkdv_kernel[(triton.cdiv(T, c[1]), B * H)](
            q, k, v, do, lse, delta, dk, dv, dq32, T, T, H, H, s * fused.LOG2E, s, **meta,
            ATOMIC_DQ=atomic, KV_SMEM=kv_smem, **kw(c),
        )  # fmt: skip

    best = {}
    for atomic, kv_smem, cfgs in (
        (False, False, DKDV_OLD),
        (False, True, DKDV),
        (True, True, DKDV),
        (True, False, DKDV_OLD),
    ):
        name = f"dkdv{'+dq' if atomic else ''}{' kv_smem' if kv_smem else ''}"
        res = run(
            name,
            lambda c, a=atomic, m=kv_smem: dkdv(c, a, m),
            cfgs,
            (10 if atomic else 8) * pairs * D,
        )
        best[(atomic, kv_smem)] = res[0][0] if res else float("nan")
    res = run(
        "attn dq",
        lambda c: fused._bwd_dq_kernel[(triton.cdiv(T, c[0]), B * H)](
            q, k, v, do, lse, delta, dq, T, T, H, H, s * fused.LOG2E, s, **meta, **kw(c)
        ),
        DQ,
        6 * pairs * D,
    )
    print(
        f"  best split bwd (dkdv kv_smem + dq) {best[(False, True)] + res[0][0]:.3f} ms; "
        f"best atomic bwd {best[(True, True)]:.3f} ms (+ zero fill and cast)"
    )
    lmeta = dict(K_DIM=D, V_DIM=D, HAS_DECAY=False, USE_S0=False, VARLEN=False)
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
