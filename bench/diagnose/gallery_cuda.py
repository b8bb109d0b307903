"""Every gallery entry compiled for CUDA (the op library's kernels where the compiler picks
them) against the same weights on the CPU in float64: the relative RMS error of each output
and of the parameters' gradients, in float32 (and bfloat16 with --dtypes). One line per entry
and dtype, `ok` within the bound; an entry that fails says why and the rest go on.
With --baseline, the same entry's CPU form in the same dtype is measured too, and a tensor
also passes when its error is at most 1.5 times the CPU form's (16-bit rounding through a
block is the dtype's, not the kernels': what is left is what the CUDA lowering adds).

    PYTHONPATH=. python3 bench/diagnose/gallery_cuda.py [--names a,b] [--dtypes float32,bfloat16]
        [--fused auto|ncd|torch] [--baseline]
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

import torch

from ncd import gallery
from ncd.compiler import compile as ncd_compile
from ncd.compiler.examples import example_inputs

# float32 on CUDA may take TF32 products (cuDNN's convolutions do by default)
BOUND = {torch.float32: 5e-3, torch.bfloat16: 2e-2}
# entries whose weight gradients are estimates by design (sampled column-row pairs): their
# outputs are checked, not their gradients
ESTIMATED = {"wtacrs_linear"}


def _outputs(y, checked) -> dict:
    return y if isinstance(y, dict) else {next(iter(checked.outputs)): y}


def _rel(a: torch.Tensor, b: torch.Tensor, floor: float = 1e-30) -> float:
    """|a - b| / |b|, |b| taken at least `floor` (a gradient that is zero in exact arithmetic,
    as a key bias's under softmax, is measured against the largest gradient's size)."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / max(float(b.norm()), floor))


def errors(name: str, dtype: torch.dtype, device: str, fused: str = "auto") -> dict:
    """Relative error of each output and parameter gradient against float64 on the CPU."""
    torch.manual_seed(0)  # the same weights in every call, for the baseline's comparison
    c = gallery.get(name)
    checked = c.check()
    ref = ncd_compile(c, dtype=torch.float64)
    m = ncd_compile(c, dtype=dtype, device=device, fused=fused)
    m.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v
                       for k, v in ref.state_dict().items()})  # fmt: skip
    xs = example_inputs(checked, dtype=torch.float64)
    xg = [x.to(device, dtype) if x.is_floating_point() else x.to(device) for x in xs]
    want, got = _outputs(ref(*xs), checked), _outputs(m(*xg), checked)
    errs = {}
    for out, w in want.items():
        if w.is_floating_point():
            errs[out] = _rel(got[out], w)
        elif not torch.equal(got[out].cpu(), w):
            errs[out] = float("inf")
    floats = [(w, got[o]) for o, w in want.items() if w.is_floating_point() and w.requires_grad]
    if floats and name not in ESTIMATED:
        sum(w.square().mean() for w, _ in floats).backward()
        sum(g.float().square().mean() for _, g in floats).backward()
        params = dict(m.named_parameters())
        grads = {k: p.grad for k, p in ref.named_parameters() if p.grad is not None}
        floor = 1e-3 * max((float(g.norm()) for g in grads.values()), default=0.0)
        for k, g in grads.items():
            if g.norm() > 0:
                errs[f"d{k}"] = _rel(params[k].grad, g, floor)
    return errs


def check(name, dtype, device, fused="auto", baseline=False) -> tuple[bool, str]:
    errs = errors(name, dtype, device, fused)
    base = errors(name, dtype, "cpu") if baseline else {}
    bad = {k: e for k, e in errs.items()
           if e > BOUND[dtype] and not (k in base and e <= 1.5 * base[k])}  # fmt: skip
    worst = max(bad or errs, key=(bad or errs).get) if errs else "-"
    what = f"worst {worst} {errs.get(worst, 0):.2e} over {len(errs)} tensors"
    if worst in base:
        what += f" (cpu {base[worst]:.2e})"
    return not bad, what


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--names", default="", help="comma list (default: every entry)")
    p.add_argument("--dtypes", default="float32")
    p.add_argument("--device", default="cuda", help="cpu: the same check of the CPU forms")
    p.add_argument("--fused", default="auto", help="the compiler's fused option (auto, ncd, torch)")
    p.add_argument("--baseline", action="store_true", help="also measure the CPU form (above)")
    args = p.parse_args()
    names = args.names.split(",") if args.names else gallery.names()
    failed = 0
    for dname in args.dtypes.split(","):
        dtype = getattr(torch, dname)
        for name in names:
            t0 = time.perf_counter()
            try:
                ok, what = check(name, dtype, args.device, args.fused, args.baseline)
            except Exception as e:  # one entry's failure is reported, the rest still run
                ok, what = False, f"{type(e).__name__}: {e}"
                traceback.print_exc(limit=3, file=sys.stderr)
            failed += not ok
            took = time.perf_counter() - t0
            print(f"{name:28s} {dname:9s} {'ok  ' if ok else 'FAIL'} {what} ({took:.1f} s)",
                  flush=True)  # fmt: skip
    print(f"{failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
