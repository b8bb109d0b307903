"""GPU benchmark of the op library's efficiency ops that are not attention: the WTA-CRS linear
map (ops/wtacrs) against the exact linear map, and the L-Mul matrix product (ops/lmul) against
the bf16 matrix product.

Not a test. On one CUDA device, per shape (rows x features: x [rows, features], weight
[features, features]), every implementation is checked and timed back to back in one process:

- wtacrs_linear, impl ncd (wtacrs_linear, budget 0.3) and torch (F.linear): `do_bench` medians of
  the forward and of forward + backward (x, weight and bias all need gradients; each the median of
  five rounds in which the two take turns: the steps are host-bound at 4096 rows, and the host's
  speed drifts within a run; `vs_exact` on the ncd row: the median of each round's ratio of the
  two steps), the peak extra memory of one step, the activation memory the layer
  keeps for its backward (`saved_mib`: bytes seen by saved-tensor hooks, the weight and bias left
  out; `held_mib`: what the CUDA allocator still holds after the forward when x is made inside the
  step, the output left out), the error of y and dx against float32 (both exact maps), and for ncd
  the estimator's relative error of one dW and its relative variance E‖Ŵ − W‖² / ‖W‖² over
  `--estimates` draws, and the time of its parts (`parts_ms`: row norms, the selection and each of
  its kernels, the PyTorch form of the selection, gather, dW kernel against PyTorch's gather and
  matrix product). The rows of x are scaled by log-normal factors (activations with a few heavy
  rows, as the paper's Fig. 3 shows); dy is standard normal.
- lmul_matmul, impl ncd (lmul_linear's Triton kernel, mantissa_bits 4 and 3) and torch (the
  bf16 product, F.linear): forward and forward + backward times (L-Mul's backward is the exact
  product's), peak memory, the relative Frobenius error against the float32 product, and for
  ncd the largest difference from the PyTorch form (product.py) on the first rows.

    PYTHONPATH=$PWD python3 bench/ops_effops.py --out ops_effops.json  # on the GPU machine
    PYTHONPATH=$PWD python3 bench/ops_effops.py --ops wtacrs_linear --out wtacrs.json  # one op
    python bench/ops_effops.py --dry-run     # tiny shapes, float32 on the CPU, interpreter

Writes {"meta": {device, date, commit, torch, triton}, "rows": [{op, impl, rows, features,
dtype, fwd_ms, fwdbwd_ms, peak_mib, rel_err, ...}]}, the layout of bench/results/ops_gpu_*.
"""

import argparse
import datetime
import json
import math
import os
import sys
import time
from pathlib import Path

FULL_SHAPES = "4096x4096,16384x4096"
DRY_SHAPES = "40x24,24x16"


def parse(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default=None, help=f"ROWSxFEATURES,... (default {FULL_SHAPES})")
    ap.add_argument("--ops", default="wtacrs_linear,lmul_matmul")
    ap.add_argument("--budget", type=float, default=0.3, help="WTA-CRS: fraction of rows kept")
    ap.add_argument("--estimates", type=int, default=32, help="WTA-CRS draws for the variance")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--out", default=None, help="results JSON (the bench/results layout)")
    ap.add_argument("--commit", default=None, help="commit measured, where the copy has no .git")
    ap.add_argument(
        "--dry-run",
        action="store_true",
        help="tiny shapes in float32 on the CPU, kernels under Triton's interpreter (a check "
        "of the script; times are the interpreter's)",
    )
    return ap.parse_args(argv)


if __name__ == "__main__" and "--dry-run" in sys.argv:
    # Triton fixes interpreted or compiled when a kernel is decorated: before ncd.ops loads.
    # (Imported by a test instead, the test's process has made that choice already.)
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import triton  # noqa: E402

from ncd.ops.lmul import lmul_linear  # noqa: E402
from ncd.ops.wtacrs import wtacrs_linear  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: results_meta, profiling
from profiling import interleaved, median, paired_ratio  # noqa: E402
from results_meta import commit  # noqa: E402


class Device:
    """Timing and memory on the GPU (do_bench, the CUDA allocator) or, for a dry run, on the
    CPU (the mean of a few calls; no allocator figures)."""

    def __init__(self, dry: bool):
        self.dry = dry
        self.name = "cpu (dry run, Triton interpreter)" if dry else torch.cuda.get_device_name()
        self.device = "cpu" if dry else "cuda"
        self.backend = "triton"  # the kernels on both: interpreted on the CPU
        self.rounds = 1 if dry else 5  # interleaved rounds of the compared timings

    def sync(self):
        if not self.dry:
            torch.cuda.synchronize()

    def time(self, fn, grads=(), slow=False):
        """Median ms of fn (gradients of `grads` set to None between calls)."""
        if self.dry:
            fn()
            for g in grads:
                g.grad = None
            t = time.perf_counter()
            fn()
            return (time.perf_counter() - t) * 1e3
        from triton.testing import do_bench

        warm, rep = (2, 20) if slow else (25, 100)
        return do_bench(fn, warmup=warm, rep=rep, grad_to_none=list(grads), return_mode="median")

    def peak_mib(self, fn, grads=()):
        """Peak memory allocated during fn beyond what was allocated before, MiB."""
        if self.dry:
            return None
        for g in grads:
            g.grad = None
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        for g in grads:
            g.grad = None
        return peak

    def held_mib(self, forward):
        """Memory still allocated after `forward()` (which makes its own input), less its
        output, MiB: what the layer keeps for its backward."""
        if self.dry:
            return None
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        y = forward()
        torch.cuda.synchronize()
        held = torch.cuda.memory_allocated() - before - y.numel() * y.element_size()
        del y
        return held / 2**20


def saved_mib(forward, params):
    """MiB of the tensors autograd keeps from `forward()`, those sharing storage with `params`
    left out (the weight and bias are kept by the model anyway)."""
    skip = {p.untyped_storage().data_ptr() for p in params if p is not None}
    seen = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = forward()
    del y
    return sum(seen.values()) / 2**20


def rel(a, ref):
    """‖a − ref‖ / ‖ref‖ in float64; NaN becomes inf, so that it is never read as small."""
    a, ref = a.detach().double(), ref.detach().double()
    err = float((a - ref).norm() / ref.norm())
    return err if err == err else float("inf")


# ------------------------------------------------------------------ WTA-CRS
def wtacrs_inputs(dev, n, D, dtype, seed):
    g = torch.Generator(device=dev.device).manual_seed(seed)
    x = torch.randn(n, D, device=dev.device, generator=g)
    x = x * torch.exp(torch.randn(n, 1, device=dev.device, generator=g))  # heavy rows
    w = torch.randn(D, D, device=dev.device, generator=g) * D**-0.5
    b = torch.randn(D, device=dev.device, generator=g) * 0.1
    dy = torch.randn(n, D, device=dev.device, generator=g)
    return [t.to(dtype) for t in (x, w, b)], dy.to(dtype)


def wtacrs_rows(dev, n, D, dtype, budget, estimates):
    (x0, w0, b0), dy = wtacrs_inputs(dev, n, D, dtype, seed=n)
    x, w, b = (t.clone().requires_grad_() for t in (x0, w0, b0))
    impls = {
        "ncd": lambda x, w, b: wtacrs_linear(x, w, b, budget=budget, backend=dev.backend),
        "torch": F.linear,
    }
    # the float32 references: y, dx and dW of the exact map
    x32, w32, b32 = (t.float() for t in (x0, w0, b0))
    y_ref = F.linear(x32, w32, b32)
    dx_ref = dy.float() @ w32
    dw_ref = dy.float().t() @ x32
    rows, timers, steps = [], {}, {}
    for impl, fn in impls.items():
        row = {"op": "wtacrs_linear", "impl": impl, "rows": n, "features": D,
               "dtype": str(dtype).removeprefix("torch."),
               "budget": budget if impl == "ncd" else None}  # fmt: skip
        try:
            y = fn(x, w, b)
            y.backward(dy)
            row["rel_err"] = max(rel(y, y_ref), rel(x.grad, dx_ref))
            row["rel_err_parts"] = {"y": rel(y, y_ref), "dx": rel(x.grad, dx_ref),
                                    "dw_one_estimate": rel(w.grad, dw_ref)}  # fmt: skip
            del y
        except torch.OutOfMemoryError:
            row["error"] = "out of memory"
        else:

            def step(fn=fn):
                fn(x, w, b).backward(dy)

            steps[impl] = step
            timers[impl, "fwd_ms"] = lambda fn=fn: dev.time(lambda: fn(x, w, b), grads=(x, w, b))
            timers[impl, "fwdbwd_ms"] = lambda step=step: dev.time(step, grads=(x, w, b))
        for t in (x, w, b):
            t.grad = None
        rows.append(row)
    # the exact layer and WTA-CRS timed in turn, round after round (a host-bound step's
    # time follows the host's speed, which drifts within a run)
    errors = {}
    times = interleaved(timers, dev.rounds, errors)
    for (impl, field), ms in times.items():
        rows[list(impls).index(impl)][field] = median(ms)
    if ("ncd", "fwdbwd_ms") in times and ("torch", "fwdbwd_ms") in times:
        # the step's time over the exact layer's, the median of each round's ratio
        ours, exact = times["ncd", "fwdbwd_ms"], times["torch", "fwdbwd_ms"]
        rows[list(impls).index("ncd")]["vs_exact"] = paired_ratio(ours, exact)
    for (impl, _), e in errors.items():
        if not isinstance(e, torch.OutOfMemoryError):
            raise e
        rows[list(impls).index(impl)]["error"] = "out of memory"
        steps.pop(impl, None)
    for row, (impl, fn) in zip(rows, impls.items()):
        try:
            if impl in steps:
                row["peak_mib"] = dev.peak_mib(steps[impl], grads=(x, w, b))
                row["saved_mib"] = saved_mib(lambda fn=fn: fn(x, w, b), (w, b))
                row["held_mib"] = dev.held_mib(lambda fn=fn: fn(x * 1.0, w, b))
                if impl == "ncd":
                    row["relative_variance"] = relative_variance(fn, x0, w0, b0, dy, dw_ref,
                                                                 estimates)  # fmt: skip
                    row["parts_ms"] = wtacrs_parts(dev, x0, dy, budget)
        except torch.OutOfMemoryError:
            row["error"] = "out of memory"
        for t in (x, w, b):
            t.grad = None
        print(json.dumps(row), flush=True)
    return rows


def relative_variance(fn, x0, w0, b0, dy, dw_ref, estimates):
    """E‖Ŵ − W‖² / ‖W‖² over `estimates` draws of the weight gradient."""
    w = w0.clone().requires_grad_()
    total = 0.0
    for _ in range(estimates):
        w.grad = None
        fn(x0, w, b0).backward(dy)
        total += float((w.grad.double() - dw_ref.double()).pow(2).sum())
    return total / estimates / float(dw_ref.double().pow(2).sum())


def wtacrs_parts(dev, x, dy, budget):
    """ms of the forward's parts: the row norms, the selection (the uniforms and the kernels:
    `select`; with the norms: `norms_select`; with the gather of the kept rows in its last
    kernel, as the layer runs it: `select_gather`), each of the layer's selection kernels
    alone, and the PyTorch form of the selection on the same device; the gather of the kept
    rows alone; dW from them, the kernel against PyTorch's gather of dy and its matrix product
    (the layer's choice: sampled.DW_KERNEL)."""
    from ncd.ops._backend import launch_compiled
    from ncd.ops.wtacrs import kernels, selection
    from ncd.ops.wtacrs.sampled import kept_rows, wtacrs_select

    n = x.shape[0]
    k = kept_rows(n, budget)
    f64 = torch.float64

    def norms_of(x):
        return torch.linalg.vector_norm(x, dim=1, dtype=torch.float32)

    def select(norms):
        u = torch.rand(k, device=x.device, dtype=f64)
        if n <= selection.MAX_ROWS:
            return selection.select(norms, k, u)
        return wtacrs_select(norms, k, uniforms=u)

    norms = norms_of(x)
    idx, wt = select(norms)
    kept = kernels.gather_scale(x, idx, wt)
    parts = {
        "k": k,
        "norms": dev.time(lambda: norms_of(x)),
        "select": dev.time(lambda: select(norms)),
        "norms_select": dev.time(lambda: select(norms_of(x))),
        "select_torch": dev.time(lambda: wtacrs_select(norms, k)),
    }
    if n <= selection.MAX_ROWS:
        u = torch.rand(k, device=x.device, dtype=f64)
        parts["select_gather"] = dev.time(lambda: selection.select(norms, k, u, x=x))
    if k < n <= selection.MAX_ROWS:
        u = torch.rand(k, device=x.device, dtype=f64)
        _, launches = selection.plan(norms, k, u, x=x)
        for launch in launches:  # in order: each reads what the ones before wrote
            name = launch[0].fn.__name__.strip("_").removesuffix("_kernel")
            parts[f"select_{name}_kernel"] = dev.time(lambda a=launch: launch_compiled(*a))
    parts.update({
        "gather_kernel": dev.time(lambda: kernels.gather_scale(x, idx, wt)),
        "gather_torch": dev.time(lambda: x[idx] * wt[:, None]),
        "dw_kernel": dev.time(lambda: kernels.sampled_weight_grad(dy, idx, kept, x.dtype)),
        "dw_torch": dev.time(lambda: dy[idx].t() @ kept),
    })  # fmt: skip
    return parts


# ------------------------------------------------------------------ L-Mul
def lmul_rows(dev, n, D, dtype):
    g = torch.Generator(device=dev.device).manual_seed(n + 1)
    x0 = torch.randn(n, D, device=dev.device, generator=g).to(dtype)
    w0 = (torch.randn(D, D, device=dev.device, generator=g) * D**-0.5).to(dtype)
    dy = torch.randn(n, D, device=dev.device, generator=g).to(dtype)
    ref = x0.float() @ w0.float().t()
    x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
    impls = {
        ("ncd", 4): lambda x, w: lmul_linear(x, w, None, 4, backend=dev.backend),
        ("ncd", 3): lambda x, w: lmul_linear(x, w, None, 3, backend=dev.backend),
        ("torch", None): lambda x, w: F.linear(x, w),
    }
    rows = []
    for (impl, m), fn in impls.items():
        row = {"op": "lmul_matmul", "impl": impl, "rows": n, "features": D,
               "dtype": str(dtype).removeprefix("torch."), "mantissa_bits": m}  # fmt: skip
        try:
            with torch.no_grad():
                y = fn(x0, w0)
            row["rel_err"] = rel(y, ref)
            if impl == "ncd":  # the PyTorch form on the first rows: same products, other sums
                few = lmul_linear(x0[:8], w0, None, m, backend="reference")
                row["max_rel_diff_pytorch_form"] = float(
                    ((y[:8].float() - few.float()).abs() / few.float().abs().clamp(min=1e-3)).max()
                )
            del y
            slow = impl == "ncd" and not dev.dry

            def step(fn=fn):
                fn(x, w).backward(dy)

            with torch.no_grad():
                row["fwd_ms"] = dev.time(lambda fn=fn: fn(x0, w0), slow=slow)
            row["fwdbwd_ms"] = dev.time(step, grads=(x, w), slow=slow)
            row["peak_mib"] = dev.peak_mib(step, grads=(x, w))
        except torch.OutOfMemoryError:
            row["error"] = "out of memory"
        x.grad = w.grad = None
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def summary(rows):
    get = {(r["op"], r["impl"], r["rows"], r.get("mantissa_bits")): r for r in rows}
    print("\nrows x features   WTA-CRS step / exact   saved (activation) exact / WTA-CRS   "
          "L-Mul m=4 fwd / bf16 fwd")  # fmt: skip
    for n, D in sorted({(r["rows"], r["features"]) for r in rows}):

        def f(op, impl, key, m=None, n=n):
            r = get.get((op, impl, n, m))
            return r.get(key) if r and r.get(key) is not None else math.nan

        step = f("wtacrs_linear", "ncd", "vs_exact")
        saved = f("wtacrs_linear", "torch", "saved_mib") / f("wtacrs_linear", "ncd", "saved_mib")
        lm = f("lmul_matmul", "ncd", "fwd_ms", 4) / f("lmul_matmul", "torch", "fwd_ms")
        print(f"{n:6d} x {D:<6d} {step:18.3f}x {saved:30.2f}x {lm:30.1f}x")


def main(argv=None):
    args = parse(argv)
    dev = Device(args.dry_run)
    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("no CUDA device; --dry-run checks the script on the CPU")
    if not args.dry_run:
        torch.backends.cuda.matmul.allow_tf32 = False  # the float32 references stay float32
    dtype = torch.float32 if args.dry_run else getattr(torch, args.dtype)
    shapes = args.shapes or (DRY_SHAPES if args.dry_run else FULL_SHAPES)
    meta = {
        "device": dev.name,
        "date": datetime.date.today().isoformat(),
        "commit": commit(args.commit),
        "torch": torch.__version__,
        "triton": triton.__version__,
    }
    rows = []
    for shape in shapes.split(","):
        n, D = (int(v) for v in shape.lower().split("x"))
        for op in args.ops.split(","):
            if op == "wtacrs_linear":
                rows += wtacrs_rows(dev, n, D, dtype, args.budget, args.estimates)
            elif op == "lmul_matmul":
                rows += lmul_rows(dev, n, D, dtype)
            else:
                sys.exit(f"--ops: expected wtacrs_linear or lmul_matmul, found {op!r}")
            if not args.dry_run:
                torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
    summary(rows)
    return rows


if __name__ == "__main__":
    main()
