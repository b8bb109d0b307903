"""The cost model against the GPU: peak memory and time, predicted and measured, in bf16.

Not a test. For softmax attention, linear attention and the transformer block (drawn from
primitives, as in the gallery, and as single fused boxes running ncd.ops kernels), and the
gallery's gated blocks (GLA, DeltaNet, Gated DeltaNet and Mamba-2's scalar gate, whose mixers
run the gated families' kernels), at several T, one process compiles the circuit
(`ncd.compile`, bf16), and measures:

- peak memory of one forward + backward: `torch.cuda.max_memory_allocated()` after a reset,
  with parameters, inputs and the output gradient already allocated, against the model's
  `peak_bytes` (liveness over forward + backward; inputs, parameters and gradients included);
- time: `triton.testing.do_bench` medians of the forward and of forward + backward, against
  the roofline estimates `time_s` and `time_train_s` (device profile h200: 768 TFLOP/s,
  4.26 TB/s, BENCHMARKS.md).

The model is evaluated under both lowerings; the one that matches what the compiled module
runs (fused when the module calls an ncd.ops kernel or PyTorch's fused attention for a region,
unfused otherwise) is marked `expected`. Writes JSON and prints a Markdown table.

    python3 bench/cost_gpu.py --out bench/results/cost_gpu
    python3 bench/cost_gpu.py --device cpu --tiny --out /tmp/cost_cpu   # runs anywhere, small

`ncd` is imported as bench/gpu.sh sets it up (PYTHONPATH holding the repository root), or
installed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path


def _import_ncd():
    """Import ncd (installed, or this checkout with its root on PYTHONPATH: bench/gpu.sh)."""
    try:
        import ncd
        import ncd.compiler.cost  # noqa: F401  (sympy, pydantic, networkx: ncd's dependencies)
    except ImportError as e:
        sys.exit(f"cost_gpu: cannot import ncd: {e} (put the repository root on PYTHONPATH, "
                 "as bench/gpu.sh does, with sympy, pydantic and networkx installed)")  # fmt: skip
    return ncd


def fused_circuit(kind: str):
    """One fused box over [B T H K] inputs: `attention` (causal) or `linear_attention`."""
    from ncd.circuits.builder import Builder

    b = Builder(f"{kind}_box")
    q = b.input("q", "B T H K")
    if kind == "attention":
        k, v = b.input("k", "B S H K"), b.input("v", "B S H V")
        b.output("y", b.attention(q, k, v, causal=True, key="S", name="attn"))
    else:
        k, v = b.input("k", "B T H K"), b.input("v", "B T H V")
        b.output("y", b.linear_attention(q, k, v, key="T", name="attn"))
    return b.build()


def cases(tiny: bool):
    """(name, circuit factory, [sizes per point])."""
    from ncd import gallery

    if tiny:
        ts = [16, 32]
        att = {"B": 1, "H": 2, "K": 8, "V": 8}
        blk = {"B": 1, "H": 2, "K": 8, "V": 8, "F": 32}
        return [
            ("attention", lambda: gallery.get("attention"), [{**att, "T": t, "S": t} for t in ts]),
            ("attention_box", lambda: fused_circuit("attention"),
             [{**att, "T": t, "S": t} for t in ts]),
            ("linear_attention", lambda: gallery.get("linear_attention"),
             [{**att, "T": t} for t in ts]),
            ("linear_attention_box", lambda: fused_circuit("linear_attention"),
             [{**att, "T": t} for t in ts]),
            ("transformer_block", lambda: gallery.get("transformer_block"),
             [{**blk, "T": t} for t in ts]),
            ("gla_block", lambda: gallery.get("gla_block"), [{**att, "T": t} for t in ts]),
            ("deltanet_block", lambda: gallery.get("deltanet_block"),
             [{**att, "T": t} for t in ts]),
            ("gated_deltanet_block", lambda: gallery.get("gated_deltanet_block"),
             [{**att, "T": t} for t in ts]),
            ("mamba_block", lambda: gallery.get("mamba_block"),
             [{"B": 1, "D": 16, "H": 2, "P": 8, "N": 8, "T": t} for t in ts]),
        ]  # fmt: skip
    att = {"B": 4, "H": 16, "K": 128, "V": 128}
    lin = {"B": 2, "H": 8, "K": 64, "V": 64}  # the recurrent form keeps a K×V state per token
    blk = {"B": 4, "H": 16, "K": 64, "V": 64, "F": 4096}
    gated = {"B": 4, "H": 16, "K": 128, "V": 128}  # the gated blocks (D = H K = 2048)
    mamba = {"B": 4, "D": 2048, "H": 32, "P": 128, "N": 128}  # the scalar gate: 32 heads of 128
    return [
        ("attention", lambda: gallery.get("attention"),
         [{**att, "T": t, "S": t} for t in (1024, 2048, 4096)]),
        ("attention_box", lambda: fused_circuit("attention"),
         [{**att, "T": t, "S": t} for t in (1024, 4096, 16384)]),
        ("linear_attention", lambda: gallery.get("linear_attention"),
         [{**lin, "T": t} for t in (1024, 4096, 16384)]),
        ("linear_attention_box", lambda: fused_circuit("linear_attention"),
         [{**att, "T": t} for t in (1024, 4096, 16384)]),
        ("transformer_block", lambda: gallery.get("transformer_block"),
         [{**blk, "T": t} for t in (1024, 4096)]),
        ("gla_block", lambda: gallery.get("gla_block"),
         [{**gated, "T": t} for t in (1024, 4096, 16384)]),
        ("deltanet_block", lambda: gallery.get("deltanet_block"),
         [{**gated, "T": t} for t in (1024, 4096, 16384)]),
        ("gated_deltanet_block", lambda: gallery.get("gated_deltanet_block"),
         [{**gated, "T": t} for t in (1024, 4096, 16384)]),
        ("mamba_block", lambda: gallery.get("mamba_block"),
         [{**mamba, "T": t} for t in (1024, 4096, 16384)]),
    ]  # fmt: skip


def make_inputs(circuit, sizes, dtype, device):
    import torch

    checked = circuit.check(sizes=sizes)
    xs = []
    for inp in circuit.inputs:
        shape = [int(checked.number(a.size)) for a in checked.inputs[inp.name].axes]
        xs.append((torch.randn(shape, device=device) * 0.5).to(dtype).requires_grad_(True))
    return xs


def timer(device):
    """Median seconds of fn: triton's do_bench on CUDA, perf_counter on the CPU."""
    if device == "cuda":
        from triton.testing import do_bench

        return lambda fn, grads: do_bench(fn, warmup=10, rep=50, grad_to_none=grads,
                                          return_mode="median") / 1e3  # fmt: skip

    def cpu(fn, grads):
        ts = []
        for _ in range(5):
            for g in grads:
                g.grad = None
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    return cpu


def run_point(ncd, name, circuit, sizes, dtype, device):
    import torch

    from ncd.compiler.cost import analyse

    dname = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}
    module = ncd.compile(circuit, sizes=sizes, dtype=dtype, device=device)
    calls_ops = sorted(  # ncd.ops kernels, and PyTorch's fused attention (compiler/choices.py)
        {
            getattr(n.target, "__module__", "") + "." + getattr(n.target, "__name__", "")
            for n in module.graph.nodes
            if n.op == "call_function"
            and (
                any(w in getattr(n.target, "__module__", "") for w in ("ops", "fused"))
                or getattr(n.target, "__name__", "") == "scaled_dot_product_attention"
            )
        }
    )
    reports = {
        low: analyse(circuit, sizes=sizes, lowering=low, dtype=dname[dtype])
        for low in ("fused", "unfused")
    }
    model = {low: r.numbers for low, r in reports.items()}
    for low, r in reports.items():  # inputs and parameters: allocated before the step
        model[low]["base_bytes"] = r.number(r.analysis.base)
    has_box = any(b.kind in ("attention", "linear_attention") for b in circuit.boxes)
    expected = "fused" if has_box or calls_ops else "unfused"
    xs = make_inputs(circuit, sizes, dtype, device)
    params = list(module.parameters())
    y = module(*xs)
    gy = torch.ones_like(y)
    del y

    def step():
        module(*xs).backward(gy)

    def forward():
        with torch.no_grad():
            module(*xs)

    rec = {"case": name, "sizes": sizes, "dtype": dname[dtype], "device": device,
           "ncd_ops_calls": calls_ops, "expected_lowering": expected}  # fmt: skip
    measured = {}
    if device == "cuda":
        step()  # warm-up: kernels compiled and autotuned, library workspaces allocated
        for t in [*xs, *params]:
            t.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        measured["base_bytes"] = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        measured["peak_bytes"] = torch.cuda.max_memory_allocated()
    bench = timer(device)
    measured["fwd_s"] = bench(forward, [])
    measured["fwd_bwd_s"] = bench(step, [*xs, *params])
    rec["measured"] = measured
    rec["model"] = {
        low: {k: m[k] for k in ("flops", "flops_backward", "activation_bytes", "peak_bytes",
                                "base_bytes", "io_bytes", "io_bytes_backward", "time_s",
                                "time_train_s")}
        for low, m in model.items()
    }  # fmt: skip
    m = model[expected]
    rec["ratios"] = {
        "fwd_time_measured_over_roofline": measured["fwd_s"] / m["time_s"],
        "fwd_bwd_time_measured_over_roofline": measured["fwd_bwd_s"] / m["time_train_s"],
    }
    if "peak_bytes" in measured:
        rec["ratios"]["peak_measured_over_model"] = measured["peak_bytes"] / m["peak_bytes"]
    return rec


def markdown(records) -> str:
    head = ("| case | T | lowering | peak model | peak measured | ratio | fwd roofline | fwd "
            "measured | fwd+bwd roofline | fwd+bwd measured |")  # fmt: skip
    lines = [head, "|" + " --- |" * 10]
    for r in records:
        m, me = r["model"][r["expected_lowering"]], r["measured"]
        peak = me.get("peak_bytes")
        lines.append(
            f"| {r['case']} | {r['sizes']['T']} | {r['expected_lowering']} | "
            f"{m['peak_bytes'] / 2**30:.3g} GiB | "
            + (f"{peak / 2**30:.3g} GiB | {peak / m['peak_bytes']:.2f} | " if peak else "– | – | ")
            + f"{m['time_s'] * 1e3:.3g} ms | {me['fwd_s'] * 1e3:.3g} ms | "
            f"{m['time_train_s'] * 1e3:.3g} ms | {me['fwd_bwd_s'] * 1e3:.3g} ms |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="directory for cost_gpu.json and cost_gpu.md")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--tiny", action="store_true", help="small sizes (a smoke run)")
    p.add_argument("--dtype", default=None, choices=["bfloat16", "float32"],
                   help="default: bfloat16 on CUDA, float32 on the CPU")  # fmt: skip
    p.add_argument("--only", help="comma-separated case names")
    args = p.parse_args(argv)
    ncd = _import_ncd()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device; use --device cpu --tiny for a smoke run", file=sys.stderr)
        return 2
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device == "cuda" else "float32"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None
    records = []
    for name, make, points in cases(args.tiny):
        if only and name not in only:
            continue
        for sizes in points:
            try:
                rec = run_point(ncd, name, make(), sizes, dtype, args.device)
            except getattr(torch, "OutOfMemoryError", MemoryError) as e:  # recorded, not fatal
                rec = {"case": name, "sizes": sizes, "error": f"out of memory: {e}"[:300]}
                torch.cuda.empty_cache()
            records.append(rec)
            print(json.dumps({k: rec.get(k) for k in ("case", "sizes", "ratios", "error")}),
                  flush=True)  # fmt: skip
    meta = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "torch": torch.__version__,
        "profile": "h200: 768 TFLOP/s bf16, 4.26 TB/s (BENCHMARKS.md)",
        "pid": os.getpid(),
    }
    (out / "cost_gpu.json").write_text(json.dumps({"meta": meta, "records": records}, indent=2))
    ok = [r for r in records if "error" not in r]
    table = markdown(ok)
    (out / "cost_gpu.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
