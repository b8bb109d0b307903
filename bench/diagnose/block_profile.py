"""A compiled gallery block against its hand-written counterpart on the GPU, call by call (a
tuning aid, not a test): each CUDA kernel's time per forward (torch.profiler), the host's time
to issue one forward without waiting, and the synchronised wall time per forward, the way
bench/compiler_gpu.py times it.

    python3 bench/diagnose/block_profile.py [--blocks multihead_attention,mlp] [--shape 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/
from compiler_gpu import BLOCKS, EXTRA, SHAPES, build, sizes_for  # noqa: E402
from profiling import host_us, kernel_table, wall_us  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blocks", default="multihead_attention,mlp")
    p.add_argument("--shape", type=int, default=0, help="index into compiler_gpu.SHAPES")
    args = p.parse_args()
    for op in args.blocks.split(","):
        assert op in BLOCKS, op
        sizes = sizes_for(op, SHAPES[args.shape], EXTRA)
        models, x = build(op, sizes, "cuda")
        models = {k: models[k].to("cuda", torch.bfloat16).eval() for k in ("ncd", "torch")}
        x = x.to("cuda")
        if x.is_floating_point():
            x = x.to(torch.bfloat16)
        print(f"== {op} {sizes}", flush=True)
        with torch.no_grad():
            for name, m in models.items():
                for _ in range(5):
                    m(x)
                call = lambda m=m, x=x: m(x)  # noqa: E731
                ks = kernel_table(call)
                total = sum(t for _, t in ks.values())
                print(f"  {name}: host {host_us(call, 100):.1f} us, wall {wall_us(call):.1f} us, "
                      f"GPU {total:.1f} us", flush=True)  # fmt: skip
                for k, (c, t) in sorted(ks.items(), key=lambda i: -i[1][1]):
                    print(f"      {t:8.1f} us x{c:.0f}  {k}", flush=True)
        del models


if __name__ == "__main__":
    main()
