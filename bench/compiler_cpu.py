"""Compiler benchmarks on the CPU: compile time of a 1,000-box circuit (target < 1 s) and the
forward time of the compiled transformer_block against a hand-written block (target ratio
<= 1.05), timed side by side (interleaved) in one run, after checking they agree.

    python bench/compiler_cpu.py [--out bench/results] [--reps 30]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compiler_common import Block, interleaved, load_from_compiled, meta, write  # noqa: E402

from ncd import gallery  # noqa: E402
from ncd.circuits.builder import Builder  # noqa: E402
from ncd.compiler import compile as ncd_compile  # noqa: E402
from ncd.compiler import to_source  # noqa: E402
from ncd.compiler.build import prepare  # noqa: E402

SHAPE = {"B": 8, "T": 256, "H": 8, "K": 64, "V": 64, "F": 2048}  # D = H*K = 512


def big_circuit(n_boxes: int = 1000):
    """A stack of pre-norm MLP residual blocks, five boxes each."""
    b = Builder("big", axes={"D": "H*K"}, sizes={"B": 2, "T": 16, "H": 4, "K": 8, "F": 64})
    x = b.input("x", "B T D")
    for i in range(n_boxes // 5):
        h = b.layernorm(x, "D", name=f"ln{i}")
        h = b.linear(h, "D", "F", name=f"up{i}")
        h = b.gelu(h, name=f"act{i}")
        h = b.linear(h, "F", "D", name=f"down{i}")
        x = b.add(x, h, name=f"res{i}")
    b.output("y", x)
    return b.build()


def compile_time(reps: int = 5) -> dict:
    t0 = time.perf_counter()
    c = big_circuit()
    build_s = time.perf_counter() - t0
    t = time.perf_counter()
    ncd_compile(c)  # the first compile in the process: size-parser caches are cold
    cold_s = time.perf_counter() - t
    rows = {"check_s": [], "compile_s": [], "source_s": []}
    for _ in range(reps):
        t = time.perf_counter()
        c.check()
        rows["check_s"].append(time.perf_counter() - t)
        t = time.perf_counter()
        ncd_compile(c)
        rows["compile_s"].append(time.perf_counter() - t)
        t = time.perf_counter()
        to_source(c)
        rows["source_s"].append(time.perf_counter() - t)
    t = time.perf_counter()
    prepare(c)
    prepare_s = time.perf_counter() - t
    best = {k: round(min(v), 4) for k, v in rows.items()}
    return {
        "op": "compile",
        "impl": "ncd",
        "boxes": len(c.boxes),
        "build_s": round(build_s, 4),
        "compile_s_first": round(cold_s, 4),
        **best,
        "lower_s": round(best["compile_s"] - best["check_s"], 4),
        "prepare_s": round(prepare_s, 4),
        "target_s": 1.0,
    }


def forward_rows(reps: int) -> list[dict]:
    c = gallery.get("transformer_block")
    rows = []
    for op, sdpa, opts in (
        ("transformer_block", False, {}),
        ("transformer_block_sdpa", True, {"rewrites": True, "fused": "torch"}),
    ):
        torch.manual_seed(0)
        model = ncd_compile(c, sizes=SHAPE, **opts).eval()
        ref = load_from_compiled(Block(512, 8, 2048, sdpa=sdpa), model).eval()
        x = torch.randn(SHAPE["B"], SHAPE["T"], 512)
        with torch.no_grad():
            err = (model(x) - ref(x)).abs().max().item()
            assert err < 1e-3, f"{op}: compiled and hand-written disagree by {err}"
            t = interleaved({"ncd": lambda m=model, x=x: m(x), "torch": lambda r=ref, x=x: r(x)},
                            reps)  # fmt: skip
        for impl, (med, best) in t.items():
            rows.append(
                {
                    "op": op,
                    "impl": impl,
                    "dtype": "float32",
                    "shape": dict(SHAPE, D=512),
                    "fwd_ms": round(med, 3),
                    "fwd_ms_min": round(best, 3),
                    "max_abs_err": err,
                }
            )
        rows[-2]["ratio_vs_torch"] = round(t["ncd"][0] / t["torch"][0], 4)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--reps", type=int, default=30)
    args = p.parse_args()
    import platform

    rows = [compile_time()]
    print(
        f"compile 1000 boxes: {rows[0]['compile_s']:.3f} s, first in process "
        f"{rows[0]['compile_s_first']:.3f} s (check {rows[0]['check_s']:.3f} s, "
        f"lower {rows[0]['lower_s']:.3f} s), source {rows[0]['source_s']:.3f} s"
    )
    rows += forward_rows(args.reps)
    for r in rows[1:]:
        extra = f"  ratio {r['ratio_vs_torch']}" if "ratio_vs_torch" in r else ""
        print(f"{r['op']:24} {r['impl']:6} fwd {r['fwd_ms']:8.2f} ms (min {r['fwd_ms_min']:.2f})"
              f"{extra}")  # fmt: skip
    device = f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    path = write(args.out, "compiler_cpu", {"meta": meta(device), "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
