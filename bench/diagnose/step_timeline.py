"""Where the time of one forward + backward step goes on the GPU (a diagnosis aid, not a test).

For softmax attention the kernels' own times, timed one by one, add to less than the measured
step (bench/RESULTS.md); for linear attention at short T the host is
the bound. This times, side by side in one process, for each op and T:

- the step as ops_gpu.py times it (`do_bench`, L2 flushed, gradients set to None);
- the same step replayed from a CUDA graph (no host work between kernels);
- the step under torch.profiler: per kernel its time, and the GPU's idle time between the
  first kernel's start and the last one's end (launch gaps), median over the profiled steps;
- the clocks that nvidia-smi reads before and after.

    python bench/diagnose/step_timeline.py --T 4096,8192
"""

import argparse
import os
import statistics
import subprocess
import sys

import torch
from torch.profiler import ProfilerActivity, profile
from triton.testing import do_bench

from ncd.ops import linear_attention, softmax_attention

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ops_gpu import sdpa  # noqa: E402  (the SDPA call the benchmark times, bench/ops_gpu.py)


def clocks() -> str:
    q = "--query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active"
    out = subprocess.run(["nvidia-smi", q, "--format=csv,noheader"], capture_output=True, text=True)
    return out.stdout.strip() or out.stderr.strip()


def ops(scale):
    return {
        "softmax ncd": lambda q, k, v: softmax_attention(q, k, v, causal=True),
        "softmax sdpa": sdpa,
        "linear ncd": lambda q, k, v: linear_attention(q, k, v, scale=scale)[0],
    }


def timeline(step, n=5):
    """Median over n steps, each profiled alone, of (kernel sum, span from the first kernel's
    start to the last one's end, per-kernel ms)."""
    sums, spans, per = [], [], {}
    for _ in range(n):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize()
        cuda = [e for e in prof.events() if e.device_type.name == "CUDA"]
        ks = sorted(
            (e for e in cuda if e.time_range.elapsed_us() > 0), key=lambda e: e.time_range.start
        )
        sums.append(sum(e.time_range.elapsed_us() for e in ks) / 1e3)
        spans.append((ks[-1].time_range.end - ks[0].time_range.start) / 1e3)
        for e in ks:
            per.setdefault(e.name[:50], []).append(e.time_range.elapsed_us() / 1e3)
    return (
        statistics.median(sums),
        statistics.median(spans),
        {k: statistics.median(v) for k, v in per.items()},
        n,
    )


def graphed(step, leaves=()):
    """The replay of a CUDA graph of `step`, captured after three warm-up steps on a side
    stream, with the leaves' gradients unset (each replay then writes fresh ones into the
    graph's memory, as an eager step does)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(s)
    for leaf in leaves:
        leaf.grad = None
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        step()
    return g.replay


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", default="4096,8192")
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--H", type=int, default=16)
    ap.add_argument("--K", type=int, default=128)
    ap.add_argument("--ops", default="softmax ncd,softmax sdpa,linear ncd")
    args = ap.parse_args()
    B, H, K = args.B, args.H, args.K
    print("clocks before:", clocks())
    for T in (int(t) for t in args.T.split(",")):
        g = torch.Generator(device="cuda").manual_seed(T)
        shape = (B, T, H, K)
        q, k, v, do = (
            torch.randn(shape, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(4)
        )
        xs = [x.requires_grad_() for x in (q, k, v)]
        for name, fn in ops(K**-0.5).items():
            if name not in args.ops.split(","):
                continue

            def step(fn=fn, xs=xs, do=do):
                fn(*xs).backward(do)

            step()  # tune and compile
            for x in xs:
                x.grad = None
            bench = do_bench(step, warmup=25, rep=100, grad_to_none=xs, return_mode="median")

            def step_none(fn=fn, xs=xs, do=do):
                for x in xs:
                    x.grad = None
                fn(*xs).backward(do)

            ksum, span, per, n = timeline(step_none)
            try:
                replay = graphed(step_none)
                graph = do_bench(replay, warmup=25, rep=100, return_mode="median")
            except Exception as e:  # capture can refuse (host syncs); say so, go on
                graph = float("nan")
                print(f"  {name}: no CUDA graph ({type(e).__name__}: {str(e)[:100]})")
            for x in xs:
                x.grad = None
            print(
                f"T={T:6d} {name:13s} do_bench {bench:7.3f} ms | graph replay {graph:7.3f} | "
                f"profiled: kernels {ksum:7.3f}, span {span:7.3f}, idle {span - ksum:6.3f} "
                f"({n} steps)"
            )
            for kname, ms in sorted(per.items(), key=lambda kv: -kv[1]):
                print(f"    {ms:8.3f} ms  {kname}")
    print("clocks after:", clocks())


if __name__ == "__main__":
    main()
