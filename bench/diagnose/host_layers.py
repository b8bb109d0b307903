"""Host time of each layer of one linear-attention launch (a diagnosis aid, not a test).

`bench/host_overhead.py` finds that the two real launches of a linear-attention step cost the
host far more than an empty kernel's launch. This times, in isolation and in loops, each
layer between the op and the driver for the forward kernel and the backward kernel:
the compiled kernel's launcher alone (`ck.run`), its launch metadata, the stream lookup,
the plan key, `ncd.ops._backend.launch` whole, then `_forward` / `_backward` and the op.

    python bench/diagnose/host_layers.py
"""

import time

import torch
import torch.nn.functional as F

from ncd.ops import _backend
from ncd.ops.linear_attention import chunk


def per_call(fn, n=500):  # below the 1,024 launches CUDA queues before the host waits
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
        torch.cuda.synchronize()
    return best * 1e6


def layers(name, launch, kernel, grid, args, meta, reset):
    """Rows (kernel, layer, us) for one launch site, from the driver call up."""
    plan = _backend._plans[(kernel, reset, _backend._key(args), *meta.items())]
    ck, tail, kw = plan.ck, plan.tail, plan.kw
    stream = _backend._stream()
    g3 = (*grid(kw), 1, 1)[:3]
    knobs = _backend.knobs
    enter, leave = knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook
    launcher = ck.run
    meta_ = ck.metadata
    print(f"{name}: {len(args)} arguments + {len(tail)} constexprs; enter hook {enter!r}; "
          f"launcher {type(launcher).__module__}.{type(launcher).__qualname__}; global scratch "
          f"{getattr(meta_, 'global_scratch_size', None)}, profile scratch "
          f"{getattr(meta_, 'profile_scratch_size', None)}, shared {meta_.shared}")  # fmt: skip

    def run():
        launcher(*g3, stream, ck.function, ck.packed_metadata, None, enter, leave, *args, *tail)

    return [
        (name, "launcher alone (ck.run)", per_call(run)),
        (name, "launch metadata", per_call(lambda: ck.launch_metadata(g3, stream, *args, *tail))),
        (name, "stream lookup", per_call(_backend._stream)),
        (name, "knob reads", per_call(lambda: knobs.runtime.launch_enter_hook)),
        (name, "plan key", per_call(lambda: _backend._key(args))),
        (name, "_backend.launch whole",
         per_call(lambda: launch(kernel, [], grid, args, meta, {}, reset=reset))),
    ]  # fmt: skip


def main(B=4, T=1024, H=16, K=128):
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v, do = (
        torch.randn(B, T, H, K, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(4)
    )
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    calls = []
    real = _backend.launch

    def spy(kernel, configs, grid, args, meta, *a, **kw):
        calls.append((kernel, grid, args, meta, kw.get("reset")))
        return real(kernel, configs, grid, args, meta, *a, **kw)

    chunk.launch = spy
    s = K**-0.5
    for _ in range(3):
        chunk._forward(q, k, v, None, s, None, False, None)
        chunk._backward(q, k, v, do, None, s, None, None, False, None)
    chunk.launch = real
    rows = []
    for name, call in zip(("forward", "backward"), calls[-2:]):
        rows += layers(name, real, *call)
    rows += [
        ("forward", "_forward (allocation + launch)",
         per_call(lambda: chunk._forward(q, k, v, None, s, None, False, None))),
        ("backward", "_backward (allocations + launch)",
         per_call(lambda: chunk._backward(q, k, v, do, None, s, None, None, False, None))),
        ("forward", "torch.empty_like(v)", per_call(lambda: torch.empty_like(v))),
    ]  # fmt: skip
    with torch.no_grad():
        rows.append(("forward", "linear_attention (no grad)",
                     per_call(lambda: chunk.linear_attention(q, k, v, scale=s))))  # fmt: skip
    print(f"\nhost us per call (B={B}, T={T}, H={H}, K={K}, bf16), best of 5 loops")
    for kernel_name, layer, us in rows:
        print(f"{kernel_name:9s} {layer:36s} {us:8.1f}")


if __name__ == "__main__":
    main()
