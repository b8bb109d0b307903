"""Check and time the Gluon dK/dV kernel (ops/attention/hopper.py) on the H200.

    python bench/gluon_check.py              # every case, each in its own child process
    python bench/gluon_check.py --case NAME  # one case, in this process
    python bench/gluon_check.py --list

Each case builds random inputs, gets lse from `fused._forward` and delta = rowsum(dO * O),
and compares dK, dV of `dkdv_hopper` with those of `fused._backward` by relative RMS error
(NaN counts as inf; bound 5e-3). Cases marked for timing also time both dK/dV kernels with
triton.testing.do_bench (median): the Gluon kernel against the Triton `_bwd_dkdv_kernel`
alone, launched as `fused._backward` launches it (or, if that fails, the whole backward).
A child that runs past its timeout (a hung kernel, such as an mbarrier waited on with the
wrong phase) is killed and reported as HUNG; the other cases still run. Exit status 1 if any
case fails or hangs.
"""

import math
import sys
import time

from gluon_common import import_ncd, main, rel_rms

BOUND = 5e-3
# name: (B, H, T, S, D, causal, dtype, time it, timeout in seconds)
CASES = {
    "small_causal": (1, 2, 256, 256, 128, True, "bfloat16", False, 180),
    "small": (1, 2, 256, 256, 128, False, "bfloat16", False, 180),
    "mid_causal": (2, 4, 1024, 1024, 128, True, "bfloat16", False, 180),
    "mid": (2, 4, 1024, 1024, 128, False, "bfloat16", False, 180),
    "mid_S_ne_T": (2, 4, 256, 768, 128, False, "bfloat16", False, 180),
    "mid_fp16_causal": (2, 4, 1024, 1024, 128, True, "float16", False, 180),
    "d64_causal": (2, 4, 1024, 1024, 64, True, "bfloat16", False, 180),
    "big_causal": (4, 16, 8192, 8192, 128, True, "bfloat16", True, 420),
    "big_full": (4, 16, 4096, 4096, 128, False, "bfloat16", True, 420),
    "gqa_causal": (2, 8, 1024, 1024, 128, True, "bfloat16", False, 180),
    "gqa4_d64": (2, 8, 768, 512, 64, False, "float16", False, 180),
    "gqa_big_causal": (4, 32, 8192, 8192, 128, True, "bfloat16", True, 420),
}
# key/value heads where fewer than the query heads (grouped heads: the warp-specialized
# kernel with lse / delta by TMA only, `hopper.dkdv_hopper`'s GROUP)
HKV = {"gqa_causal": 4, "gqa4_d64": 2, "gqa_big_causal": 8}


def fused_dkdv(fused, q, k, v, do, lse, delta, causal, scale):
    """fused._backward's dK/dV launch alone (the Triton kernel this one is meant to beat)."""
    import torch

    B, T, H, D = q.shape
    S, HKV, DV = k.shape[1], k.shape[2], v.shape[3]
    dk, dv = torch.empty_like(k), torch.empty_like(v)
    flat = fused._flat(fused.FLAT_DKDV and T % 128 == 0 and S % 128 == 0, q, k, v, do)
    pow2 = fused.pow2
    meta = dict(BLOCK_D=pow2(D), BLOCK_DV=pow2(DV), CAUSAL=causal, FLAT=flat)
    fused._launch(
        fused._bwd_dkdv_kernel, fused.DKDV_CONFIGS,
        lambda m: (fused.cdiv(S, m["BLOCK_N"]), B * HKV),
        (*(fused._desc(x, flat) for x in (q, k, v, do)), fused._desc(dk), fused._desc(dv), None,
         None, lse, delta, T, S, H, HKV, scale * fused.LOG2E, scale, D),
        dict(meta, ATOMIC_DQ=False, DQ_TMA=False),
        interpret_extra={"KV_SMEM": fused.INTERPRET_KV_SMEM},
    )  # fmt: skip
    return dk, dv


def run_case(name):
    import_ncd()
    import torch
    import triton

    from ncd.ops.attention import fused, hopper

    # The reference is the Triton kernel: the library's backward would itself call the Gluon
    # kernel on this GPU (HOPPER_DKDV) and compare it with itself.
    fused.HOPPER_DKDV = False

    B, H, T, S, D, causal, dtype, timed, _ = CASES[name]
    Hkv = HKV.get(name, H)
    print(f"[{name}] B={B} H={H} Hkv={Hkv} T={T} S={S} D={D} causal={causal} {dtype} "
          f"triton {triton.__version__} torch {torch.__version__} "
          f"{torch.cuda.get_device_name()} Gluon={hopper.AVAILABLE}", flush=True)  # fmt: skip
    dt = getattr(torch, dtype)
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(B, T, H, D, device="cuda", dtype=dt, generator=g)
    k = torch.randn(B, S, Hkv, D, device="cuda", dtype=dt, generator=g)
    v = torch.randn(B, S, Hkv, D, device="cuda", dtype=dt, generator=g)
    do = torch.randn(B, T, H, D, device="cuda", dtype=dt, generator=g)
    scale = 1.0 / math.sqrt(D)
    o, lse = fused._forward(q, k, v, causal, scale)
    delta = (o.float() * do.float()).sum(-1).transpose(1, 2).contiguous()  # [B, H, T]
    _, dk_ref, dv_ref = fused._backward(q, k, v, o, lse, do, causal, scale)
    torch.cuda.synchronize()

    ok = True
    # the kernels: plain pipelined; warp-specialized, with lse / delta by plain loads or TMA
    kernels = ((False, False), (True, False), (True, True)) if Hkv == H else ((True, True),)
    for ws, rt in kernels:
        tag = ("ws+row_tma" if rt else "ws") if ws else "plain"
        print(f"[{name}] {tag}: launching (no line after this one = this kernel hung)", flush=True)
        t0 = time.time()
        dk, dv = hopper.dkdv_hopper(q, k, v, do, lse, delta, causal, scale, ws=ws, row_tma=rt)
        torch.cuda.synchronize()
        print(f"[{name}] {tag}: first call (compile + run) {time.time() - t0:.1f} s", flush=True)
        e_dk, e_dv = rel_rms(dk, dk_ref), rel_rms(dv, dv_ref)
        good = e_dk < BOUND and e_dv < BOUND
        ok = ok and good
        print(f"[{name}] {tag}: rel RMS error dk {e_dk:.2e} dv {e_dv:.2e} -> "
              f"{'ok' if good else 'FAIL'}", flush=True)  # fmt: skip
        if not good:  # where it goes wrong: per key block of 64, the largest error
            for nm, x, r in (("dk", dk, dk_ref), ("dv", dv, dv_ref)):
                errs = [rel_rms(x[:, i : i + 64], r[:, i : i + 64]) for i in range(0, S, 64)]
                print(f"[{name}]   {nm} error per key block of 64: "
                      + " ".join(f"{e:.1e}" for e in errs[:64]))  # fmt: skip

    if timed:
        from triton.testing import do_bench

        flops = 4 * 2 * B * H * T * S * D * (0.5 if causal else 1.0)
        ms_g = {}
        variants = [(False, False, 2), (True, False, 2), (True, False, 3), (True, True, 2),
                    (True, True, 3)]  # fmt: skip
        if Hkv != H:
            variants = [(True, True, 2), (True, True, 3)]
        for ws, rt, st in variants:
            tag = f"{('ws+row_tma' if rt else 'ws') if ws else 'plain'}, {st} stages"
            ms_g[ws, rt, st] = do_bench(
                lambda st=st, ws=ws, rt=rt: hopper.dkdv_hopper(
                    q, k, v, do, lse, delta, causal, scale, stages=st, ws=ws, row_tma=rt),
                warmup=50, rep=300, return_mode="median",
            )  # fmt: skip
            print(f"[{name}] gluon dkdv_hopper {tag}  {ms_g[ws, rt, st]:.3f} ms  "
                  f"{flops / ms_g[ws, rt, st] * 1e-9:.0f} TFLOP/s", flush=True)  # fmt: skip
        ms_g = ms_g[hopper.WS, hopper.ROW_TMA and hopper.WS, hopper.NUM_STAGES]
        try:
            fused_dkdv(fused, q, k, v, do, lse, delta, causal, scale)
            what = "Triton _bwd_dkdv_kernel (autotuned)"
            fn = lambda: fused_dkdv(fused, q, k, v, do, lse, delta, causal, scale)  # noqa: E731
        except Exception as e:  # fused.py's internals moved: time its whole backward
            print(f"[{name}] fused dK/dV launch failed ({type(e).__name__}: {e}); timing "
                  "fused._backward (delta + dK/dV + dQ) instead", flush=True)  # fmt: skip
            what = "fused._backward (all of it)"
            fn = lambda: fused._backward(q, k, v, o, lse, do, causal, scale)  # noqa: E731
        ms_t = do_bench(fn, warmup=50, rep=300, return_mode="median")
        print(f"[{name}] {what}  {ms_t:.3f} ms  {flops / ms_t * 1e-9:.0f} TFLOP/s")
        print(f"[{name}] ratio triton / gluon (default: ws={hopper.WS}, row_tma={hopper.ROW_TMA}, "
              f"{hopper.NUM_STAGES} stages) = "
              f"{ms_t / ms_g:.2f}x", flush=True)  # fmt: skip
    return ok


if __name__ == "__main__":
    sys.exit(main(CASES, run_case, __file__))
