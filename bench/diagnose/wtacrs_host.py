# ruff: noqa: B023 (closures called before the loop moves on)
"""Where the host's time goes when it issues a WTA-CRS linear step (a tuning aid, not a test):
the host time of one call, from a synchronised start, of the layer's step and forward, the
exact layer's, and each part the layer issues (the forward's product, row norms, uniforms,
selection with the gather; the backward's products, gather of dy's rows, bias sum), beside an
empty autograd Function's forward and step (the fixed cost of a Python Function).

    python3 bench/diagnose/wtacrs_host.py [--n 4096] [--D 4096] [--budget 0.3]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


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


class _Empty(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a):
        return a.view_as(a)

    @staticmethod
    def backward(ctx, g):
        return g


def main() -> None:
    from ncd.ops.wtacrs import selection, wtacrs_linear
    from ncd.ops.wtacrs.sampled import kept_rows

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--D", type=int, default=4096)
    p.add_argument("--budget", type=float, default=0.3)
    a = p.parse_args()
    dev, dt = "cuda", torch.bfloat16
    x = torch.randn(a.n, a.D, device=dev, dtype=dt, requires_grad=True)
    w = (torch.randn(a.D, a.D, device=dev, dtype=dt) / a.D**0.5).requires_grad_()
    b = torch.zeros(a.D, device=dev, dtype=dt, requires_grad=True)
    dy = torch.randn(a.n, a.D, device=dev, dtype=dt)
    k = kept_rows(a.n, a.budget)
    xd = x.detach()
    norms = torch.linalg.vector_norm(xd, dim=1, dtype=torch.float32)
    u = torch.rand(k, device=dev, dtype=torch.float64)
    idx = selection.select(norms, k, u)[0]
    parts = {
        "step (forward + backward)": lambda: wtacrs_linear(x, w, b, budget=a.budget).backward(dy),
        "exact step": lambda: F.linear(x, w, b).backward(dy),
        "forward": lambda: wtacrs_linear(x, w, b, budget=a.budget),
        "exact forward": lambda: F.linear(x, w, b),
        "  F.linear": lambda: F.linear(xd, w.detach(), b.detach()),
        "  row norms": lambda: torch.linalg.vector_norm(xd, dim=1, dtype=torch.float32),
        "  uniforms": lambda: torch.rand(k, device=dev, dtype=torch.float64),
        "  selection + gather": lambda: selection.select(norms, k, u, x=xd),
        "  backward dx (mm)": lambda: torch.mm(dy, w.detach()),
        "  backward dy rows": lambda: dy.index_select(0, idx),
        "  backward bias sum": lambda: dy.sum(0),
        "empty Function forward": lambda: _Empty.apply(x),
        "empty Function step": lambda: _Empty.apply(x).sum().backward(),
        "sum step (no Function)": lambda: x.sum().backward(),
    }
    print(f"n = {a.n}, D = {a.D}, k = {k}, bf16; host us per call from an idle device")
    for name, fn in parts.items():
        print(f"{name:28s} {host_once_us(fn):8.1f}")


if __name__ == "__main__":
    main()
