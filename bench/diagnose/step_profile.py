"""Where a training step's time goes, ncd against its reference, on the GPU (a tuning aid, not
a test): each CUDA kernel's device time per step (torch.profiler), the host's time to issue
one step without waiting, and the synchronised wall time per step.

    python3 bench/diagnose/step_profile.py [--cases wtacrs,deltanet_block,gla_block] [--out F]

Cases:
  wtacrs          `wtacrs_linear` (budget 0.3) against `F.linear`, x [4096, 4096] and weight
                  [4096, 4096] bf16, x, weight and bias all trained: the forward alone, then
                  forward + backward
  deltanet_block  the compiled gallery block against the one written by hand with fla's
  gla_block       kernels (bench/gated_blocks_gpu.py's models, weights loaded by name), one
                  step: forward, backward, AdamW, at gated_blocks_gpu.py's sizes; run that
                  script first on a fresh machine (fla autotunes for minutes on its first call)
Each case runs in a process of its own, so that a CUDA error ends only that case.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/
from profiling import host_us, kernel_table, wall_us  # noqa: E402


def report(case: str, impl: str, what: str, fn) -> dict:
    fn()
    torch.cuda.synchronize()
    table = kernel_table(fn, n=10)
    row = {
        "case": case, "impl": impl, "what": what, "wall_us": wall_us(fn, n=30),
        "host_us": host_us(fn, n=30), "device_us": sum(us for _, us in table.values()),
        "kernels": {k: [round(c, 2), round(us, 1)] for k, (c, us) in table.items()},
    }  # fmt: skip
    print(f"== {case} {impl} {what}: wall {row['wall_us']:.0f} us, host {row['host_us']:.0f} us,"
          f" kernels {row['device_us']:.0f} us")  # fmt: skip
    for name, (count, us) in sorted(table.items(), key=lambda kv: -kv[1][1])[:12]:
        print(f"   {us:9.1f} us  x{count:<5.2g} {name}")
    return row


def wtacrs_rows() -> list[dict]:
    from ncd.ops.wtacrs import wtacrs_linear

    n = D = 4096
    dev, dt = "cuda", torch.bfloat16
    x = torch.randn(n, D, device=dev, dtype=dt, requires_grad=True)
    w = (torch.randn(D, D, device=dev, dtype=dt) / D**0.5).requires_grad_()
    b = torch.zeros(D, device=dev, dtype=dt, requires_grad=True)
    dy = torch.randn(n, D, device=dev, dtype=dt)
    impls = {
        "ncd": lambda: wtacrs_linear(x, w, b, budget=0.3),
        "torch": lambda: F.linear(x, w, b),
    }
    rows = []
    for impl, f in impls.items():
        rows.append(report("wtacrs", impl, "forward", f))

        def step(f=f):
            for t in (x, w, b):
                t.grad = None
            f().backward(dy)

        rows.append(report("wtacrs", impl, "forward+backward", step))
    return rows


def block_rows(op: str) -> list[dict]:
    import gated_blocks_gpu as gb

    sizes = dict(gb.SIZES)
    dev, dt = torch.device("cuda"), torch.bfloat16
    ncd, hand, _ = gb.build(op, sizes, dev, dt, gb.fla_mixer(op), reference=False)
    x, dy = gb.inputs(sizes, dev, dt)
    rows = []
    for impl, model in (("ncd", ncd), ("fla", hand)):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        rows.append(report(op, impl, "step", lambda m=model, o=opt: gb.train_step(m, o, x, dy)))
    return rows


def one_case(case: str) -> list[dict]:
    try:
        return wtacrs_rows() if case == "wtacrs" else block_rows(case)
    except Exception as e:  # one case's failure is reported; the others still run
        print(f"== {case}: {type(e).__name__}: {e}", flush=True)
        return [{"case": case, "error": f"{type(e).__name__}: {e}"}]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--cases", default="wtacrs,deltanet_block,gla_block")
    p.add_argument("--out", default=None, help="JSON file for the rows")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    cases = args.cases.split(",")
    if args.child:  # one case, its rows as the last line of stdout
        print(ROWS + json.dumps(one_case(cases[0])), flush=True)
        return 0
    rows = []
    for case in cases:  # each in a process of its own: a CUDA error ends only its case
        done = subprocess.run([sys.executable, __file__, "--cases", case, "--child"],
                              capture_output=True, text=True)  # fmt: skip
        out = done.stdout.splitlines()
        print("\n".join(line for line in out if not line.startswith(ROWS)), flush=True)
        got = [json.loads(line[len(ROWS) :]) for line in out if line.startswith(ROWS)]
        tail = " | ".join(done.stderr.strip().splitlines()[-2:])
        rows += got[0] if got else [{"case": case, "error": f"rc={done.returncode}: {tail}"}]
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    return 0


ROWS = "ROWS "


if __name__ == "__main__":
    sys.exit(main())
