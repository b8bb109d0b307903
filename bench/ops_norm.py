"""GPU benchmark of the row normalisations (ncd.ops.norm) against PyTorch eager and
torch.compile of the same expressions.

Ops: `layer_norm`, `rms_norm` (weight and bias / weight of the features' size) and
`add_rms_norm` (the pre-norm residual step `s = x + r; y = rms_norm(s)`, both outputs used);
with `--ops l2_norm`, L2 normalisation (F.normalize; DeltaNet's keys and queries: rows of one
head, `--shapes 262144x128`); `impl`: `ncd` (ncd.ops), `torch` (F.layer_norm, F.rms_norm,
F.normalize, the add in eager), `torch_compile` (torch.compile of the torch form, the add and
the norm in one graph). Shapes rows x features 4096 x 4096 and 16384 x 4096, bfloat16 inputs
and parameters. For each row: the relative RMS error of every output and gradient against the
same maths in float32 on the same inputs, the `do_bench` medians of the forward and of forward
+ backward, the peak extra memory of one forward + backward, the HBM bandwidth the forward +
backward reaches by the cost model's bytes (ops/norm/cost.py), and the host's time to issue one
forward and one forward + backward (`host_fwd_us`, `host_fwdbwd_us`: a time in ms close to it
is host-bound). Every timing is the median of five rounds in which the implementations take
turns (`--rounds`; each round's times in `rounds_ms`), and ratios are the median of each
round's ratio, so that they are taken side by side: these calls are host-bound at 4096 rows,
and the host's speed drifts within a run. ncd rows carry `vs_torch` and `vs_compile`: the
others' forward + backward time over ncd's (the issue's targets: >= 2 and >= 1.0 for the norms,
`vs_compile` >= 1.2 for `add_rms_norm`). Rows follow bench/README.md's JSON format.

    PYTHONPATH=. python3 bench/ops_norm.py --out $OUT/ops_norm.json
    PYTHONPATH=. python3 bench/ops_norm.py --impls ncd --programs-per-sm 2 --out ...  # G swept
    .venv/bin/python bench/ops_norm.py --dry-run --out /tmp/ops_norm.json   # CPU, tiny shapes
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: results_meta
from results_meta import commit  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

OPS = ["layer_norm", "rms_norm", "add_rms_norm"]  # the default; also "l2_norm"
IMPLS = ["ncd", "torch", "torch_compile"]
SHAPES = [(4096, 4096), (16384, 4096)]
DRY_SHAPES = [(8, 64), (33, 100)]
PARTS = {  # the outputs, then the gradients, of each op
    "layer_norm": ["y", "dx", "dw", "db"],
    "rms_norm": ["y", "dx", "dw"],
    "add_rms_norm": ["y", "s", "dx", "dr", "dw"],
    "l2_norm": ["y", "dx"],
}
EPS = 1e-5


def torch_form(op):
    """The op as PyTorch eager writes it: returns a tuple of outputs."""
    import torch.nn.functional as F

    if op == "layer_norm":
        return lambda x, w, b: (F.layer_norm(x, x.shape[-1:], w, b, EPS),)
    if op == "rms_norm":
        return lambda x, w: (F.rms_norm(x, x.shape[-1:], w, EPS),)
    if op == "l2_norm":
        return lambda x: (F.normalize(x, p=2.0, dim=-1, eps=EPS),)

    def add_rms(x, r, w):
        s = x + r
        return F.rms_norm(s, s.shape[-1:], w, EPS), s

    return add_rms


def implementation(op, impl, backend="auto"):
    import torch

    from ncd import ops

    if impl == "torch":
        return torch_form(op)
    if impl == "torch_compile":
        return torch.compile(torch_form(op), dynamic=False, backend=_compile_backend())
    if op == "layer_norm":
        return lambda x, w, b: (ops.layer_norm(x, w, b, EPS, backend=backend),)
    if op == "rms_norm":
        return lambda x, w: (ops.rms_norm(x, w, EPS, backend=backend),)
    if op == "l2_norm":
        return lambda x: (ops.l2_norm(x, EPS, backend=backend),)
    return lambda x, r, w: ops.add_rms_norm(x, r, w, EPS, backend=backend)


_DRY = {"on": False}


def _compile_backend():
    """Inductor on the GPU; on the dry run's CPU "eager" (the plumbing, not the speed)."""
    return "eager" if _DRY["on"] else "inductor"


def inputs(op, M, N, dtype, device, seed=0):
    """x with a mean away from 0 (a residual stream's), r, weight near 1, bias small."""
    import torch

    g = torch.Generator(device=device).manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, device=device, generator=g)

    x = (rnd(M, N) + 0.5).to(dtype)
    w = (1 + 0.1 * rnd(N)).to(dtype)
    if op == "layer_norm":
        args = [x, w, (0.1 * rnd(N)).to(dtype)]
    elif op == "rms_norm":
        args = [x, w]
    elif op == "l2_norm":
        args = [x]
    else:
        args = [x, rnd(M, N).to(dtype), w]
    n_out = 2 if op == "add_rms_norm" else 1
    cots = [rnd(M, N).to(dtype) for _ in range(n_out)]
    return args, cots


def rel_rms(x, ref):
    err = ((x.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-30)).item()
    return err if err == err else float("inf")  # NaN would pass every comparison


def timer(device):
    """do_bench medians (ms) on CUDA; on the CPU a median of plain wall-clock repeats."""
    if device == "cuda":
        from triton.testing import do_bench

        return lambda fn, leaves: do_bench(
            fn, warmup=10, rep=20, grad_to_none=leaves, return_mode="median"
        )

    def cpu(fn, leaves):
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return sorted(times)[len(times) // 2]

    return cpu


def host_us(fn, leaves, device, n=50, trials=3):
    """The host's time to issue one call (us): n calls issued without waiting, median of
    `trials` (on the GPU the kernels finish behind the host when this exceeds their time, so
    fwd_ms close to it means a host-bound call)."""
    import torch

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    times = []
    for _ in range(trials):
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
            for a in leaves:
                a.grad = None
        times.append((time.perf_counter() - t0) / n)
    sync()
    return sorted(times)[trials // 2] * 1e6


def hbm_bytes(op, M, N, bytes_per):
    """Forward + backward bytes of the fused op by ops/norm/cost.py (the floor every impl
    could reach)."""
    from ncd.ops.norm import cost

    kw = dict(rms=op != "layer_norm", residual=op == "add_rms_norm", affine=op != "l2_norm")
    return cost.io_forward(M, N, bytes_per, **kw) + cost.io_backward(M, N, bytes_per, **kw)


def prepare(op, impl, M, N, dtype_name, device, backend="auto"):
    """(row, timers, step, inputs): the row holds one call's errors against float32; the
    timers are the forward, forward + backward and host-time measurements as functions of no
    arguments, for `interleaved` to run in turn with the other implementations'; step is one
    forward + backward of the inputs."""
    import torch

    dtype = getattr(torch, dtype_name)
    fn = implementation(op, impl, backend)
    args, cots = inputs(op, M, N, dtype, device)
    for a in args:
        a.requires_grad_()
    row = {"op": op, "impl": impl, "M": M, "N": N, "dtype": dtype_name}
    outs = fn(*args)
    grads = torch.autograd.grad(outs, args, cots)
    ref_args = [a.detach().float().requires_grad_() for a in args]
    ref_outs = torch_form(op)(*ref_args)
    ref_grads = torch.autograd.grad(ref_outs, ref_args, [c.float() for c in cots])
    names = PARTS[op]
    errs = [rel_rms(o, r) for o, r in zip(outs, ref_outs)]
    errs += [rel_rms(g, r) for g, r in zip(grads, ref_grads)]
    row["rel_err"] = max(errs)
    row["rel_err_parts"] = dict(zip(names, errs))
    del outs, grads, ref_args, ref_outs, ref_grads
    bench = timer(device)

    def forward():
        fn(*args)

    def step():
        torch.autograd.backward(fn(*args), cots)

    timers = {
        "fwd_ms": lambda: bench(forward, None),
        "fwdbwd_ms": lambda: bench(step, args),
        "host_fwd_us": lambda: host_us(forward, args, device),
        "host_fwdbwd_us": lambda: host_us(step, args, device),
    }
    return row, timers, step, args


def measure(op, M, N, impls, dtype, device, backend, rounds):
    """One row per implementation of op at M x N, their timings taken in `rounds` interleaved
    rounds (profiling.interleaved), each figure the median over the rounds."""
    import torch
    from profiling import interleaved, median, peak_mib

    rows, timers, steps = [], {}, {}
    for impl in impls:
        try:
            row, ts, step, args = prepare(op, impl, M, N, dtype, device, backend)
        except Exception as e:  # noqa: BLE001 - recorded in the row, the run goes on
            row, ts = {"op": op, "impl": impl, "M": M, "N": N, "dtype": dtype,
                       "error": f"{type(e).__name__}: {e}"}, {}  # fmt: skip
        else:
            steps[impl] = (step, args)
        rows.append(row)
        timers.update({(impl, field): t for field, t in ts.items()})
    errors = {}
    for (impl, field), values in interleaved(timers, rounds, errors).items():
        row = next(r for r in rows if r["impl"] == impl)
        row[field] = median(values)
        if field in ("fwd_ms", "fwdbwd_ms"):  # each round's, for the paired ratios
            row.setdefault("rounds_ms", {})[field.removesuffix("_ms")] = values
    for (impl, field), e in errors.items():  # recorded in the row, the run goes on
        next(r for r in rows if r["impl"] == impl)["error"] = f"{field}: {type(e).__name__}: {e}"
        steps.pop(impl, None)
    for row in rows:
        if row["impl"] not in steps:
            continue
        step, args = steps[row["impl"]]
        for a in args:
            a.grad = None
        if device == "cuda":
            row["peak_mib"] = peak_mib(step)
        bytes_per = getattr(torch, dtype).itemsize
        row["fwdbwd_gbps"] = hbm_bytes(op, M, N, bytes_per) / (row["fwdbwd_ms"] * 1e6)
    return rows


def ratios(rows):
    """Adds vs_torch and vs_compile (their forward + backward time over ncd's, the median of
    each round's ratio) and fwd_vs_* (the same of the forward) to ncd rows."""
    from profiling import paired_ratio

    by = {(r["op"], r["impl"], r["M"], r["N"]): r for r in rows if "rounds_ms" in r}
    for (op, impl, M, N), r in by.items():
        if impl != "ncd":
            continue
        for other, field in (("torch", "vs_torch"), ("torch_compile", "vs_compile")):
            o = by.get((op, other, M, N))
            if o is not None:
                theirs, ours = o["rounds_ms"], r["rounds_ms"]
                r[field] = paired_ratio(theirs["fwdbwd"], ours["fwdbwd"])
                r[field.replace("vs_", "fwd_vs_")] = paired_ratio(theirs["fwd"], ours["fwd"])


def run(args):
    import torch
    import triton

    _DRY["on"] = args.dry_run
    if args.programs_per_sm:
        from ncd.ops.norm import rowwise

        rowwise.PROGRAMS_PER_SM = args.programs_per_sm
    device = "cpu" if args.dry_run else "cuda"
    shapes = DRY_SHAPES if args.dry_run else args.shapes
    dtype = "float32" if args.dry_run else args.dtype
    args.rounds = args.rounds or (1 if args.dry_run else 5)
    rows = []
    for op in args.ops:
        for M, N in shapes:
            for row in measure(op, M, N, args.impls, dtype, device, args.backend, args.rounds):
                rows.append(row)
                print(json.dumps(row), flush=True)
    ratios(rows)
    meta = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)",
        "date": datetime.date.today().isoformat(),
        "commit": commit(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "programs_per_sm": args.programs_per_sm or "default",
        "rounds": args.rounds,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
    for r in rows:
        if r["impl"] == "ncd" and "vs_torch" in r:
            print(f"# {r['op']} {r['M']}x{r['N']}: fwd+bwd {r['fwdbwd_ms']:.3f} ms, "
                  f"x{r['vs_torch']:.2f} eager, x{r.get('vs_compile', float('nan')):.2f} compile, "
                  f"{r['fwdbwd_gbps']:.0f} GB/s, rel_err {r['rel_err']:.2e}, host "
                  f"{r['host_fwd_us']:.0f} / {r['host_fwdbwd_us']:.0f} us")  # fmt: skip
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", type=lambda s: s.split(","), default=OPS)
    p.add_argument("--impls", type=lambda s: s.split(","), default=IMPLS)
    p.add_argument(
        "--shapes",
        type=lambda s: [tuple(int(v) for v in t.split("x")) for t in s.split(",")],
        default=SHAPES,
        help="rows x features, comma separated: 4096x4096,16384x4096",
    )
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--backend", default="auto", help="ncd's backend (auto, triton, reference)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="the CPU, float32, tiny shapes, torch.compile's eager backend: checks the plumbing",
    )
    p.add_argument(
        "--programs-per-sm",
        type=int,
        default=0,
        help="ncd's backward programs per multiprocessor (rowwise.PROGRAMS_PER_SM; 0: default)",
    )
    p.add_argument(
        "--rounds", type=int, default=None,
        help="interleaved rounds of every implementation's timings (5; dry run 1)",
    )  # fmt: skip
    p.add_argument("--out")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    main()
