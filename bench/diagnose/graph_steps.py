"""The host-bound ops of op library III with and without the host: one training step (forward
+ backward, bf16, rows x 4096) issued eagerly and replayed from a CUDA graph, for ncd's op and
torch's, side by side (a diagnosis aid, not a test).

Eager steps are timed as ops_norm.py / ops_effops.py time them (`do_bench`, gradients set to
None). A graph is captured after three warm-up steps on a side stream, with the gradients set
to None before the capture, so that each replay writes fresh gradients into the graph's own
memory as an eager step does (no accumulation). The graph's step is what the kernels take with
no host between them: the figure the op reaches under `torch.cuda.graphs` or `torch.compile(...,
mode="reduce-overhead")`.

    python bench/diagnose/graph_steps.py [--rows 4096 16384]
"""

import argparse
import os
import sys

import torch
import torch.nn.functional as F
from triton.testing import do_bench

from ncd.ops import layer_norm, rms_norm
from ncd.ops.wtacrs import wtacrs_linear

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from step_timeline import graphed  # noqa: E402  (the capture step_timeline.py times)


def compare(name, steps, leaves):
    for impl, step in steps.items():
        for _ in range(5):
            step()
        eager = do_bench(step, warmup=25, rep=200, grad_to_none=leaves, return_mode="median")
        replay = graphed(step, leaves)
        graph = do_bench(replay, warmup=25, rep=200, return_mode="median")
        print(f"{name:16s} {impl:6s} eager {eager * 1e3:8.1f} us  graph {graph * 1e3:8.1f} us",
              flush=True)  # fmt: skip
        for leaf in leaves:
            leaf.grad = None


def one_size(M, N):
    gen = torch.Generator(device="cuda").manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, device="cuda", dtype=torch.bfloat16, generator=gen)

    x = randn(M, N).requires_grad_()
    w = (1 + 0.1 * randn(N)).requires_grad_()
    b = (0.1 * randn(N)).requires_grad_()
    W = (randn(N, N) / 64).requires_grad_()
    dy = randn(M, N)
    compare(f"layer_norm {M}", {
        "ncd": lambda: layer_norm(x, w, b).backward(dy),
        "torch": lambda: F.layer_norm(x, (N,), w, b).backward(dy),
    }, [x, w, b])  # fmt: skip
    compare(f"rms_norm {M}", {
        "ncd": lambda: rms_norm(x, w).backward(dy),
        "torch": lambda: F.rms_norm(x, (N,), w).backward(dy),
    }, [x, w])  # fmt: skip
    compare(f"wtacrs_linear {M}", {
        "ncd": lambda: wtacrs_linear(x, W, b, budget=0.3).backward(dy),
        "torch": lambda: F.linear(x, W, b).backward(dy),
    }, [x, W, b])  # fmt: skip


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[4096, 16384])
    ap.add_argument("--features", type=int, default=4096)
    args = ap.parse_args()
    N = args.features
    for M in args.rows:
        one_size(M, N)
    # a replayed step gives the eager step's gradients
    x = torch.randn(512, N, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    w = torch.ones(N, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    dy = torch.randn_like(x)
    rms_norm(x, w).backward(dy)
    want = x.grad.clone()
    replay = graphed(lambda: rms_norm(x, w).backward(dy), [x, w])
    replay()
    torch.cuda.synchronize()
    print("replayed rms_norm dx equal to the eager one:", torch.equal(x.grad, want))


if __name__ == "__main__":
    main()
