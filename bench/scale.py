"""Scale benchmark: seconds per operation on circuits of 100, 1,000 and 10,000 boxes.

A chain is a residual MLP stack written out box by box (layernorm, linear, gelu, linear, add:
5 boxes a layer); the transformer stack is bench/render_bench.py's (17 boxes a block). Each
operation runs once per size in this process: validate (`Circuit.check`), analyse
(`ncd.analyse`), source (`ncd.compiler.to_source`), compile (`ncd.compile`), forward (one
call of the compiled module at tiny sizes) and render (SVG). Rows
`{"op": "scale_<operation>", "boxes": N, "seconds": s}` go to bench/results/scale_<date>.json.

    .venv/bin/python bench/scale.py                       # 100, 1000, 10000 boxes
    .venv/bin/python bench/scale.py --boxes 1000 --ops analyse render
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
import warnings
from pathlib import Path

from ncd.circuits.builder import Builder

sys.path.insert(0, str(Path(__file__).parent))
from render_bench import stack  # noqa: E402

OPS = ("validate", "analyse", "source", "compile", "forward", "render")
BOXES_PER_LAYER = 5


def chain(n_boxes: int):
    """About `n_boxes` boxes: residual MLP layers (layernorm, linear, gelu, linear, add)."""
    b = Builder(f"chain{n_boxes}", sizes={"B": 2, "T": 4, "D": 8, "F": 16})
    x = b.input("x", "B T D")
    for i in range(max(1, n_boxes // BOXES_PER_LAYER)):
        h = b.layernorm(x, "D", name=f"ln{i}")
        h = b.linear(h, "D", "F", name=f"up{i}")
        h = b.linear(b.gelu(h, name=f"act{i}"), "F", "D", name=f"down{i}")
        x = b.add(x, h, name=f"res{i}")
    b.output("y", x)
    return b.build()


def run_op(op: str, circuit) -> float:
    import torch

    import ncd
    from ncd.circuits.draw import render
    from ncd.compiler import to_source

    t0 = time.perf_counter()
    if op == "validate":
        circuit.check()
    elif op == "analyse":
        ncd.analyse(circuit)
    elif op == "source":
        to_source(circuit)
    elif op == "compile":
        ncd.compile(circuit)
    elif op == "forward":
        model = ncd.compile(circuit).eval()
        checked = circuit.check()
        shape = [checked.number(a.size) for a in checked.inputs["x"].axes]
        x = torch.randn(shape)
        t0 = time.perf_counter()
        with torch.no_grad():
            model(x)
    elif op == "render":
        with warnings.catch_warnings():  # a note that the figure is an overview
            warnings.simplefilter("ignore")
            render(circuit)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--boxes", type=int, nargs="+", default=[100, 1000, 10000])
    p.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS)
    p.add_argument("--shape", choices=("chain", "stack"), default="chain")
    p.add_argument("--out", help="JSON file (default bench/results/scale_<date>.json)")
    args = p.parse_args()
    make = chain if args.shape == "chain" else stack
    rows = []
    print(f"# {platform.processor() or platform.machine()}, {args.shape}")
    print(f"{'op':>10} {'boxes':>6} {'seconds':>8}")
    for n in args.boxes:
        circuit = make(n)
        for op in args.ops:
            s = run_op(op, circuit)
            rows.append({"op": f"scale_{op}", "shape": args.shape, "boxes": len(circuit.boxes),
                         "seconds": round(s, 3)})  # fmt: skip
            print(f"{op:>10} {len(circuit.boxes):>6} {s:>8.2f}", flush=True)
    today = datetime.date.today().isoformat()
    out = Path(args.out or Path(__file__).parent / "results" / f"scale_{today}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(out.read_text()) if out.exists() else []
    keep = [r for r in old if (r["op"], r.get("shape"), r["boxes"]) not in
            {(r["op"], r["shape"], r["boxes"]) for r in rows}]  # fmt: skip
    out.write_text(json.dumps(keep + rows, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
