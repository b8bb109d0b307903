"""Host-side cost of one forward + backward of each op (a diagnosis aid, not a test).

Small shapes, where the GPU finishes first: the time to issue N steps without waiting is the
host's cost per step. Set side by side in one run: our ops with Triton's JIT launch path and
with direct launches of the compiled kernels (config fast_launch), our ops with
kernel launches replaced by nothing (our Python and autograd alone), an empty
autograd.Function (the engine's own cost), an empty Triton kernel launched both ways, SDPA
then the hottest host operations of one op (torch.profiler).

    python bench/diagnose/host_overhead.py
"""

import contextlib
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from ncd.ops import config, linear_attention, softmax_attention
from ncd.ops.attention import fused
from ncd.ops.attention.gluon import dkdv as gluon_dkdv
from ncd.ops.attention.gluon import forward as gluon_forward
from ncd.ops.linear_attention import chunk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/
from profiling import top_functions  # noqa: E402


def per_step(step, n=100, trials=5):
    """Median over `trials` of the host time to issue `n` steps, in microseconds per step."""
    for _ in range(3):
        step()
    times = []
    for _ in range(trials):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        times.append((time.perf_counter() - t0) / n)
    torch.cuda.synchronize()
    return sorted(times)[trials // 2] * 1e6


@contextlib.contextmanager
def no_launches():
    """Kernel launches do nothing: what is left is our Python, allocations and autograd."""
    mods = (chunk, fused, gluon_dkdv, gluon_forward)
    names = ("launch", "launch", "launch_compiled", "launch_compiled")
    saved = [getattr(m, n) for m, n in zip(mods, names)]
    for m, n in zip(mods, names):
        setattr(m, n, lambda *a, **k: None)
    try:
        yield
    finally:
        for m, n, f in zip(mods, names, saved):
            setattr(m, n, f)


class Empty(torch.autograd.Function):
    """As many allocations as linear attention, no kernels."""

    @staticmethod
    def forward(ctx, q, k, v):
        ctx.save_for_backward(q, k, v)
        return torch.empty_like(v), None

    @staticmethod
    def backward(ctx, do, ds):
        q, k, v = ctx.saved_tensors
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


@triton.jit
def _nop(a, b, c, d, e, f, g, h, i, j, T, H, s0, s1, s2, s3, s4, s5, scale, X: tl.constexpr):
    pass


def triton_launch_costs(x):
    args = (x,) * 10 + (1024, 16, 32768, 128, 2048, 32768, 128, 2048, 0.5)
    ck = _nop[(1,)](*args, X=1)
    jit = per_step(lambda: _nop[(4, 64)](*args, X=1), 1000)
    direct = per_step(lambda: ck[(4, 64, 1)](*args, 1), 1000)
    print(f"empty Triton kernel, 20 arguments: JIT path {jit:.1f} us, compiled {direct:.1f} us")


def main(B=4, T=1024, H=16, K=128):
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v, do = (
        torch.randn(B, T, H, K, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(4)
    )
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    xs = [x.requires_grad_() for x in (q, k, v)]
    triton_launch_costs(q)

    def fwd_bwd(fn):
        def step():
            fn().backward(do)
            for x in xs:
                x.grad = None

        return step

    def fwd_only(fn):
        def step():
            with torch.no_grad():
                fn()

        return step

    ops = {
        "linear": lambda: linear_attention(*xs, scale=K**-0.5)[0],
        "softmax": lambda: softmax_attention(*xs, causal=True),
        "empty Function": lambda: Empty.apply(*xs)[0],
        "sdpa": lambda: F.scaled_dot_product_attention(
            *(x.transpose(1, 2) for x in xs), is_causal=True
        ).transpose(1, 2),
    }
    print(f"host issue time per step, us (B={B}, T={T}, H={H}, K={K}, bf16)")
    print(f"{'op':16s} {'mode':28s} {'forward':>9s} {'fwd+bwd':>9s}")
    for name, fn in ops.items():
        modes = {"": contextlib.nullcontext}
        if name in ("linear", "softmax"):
            modes = {
                "JIT launches": lambda: config.override(fast_launch=False),
                "direct launches": lambda: config.override(fast_launch=True),
                "no launches": no_launches,
            }
        for mode, ctx in modes.items():
            with ctx():
                f, b = per_step(fwd_only(fn)), per_step(fwd_bwd(fn))
            print(f"{name:16s} {mode:28s} {f:9.1f} {b:9.1f}")
    torch.autograd.set_multithreading_enabled(False)
    for name in ("linear", "empty Function"):
        b = per_step(fwd_bwd(ops[name]))
        print(f"{name:16s} {'one-thread autograd':28s} {'':9s} {b:9.1f}")
    torch.autograd.set_multithreading_enabled(True)

    from torch.profiler import ProfilerActivity, profile

    for name in ("linear", "softmax"):
        step = fwd_bwd(ops[name])
        step()
        print(f"\n{name}: 100 steps under cProfile, direct launches")
        print(top_functions(step, 100, 22))
        with profile(activities=[ProfilerActivity.CPU]) as tprof:
            for _ in range(20):
                step()
        torch.cuda.synchronize()
        print(f"\n{name}: host operations of 20 steps (torch.profiler, self CPU time)")
        print(tprof.key_averages().table(sort_by="self_cpu_time_total", row_limit=16))


if __name__ == "__main__":
    main()
