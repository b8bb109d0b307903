"""The host's time to issue one forward of a compiled gallery block, against the block written
by hand, taken apart (a tuning aid, not a test): the compiled module called, its forward called
directly (no nn.Module call, no input check), without the check hook,
and cProfile's top functions of both calls.

    python3 bench/diagnose/host_compiled.py [--block multihead_attention] [--shape 0] [--dry]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/
from compiler_gpu import DRY, DRY_EXTRA, EXTRA, SHAPES, build, sizes_for  # noqa: E402
from profiling import host_us, top_functions  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--block", default="multihead_attention")
    p.add_argument("--shape", type=int, default=0)
    p.add_argument("--dry", action="store_true", help="tiny sizes on the CPU (checks the script)")
    args = p.parse_args()
    dev, dt = ("cpu", torch.float32) if args.dry else ("cuda", torch.bfloat16)
    shape, extra = (DRY[0], DRY_EXTRA) if args.dry else (SHAPES[args.shape], EXTRA)
    sizes = sizes_for(args.block, shape, extra)
    models, x = build(args.block, sizes, dev)
    m = models["ncd"].to(dev, dt).eval()
    ref = models["torch"].to(dev, dt).eval()
    x = x.to(dev, dt) if x.is_floating_point() else x.to(dev)
    rows = {}
    with torch.no_grad():
        for _ in range(10):
            m(x)
            ref(x)
        rows["hand-written, called"] = host_us(lambda: ref(x), 300, 7)
        rows["compiled, called"] = host_us(lambda: m(x), 300, 7)
        rows["compiled, forward directly"] = host_us(lambda: m.forward(x), 300, 7)
        hooks = dict(m._forward_pre_hooks)
        m._forward_pre_hooks.clear()
        rows["compiled, called without the check"] = host_us(lambda: m(x), 300, 7)
        m._forward_pre_hooks.update(hooks)
        rows["hand-written, called again"] = host_us(lambda: ref(x), 300, 7)
        rows["compiled, called again"] = host_us(lambda: m(x), 300, 7)
    print(f"== {args.block} {sizes} on {dev}: host us per forward (best of 7 x 300, no waiting)")
    for k, v in rows.items():
        print(f"  {k:38s} {v:7.1f}")
    print("== the compiled module's code\n" + m.code)
    for name, fn in (("compiled", lambda: m(x)), ("hand-written", lambda: ref(x))):
        with torch.no_grad():
            table = top_functions(fn, 300, 18)
        print(f"== cProfile, 300 calls, {name}\n{table}", flush=True)


if __name__ == "__main__":
    main()
