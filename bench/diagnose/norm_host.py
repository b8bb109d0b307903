# ruff: noqa: B023 (closures called before the loop moves on)
"""Where the host's time goes when it issues a row normalisation's forward and backward (a
tuning aid, not a test): the host time per call of forward, backward and both, for ncd.ops'
norms and torch's, whether a step waits for the device, then cProfile's top functions over
many backward calls of ncd's.

With --cpu (no GPU needed): what one training step asks of the host, counted on CPU tensors
with the kernels run by Triton's interpreter (ATen operators, allocations, launches:
bench/profiling.host_counts), and the CPU time of one step with the launches replaced by
no-ops (the host code alone), for ncd's norms and torch's.

    python3 bench/diagnose/norm_host.py [--M 4096] [--N 4096] [--top 25]
    python3 bench/diagnose/norm_host.py --cpu [--M 64] [--N 32]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if "--cpu" in sys.argv:  # before the first import of triton
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/
from profiling import (  # noqa: E402
    host_counts,
    host_us,
    issue_and_device_us,
    kernel_table,
    top_functions,
)


def cpu_report(M: int, N: int) -> None:
    from ncd.ops.norm import rowwise

    torch.manual_seed(0)
    x, r = (torch.randn(M, N, requires_grad=True) for _ in range(2))
    w, b = (torch.randn(N, requires_grad=True) for _ in range(2))
    dy = torch.randn(M, N)

    def step(fn):
        def run():
            out = fn()
            torch.autograd.backward(out, (dy, dy) if isinstance(out, tuple) else dy)
            x.grad = r.grad = w.grad = b.grad = None

        return run

    impls = {
        "ncd layer_norm": step(lambda: rowwise.layer_norm(x, w, b, backend="triton")),
        "torch layer_norm": step(lambda: F.layer_norm(x, (N,), w, b)),
        "ncd rms_norm": step(lambda: rowwise.rms_norm(x, w, backend="triton")),
        "torch rms_norm": step(lambda: F.rms_norm(x, (N,), w)),
        "ncd add_rms_norm": step(lambda: rowwise.add_rms_norm(x, r, w, backend="triton")),
        "torch add, rms_norm": step(lambda: (F.rms_norm(x + r, (N,), w), x + r)),
    }
    print(f"M = {M}, N = {N}, float32 CPU tensors; per step (forward + backward):")
    for name, fn in impls.items():
        fn()
        c = host_counts(fn)
        print(f"  {name:20s} {sum(c['ops'].values()):3d} ATen ops, {c['allocations']:3d} "
              f"allocations, launches {c['launches']}")  # fmt: skip
        print(f"  {'':20s} {dict(sorted(c['ops'].items()))}")
    rowwise.launch = lambda *a, **k: None  # the host code alone
    torch.set_num_threads(1)
    print("CPU us per step, launches replaced by no-ops (median of 3000):")
    for name, fn in impls.items():
        for _ in range(50):
            fn()
        ts = []
        for _ in range(3000):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        print(f"  {name:20s} {sorted(ts)[1500] * 1e6:7.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu", action="store_true", help="counts and host code on CPU tensors")
    p.add_argument("--M", type=int, default=None, help="rows (4096; --cpu: 64)")
    p.add_argument("--N", type=int, default=None, help="features (4096; --cpu: 32)")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    if args.cpu:
        cpu_report(args.M or 64, args.N or 32)
        return
    args.M, args.N = args.M or 4096, args.N or 4096
    from ncd.ops import norm

    dev, dt = "cuda", torch.bfloat16
    x = torch.randn(args.M, args.N, device=dev, dtype=dt, requires_grad=True)
    w = torch.randn(args.N, device=dev, dtype=dt, requires_grad=True)
    b = torch.randn(args.N, device=dev, dtype=dt, requires_grad=True)
    dy = torch.randn(args.M, args.N, device=dev, dtype=dt)
    impls = {
        "ncd layer_norm": lambda: norm.layer_norm(x, w, b),
        "torch layer_norm": lambda: F.layer_norm(x, (args.N,), w, b),
        "ncd rms_norm": lambda: norm.rms_norm(x, w),
        "torch rms_norm": lambda: F.rms_norm(x, (args.N,), w),
    }
    print("training step, 20 issued without synchronising: us per step")
    for name, fn in impls.items():
        host, device = issue_and_device_us(lambda: fn().backward(dy), 20)
        print(f"  {name:18s} host {host:7.1f}  device {device:7.1f}  host/device "
              f"{host / device:.2f}", flush=True)  # fmt: skip
    for name, fn in impls.items():
        for _ in range(5):
            fn().backward(dy)
        ys = [fn() for _ in range(200)]
        fwd = host_us(fn)
        it = iter(ys)
        bwd = host_us(lambda: next(it).backward(dy))
        both = host_us(lambda: fn().backward(dy))
        launch = host_us(lambda: torch.empty_like(dy))
        print(f"{name:18s} host us per call: forward {fwd:6.1f}, backward {bwd:6.1f}, "
              f"both {both:6.1f} (torch.empty_like {launch:.1f})", flush=True)  # fmt: skip
        del ys
    # whether a step waits for the device (a host read of a device value): CUDA's sync
    # debug mode raises at the first synchronising call
    for name, fn in impls.items():
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            fn().backward(dy)
            found = "none"
        except RuntimeError as e:
            found = str(e).strip().splitlines()[0][:160]
        finally:
            torch.cuda.set_sync_debug_mode("default")
        print(f"{name:18s} synchronisations in a step: {found}", flush=True)
    # GPU time alone: each kernel's CUDA time per step (torch.profiler)
    for name, fn in impls.items():
        ks = kernel_table(lambda fn=fn: fn().backward(dy), 20, width=60)
        total = sum(us for _, us in ks.values())
        parts = ", ".join(
            f"{k} {us:.1f}" for k, (_, us) in sorted(ks.items(), key=lambda i: -i[1][1])
        )
        print(f"{name:18s} GPU us per step {total:6.1f}: {parts}", flush=True)

    from ncd.ops.norm import rowwise

    # the autograd engine runs a CUDA backward on its own thread, which cProfile does not see:
    # the library's backward is called directly here
    for rms in (False, True):
        name = "rms_norm" if rms else "layer_norm"
        x2 = x.detach()
        _, _, stats = rowwise._forward(x2, None, w.detach(), None if rms else b.detach(), 1e-5, rms)

        def call():
            rowwise._backward(x2, w, None if rms else b, stats, dy, None, rms, True, not rms)

        for _ in range(5):
            call()
        print(f"ncd {name} _backward called directly: {host_us(call):.1f} us", flush=True)
        table = top_functions(call, 300, args.top)
        print(f"== cProfile, 300 calls of ncd {name}'s _backward\n{table}", flush=True)


if __name__ == "__main__":
    main()
