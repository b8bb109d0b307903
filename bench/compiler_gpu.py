"""Compiler benchmark on the GPU, bf16: the compiled transformer_block (pattern rewrites on, so
attention runs ncd.ops' fused kernel) against hand-written PyTorch blocks, side by side
(interleaved) in one run, after checking the outputs agree. Target: ncd / torch-SDPA <= 1.0.

    python3 bench/compiler_gpu.py --out DIR [--reps 50] [--dry]

Rows (`impl`): "ncd" (default compile on CUDA: rewrites on, ncd.ops kernels), "ncd_sdpa"
(rewrites on, PyTorch's SDPA for the fused box), "ncd_primitives" (no rewrites),
"torch" (hand-written block, F.scaled_dot_product_attention), "torch_explicit" (hand-written,
softmax(q kᵀ) v). `--dry` runs tiny shapes on the CPU to check the script itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compiler_common import Block, interleaved, load_from_compiled, meta, write  # noqa: E402

from ncd import gallery  # noqa: E402
from ncd.compiler import compile as ncd_compile  # noqa: E402

SHAPES = [
    {"B": 8, "T": 1024, "H": 16, "K": 64, "V": 64, "F": 4096},
    {"B": 4, "T": 4096, "H": 16, "K": 64, "V": 64, "F": 4096},
    {"B": 4, "T": 4096, "H": 8, "K": 128, "V": 128, "F": 4096},
]
DRY = [{"B": 2, "T": 64, "H": 2, "K": 16, "V": 16, "F": 64}]


def rel_rms(a, b) -> float:
    a, b = a.float(), b.float()
    err = ((a - b).square().mean().sqrt() / b.square().mean().sqrt().clamp_min(1e-12)).item()
    return err if err == err else float("inf")  # NaN would pass every `<`


def run_shape(shape, device, dtype, reps, backward) -> list[dict]:
    c = gallery.get("transformer_block")
    d = shape["H"] * shape["K"]
    torch.manual_seed(0)
    models = {
        "ncd": ncd_compile(c, sizes=shape, device=device),
        "ncd_sdpa": ncd_compile(c, sizes=shape, device=device, rewrites=True, fused="torch"),
        "ncd_primitives": ncd_compile(c, sizes=shape, device=device, rewrites=False),
    }
    state = models["ncd"].state_dict()
    for m in models.values():
        m.load_state_dict(state)
    models["torch"] = load_from_compiled(Block(d, shape["H"], shape["F"], sdpa=True), models["ncd"])
    models["torch_explicit"] = load_from_compiled(
        Block(d, shape["H"], shape["F"], sdpa=False), models["ncd"]
    )
    for k in models:
        models[k] = models[k].to(device=device, dtype=dtype).eval()
    x = torch.randn(shape["B"], shape["T"], d, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.no_grad():
        ref = models["torch"](x)
        errs = {k: rel_rms(m(x), ref) for k, m in models.items()}
        fwd = interleaved({k: (lambda m=m: m(x)) for k, m in models.items()}, reps, sync=sync)
    both = {}
    if backward:
        xg = x.clone().requires_grad_(True)
        dy = torch.randn_like(ref)

        def step(m):
            m.zero_grad(set_to_none=True)
            m(xg).backward(dy)

        both = interleaved({k: (lambda m=m: step(m)) for k, m in models.items()}, reps, sync=sync)
    rows = []
    base = fwd["torch"][0]
    for k in models:
        row = {
            "op": "transformer_block",
            "impl": k,
            "dtype": str(dtype).replace("torch.", ""),
            "shape": dict(shape, D=d),
            "fwd_ms": round(fwd[k][0], 4),
            "fwd_ms_min": round(fwd[k][1], 4),
            "ratio_vs_torch": round(fwd[k][0] / base, 4),
            "rel_rms_vs_torch": errs[k],
        }
        if both:
            row["fwdbwd_ms"] = round(both[k][0], 4)
            row["fwdbwd_ratio_vs_torch"] = round(both[k][0] / both["torch"][0], 4)
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--no-backward", action="store_true", help="forward only")
    p.add_argument("--dry", action="store_true", help="tiny shapes on the CPU (script check)")
    args = p.parse_args()
    if args.dry:
        device, dtype, shapes, stem = "cpu", torch.float32, DRY, "compiler_gpu_dry"
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device; use --dry to check the script on the CPU")
        device, dtype, shapes, stem = "cuda", torch.bfloat16, SHAPES, "compiler_gpu"
    rows = []
    for shape in shapes:
        got = run_shape(shape, device, dtype, args.reps, not args.no_backward)
        rows += got
        for r in got:
            extra = f"  fwd+bwd {r['fwdbwd_ms']:.3f} ms" if "fwdbwd_ms" in r else ""
            print(
                f"T={shape['T']:5} H={shape['H']:2} K={shape['K']:3} {r['impl']:15} "
                f"fwd {r['fwd_ms']:8.3f} ms  x{r['ratio_vs_torch']:.3f} vs torch  "
                f"err {r['rel_rms_vs_torch']:.1e}{extra}"
            )
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)"
    path = write(args.out, stem, {"meta": meta(name), "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
