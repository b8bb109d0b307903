"""Which CUDA allocations are live at the peak of one training step of a compiled circuit (a
tuning aid for the cost model, not a test): the step of `bench/cost_gpu.py` (inputs,
parameters and the output gradient allocated first), recorded with PyTorch's allocator
history from before the compile; at the moment the allocated bytes peak, every block still
held, largest first, with its size in units of the first input's size and the innermost frames
of ncd (or bench) code that allocated it, blocks held from before the step (the warm-up step's
library workspaces, say) marked so.

    python3 bench/diagnose/peak_trace.py --case attention_box \
        --sizes B=4,T=1024,S=1024,H=16,K=128,V=128
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/
import cost_gpu  # noqa: E402


def live_at_peak(
    snapshot: dict, base: dict[int, int], starts: list[int] | None = None,
    frames: dict | None = None,
) -> tuple[int, list[dict]]:  # fmt: skip
    """(peak bytes, the blocks live then): `base` maps the addresses allocated before the
    step to their sizes (`frames`: where each was allocated, where known); each device's
    alloc / free_completed events from its index in `starts` on (the step's) are replayed."""
    live = dict(base)
    total = sum(base.values())
    best, best_live = total, dict(live)
    frames = dict(frames or {})
    traces = snapshot["device_traces"]
    for dev, start in zip(traces, starts or [0] * len(traces), strict=True):
        for ev in dev[start:]:
            if ev["action"] == "alloc":
                live[ev["addr"]] = ev["size"]
                frames[ev["addr"]] = ev.get("frames", [])
                total += ev["size"]
                if total > best:
                    best, best_live = total, dict(live)
            elif ev["action"] == "free_completed" and ev["addr"] in live:
                total -= live.pop(ev["addr"])
    blocks = [
        {"bytes": size, "before_step": addr in base, "frames": frames.get(addr, [])}
        for addr, size in best_live.items()
    ]
    return best, sorted(blocks, key=lambda b: -b["bytes"])


def where(frames: list[dict], n: int = 3) -> str:
    """The innermost n frames in ncd's folders or bench/ (else any Python file's), as
    file:line function."""
    keep = ("/ops/", "/compiler/", "/circuits/", "/bench/", "torch/autograd")
    picked = [f for f in frames if any(k in f.get("filename", "") for k in keep)][:n]
    picked = picked or [f for f in frames if f.get("filename", "").endswith(".py")][:n]
    return (
        " <- ".join(f"{Path(f['filename']).name}:{f['line']} {f['name']}" for f in picked)
        or "(no Python frame: C++, or the autograd engine's thread, whose frames are not kept)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", default="attention_box", help="a case name of cost_gpu.py")
    p.add_argument("--sizes", default="B=4,T=1024,S=1024,H=16,K=128,V=128")
    p.add_argument("--top", type=int, default=20)
    args = p.parse_args()
    ncd = cost_gpu._import_ncd()
    from ncd.compiler.cost import analyse

    sizes = {k: int(v) for k, v in (kv.split("=") for kv in args.sizes.split(","))}
    make = {name: f for name, f, _ in cost_gpu.cases(False)}[args.case]
    circuit = make()
    dtype = torch.bfloat16
    entries = 1_000_000
    torch.cuda.memory._record_memory_history(max_entries=entries)
    module = ncd.compile(circuit, sizes=sizes, dtype=dtype, device="cuda")
    xs = cost_gpu.make_inputs(circuit, sizes, dtype, "cuda")
    y = module(*xs)
    gy = torch.ones_like(y)
    del y

    def step():
        module(*xs).backward(gy)

    step()  # kernels compiled and tuned, workspaces allocated
    for t in [*xs, *module.parameters()]:
        t.grad = None
    torch.cuda.synchronize()
    pre = torch.cuda.memory._snapshot()
    base = {
        b["address"]: b["size"]
        for seg in pre["segments"]
        for b in seg["blocks"]
        if b["state"] == "active_allocated"
    }
    starts = [len(dev) for dev in pre["device_traces"]]
    frames = {ev["addr"]: ev.get("frames", [])
              for dev in pre["device_traces"] for ev in dev if ev["action"] == "alloc"}  # fmt: skip
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    snap = torch.cuda.memory._snapshot()
    torch.cuda.memory._record_memory_history(enabled=None)
    if any(len(dev) >= entries for dev in snap["device_traces"]):
        sys.exit("the allocator's history overflowed: raise `entries`")
    peak, blocks = live_at_peak(snap, base, starts=starts, frames=frames)
    unit = xs[0].numel() * xs[0].element_size()
    model = analyse(circuit, sizes=sizes, lowering="fused", dtype="bfloat16")
    print(f"{args.case} {sizes}: peak {peak / 2**20:.1f} MiB replayed, "
          f"{torch.cuda.max_memory_allocated() / 2**20:.1f} MiB max_memory_allocated, "
          f"model {model.numbers['peak_bytes'] / 2**20:.1f} MiB; "
          f"unit = {xs[0].shape} {unit / 2**20:.2f} MiB")  # fmt: skip
    for b in blocks[: args.top]:
        tag = ("before the step: " if b["before_step"] else "") + where(b["frames"])
        print(f"  {b['bytes'] / 2**20:9.2f} MiB  {b['bytes'] / unit:6.3f} units  {tag}")


if __name__ == "__main__":
    main()
