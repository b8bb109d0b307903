"""Per-kernel GPU time of one forward + backward of the linear-attention families.

For each op (plain causal linear attention, and the gated family with its gate's gradient on
and off; `short_conv`, the short convolution on [B, T, H K] channels), torch.profiler records
a few steps after warm-up; the table lists each CUDA kernel's time per step, so the cost of a
family's extra passes (gate cumsums, dg reductions, the delta rule's WY pre-pass) reads
directly against the plain kernel's.

    PYTHONPATH=. python3 bench/diagnose/kernel_profile.py --T 8192 [--ops simple_gla,linear]

`--bare N` runs N steps after the warm-up inside an NVTX range named "measure" instead, with
no profiler: for Nsight Compute's hardware counters of one kernel (`bash bench/gpu.sh ncu`:
`ncu --nvtx --nvtx-include "measure/" -k regex:KERNEL --launch-count 1 ...`), which then
skips the autotuner's trial launches.
"""

from __future__ import annotations

import argparse
import collections
import json

CASES = {
    "linear": ("linear_attention", "linear_attention", ()),
    "simple_gla": ("simple_gla", "simple_gla", ("g",)),
    "simple_gla_nog": ("simple_gla", "simple_gla", ("g_nograd",)),
    "gla": ("gla", "gla", ("g_k",)),
    "delta_rule": ("delta_rule", "delta_rule", ("beta",)),
    "gated_delta_rule": ("delta_rule", "gated_delta_rule", ("g", "beta")),
    "short_conv": ("short_conv", "short_conv", ()),
}


def inputs(extras, B, T, H, K, dtype):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)

    def rnd(*shape):
        return torch.randn(*shape, device="cuda")

    q = F.normalize(rnd(B, T, H, K), dim=-1).to(dtype).requires_grad_()
    k = F.normalize(rnd(B, T, H, K), dim=-1).to(dtype).requires_grad_()
    v = rnd(B, T, H, K).to(dtype).requires_grad_()
    kw = {}
    for name in extras:
        if name in ("g", "g_nograd"):
            g = (F.logsigmoid(rnd(B, T, H)) / 16).to(dtype)
            kw["g"] = g.requires_grad_(name == "g")
        elif name == "g_k":
            kw["g"] = (F.logsigmoid(rnd(B, T, H, K)) / 16).to(dtype).requires_grad_()
        elif name == "beta":
            kw["beta"] = torch.sigmoid(rnd(B, T, H)).to(dtype).requires_grad_()
    return q, k, v, kw, rnd(B, T, H, K).to(dtype)


def step_of(case, B, T, H, K, dtype):
    """One forward + backward of `case` at these sizes, as a function of no arguments. The
    inputs' gradients are returned, not accumulated into `.grad` (as the benchmarks' steps,
    which set them to None: an accumulation would add a kernel per input to the profile)."""
    import importlib

    import torch

    family, name, extras = CASES[case]
    fn = getattr(importlib.import_module(f"ncd.ops.{family}"), name)
    if case == "short_conv":  # width 4 and SiLU over H K channels, as DeltaNet's
        x = torch.randn(B, T, H * K, device="cuda").to(dtype).requires_grad_()
        w = (torch.randn(H * K, 4, device="cuda") / 2).to(dtype).requires_grad_()
        dy = torch.randn(B, T, H * K, device="cuda").to(dtype)
        return lambda: torch.autograd.grad(fn(x, w, activation="silu"), (x, w), dy)
    q, k, v, kw, do = inputs(extras, B, T, H, K, dtype)
    leaves = [x for x in (q, k, v, *kw.values()) if x.requires_grad]
    return lambda: torch.autograd.grad(fn(q, k, v, **kw)[0], leaves, do)


def bare(case, B, T, H, K, dtype, steps):
    """`steps` steps in an NVTX range "measure" after three outside it (compiles, autotunes).
    The backward runs on this thread (autograd's device threads would launch its kernels
    outside the range: NVTX ranges are per thread)."""
    import torch

    torch.autograd.set_multithreading_enabled(False)
    step = step_of(case, B, T, H, K, dtype)
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    torch.cuda.nvtx.range_push("measure")
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    torch.cuda.nvtx.range_pop()
    print(f"{case} T={T}: {steps} steps in the NVTX range 'measure'")


def profile(case, B, T, H, K, dtype, steps=5):
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    step = step_of(case, B, T, H, K, dtype)
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with tprofile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    per = collections.defaultdict(float)
    calls = collections.Counter()
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            per[e.name] += e.device_time_total / 1e3 / steps
            calls[e.name] += 1
    total = sum(per.values())
    rows = sorted(per.items(), key=lambda kv: -kv[1])
    print(f"\n== {case}  B={B} T={T} H={H} K={K} {dtype}: {total:.3f} ms of kernels per step")
    for n, ms in rows:
        print(f"  {ms:8.3f} ms  {100 * ms / total:5.1f}%  x{calls[n] // steps:<3d} {n[:90]}")
    from ncd.ops._backend import tuned_configs

    configs = tuned_configs()
    print(f"  configurations: {configs}")
    return {"case": case, "T": T, "total_ms": total, "kernels": dict(rows), "configs": configs}


def main():
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", type=lambda s: s.split(","), default=list(CASES))
    p.add_argument("--T", type=int, nargs="+", default=[8192])
    p.add_argument("--B", type=int, default=4)
    p.add_argument("--H", type=int, default=16)
    p.add_argument("--K", type=int, default=128)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--out")
    p.add_argument("--bare", type=int, default=0, metavar="N",
                   help="N steps in an NVTX range 'measure', no profiler (for ncu)")  # fmt: skip
    a = p.parse_args()
    if a.bare:
        for T in a.T:
            for case in a.ops:
                bare(case, a.B, T, a.H, a.K, getattr(torch, a.dtype), a.bare)
        return
    out = []
    for T in a.T:
        for case in a.ops:
            try:
                out.append(profile(case, a.B, T, a.H, a.K, getattr(torch, a.dtype)))
            except Exception as e:  # noqa: BLE001 - one failing case does not end the table
                print(f"\n== {case} T={T}: {type(e).__name__}: {e}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
