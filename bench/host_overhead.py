"""Host-side cost of one forward + backward of each op (a diagnosis aid, not a test).

Small shapes, where the GPU finishes first: the time to issue N steps without waiting is the
host's cost per step, set beside the GPU time of the same step (CUDA events) and the hottest
Python functions (cProfile).

    python bench/host_overhead.py
"""

import cProfile
import pstats
import time

import torch
import torch.nn.functional as F

from ncd.ops import linear_attention, softmax_attention


def per_step(step, n):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    host = (time.perf_counter() - t0) / n
    torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) / n
    return host, wall


def main(B=4, T=1024, H=16, K=128, n=100):
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v, do = (
        torch.randn(B, T, H, K, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(4)
    )
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    xs = [x.requires_grad_() for x in (q, k, v)]
    ops = {
        "linear": lambda: linear_attention(*xs, scale=K**-0.5)[0],
        "softmax": lambda: softmax_attention(*xs, causal=True),
    }
    for name, fn in ops.items():

        def fwd(fn=fn):
            with torch.no_grad():
                fn()

        def step(fn=fn):
            fn().backward(do)
            for x in xs:
                x.grad = None

        for f in (fwd, step):
            f()
        for label, f in (("forward (no grad)", fwd), ("forward + backward", step)):
            host, wall = per_step(f, n)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            f()
            end.record()
            torch.cuda.synchronize()
            print(
                f"{name:8s} {label:20s} host issue {host * 1e6:7.1f} us/step, wall "
                f"{wall * 1e6:7.1f} us/step, one step's events "
                f"{start.elapsed_time(end) * 1e3:7.1f} us"
            )
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n):
            step()
        prof.disable()
        torch.cuda.synchronize()
        pstats.Stats(prof).sort_stats("tottime").print_stats(18)


if __name__ == "__main__":
    main()
