"""GPU benchmark of the op library against PyTorch SDPA, fla-core and (optionally) the naive
PyTorch forms.

Not a test. On one CUDA device, per T, every implementation is checked and timed back to back
in one process: relative RMS error of the output and of every gradient against the float32
reference (computed on a slice of batch 0 and the first heads, which is exact because heads
are independent), `triton.testing.do_bench` medians of the forward and of forward + backward,
and the peak extra memory of one forward + backward. Causal, B = 4, H = 16, K = V = 128.

    bash bench/gpu.sh ops                          # on the GPU machine (bench/README.md)
    python bench/ops_gpu.py --out ops_gpu.json     # where ncd imports

Writes {"meta": {device, date, commit, torch, triton}, "rows": [{op, impl, B, T, H, K, dtype,
fwd_ms, fwdbwd_ms, peak_mib, rel_err}]} and, with --details, the library's switches, which
backend ran each softmax pass, and a per-kernel profile at one T.
"""

import argparse
import datetime
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
from triton.testing import do_bench

from ncd.ops import config, linear_attention, softmax_attention
from ncd.ops._backend import tuned_configs
from ncd.ops.attention.reference import softmax_attention_reference
from ncd.ops.linear_attention.reference import linear_attention_reference

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: results_meta
from profiling import kernel_table  # noqa: E402
from results_meta import commit  # noqa: E402

try:
    from fla.ops.linear_attn import chunk_linear_attn
except ImportError:  # fla-core not installed: its rows are left out
    chunk_linear_attn = None


def rel_rms(x, ref):
    # NaN becomes inf: a NaN error would pass every `<` and be dropped by `max`.
    x, ref = x.double(), ref.double()
    err = ((x - ref).norm() / ref.norm()).item()
    return err if err == err else float("inf")


def sdpa(q, k, v):
    o = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
    )
    return o.transpose(1, 2)


def naive_softmax(q, k, v):
    T = q.shape[1]
    s = torch.einsum("bthd,bshd->bhts", q, k) * q.shape[-1] ** -0.5
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    p = torch.softmax(s.masked_fill(mask, float("-inf")), -1)
    return torch.einsum("bhts,bshd->bthd", p, v)


def naive_linear(q, k, v, scale):
    T = q.shape[1]
    s = torch.einsum("bthd,bshd->bhts", q, k) * scale
    s = s.masked_fill(torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1), 0)
    return torch.einsum("bhts,bshd->bthd", s, v)


def impls(op, scale):
    if op == "softmax_attention":
        out = {
            "ncd": lambda q, k, v: softmax_attention(q, k, v, causal=True),
            "sdpa": sdpa,
            "naive": naive_softmax,
        }
        ref = lambda q, k, v: softmax_attention_reference(q, k, v, causal=True)  # noqa: E731
    else:
        out = {
            "ncd": lambda q, k, v: linear_attention(q, k, v, scale=scale)[0],
            "naive": lambda q, k, v: naive_linear(q, k, v, scale),
        }
        if chunk_linear_attn is not None:
            out["fla"] = lambda q, k, v: chunk_linear_attn(q, k, v, scale=scale, normalize=False)[0]
        ref = lambda q, k, v: linear_attention_reference(q, k, v, scale=scale)[0]  # noqa: E731
    return out, ref


def inputs(op, B, T, H, K, dtype, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    shape = (B, T, H, K)
    q, k, v = (torch.randn(shape, device="cuda", dtype=dtype, generator=g) for _ in range(3))
    if op == "linear_attention":  # keep outputs O(1) at every T: unit-norm feature rows
        q = F.normalize(q.float(), dim=-1).to(dtype)
        k = F.normalize(k.float(), dim=-1).to(dtype)
    do = torch.randn(shape, device="cuda", dtype=dtype, generator=g)
    return [x.requires_grad_() for x in (q, k, v)], do


def check(fn, ref, xs, do, heads):
    """Errors of fn's output and gradients against ref on batch 0, heads [0, heads)."""
    o = fn(*xs)
    grads = torch.autograd.grad(o, xs, do)
    sl = (slice(0, 1), slice(None), slice(0, heads))
    xs32 = [x.detach()[sl].float().requires_grad_() for x in xs]
    o_ref = ref(*xs32)
    g_ref = torch.autograd.grad(o_ref, xs32, do[sl].float())
    errs = [rel_rms(o[sl], o_ref)] + [rel_rms(g[sl], r) for g, r in zip(grads, g_ref)]
    del o_ref, g_ref, xs32
    return max(errs), errs


def measure(fn, xs, do):
    fwd = do_bench(lambda: fn(*xs), warmup=25, rep=100, return_mode="median")

    def step():
        fn(*xs).backward(do)

    both = do_bench(step, warmup=25, rep=100, grad_to_none=xs, return_mode="median")
    for x in xs:
        x.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    for x in xs:
        x.grad = None
    return fwd, both, peak


def ncd_breakdown(B, T, H, K):
    """Per-kernel times of our two families at one shape (bf16, causal)."""
    from ncd.ops.attention import fused
    from ncd.ops.linear_attention import chunk

    (q, k, v), do = inputs("softmax_attention", B, T, H, K, torch.bfloat16, 7)
    q, k, v = q.detach(), k.detach(), v.detach()
    s = K**-0.5
    o, lse = fused._forward(q, k, v, True, s)
    out = {"softmax_fwd": do_bench(lambda: fused._forward(q, k, v, True, s), return_mode="median")}
    out["softmax_bwd_all"] = do_bench(
        lambda: fused._backward(q, k, v, o, lse, do, True, s), return_mode="median"
    )
    out["softmax_kernels_fwd_bwd_ms"] = kernel_times(
        lambda: (fused._forward(q, k, v, True, s), fused._backward(q, k, v, o, lse, do, True, s))
    )
    out["linear_fwd"] = do_bench(
        lambda: chunk._forward(q, k, v, None, s, None, False, None), return_mode="median"
    )
    out["linear_bwd"] = do_bench(
        lambda: chunk._backward(q, k, v, do, None, s, None, None, False, None),
        return_mode="median",
    )
    out["linear_kernels_fwd_bwd_ms"] = kernel_times(
        lambda: (
            chunk._forward(q, k, v, None, s, None, False, None),
            chunk._backward(q, k, v, do, None, s, None, None, False, None),
        )
    )
    out["configs"] = tuned_configs()
    return out


def kernel_times(fn, n=5):
    """Mean device time per call (ms) of each kernel that fn launches, from the PyTorch
    profiler."""
    return {k: round(us / 1e3, 4) for k, (_, us) in kernel_table(fn, n, width=60).items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", default="1024,2048,4096,8192,16384,32768")
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--H", type=int, default=16)
    ap.add_argument("--K", type=int, default=128)
    ap.add_argument("--ops", default="softmax_attention,linear_attention")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--out", default=None, help="results JSON (the bench/results layout)")
    ap.add_argument("--details", default=None, help="JSON of the schedule choice and breakdown")
    ap.add_argument("--commit", default=None, help="commit measured, where the copy has no .git")
    ap.add_argument("--breakdown-T", type=int, default=8192, help="0: no per-kernel breakdown")
    ap.add_argument(
        "--skip",
        default="softmax_attention:naive,linear_attention:naive",
        help="op:impl pairs left out, comma-separated ('' keeps the naive forms)",
    )
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False  # the float32 references stay float32
    B, H, K, dtype = args.B, args.H, args.K, getattr(torch, args.dtype)
    meta = {
        "device": torch.cuda.get_device_name(),
        "date": datetime.date.today().isoformat(),
        "commit": commit(args.commit),
        "torch": torch.__version__,
        "triton": triton.__version__,
    }
    skip = set(filter(None, args.skip.split(",")))
    # the library's switches and the backend of each softmax pass at these shapes, so that a
    # result says which kernels it measured
    from ncd.ops.attention import fused

    details = {"config": config.describe(), "softmax_backends": {}}
    if "softmax_attention" in args.ops:
        for T in [int(t) for t in args.T.split(",")]:
            q = torch.empty(B, T, H, K, device="cuda", dtype=dtype)
            details["softmax_backends"][T] = {
                kind: fused.choose(kind, q, q, q, True) for kind in ("forward", "dkdv")
            }
    print(details, flush=True)
    rows = []
    for T in [int(t) for t in args.T.split(",")]:
        for op in args.ops.split(","):
            fns, ref = impls(op, K**-0.5)
            for name, fn in fns.items():
                if f"{op}:{name}" in skip:
                    continue
                xs, do = inputs(op, B, T, H, K, dtype, seed=T)
                row = {
                    "op": op,
                    "impl": name,
                    "B": B,
                    "T": T,
                    "H": H,
                    "K": K,
                    "dtype": args.dtype,
                    "fwd_ms": None,
                    "fwdbwd_ms": None,
                    "peak_mib": None,
                    "rel_err": None,
                }
                try:
                    row["rel_err"], errs = check(fn, ref, xs, do, heads=2 if T <= 8192 else 1)
                    row["fwd_ms"], row["fwdbwd_ms"], row["peak_mib"] = measure(fn, xs, do)
                except torch.OutOfMemoryError:  # left as nulls
                    errs = "out of memory"
                del xs, do
                torch.cuda.empty_cache()
                rows.append(row)
                tok = B * T / row["fwdbwd_ms"] / 1e3 if row["fwdbwd_ms"] else math.nan
                print(
                    f"{op:18s} {name:6s} T={T:6d} fwd {row['fwd_ms'] or math.nan:8.3f} ms "
                    f"fwd+bwd {row['fwdbwd_ms'] or math.nan:8.3f} ms  {tok:6.2f} Mtok/s "
                    f"peak {row['peak_mib'] or math.nan:8.0f} MiB  errs {errs}",
                    flush=True,
                )
    if args.breakdown_T:
        details["breakdown"] = {"T": args.breakdown_T, **ncd_breakdown(B, args.breakdown_T, H, K)}
        print(json.dumps(details, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
    if args.details:
        with open(args.details, "w") as f:
            json.dump(details, f, indent=1)
    summary(rows)


def summary(rows):
    get = {(r["op"], r["impl"], r["T"]): r for r in rows}
    print("\nT  softmax ncd/sdpa  linear ncd/fla  linear ncd vs sdpa  Mtok/s (ncd linear)")
    for T in sorted({r["T"] for r in rows}):

        def t(op, impl, T=T):
            r = get.get((op, impl, T))
            return r["fwdbwd_ms"] if r and r["fwdbwd_ms"] else math.nan

        sm = t("softmax_attention", "sdpa") / t("softmax_attention", "ncd")
        lf = t("linear_attention", "fla") / t("linear_attention", "ncd")
        ls = t("softmax_attention", "sdpa") / t("linear_attention", "ncd")
        tok = rows[0]["B"] * T / t("linear_attention", "ncd") / 1e3
        print(f"{T:6d} {sm:10.3f}x {lf:18.3f}x {ls:18.3f}x {tok:12.2f}")


if __name__ == "__main__":
    main()
