# ruff: noqa: B023 (closures called before the loop moves on)
"""Where the host's time goes when it issues a row normalisation's forward and backward (a
tuning aid, not a test): the host time per call of forward, backward and both, for ncd.ops'
norms and torch's, whether a step waits for the device, then cProfile's top functions over
many backward calls of ncd's.

    python3 bench/diagnose/norm_host.py [--M 4096] [--N 4096] [--top 25]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/
from profiling import host_us, kernel_table, top_functions  # noqa: E402


def main() -> None:
    from ncd.ops import norm

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--M", type=int, default=4096)
    p.add_argument("--N", type=int, default=4096)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
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
