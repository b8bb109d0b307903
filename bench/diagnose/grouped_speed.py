"""Grouped heads read in place against q and k repeated to every head, side by side: forward +
backward time and peak memory of each op that reads groups (`simple_gla`, `linear_attention`,
`gla`, `delta_rule`, `gated_delta_rule`) with q, k of G heads and v of H heads (Mamba-2's B and
C with ngroups = G, Gated DeltaNet's value heads), against the same call on
`repeat_interleave`d q and k (what compiled circuits did before the kernels took groups), with
the two outputs' and gradients' relative difference.

    PYTHONPATH=. python3 bench/diagnose/grouped_speed.py [--T 4096,16384] [--G 1,4] [--ops ...]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from ncd.ops import delta_rule, gated_delta_rule, gla, linear_attention, simple_gla

OPS = ("simple_gla", "linear_attention", "gla", "delta_rule", "gated_delta_rule")

DEV = "cuda"


def _rel(a, b):
    a, b = a.float(), b.float()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def _inputs(op, B, T, G, H, K, V, dtype, gen):
    """q, k, v and the op's gates (float32 log-decays per head and token, GLA's per key
    channel; the delta rules' beta in (0, 1))."""
    F = torch.nn.functional
    q, k = (torch.randn(B, T, G, K, generator=gen, device=DEV).to(dtype) for _ in range(2))
    k = F.normalize(k.float(), dim=-1).to(dtype)
    v = torch.randn(B, T, H, V, generator=gen, device=DEV).to(dtype)
    gates = {}
    if op in ("simple_gla", "gated_delta_rule"):
        gates["g"] = F.logsigmoid(torch.randn(B, T, H, generator=gen, device=DEV)) / 16
    if op == "gla":
        gates["g"] = F.logsigmoid(torch.randn(B, T, H, K, generator=gen, device=DEV)) / 16
    if "delta" in op:
        gates["beta"] = torch.rand(B, T, H, generator=gen, device=DEV).to(dtype)
    return [t.requires_grad_() for t in (q, k, v)], {
        n: t.requires_grad_() for n, t in gates.items()
    }


def _step(op, q, k, v, gates, repeat, do):
    fn = {"simple_gla": simple_gla, "gla": gla, "delta_rule": delta_rule,
          "gated_delta_rule": gated_delta_rule}.get(op)  # fmt: skip

    def run():
        qq, kk = q, k
        if repeat > 1:
            qq, kk = q.repeat_interleave(repeat, 2), k.repeat_interleave(repeat, 2)
        if fn is None:
            o, _ = linear_attention(qq, kk, v, scale=q.shape[-1] ** -0.5)
        else:
            o, _ = fn(qq, kk, v, **gates)
        o.backward(do)
        return o

    return run


def _sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def _time(fn, n):
    for _ in range(3):
        fn()
    _sync()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    _sync()
    return (time.perf_counter() - start) / n * 1e3


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", default="4096,16384")
    p.add_argument("--G", default="1,4")
    p.add_argument("--B", type=int, default=4)
    p.add_argument("--H", type=int, default=32)
    p.add_argument("--K", type=int, default=128)
    p.add_argument("--V", type=int, default=64)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--device", default="cuda", help="cpu: tiny float32 check of the script")
    p.add_argument("--ops", default=",".join(OPS))
    a = p.parse_args()
    global DEV
    DEV = a.device
    dtype = torch.bfloat16 if DEV == "cuda" else torch.float32
    name = torch.cuda.get_device_name() if DEV == "cuda" else "cpu"
    print(f"{name}  B={a.B} H={a.H} K={a.K} V={a.V} {str(dtype)[6:]}, fwd+bwd")
    print(f"{'op':<17}{'T':>6}{'G':>4}  {'grouped ms':>10}{'repeat ms':>10}{'ratio':>7}"
          f"{'peak MiB g/r':>16}{'rel diff':>10}")  # fmt: skip
    for op in a.ops.split(","):
        for T in (int(t) for t in a.T.split(",")):
            for G in (int(x) for x in a.G.split(",")):
                gen = torch.Generator(device=DEV).manual_seed(0)
                (q, k, v), gates = _inputs(op, a.B, T, G, a.H, a.K, a.V, dtype, gen)
                every = (q, k, v, *gates.values())
                do = torch.randn(a.B, T, a.H, a.V, generator=gen, device=DEV).to(dtype)
                res = {}
                for mode, rep in (("grouped", 1), ("repeat", a.H // G)):
                    fn = _step(op, q, k, v, gates, rep, do)
                    for t in every:
                        t.grad = None
                    o = fn()
                    grads = [t.grad.clone() for t in every]
                    for t in every:
                        t.grad = None
                    peak = float("nan")
                    if DEV == "cuda":
                        torch.cuda.synchronize()
                        torch.cuda.reset_peak_memory_stats()
                        base = torch.cuda.memory_allocated()
                        fn()
                        torch.cuda.synchronize()
                        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
                    ms = _time(fn, a.reps)
                    res[mode] = (ms, peak, o.detach(), grads)
                (gm, gp, go, gg), (rm, rp, ro, rg) = res["grouped"], res["repeat"]
                diff = max([_rel(go, ro)] + [_rel(x, y) for x, y in zip(gg, rg)])
                print(f"{op:<17}{T:>6}{G:>4}  {gm:>10.3f}{rm:>10.3f}{rm / gm:>6.2f}x"
                      f"{gp:>8.0f} /{rp:>6.0f}{diff:>10.1e}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
