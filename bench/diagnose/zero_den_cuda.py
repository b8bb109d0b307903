"""Normalised linear attention (`normalize=True`) on CUDA with rows whose denominator is exactly
0: ReLU features, queries with no nonzero feature and leading keys that are all zero. Such a row
reads 0 and passes no gradient (`ops/linear_attention/README.md`). The Triton kernels in
float16 and bfloat16 against a float64 token-by-token loop of that definition on the CPU:
every output and gradient finite, relative RMS error within the op's bound, the empty rows
0 with zero dq. One line per case.

    PYTHONPATH=. python3 bench/diagnose/zero_den_cuda.py [--dtypes float16,bfloat16] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys

import torch

from ncd.ops import linear_attention

BOUND = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 5e-3}
SCALE = 0.5


def reference(q, k, v, decay):
    """float64, one token at a time: S_t = lam S + k^T v, z_t = lam z + k,
    o_t = c q S_t / (c q . z_t + 1e-10), and 0 (a constant) where c q . z_t = 0."""
    B, T, H, K = q.shape
    lam = torch.ones(H, dtype=torch.float64) if decay is None else decay.double()
    S = q.new_zeros(B, H, K, v.shape[-1])
    z = q.new_zeros(B, H, K)
    outs = []
    for t in range(T):
        qt, kt, vt = q[:, t], k[:, t], v[:, t]
        S = lam[:, None, None] * S + kt[..., :, None] * vt[..., None, :]
        z = lam[:, None] * z + kt
        num = SCALE * torch.einsum("bhk,bhkv->bhv", qt, S)
        den = SCALE * (qt * z).sum(-1, keepdim=True)
        empty = den == 0
        outs.append(torch.where(empty, 0.0, num / torch.where(empty, 1.0, den + 1e-10)))
    return torch.stack(outs, 1)


def rel_rms(x, ref):
    x, ref = x.detach().double().cpu(), ref.detach().double().cpu()
    return float((x - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30))


def case(dev, dtype, T, K, use_decay, seed=0):
    g = torch.Generator().manual_seed(seed)
    B, H = 2, 4
    q, k = (torch.relu(torch.randn(B, T, H, K, generator=g)) for _ in "qk")
    v = torch.randn(B, T, H, K, generator=g)
    empty_rows = [5, 70, T - 1]  # queries with no feature, in three chunks
    q[:, empty_rows] = 0
    k[:, :3] = 0  # before the first nonzero key z = 0, whatever the query
    decay = (0.8 + 0.2 * torch.rand(H, generator=g)) if use_decay else None
    do = torch.randn(B, T, H, K, generator=g).to(dtype)
    xs = [x.to(dtype).to(dev).requires_grad_() for x in (q, k, v)]
    o, _ = linear_attention(*xs, decay=None if decay is None else decay.to(dev), normalize=True,
                            scale=SCALE)  # fmt: skip
    grads = torch.autograd.grad(o, xs, do.to(dev))
    ref_in = [x.detach().cpu().double().requires_grad_() for x in xs]
    o_ref = reference(*ref_in, decay)
    ref_grads = torch.autograd.grad(o_ref, ref_in, do.double())
    errs, ok = {}, True
    for name, x, ref in zip(["o", "dq", "dk", "dv"], [o, *grads], [o_ref, *ref_grads]):
        finite = bool(x.isfinite().all())
        errs[name] = rel_rms(x, ref) if finite else float("nan")
        ok &= finite and errs[name] <= BOUND[dtype]
    ok &= bool((o[:, empty_rows] == 0).all()) and bool((grads[0][:, empty_rows] == 0).all())
    return ok, errs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtypes", default="float16,bfloat16")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args(argv)
    failed = 0
    for dtype in (getattr(torch, d) for d in args.dtypes.split(",")):
        for T, K in [(200, 64), (300, 128)]:
            for use_decay in (False, True):
                ok, errs = case(args.device, dtype, T, K, use_decay)
                failed += not ok
                e = " ".join(f"{n} {v:.2e}" for n, v in errs.items())
                print(f"{'ok  ' if ok else 'FAIL'} {str(dtype)[6:]:8} T={T} K={K} "
                      f"decay={use_decay}: {e}", flush=True)  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
