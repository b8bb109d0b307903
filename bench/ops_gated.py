"""GPU benchmark of the gated linear-attention family against fla-core, side by side.

Ops: `linear_attention` (plain causal, ungated: the baseline the gates' cost is read against),
`simple_gla` (scalar log-decay per head and token), `gla` (per-key-channel log gates),
`delta_rule`, `gated_delta_rule`; `impl`: `ncd` (ncd.ops), `fla` (fla-core's chunk_* kernel),
`naive` (the token-by-token PyTorch recurrence, only at short T). For each op and T, every
implementation is run in a child process under a time limit (an anchor that autotunes for
minutes or hangs is recorded as such, not waited on), checked against a float32 reference on
batch 0 and the first heads (relative RMS error of the output and of every gradient), then
timed with `triton.testing.do_bench` medians (forward, forward + backward) and its peak extra
memory of one forward + backward measured. Rows follow bench/README.md's JSON format.

fla-core 0.6.0 refuses the backward of its gated kernels (simple_gla, gated delta rule) under
Triton 3.4-3.7.0 on Hopper, for a miscompile it reports in its gated dq/dk/dg kernel.
`--fla-lift-guard` lifts that refusal, so that those rows carry fla's times beside the errors
of its gradients against the float32 reference (the row says `guard_lifted`): the ratio is
read against an anchor whose own check is in the same row.

`--variants default,delta_prepared_qk,...` times ncd under each set of ops switches (`+`
joins switches turned on together, `name=0` turns one off, `default` changes none) in one
child process, the variants in a rotating order at each T, so that their ratios are read
side by side; each row names its variant and is checked like the others.

    PYTHONPATH=. python3 bench/ops_gated.py --out $OUT/ops_gated.json [--ops gla,delta_rule]
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: results_meta
from results_meta import commit  # noqa: E402

OPS = ["linear_attention", "simple_gla", "gla", "delta_rule", "gated_delta_rule"]
FLA = {
    "linear_attention": ("fla.ops.linear_attn", "chunk_linear_attn"),
    "simple_gla": ("fla.ops.simple_gla", "chunk_simple_gla"),
    "gla": ("fla.ops.gla", "chunk_gla"),
    "delta_rule": ("fla.ops.delta_rule", "chunk_delta_rule"),
    "gated_delta_rule": ("fla.ops.gated_delta_rule", "chunk_gated_delta_rule"),
}
NAIVE_MAX_T = 2048
REF_HEADS = 2


def inputs(op, B, T, H, K, dtype, seed=0):
    """q, k unit rows (as DeltaNet's L2-normalised keys; keeps outputs O(1) at every T), gates
    from a log-sigmoid as the papers' gate projections give them, beta in (0, 1)."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator(device="cuda").manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, device="cuda", generator=g)

    q = F.normalize(rnd(B, T, H, K), dim=-1).to(dtype)
    k = F.normalize(rnd(B, T, H, K), dim=-1).to(dtype)
    v = rnd(B, T, H, K).to(dtype)
    extra = {}
    if op == "gla":
        extra["g"] = (F.logsigmoid(rnd(B, T, H, K)) / 16).to(dtype)
    if op in ("simple_gla", "gated_delta_rule"):
        extra["g"] = (F.logsigmoid(rnd(B, T, H)) / 16).to(dtype)
    if op in ("delta_rule", "gated_delta_rule"):
        extra["beta"] = torch.sigmoid(rnd(B, T, H)).to(dtype)
    do = rnd(B, T, H, K).to(dtype)
    return q, k, v, extra, do


def implementation(op, impl, lift_guard=False):
    """fn(q, k, v, **extra) -> o for impl, and the float32 reference of the same maths."""
    import importlib

    import ncd.ops as ops

    family = {"gated_delta_rule": "delta_rule"}.get(op, op)
    ours = getattr(importlib.import_module(f"ncd.ops.{family}"), op)
    reference = getattr(importlib.import_module(f"ncd.ops.{family}.reference"), f"{op}_reference")
    del ops
    if impl == "ncd":
        return (lambda q, k, v, **x: ours(q, k, v, **x)[0]), reference
    if impl == "fla":
        module, name = FLA[op]
        fn = getattr(importlib.import_module(module), name)
        if lift_guard:  # fla's version test for its gated backward, read at each call
            importlib.import_module("fla.ops.common.chunk_o").TRITON_ABOVE_3_7_1 = True
        if op == "linear_attention":  # fla's defaults normalise and scale by K^-0.5; ours do not
            return (lambda q, k, v: fn(q, k, v, scale=1.0, normalize=False)[0]), reference
        return (lambda q, k, v, **x: fn(q, k, v, **x)[0]), reference
    return (lambda q, k, v, **x: reference(q, k, v, **x)[0]), reference


def rel_rms(x, ref):
    err = ((x.double() - ref.double()).norm() / ref.double().norm()).item()
    return err if err == err else float("inf")  # NaN would pass every comparison


def one(op, impl, B, T, H, K, dtype_name, check, lift_guard=False):
    """Runs in the child: error, times and memory of one implementation at one size."""
    import torch
    from profiling import peak_mib
    from triton.testing import do_bench

    dtype = getattr(torch, dtype_name)
    fn, reference = implementation(op, impl, lift_guard)
    q, k, v, extra, do = inputs(op, B, T, H, K, dtype)
    leaves = [q, k, v, *extra.values()]
    for x in leaves:
        x.requires_grad_()
    row = {"op": op, "impl": impl, "B": B, "T": T, "H": H, "K": K, "dtype": dtype_name}
    if lift_guard and impl == "fla":
        row["guard_lifted"] = True
    o = fn(q, k, v, **extra)
    torch.cuda.synchronize()
    if check:
        grads = torch.autograd.grad(o, leaves, do)
        sl = (slice(0, 1), slice(None), slice(0, REF_HEADS))
        ref_leaves = [x.detach()[sl].float().requires_grad_() for x in leaves]
        rq, rk, rv, *rx = ref_leaves
        o_ref = reference(rq, rk, rv, **dict(zip(extra, rx)))[0]
        g_ref = torch.autograd.grad(o_ref, ref_leaves, do[sl].float())
        errs = [rel_rms(o[sl], o_ref)] + [rel_rms(g[sl], r) for g, r in zip(grads, g_ref)]
        row["rel_err"] = max(errs)
        row["rel_err_parts"] = dict(zip(["o", "dq", "dk", "dv", *[f"d{n}" for n in extra]], errs))
        del grads, ref_leaves, o_ref, g_ref
    del o
    row["fwd_ms"] = do_bench(lambda: fn(q, k, v, **extra), warmup=10, rep=50, return_mode="median")

    def step():
        fn(q, k, v, **extra).backward(do)

    row["fwdbwd_ms"] = do_bench(step, warmup=10, rep=50, grad_to_none=leaves, return_mode="median")
    for x in leaves:
        x.grad = None
    row["peak_mib"] = peak_mib(step)
    row["mtok_s"] = B * T / row["fwdbwd_ms"] / 1e3
    return row


def switches(variant):
    """The ops switches a variant sets: "default" none, "a+b" a and b on, "a=0" a off (the
    values the environment variables take)."""
    from ncd.ops.config import parse_switch

    if variant == "default":
        return {}
    parts = (part.partition("=") for part in variant.split("+"))
    return {
        name: parse_switch(value, f"variant {variant!r}") if sep else True
        for name, sep, value in parts
    }


def child(args):
    """Every T of one (op, impl), and for ncd every variant (a rotating order per T): prints
    one JSON row per line as soon as it is measured."""
    from ncd.ops import config as ops_config

    variants = args.variants if args.impl == "ncd" and args.variants else [None]
    for i, T in enumerate(args.T):
        if args.impl == "naive" and T > NAIVE_MAX_T:
            continue
        for variant in variants[i % len(variants) :] + variants[: i % len(variants)]:
            try:
                check = args.check_max_t >= T
                with ops_config.override(**switches(variant or "default")):
                    row = one(args.op, args.impl, args.B, T, args.H, args.K, args.dtype, check,
                              args.fla_lift_guard)  # fmt: skip
            except Exception as e:  # noqa: BLE001 - recorded in the row, the run goes on
                row = {"op": args.op, "impl": args.impl, "T": T,
                       "error": f"{type(e).__name__}: {e}"}  # fmt: skip
            if variant is not None:
                row["variant"] = variant
            print("ROW " + json.dumps(row), flush=True)


def parent(args):
    import torch
    import triton

    rows, notes = [], []
    for op in args.ops:
        for impl in args.impls:
            cmd = [sys.executable, __file__, "--child", "--op", op, "--impl", impl]
            cmd += ["--T", *map(str, args.T), "--B", str(args.B), "--H", str(args.H)]
            cmd += [
                "--K",
                str(args.K),
                "--dtype",
                args.dtype,
                "--check-max-t",
                str(args.check_max_t),
            ]
            cmd += ["--fla-lift-guard"] if args.fla_lift_guard else []
            cmd += ["--variants", ",".join(args.variants)] if args.variants else []
            start = time.time()
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.limit)
                out, status = done.stdout, f"rc={done.returncode}"
                err = done.stderr
            except subprocess.TimeoutExpired as e:
                out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else e.stdout or ""
                err = (e.stderr or b"").decode() if isinstance(e.stderr, bytes) else e.stderr or ""
                status = f"killed after {args.limit} s"
            got = [json.loads(line[4:]) for line in out.splitlines() if line.startswith("ROW ")]
            measured = {(r["T"], r.get("variant")) for r in got}
            variants = args.variants if impl == "ncd" and args.variants else [None]
            for T in args.T:
                for variant in variants:
                    if (T, variant) in measured or (impl == "naive" and T > NAIVE_MAX_T):
                        continue
                    row = {"op": op, "impl": impl, "T": T, "error": f"not measured ({status})"}
                    got.append(row if variant is None else {**row, "variant": variant})
            rows += got
            tail = err.strip().splitlines()[-3:]
            notes.append(
                {
                    "op": op,
                    "impl": impl,
                    "status": status,
                    "s": round(time.time() - start, 1),
                    "stderr_tail": tail,
                }
            )
            for r in got:
                print(json.dumps(r), flush=True)
            print(f"# {op} {impl}: {status} in {time.time() - start:.0f} s {tail}", flush=True)
    from ncd.ops import config as ops_config

    meta = {
        "device": torch.cuda.get_device_name(),
        "date": datetime.date.today().isoformat(),
        "commit": commit(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "config": ops_config.describe(),  # the ops switches, from the environment the children had
        "runs": notes,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", type=lambda s: s.split(","), default=OPS)
    p.add_argument("--impls", type=lambda s: s.split(","), default=["ncd", "fla", "naive"])
    p.add_argument("--T", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384, 32768])
    p.add_argument("--B", type=int, default=4)
    p.add_argument("--H", type=int, default=16)
    p.add_argument("--K", type=int, default=128)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--check-max-t", type=int, default=4096, help="check errors up to this T")
    p.add_argument("--limit", type=float, default=240, help="seconds per (op, impl) child")
    p.add_argument(
        "--fla-lift-guard",
        action="store_true",
        help="run fla's gated backward where it refuses this Triton on Hopper (rows say so)",
    )
    p.add_argument(
        "--variants",
        type=lambda s: s.split(","),
        help="ncd under these sets of ops switches, side by side (e.g. default,delta_keep_states)",
    )
    p.add_argument("--out")
    p.add_argument("--child", action="store_true")
    p.add_argument("--op")
    p.add_argument("--impl")
    args = p.parse_args()
    for given, known in ((args.ops, OPS), (args.impls, ["ncd", "fla", "naive"])):
        unknown = [name for name in given if name not in known]
        if unknown:
            p.error(f"unknown {', '.join(unknown)}: expected some of {', '.join(known)}")
    child(args) if args.child else parent(args)


if __name__ == "__main__":
    main()
