"""GPU benchmark of the integer-only ViT ops (ncd.ops.ivit) against PyTorch, side by side.

Ops: `shiftmax`, `shiftgelu`, `i_layernorm` (int8 in, int8 out) and `int8_matmul` (int8
operands, int32 accumulation; `epilogue` none: int32 out, or requant: bias and dyadic
requantisation fused, int8 out), at rows x features 4096 x 4096 and 16384 x 4096 (the matrix
product: [rows, features] @ [features, features], the weight read K-major as weight.t()).
`impl`: `ncd` (the Triton kernels), `torch` (the integer reference of ops/ivit/reference.py
run eagerly; for the matrix product torch._int_mm, cuBLASLt's int8 GEMM), `torch_compile`
(the same under torch.compile), and the float operations of the same shape for context:
`bf16` for the matrix product (the >= 1.5x target is ncd's int8 product against it) and
`float_bf16` for softmax, GELU and LayerNorm. Each ncd row says whether its output equals the
torch row's bit for bit. Times are `triton.testing.do_bench` medians; GB/s counts each
operand read once and the output written once (ncd.ops.ivit.cost). Rows follow
bench/README.md's JSON layout ({"meta", "rows"}).

    PYTHONPATH=. python3 bench/ops_ivit.py --out $OUT/ops_ivit.json
    PYTHONPATH=. python3 bench/ops_ivit.py --dry-run --out /tmp/ops_ivit.json   # CPU smoke run

`--dry-run` runs on the CPU at tiny shapes: the kernels under Triton's interpreter, times from
time.perf_counter, torch.compile with its "eager" backend (no code generation), so that the
script's every path runs where there is no GPU; its figures mean nothing.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: results_meta
from results_meta import commit  # noqa: E402

OPS = ["shiftmax", "shiftgelu", "i_layernorm", "int8_matmul"]
SHAPES = [(4096, 4096), (16384, 4096)]
DRY_SHAPES = [(32, 64), (48, 96)]
SCALE = 0.05  # the inputs' scale: int8 values in [-128, 127] stand for [-6.4, 6.35]


def _timer(dry):
    if dry:

        def bench(fn):
            fn()
            ts = []
            for _ in range(1):
                t0 = time.perf_counter()
                fn()
                ts.append((time.perf_counter() - t0) * 1e3)
            return statistics.median(ts)

        return bench
    from triton.testing import do_bench

    return lambda fn: do_bench(fn, warmup=10, rep=50, return_mode="median")


def _cases(op, rows, D, device, dry):
    """{impl: (fn, epilogue)} and the bytes one call moves at least."""
    import torch
    import torch.nn.functional as F

    from ncd.ops.ivit import cost, matmul, nonlinear
    from ncd.ops.ivit import reference as R

    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randint(-128, 128, (rows, D), dtype=torch.int8, device=device, generator=g)
    xf = (x.float() * SCALE).to(torch.bfloat16)
    backend = "triton"
    compile_kw = {"backend": "eager"} if dry else {"dynamic": False}

    def compiled(fn):
        torch._dynamo.reset()
        return torch.compile(fn, **compile_kw)

    if op == "shiftmax":
        cases = {
            "ncd": lambda: nonlinear.shiftmax(x, SCALE, backend=backend)[0],
            "torch": lambda: R.shiftmax_reference(x, SCALE)[0],
            "torch_compile": (lambda f: lambda: f(x, SCALE)[0])(compiled(R.shiftmax_reference)),
            "float_bf16": lambda: torch.softmax(xf, -1),
        }
        return {k: (v, None) for k, v in cases.items()}, cost.io_shiftmax(rows, D)
    if op == "shiftgelu":
        cases = {
            "ncd": lambda: nonlinear.shiftgelu(x, SCALE, backend=backend)[0],
            "torch": lambda: R.shiftgelu_reference(x, SCALE)[0],
            "torch_compile": (lambda f: lambda: f(x, SCALE)[0])(compiled(R.shiftgelu_reference)),
            "float_bf16": lambda: F.gelu(xf),
        }
        return {k: (v, None) for k, v in cases.items()}, cost.io_shiftgelu(rows * D)
    if op == "i_layernorm":
        w = 1 + 0.1 * torch.randn(D, device=device, generator=g)
        b = 0.1 * torch.randn(D, device=device, generator=g)
        wb, bb = w.to(torch.bfloat16), b.to(torch.bfloat16)
        consts = R.layernorm_constants(w, b, 2.0**-4, D)  # ahead of the calls, as ncd keeps them
        cases = {
            "ncd": lambda: nonlinear.i_layernorm(x, w, b, backend=backend)[0],
            "torch": lambda: R.i_layernorm_reference(x, constants=consts)[0],
            "torch_compile": (lambda f: lambda: f(x, constants=consts)[0])(
                compiled(R.i_layernorm_reference)
            ),
            "float_bf16": lambda: F.layer_norm(xf, (D,), wb, bb),
        }
        return {k: (v, None) for k, v in cases.items()}, cost.io_i_layernorm(rows, D)
    # int8_matmul: a [rows, D] @ weight.t(), weight [D, D]
    wt = torch.randint(-128, 128, (D, D), dtype=torch.int8, device=device, generator=g).t()
    bias = torch.randint(-(2**16), 2**16, (D,), dtype=torch.int32, device=device, generator=g)
    mult, shift = R.dyadic(1.0 / (64 * D))
    if device == "cuda":
        int_mm = torch._int_mm
    else:  # CPU: torch._int_mm needs CUDA; the reference's int64 product stands in
        int_mm = R.int8_matmul_reference
    af, wf = x.to(torch.bfloat16), wt.to(torch.bfloat16)
    int_mm_c = compiled(int_mm)
    requant_c = compiled(lambda a, b: R.requantize_reference(int_mm(a, b) + bias, mult, shift))
    cases = {
        ("ncd", "none"): lambda: matmul.int8_matmul(x, wt, backend=backend),
        ("torch", "none"): lambda: int_mm(x, wt),
        ("torch_compile", "none"): lambda: int_mm_c(x, wt),
        ("ncd", "requant"): lambda: matmul.int8_matmul(x, wt, bias, mult, shift, backend=backend),
        ("torch", "requant"): lambda: R.requantize_reference(int_mm(x, wt) + bias, mult, shift),
        ("torch_compile", "requant"): lambda: requant_c(x, wt),
        ("bf16", "none"): lambda: af @ wf,
    }
    return {k[0] + "/" + k[1]: (v, k[1]) for k, v in cases.items()}, None


def measure(op, rows, D, device, dry, deadline):
    import torch

    from ncd.ops.ivit import cost

    bench = _timer(dry)
    cases, io = _cases(op, rows, D, device, dry)
    out, results = [], {}
    for key, (fn, epilogue) in cases.items():
        impl = key.split("/")[0]
        row = {"op": op, "impl": impl, "rows": rows, "features": D, "dtype": "int8"}
        if epilogue is not None:
            row["epilogue"] = epilogue
        if impl.startswith("float") or impl == "bf16":
            row["dtype"] = "bfloat16"
        if time.time() > deadline:
            row["error"] = "not measured (time budget spent)"
            out.append(row)
            continue
        try:
            results[key] = fn()
            if device == "cuda":
                torch.cuda.synchronize()
            row["ms"] = bench(fn)
        except Exception as e:  # noqa: BLE001 - recorded in the row, the run goes on
            row["error"] = f"{type(e).__name__}: {e}"[:500]
            out.append(row)
            continue
        if op == "int8_matmul":
            requant = epilogue == "requant"
            moved = cost.io_int8_matmul_min(rows, D, D, requant)
            if impl == "bf16":
                moved = 2 * (rows * D + D * D + rows * D)
            row["tops"] = 2 * rows * D * D / row["ms"] / 1e9
        else:
            moved = io if row["dtype"] == "int8" else 4 * rows * D
        row["gb_s"] = moved / row["ms"] / 1e6
        out.append(row)
    for row in out:  # bit-exactness of ncd against the torch row of the same epilogue
        if row["impl"] == "ncd" and "ms" in row:
            mine = results.get("ncd/" + row["epilogue"] if "epilogue" in row else "ncd")
            theirs = results.get("torch/" + row["epilogue"] if "epilogue" in row else "torch")
            if theirs is not None:
                row["bit_exact"] = bool(torch.equal(mine.cpu(), theirs.cpu()))
    _speedups(out)
    return out


def _speedups(rows):
    by = {(r["impl"], r.get("epilogue")): r.get("ms") for r in rows}
    for r in rows:
        if "ms" not in r or r["impl"] not in ("ncd", "torch", "torch_compile"):
            continue
        ep = r.get("epilogue")
        for other in ("torch", "torch_compile"):
            t = by.get((other, ep))
            if t and other != r["impl"]:
                r[f"speedup_vs_{other}"] = t / r["ms"]
        if r["op"] == "int8_matmul" and by.get(("bf16", "none")):
            r["speedup_vs_bf16"] = by[("bf16", "none")] / r["ms"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", type=lambda s: s.split(","), default=OPS)
    p.add_argument(
        "--shapes",
        type=lambda s: [tuple(map(int, x.split("x"))) for x in s.split(",")],
        default=None,
        help="rows x features, comma separated: 4096x4096,16384x4096",
    )
    p.add_argument("--budget", type=float, default=520, help="seconds before rows are skipped")
    p.add_argument("--dry-run", action="store_true", help="CPU, interpreter, tiny shapes")
    p.add_argument("--out", default="bench/results/ops_ivit.json")
    args = p.parse_args(argv)
    if args.dry_run:  # Triton decides at import whether kernels are interpreted
        os.environ["TRITON_INTERPRET"] = "1"
    import torch
    import triton

    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run on the CPU", file=sys.stderr)
        return 2
    shapes = args.shapes or (DRY_SHAPES if args.dry_run else SHAPES)
    deadline = time.time() + args.budget
    rows = []
    for op in args.ops:
        if op not in OPS:
            print(f"--ops: expected some of {OPS}, found {op!r}", file=sys.stderr)
            return 2
        for R, D in shapes:
            got = measure(op, R, D, device, args.dry_run, deadline)
            for r in got:
                print(json.dumps(r), flush=True)
            rows += got
    from ncd.ops import config

    meta = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)",
        "date": datetime.date.today().isoformat(),
        "commit": commit(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "config": config.describe(),
        "dry_run": args.dry_run,
    }
    if device == "cuda":
        from ncd.ops import _backend

        meta["tuned"] = {k: v for k, v in _backend.tuned_configs().items() if "ivit" in k or
                         k.startswith(("nonlinear.", "matmul."))}  # fmt: skip
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    bad = [r for r in rows if r.get("bit_exact") is False]
    if bad:
        print(f"ncd differs from the integer reference: {[(r['op'], r['rows']) for r in bad]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
