"""Where the host's time of an ncd norm's training step goes on CUDA, against an identity
autograd Function (the floor of any Python Function) and torch's LayerNorm: the host's time to
issue a step (forward + backward, no waiting), the backward alone called directly, the step
with the autograd engine on one thread and with the backward's kernels not run, cProfile of
the backward in the engine's thread, the forward's launch layer by layer, and the CPU ops of
one step on both threads (the autograd engine runs a CUDA backward on its own thread).

    python3 bench/diagnose/norm_autograd.py [--M 8192] [--N 1024]
"""

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/

from ops_norm import host_us as _host_us  # noqa: E402

from ncd.ops import layer_norm  # noqa: E402
from ncd.ops.norm import rowwise  # noqa: E402


def host_us(fn, leaves):
    """The host's time to issue one call (us), nothing waited for (ops_norm.py's measure)."""
    return _host_us(fn, leaves, "cuda", n=100)


class Identity(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, dy):
        return dy, None, None


def launch_parts(x, w, b):
    """The forward's host time layer by layer: the whole forward, the kernel's launch through
    ops/_backend.launch, and the parts of its direct launch (the stream query, the launch
    metadata, the compiled kernel's launcher), beside one CUDA allocation."""
    from ncd.ops import _backend

    rowwise._forward(x, None, w, b, 1e-5, False)
    plan = next(
        p for k, p in _backend._plans.items() if k[0] is rowwise._fwd_kernel and p.ck is not None
    )
    M, N = x.shape
    y = torch.empty_like(x)
    stats = torch.empty(2, M, device=x.device, dtype=torch.float32)
    bm, configs, meta = rowwise._plan("fwd", N, False, True, True, False)
    args = (x, None, w, b, y, None, stats, M, N, x.stride(0), 0, y.stride(0), 0, 1e-5)
    grid = (_backend.cdiv(M, bm),)
    ck, tail = plan.ck, plan.tail
    stream = _backend._stream()
    g = (*grid, 1, 1)[:3]
    enter = leave = None
    parts = {
        "the forward (_forward)": lambda: rowwise._forward(x, None, w, b, 1e-5, False),
        "launch()": lambda: _backend.launch(
            rowwise._fwd_kernel, configs, lambda kw: grid, args, meta, {}, key=("N",)
        ),
        "_key(args)": lambda: _backend._key(args),
        "_stream()": _backend._stream,
        "ck.launch_metadata": lambda: ck.launch_metadata(g, stream, *args, *tail),
        "ck.run": lambda: ck.run(
            *g, stream, ck.function, ck.packed_metadata, None, enter, leave, *args, *tail
        ),
        "torch.empty (CUDA)": lambda: torch.empty(M, N, device=x.device, dtype=x.dtype),
    }
    for name, fn in parts.items():
        print(f"  {name:24s} host {host_us(fn, ()):7.1f} us", flush=True)


def engine_parts(impls, leaves, dy, grads):
    """The step's host time with the autograd engine on one thread (no device thread), with
    ncd's backward kernels replaced by returning `grads` (what the Python Function costs
    without its kernels), and cProfile's top functions of ncd's backward as the engine's
    thread runs it."""
    import cProfile
    import io
    import pstats

    def step(fn):
        return lambda: torch.autograd.backward(fn(), dy)

    for name in ("identity Function", "ncd layer_norm"):
        with torch.autograd.set_multithreading_enabled(False):
            us = host_us(step(impls[name]), leaves)
        print(f"{name:18s} host us: step {us:7.1f} on one thread", flush=True)
    real = rowwise._backward
    rowwise._backward = lambda *a: grads
    try:
        us = host_us(step(impls["ncd layer_norm"]), leaves)
    finally:
        rowwise._backward = real
    print(f"ncd layer_norm     host us: step {us:7.1f} with the backward's kernels not run",
          flush=True)  # fmt: skip
    prof = cProfile.Profile()

    def profiled(*a):
        prof.enable()  # in the engine's thread: cProfile follows the thread that enables it
        try:
            return real(*a)
        finally:
            prof.disable()

    rowwise._backward = profiled
    try:
        for _ in range(300):
            step(impls["ncd layer_norm"])()
    finally:
        rowwise._backward = real
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(18)
    print("== cProfile, 300 calls of ncd layer_norm's _backward in the engine's thread")
    print(out.getvalue()[-4000:], flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--M", type=int, default=8192)
    p.add_argument("--N", type=int, default=1024)
    args = p.parse_args()
    M, N = args.M, args.N
    dt = torch.bfloat16
    x = torch.randn(M, N, device="cuda", dtype=dt, requires_grad=True)
    w = torch.randn(N, device="cuda", dtype=dt, requires_grad=True)
    b = torch.randn(N, device="cuda", dtype=dt, requires_grad=True)
    dy = torch.randn(M, N, device="cuda", dtype=dt)
    leaves = (x, w, b)
    impls = {
        "identity Function": lambda: Identity.apply(x, w, b),
        "torch layer_norm": lambda: F.layer_norm(x, (N,), w, b),
        "ncd layer_norm": lambda: layer_norm(x, w, b),
    }
    for name, fn in impls.items():
        for _ in range(10):
            torch.autograd.backward(fn(), dy)
        fwd = host_us(fn, leaves)
        step = host_us(lambda fn=fn: torch.autograd.backward(fn(), dy), leaves)
        print(f"{name:18s} host us: forward {fwd:7.1f}, step {step:7.1f}", flush=True)
    xd = x.detach()
    _, _, stats = rowwise._forward(xd, None, w.detach(), b.detach(), 1e-5, False)

    def direct():
        rowwise._backward(xd, w, b, stats, dy, None, False, True, True)

    print(f"ncd _backward called directly: host {host_us(direct, ()):7.1f} us", flush=True)
    engine_parts(impls, leaves, dy, rowwise._backward(xd, w, b, stats, dy, None, False, True, True))
    launch_parts(xd, w.detach(), b.detach())
    # the CPU ops of a few steps, both threads
    from torch.profiler import ProfilerActivity, profile

    fn = impls["ncd layer_norm"]
    with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        for _ in range(20):
            torch.autograd.backward(fn(), dy)
            for a in leaves:
                a.grad = None
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25), flush=True)


if __name__ == "__main__":
    main()
