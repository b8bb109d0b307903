"""GPU benchmark of the causal short convolution (ncd.ops.short_conv) against the PyTorch form
the compiler lowers it to on the CPU and under `fused="torch"` (`runtime.short_conv`: conv1d
on the transposed input, padded W - 1 on both sides, the first T outputs kept, SiLU) and
torch.compile of that form.

Op `short_conv` (SiLU after it, no bias, W = 4: DeltaNet's); `impl`: `ncd`, `torch`,
`torch_compile`, `fla` (fla-core's Triton `causal_conv1d`, its ShortConvolution's kernel; an
implementation that fails gets a row with its `error`). B = 4, T = 4096 and 16384, C = 2048
channels (`K` in the rows, `H` = 1), bfloat16. Per row: relative RMS error of y and every
gradient against the float64 reference, `do_bench` medians of the forward and of forward +
backward, the peak extra memory of one forward + backward. ncd rows carry `vs_torch`,
`vs_compile` and `vs_fla` (their forward + backward time over ncd's). Rows follow
bench/README.md's JSON format. `--breakdown` adds each implementation's kernels (device
microseconds per forward + backward) and the configurations ncd's autotuner chose.

    PYTHONPATH=. python3 bench/ops_conv.py --out $OUT/ops_conv.json [--breakdown]
    .venv/bin/python bench/ops_conv.py --dry-run --out /tmp/ops_conv.json   # CPU, tiny shapes
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: results_meta
from results_meta import commit  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

IMPLS = ["ncd", "torch", "torch_compile", "fla"]
SHAPES = [(4, 4096, 2048), (4, 16384, 2048)]
DRY_SHAPES = [(2, 37, 40)]
W = 4


def implementation(impl, dry):
    import torch

    from ncd import ops
    from ncd.compiler import runtime

    if impl == "ncd":
        return lambda x, w: ops.short_conv(x, w, activation="silu")
    if impl == "torch":
        return lambda x, w: runtime.short_conv(x, w, activation="silu")
    if impl == "fla":  # fla-core's Triton causal_conv1d (its ShortConvolution's kernel)
        from fla.modules.causal_conv1d.ops import causal_conv1d

        return lambda x, w: causal_conv1d(x, w[:, 0], activation="silu", backend="triton")[0]
    form = lambda x, w: runtime.short_conv(x, w, activation="silu")  # noqa: E731
    return torch.compile(form, dynamic=False, backend="eager" if dry else "inductor")


def one(impl, B, T, C, dtype, device, dry):
    import torch

    from ncd.ops.short_conv import short_conv_reference

    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(B, T, C, device=device, generator=g).to(dtype).requires_grad_()
    w = (torch.randn(C, 1, W, device=device, generator=g) / 2).to(dtype).requires_grad_()
    dy = torch.randn(B, T, C, device=device, generator=g).to(dtype)
    fn = implementation(impl, dry)
    y = fn(x, w)
    got = [y, *torch.autograd.grad(y, [x, w], dy)]
    ref_in = [t.detach().double().requires_grad_() for t in (x, w)]
    y_ref = short_conv_reference(*ref_in, activation="silu")
    want = [y_ref, *torch.autograd.grad(y_ref, ref_in, dy.double())]
    err = max(
        float((a.detach().double() - b.detach()).norm() / b.detach().norm())
        for a, b in zip(got, want)
    )
    row = {"op": "short_conv", "impl": impl, "B": B, "T": T, "H": 1, "K": C,
           "dtype": str(dtype).removeprefix("torch."), "rel_err": err}  # fmt: skip

    def fwd():
        with torch.no_grad():
            fn(x, w)

    def step():
        fn(x, w).backward(dy)

    if device == "cuda":
        from profiling import peak_mib
        from triton.testing import do_bench

        row["fwd_ms"] = do_bench(fwd, warmup=10, rep=50, return_mode="median")
        row["fwdbwd_ms"] = do_bench(step, warmup=10, rep=50, grad_to_none=[x, w],
                                    return_mode="median")  # fmt: skip
        x.grad = w.grad = None
        row["peak_mib"] = peak_mib(step)
    else:
        t0 = time.perf_counter()
        step()
        row["fwd_ms"], row["fwdbwd_ms"] = None, (time.perf_counter() - t0) * 1e3
        row["peak_mib"] = None
    return row


def kernels(impl, B, T, C, dtype):
    """{impl, T, fwdbwd_ms, kernels: {name: device us per call}} of one forward + backward
    (ncd's: with the configurations its autotuner chose)."""
    import torch
    from profiling import kernel_table
    from triton.testing import do_bench

    from ncd.ops._backend import tuned_configs

    try:
        x = torch.randn(B, T, C, device="cuda").to(dtype).requires_grad_()
        w = (torch.randn(C, 1, W, device="cuda") / 2).to(dtype).requires_grad_()
        dy = torch.randn(B, T, C, device="cuda").to(dtype)
        fn = implementation(impl, False)

        def step():
            fn(x, w).backward(dy)

        ms = do_bench(step, warmup=10, rep=50, grad_to_none=[x, w], return_mode="median")
        table = {k: round(us, 1) for k, (_, us) in kernel_table(step).items()}
    except Exception as e:  # noqa: BLE001 - an anchor that fails is reported, not fatal
        return {"impl": impl, "T": T, "error": f"{type(e).__name__}: {e}"[:300]}
    out = {"impl": impl, "T": T, "fwdbwd_ms": ms, "kernels": table}
    if impl == "ncd":
        out["configs"] = {k: v for k, v in tuned_configs().items() if k.startswith("kernels.")}
    print(json.dumps(out), flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impls", nargs="+", default=IMPLS, choices=IMPLS)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes (the plumbing)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--breakdown", action="store_true",
                    help="per-kernel device time of one forward + backward of each "
                    "implementation")  # fmt: skip
    args = ap.parse_args(argv)
    import torch
    import triton

    device = "cpu" if args.dry_run else "cuda"
    breakdown = None
    dtype = torch.float32 if args.dry_run else torch.bfloat16
    rows = []
    for B, T, C in DRY_SHAPES if args.dry_run else SHAPES:
        mine = {}
        for impl in args.impls:
            if impl == "fla" and args.dry_run:
                continue  # fla's kernel needs CUDA
            try:
                r = one(impl, B, T, C, dtype, device, args.dry_run)
            except Exception as e:  # noqa: BLE001 - an anchor that fails is reported, not fatal
                r = {"op": "short_conv", "impl": impl, "B": B, "T": T, "H": 1, "K": C,
                     "error": f"{type(e).__name__}: {str(e)[:300]}"}  # fmt: skip
            rows.append(r)
            mine[impl] = r
            print(json.dumps(r), flush=True)
        if mine.get("ncd", {}).get("fwdbwd_ms"):
            for other, key in (("torch", "vs_torch"), ("torch_compile", "vs_compile"),
                               ("fla", "vs_fla")):  # fmt: skip
                if mine.get(other, {}).get("fwdbwd_ms"):
                    mine["ncd"][key] = mine[other]["fwdbwd_ms"] / mine["ncd"]["fwdbwd_ms"]
    if args.breakdown and device == "cuda":
        breakdown = [kernels(impl, B, T, C, dtype) for B, T, C in SHAPES
                     for impl in ("ncd", "torch", "fla")]  # fmt: skip
    meta = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "date": datetime.date.today().isoformat(), "commit": commit(None),
            "torch": torch.__version__, "triton": triton.__version__}  # fmt: skip
    if args.out:
        with open(args.out, "w") as f:
            json.dump(
                {"meta": meta, "rows": rows, **({"breakdown": breakdown} if breakdown else {})},
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
