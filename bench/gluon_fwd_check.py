"""Check and time the Gluon attention forward (ops/attention/hopper_fwd.py) on
the H200.

    python bench/gluon_fwd_check.py              # every case, each in its own child process
    python bench/gluon_fwd_check.py --case NAME  # one case, in this process
    python bench/gluon_fwd_check.py --only small_causal,big_causal
    python bench/gluon_fwd_check.py --list

Each case builds random inputs and compares o and lse of `hopper_fwd.forward_hopper` with
those of `fused._forward(q, k, v, causal, scale)`: o by relative RMS error (NaN counts as inf;
bound 5e-3), lse by max |lse - ref| / max(1, |ref|) (bound 1e-4). Every variant is checked:
the default first, then the other loop form (`ahead`), BN = 64 keys per step, 3 stages.
Cases marked for timing also time, with triton.testing.do_bench (median), every Gluon variant,
the Triton forward (`fused._forward`, autotuned) and torch's scaled_dot_product_attention on
contiguous [B, H, T, D] copies, and print ms, TFLOP/s and the Triton / Gluon ratio.
A child that runs past its timeout (a hung kernel, such as an mbarrier waited on with the
wrong phase) is killed and reported as HUNG (its last line names the variant that was
launched); the other cases still run. Exit status 1 if any case fails or hangs.
"""

import math
import sys
import time

from gluon_common import import_ncd, main, rel_rms

BOUND_O = 5e-3
BOUND_LSE = 1e-4
# name: (B, H, T, S, D, causal, dtype, time it, timeout in seconds)
CASES = {
    "small_causal": (1, 2, 256, 256, 128, True, "bfloat16", False, 120),
    "small": (1, 2, 256, 256, 128, False, "bfloat16", False, 120),
    "small_causal_d64": (1, 2, 256, 256, 64, True, "bfloat16", False, 120),
    "mid_causal": (2, 4, 1024, 1024, 128, True, "bfloat16", False, 120),
    "mid": (2, 4, 1024, 1024, 128, False, "bfloat16", False, 120),
    "mid_causal_d64": (2, 4, 1024, 1024, 64, True, "bfloat16", False, 120),
    "mid_d64": (2, 4, 1024, 1024, 64, False, "bfloat16", False, 120),
    "mid_fp16_causal": (2, 4, 1024, 1024, 128, True, "float16", False, 120),
    "S_gt_T": (2, 4, 256, 768, 128, False, "bfloat16", False, 120),
    "S_lt_T_d64": (2, 4, 768, 256, 64, False, "bfloat16", False, 120),
    "gqa_causal": (2, 8, 1024, 1024, 128, True, "bfloat16", False, 120),
    "gqa_d64": (2, 8, 768, 512, 64, False, "bfloat16", False, 120),
    "big_causal": (4, 16, 8192, 8192, 128, True, "bfloat16", True, 200),
    "big_full": (4, 16, 4096, 4096, 128, False, "bfloat16", True, 200),
}
# key/value heads where fewer than the query heads (grouped heads)
HKV = {"gqa_causal": 2, "gqa_d64": 4}
# (tag, keyword arguments of forward_hopper); the first is the default configuration
VARIANTS = [
    ("default", {}),
    ("other loop form", {"ahead": "flip"}),
    ("BN=64", {"block_n": 64}),
    ("3 stages", {"stages": 3}),
]


def lse_err(x, ref):
    x, ref = x.double(), ref.double()
    d = ((x - ref).abs() / ref.abs().clamp(min=1.0)).max().item()
    return d if d == d else float("inf")


def run_case(name):
    import_ncd()
    import torch
    import triton

    from ncd.ops.attention import fused, hopper_fwd

    fused.HOPPER_FORWARD = False  # the reference is the Triton forward, whatever the switch

    B, H, T, S, D, causal, dtype, timed, _ = CASES[name]
    Hkv = HKV.get(name, H)
    print(f"[{name}] B={B} H={H} Hkv={Hkv} T={T} S={S} D={D} causal={causal} {dtype} "
          f"triton {triton.__version__} torch {torch.__version__} "
          f"{torch.cuda.get_device_name()} Gluon={hopper_fwd.AVAILABLE}", flush=True)  # fmt: skip
    dt = getattr(torch, dtype)
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(B, T, H, D, device="cuda", dtype=dt, generator=g)
    k = torch.randn(B, S, Hkv, D, device="cuda", dtype=dt, generator=g)
    v = torch.randn(B, S, Hkv, D, device="cuda", dtype=dt, generator=g)
    scale = 1.0 / math.sqrt(D)
    assert hopper_fwd.usable(q), "needs Triton 3.6 (Gluon) and an sm_90 GPU"
    assert hopper_fwd.supported(q, k, v, causal), "case outside hopper_fwd.supported"
    o_ref, lse_ref = fused._forward(q, k, v, causal, scale)
    torch.cuda.synchronize()

    def kwargs(kw):
        kw = dict(kw)
        if kw.get("ahead") == "flip":
            kw["ahead"] = not hopper_fwd.AHEAD
        return kw

    ok = True
    for tag, kw in VARIANTS:
        print(f"[{name}] {tag} {kwargs(kw)}: launching (no line after this one = this kernel "
              "hung)", flush=True)  # fmt: skip
        t0 = time.time()
        o, lse = hopper_fwd.forward_hopper(q, k, v, causal, scale, **kwargs(kw))
        torch.cuda.synchronize()
        print(f"[{name}] {tag}: first call (compile + run) {time.time() - t0:.1f} s", flush=True)
        e_o, e_l = rel_rms(o, o_ref), lse_err(lse, lse_ref)
        good = e_o < BOUND_O and e_l < BOUND_LSE
        ok = ok and good
        print(f"[{name}] {tag}: o rel RMS error {e_o:.2e}, lse error {e_l:.2e} -> "
              f"{'ok' if good else 'FAIL'}", flush=True)  # fmt: skip
        if not good:  # where it goes wrong: per query block of 64 (one consumer's rows)
            eo = [rel_rms(o[:, i : i + 64], o_ref[:, i : i + 64]) for i in range(0, T, 64)]
            el = [lse_err(lse[:, :, i : i + 64], lse_ref[:, :, i : i + 64])
                  for i in range(0, T, 64)]  # fmt: skip
            print(f"[{name}]   o error per 64 query rows: " + " ".join(f"{e:.1e}" for e in eo[:64]))
            print(f"[{name}]   lse error per 64 query rows: "
                  + " ".join(f"{e:.1e}" for e in el[:64]))  # fmt: skip
            eh = [rel_rms(o[:, :, h], o_ref[:, :, h]) for h in range(H)]
            print(f"[{name}]   o error per head: " + " ".join(f"{e:.1e}" for e in eh[:32]))

    if timed:
        import torch.nn.functional as F
        from triton.testing import do_bench

        if causal:
            flops = 4 * B * H * T * (T + 1) / 2 * D
        else:
            flops = 4 * B * H * T * S * D

        def report(what, ms):
            print(f"[{name}] {what}  {ms:.3f} ms  {flops / ms * 1e-9:.0f} TFLOP/s", flush=True)

        ms_g = {}
        for tag, kw in VARIANTS:
            ms_g[tag] = do_bench(
                lambda kw=kw: hopper_fwd.forward_hopper(q, k, v, causal, scale, **kwargs(kw)),
                warmup=50, rep=300, return_mode="median",
            )  # fmt: skip
            report(f"gluon forward_hopper {tag} {kwargs(kw)}", ms_g[tag])
        ms_t = do_bench(lambda: fused._forward(q, k, v, causal, scale), warmup=50, rep=300,
                        return_mode="median")  # fmt: skip
        report("Triton fused._forward (autotuned)", ms_t)
        try:
            qt, kt, vt = (x.transpose(1, 2).contiguous() for x in (q, k, v))  # [B, H, N, D]
            sdpa = lambda: F.scaled_dot_product_attention(  # noqa: E731
                qt, kt, vt, is_causal=causal, scale=scale
            )
            e_s = rel_rms(sdpa().transpose(1, 2), o_ref)
            ms_s = do_bench(sdpa, warmup=50, rep=300, return_mode="median")
            report(f"torch SDPA (o rel RMS vs Triton {e_s:.1e})", ms_s)
        except Exception as e:
            print(f"[{name}] SDPA failed: {type(e).__name__}: {e}", flush=True)
        best = min(ms_g, key=ms_g.get)
        print(f"[{name}] ratio triton / gluon default = {ms_t / ms_g['default']:.2f}x; "
              f"best gluon variant '{best}' {ms_t / ms_g[best]:.2f}x", flush=True)  # fmt: skip
    return ok


if __name__ == "__main__":
    sys.exit(main(CASES, run_case, __file__))
