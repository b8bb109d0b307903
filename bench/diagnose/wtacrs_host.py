# ruff: noqa: B023 (closures called before the loop moves on)
"""Where the host's time goes when it issues a WTA-CRS linear step (a tuning aid, not a test).

On CUDA: the host time to issue N training steps without synchronising against the device
time of those steps (CUDA events, the device held back by a sleep kernel until every step is
issued, so that it measures the kernels alone), for ncd's layer and the exact nn.Linear; then
the host time of one call, from a synchronised start, of the layer's step and forward, the
exact layer's, and each part the layer issues (the forward's product, row norms, uniforms,
selection with the gather; the backward's products, gather of dy's rows, bias sum), beside an
empty autograd Function's forward and step (the fixed cost of a Python Function).

With --cpu (no GPU needed): what one step asks of the host, counted on CPU tensors with the
kernels run by Triton's interpreter: ATen operators, allocations and kernel launches per step
(bench/profiling.host_counts), and the CPU time of one step with the launches replaced by
no-ops (the host code alone), for the kernel path, the PyTorch path and F.linear.

    python3 bench/diagnose/wtacrs_host.py [--n 4096] [--D 4096] [--budget 0.3] [--steps 20]
    python3 bench/diagnose/wtacrs_host.py --cpu [--n 64] [--D 16]
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
from profiling import host_counts, issue_and_device_us  # noqa: E402


def host_once_us(fn, n: int = 60) -> float:
    """Median microseconds the host takes to issue one call of fn after the device is idle."""
    for _ in range(10):
        fn()
    ts = []
    for _ in range(n):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e6)
    torch.cuda.synchronize()
    return sorted(ts)[n // 2]


def graph_nodes(y) -> set:
    """The autograd nodes the backward from y runs (AccumulateGrad of the leaves included)."""
    seen, todo = set(), [y.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.add(node)
            todo.extend(f for f, _ in node.next_functions)
    return seen


class _Empty(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a):
        return a.view_as(a)

    @staticmethod
    def backward(ctx, g):
        return g


def cuda_report(a) -> None:
    from ncd.ops.wtacrs import selection, wtacrs_linear
    from ncd.ops.wtacrs.sampled import kept_rows

    dev, dt = "cuda", torch.bfloat16
    x = torch.randn(a.n, a.D, device=dev, dtype=dt, requires_grad=True)
    lin = torch.nn.Linear(a.D, a.D, device=dev, dtype=dt)
    w, b = lin.weight, lin.bias
    dy = torch.randn(a.n, a.D, device=dev, dtype=dt)
    k = kept_rows(a.n, a.budget)
    print(f"n = {a.n}, D = {a.D}, k = {k}, bf16, {torch.cuda.get_device_name()}")
    steps = {
        "ncd wtacrs_linear": lambda: wtacrs_linear(x, w, b, budget=a.budget).backward(dy),
        "torch nn.Linear": lambda: lin(x).backward(dy),
    }
    print(f"training step, {a.steps} issued without synchronising: us per step")
    for name, fn in steps.items():
        fn()  # compiled and tuned before the check (tuning synchronises)
        fn()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")  # raises at a step that waits for the device
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(0)
        host, device = issue_and_device_us(fn, a.steps)
        print(f"  {name:20s} host {host:7.1f}  device {device:7.1f}  host/device "
              f"{host / device:.2f}")  # fmt: skip
    xd = x.detach()
    norms = torch.linalg.vector_norm(xd, dim=1, dtype=torch.float32)
    u = torch.rand(k, device=dev, dtype=torch.float64)
    idx = selection.select(norms, k, u)[0]
    # the layer's call (select where an older checkout, run for a baseline, lacks select_kept)
    select = getattr(selection, "select_kept", selection.select)
    parts = {
        "step (forward + backward)": steps["ncd wtacrs_linear"],
        "exact step": lambda: F.linear(x, w, b).backward(dy),
        "forward": lambda: wtacrs_linear(x, w, b, budget=a.budget),
        "exact forward": lambda: F.linear(x, w, b),
        "  F.linear": lambda: F.linear(xd, w.detach(), b.detach()),
        "  row norms": lambda: torch.linalg.vector_norm(xd, dim=1, dtype=torch.float32),
        "  uniforms": lambda: torch.rand(k, device=dev, dtype=torch.float64),
        "  selection + gather": lambda: select(norms, k, u, None, xd),
        "  backward dx (mm)": lambda: torch.mm(dy, w.detach()),
        "  backward dy rows": lambda: dy.index_select(0, idx),
        "  backward bias sum": lambda: dy.sum(0),
        "empty Function forward": lambda: _Empty.apply(x),
        "empty Function step": lambda: _Empty.apply(x).sum().backward(),
        "sum step (no Function)": lambda: x.sum().backward(),
    }
    print("host us per call from an idle device")
    for name, fn in parts.items():
        print(f"  {name:28s} {host_once_us(fn):8.1f}")


def cpu_report(a) -> None:
    from ncd.ops.wtacrs import selection, wtacrs_linear

    torch.manual_seed(0)
    x = torch.randn(a.n, a.D, requires_grad=True)
    w = torch.randn(a.D, a.D, requires_grad=True)
    b = torch.randn(a.D, requires_grad=True)
    dy = torch.randn(a.n, a.D)

    x3 = torch.randn(4, a.n // 4, a.D, requires_grad=True)  # [B, T, D], as compiled circuits
    dy3 = dy.view(4, a.n // 4, a.D)
    nodes = {}

    def step(fn, x=x, dy=dy):
        def run():
            y = fn(x)
            nodes[run] = len(graph_nodes(y))
            y.backward(dy)
            x.grad = w.grad = b.grad = None

        return run

    def ncd(backend):
        return lambda x: wtacrs_linear(x, w, b, a.budget, backend=backend)

    steps = {
        "ncd kernel path": step(ncd("triton")),
        "ncd PyTorch path": step(ncd("reference")),
        "F.linear": step(lambda x: F.linear(x, w, b)),
        "ncd kernel, 3-D x": step(ncd("triton"), x3, dy3),
        "F.linear, 3-D x": step(lambda x: F.linear(x, w, b), x3, dy3),
    }
    print(f"n = {a.n}, D = {a.D}, budget {a.budget}, float32 CPU tensors; per step:")
    for name, fn in steps.items():
        fn()
        c = host_counts(fn)
        print(f"  {name:18s} {sum(c['ops'].values()):3d} ATen ops, {c['allocations']:3d} "
              f"allocations, {nodes[fn]} autograd nodes, "
              f"{sum(c['launches'].values())} launches {c['launches']}")  # fmt: skip
        print(f"  {'':18s} {dict(sorted(c['ops'].items()))}")

    # The host code alone: the selection's launches replaced by no-ops (idx zeroed, so the
    # backward's gather reads valid rows), on small tensors, whose arithmetic takes little.
    def no_launch(kernel, grid, args, meta, key=None):
        if kernel is selection._draw_kernel:
            args[4].zero_()

    selection.launch_compiled = no_launch
    torch.set_num_threads(1)
    print("CPU us per step, launches replaced by no-ops (median of 2000):")
    for name, fn in steps.items():
        for _ in range(50):
            fn()
        ts = []
        for _ in range(2000):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        print(f"  {name:18s} {sorted(ts)[1000] * 1e6:7.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu", action="store_true", help="counts and host code on CPU tensors")
    p.add_argument("--n", type=int, default=None, help="rows (4096; --cpu: 64)")
    p.add_argument("--D", type=int, default=None, help="features (4096; --cpu: 16)")
    p.add_argument("--budget", type=float, default=0.3)
    p.add_argument("--steps", type=int, default=20, help="steps issued per round (CUDA)")
    a = p.parse_args()
    a.n = a.n or (64 if a.cpu else 4096)
    a.D = a.D or (16 if a.cpu else 4096)
    (cpu_report if a.cpu else cuda_report)(a)


if __name__ == "__main__":
    main()
