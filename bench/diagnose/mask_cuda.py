"""The attention box's `mask` port compiled for CUDA (SDPA's fused kernels) against the same
circuit in float64 on the CPU: causal with left padding (query rows with no key left, which
must be 0 with zero gradients), a float bias with a -inf row and its own gradient, a keep-mask
per query head over grouped key/value heads. One line per case and dtype.

    PYTHONPATH=. python3 bench/diagnose/mask_cuda.py [--dtypes float32,bfloat16] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys

import torch

from ncd.circuits.builder import Builder
from ncd.compiler import compile as ncd_compile

SIZES = {"B": 2, "H": 4, "G": 2, "T": 64, "S": 64, "K": 64, "V": 64}
BOUND = {torch.float32: 5e-3, torch.float16: 1e-2, torch.bfloat16: 2e-2}


def _circuit(mask_axes: str, dtype: str, **fields):
    b = Builder("masked", sizes=SIZES)
    kv = fields.get("kv_heads", "H")
    q, k, v = b.input("q", "B H T K"), b.input("k", f"B {kv} S K"), b.input("v", f"B {kv} S V")
    m = b.input("m", mask_axes, dtype=dtype)
    b.output("y", b.attention(q, k, v, mask=m, name="att", **fields))
    return b.build()


def _cases():
    gen = torch.Generator().manual_seed(0)
    keep = torch.ones(2, 64, dtype=torch.bool)
    keep[1, :3] = False  # with causal: queries 0..2 of row 1 see no key
    bias = torch.randn(64, 64, generator=gen, dtype=torch.float64)
    bias[2] = float("-inf")
    heads = torch.rand(2, 4, 64, 64, generator=gen) < 0.7
    return [
        ("causal, left padding", _circuit("B S", "bool", causal=True), keep, "H", (1, slice(0, 3))),
        ("float bias, a -inf row", _circuit("T S", "float32"), bias, "H", (slice(None), 2)),
        (
            "grouped heads, keep per head",
            _circuit("B H T S", "bool", heads="H", kv_heads="G"),
            heads,
            "G",
            None,
        ),
    ]


def _rel(a, b):
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / max(float(b.norm()), 1e-30))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--device", default="cuda", help="cpu: the same check of the CPU forms")
    args = p.parse_args()
    failed = 0
    for dname in args.dtypes.split(","):
        dtype = getattr(torch, dname)
        for name, c, mask, kv, empty in _cases():
            gen = torch.Generator().manual_seed(1)
            n = {"H": 4, "G": 2}[kv]
            xs = [torch.randn(2, h, 64, 64, generator=gen, dtype=torch.float64) for h in (4, n, n)]
            m64 = mask.clone()
            ref = ncd_compile(c, dtype=torch.float64)
            leaves = [x.clone().requires_grad_() for x in xs]
            if m64.is_floating_point():
                m64.requires_grad_()
                leaves.append(m64)
            want = ref(*leaves[:3], m64)
            w = torch.randn(want.shape, generator=gen, dtype=torch.float64)
            g_want = torch.autograd.grad((want * w).sum(), leaves)
            mod = ncd_compile(c, dtype=dtype, device=args.device)
            got_leaves = [x.to(args.device, dtype).requires_grad_() for x in xs]
            mc = mask.to(args.device, dtype if mask.is_floating_point() else mask.dtype)
            if mc.is_floating_point():
                mc.requires_grad_()
                got_leaves.append(mc)
            got = mod(*got_leaves[:3], mc)
            g_got = torch.autograd.grad((got.float() * w.to(args.device)).sum(), got_leaves)
            errs = {"y": _rel(got, want)}
            errs.update({f"d{i}": _rel(a, b) for i, (a, b) in enumerate(zip(g_got, g_want))})
            finite = all(bool(torch.isfinite(t).all()) for t in (got, *g_got))
            zero = empty is None or bool((got[empty[0], :, empty[1]] == 0).all())
            ok = finite and zero and all(e <= BOUND[dtype] for e in errs.values())
            failed += not ok
            worst = max(errs, key=errs.get)
            verdict = "ok  " if ok else "FAIL"
            print(f"{name:32s} {dname:9s} {verdict} worst {worst} {errs[worst]:.2e}, "
                  f"finite {finite}, empty rows 0 {zero}", flush=True)  # fmt: skip
    print(f"{failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
