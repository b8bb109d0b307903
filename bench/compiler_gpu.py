"""Compiler benchmark on the GPU, bf16: compiled gallery blocks against the same blocks written
by hand in PyTorch, side by side (interleaved) in one run, after checking the outputs agree.
Target: ncd / torch <= 1.0 (within noise) at every shape, forward and forward + backward.

    python3 bench/compiler_gpu.py --out DIR [--blocks transformer_block,mlp] [--reps 50] [--dry]

Blocks (`op`, `--blocks`, default all):
  transformer_block    the pre-norm block; hand-written: nanoGPT-style Block
  multihead_attention  the four projections around attention; hand-written: SDPA
  mlp                  the MLP image recogniser over B·T images of Y x X pixels (each token
                       position one image, so its sizes follow the shapes' B and T)
  transformer          the decoder stack (embedding, N causal blocks, norm, unembedding);
                       hand-written: nanoGPT-style stack, SDPA with is_causal=True
each at the three SHAPES (EXTRA adds vocabulary W, layers N, image Y x X and classes C; a block
whose sizes repeat an earlier shape's is measured once).

Rows (`impl`): "ncd" (the default compile, `ncd.compile(c, sizes=..., device=...)`), "torch"
(the hand-written block with F.scaled_dot_product_attention; the reference of the ratios); for
transformer_block also "ncd_sdpa" (rewrites on, fused="torch"), "ncd_primitives" (no
rewrites) and "torch_explicit" (hand-written, softmax(q kᵀ) v); for transformer_block and
transformer also "ncd_norm" (the default compile with the norms on ncd.ops' kernels, where
compiler/choices.py keeps torch's). Every row's output is compared
with "torch" (rel RMS) before timing; a row over TOL is reported and the script exits 1 after
writing the results. `--dry` runs tiny shapes in float32 on the CPU to check the script itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compiler_common import (  # noqa: E402
    GPT,
    MLP,
    Block,
    MultiheadAttention,
    interleaved,
    load_from_compiled,
    load_gpt,
    load_mha,
    load_mlp,
    meta,
    write,
)

from ncd import gallery  # noqa: E402
from ncd.compiler import choices  # noqa: E402
from ncd.compiler import compile as ncd_compile  # noqa: E402

SHAPES = [
    {"B": 8, "T": 1024, "H": 16, "K": 64, "V": 64, "F": 4096},
    {"B": 4, "T": 4096, "H": 16, "K": 64, "V": 64, "F": 4096},
    {"B": 4, "T": 4096, "H": 8, "K": 128, "V": 128, "F": 4096},
]
# Sizes the shapes do not name: vocabulary W and layers N (transformer), image Y x X and
# classes C (mlp).
EXTRA = {"W": 8192, "N": 4, "Y": 32, "X": 32, "C": 1000}
DRY = [{"B": 2, "T": 64, "H": 2, "K": 16, "V": 16, "F": 64}]
DRY_EXTRA = {"W": 64, "N": 2, "Y": 4, "X": 4, "C": 10}
BLOCKS = ("transformer_block", "multihead_attention", "mlp", "transformer")
# Largest rel RMS of a row's output against "torch" that counts as agreeing, per dtype.
TOL = {torch.bfloat16: 2e-2, torch.float32: 1e-4}


def rel_rms(a, b) -> float:
    a, b = a.float(), b.float()
    err = ((a - b).square().mean().sqrt() / b.square().mean().sqrt().clamp_min(1e-12)).item()
    return err if err == err else float("inf")  # NaN would pass every `<`


def sizes_for(op: str, shape: dict, extra: dict) -> dict:
    """The sizes the gallery circuit `op` is compiled at for one benchmark shape: each of its
    free sizes taken from the shape or EXTRA; the mlp's batch B is the shape's B·T."""
    pool = dict(shape, **extra)
    if op == "mlp":
        pool["B"] = shape["B"] * shape["T"]
    free = gallery.get(op).sizes
    missing = [a for a in free if a not in pool]
    if missing:
        raise KeyError(f"{op}: sizes {missing} are in neither the shape {shape} nor {extra}")
    return {a: pool[a] for a in free}


def compile_choosing(c, device, kind: str, impl: str, **kw):
    """ncd.compile with box kind `kind` on `impl` ("ncd" or "torch") on `device`'s type
    instead of compiler/choices.py's entry, the other kinds as the table has them."""
    table = choices.FASTEST.setdefault(kind, {})
    dev = str(device).split(":")[0]
    saved = table.get(dev)
    table[dev] = impl
    try:
        return ncd_compile(c, device=device, **kw)
    finally:
        if saved is None:
            del table[dev]
        else:
            table[dev] = saved


def torch_norm_calls(model) -> int | None:
    """How many times a compiled model's forward (its blocks' included) calls a torch norm
    module (nn.LayerNorm, nn.RMSNorm) rather than ncd.ops' norm functions; None for a
    hand-written model."""
    if getattr(model, "code", None) is None:
        return None
    calls = 0
    for m in model.modules():
        code = getattr(m, "code", None)
        if code is None:
            continue
        for name, child in m.named_children():
            if isinstance(child, (torch.nn.LayerNorm, torch.nn.RMSNorm)):
                calls += code.count(f"self.{name}(")
    return calls


def build(op: str, sizes: dict, device) -> tuple[dict, object]:
    """The compiled models and the hand-written ones (weights loaded from "ncd" by name) for
    `op` at `sizes`, in timing order, and the input they all take (on the CPU: run_block moves
    the hand-written models and the input to the device)."""
    c, s = gallery.get(op), sizes
    torch.manual_seed(0)
    ncd = ncd_compile(c, sizes=s, device=device)
    models = {"ncd": ncd}
    if op == "transformer_block":
        d = s["H"] * s["K"]
        models["ncd_sdpa"] = ncd_compile(c, sizes=s, device=device, rewrites=True, fused="torch")
        models["ncd_primitives"] = ncd_compile(c, sizes=s, device=device, rewrites=False)
        models["ncd_norm"] = compile_choosing(c, device, "norm", "ncd", sizes=s)
        for m in models.values():
            m.load_state_dict(ncd.state_dict())
        models["torch"] = load_from_compiled(Block(d, s["H"], s["F"], sdpa=True), ncd)
        models["torch_explicit"] = load_from_compiled(Block(d, s["H"], s["F"], sdpa=False), ncd)
        x = torch.randn(s["B"], s["T"], d)
    elif op == "multihead_attention":
        d = s["H"] * s["K"]
        models["torch"] = load_mha(MultiheadAttention(d, s["H"], sdpa=True), ncd)
        x = torch.randn(s["B"], s["T"], d)
    elif op == "mlp":
        models["torch"] = load_mlp(MLP(s["Y"] * s["X"], s["F"], s["C"]), ncd)
        x = torch.randn(s["B"], s["Y"], s["X"])
    elif op == "transformer":
        d = s["H"] * s["K"]
        models["ncd_norm"] = compile_choosing(c, device, "norm", "ncd", sizes=s)
        models["ncd_norm"].load_state_dict(ncd.state_dict())
        models["torch"] = load_gpt(GPT(s["W"], d, s["H"], s["F"], s["N"]), ncd)
        x = torch.randint(0, s["W"], (s["B"], s["T"]))
    else:
        raise ValueError(f"block: expected one of {', '.join(BLOCKS)}, found {op!r}")
    return models, x


def run_block(op, sizes, device, dtype, reps, backward) -> list[dict]:
    models, x = build(op, sizes, device)
    for k in models:
        models[k] = models[k].to(device=device, dtype=dtype).eval()
    x = x.to(device=device, dtype=dtype if x.is_floating_point() else x.dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.no_grad():
        ref = models["torch"](x)
        errs = {k: rel_rms(m(x), ref) for k, m in models.items()}
        fwd = interleaved({k: (lambda m=m: m(x)) for k, m in models.items()}, reps, sync=sync)
    both = {}
    if backward:
        xg = x.clone().requires_grad_(True) if x.is_floating_point() else x
        dy = torch.randn_like(ref)

        def step(m):
            m.zero_grad(set_to_none=True)
            m(xg).backward(dy)

        both = interleaved({k: (lambda m=m: step(m)) for k, m in models.items()}, reps, sync=sync)
    rows = []
    base = fwd["torch"][0]
    shape = dict(sizes, D=sizes["H"] * sizes["K"]) if "H" in sizes else dict(sizes)
    for k in models:
        row = {
            "op": op,
            "impl": k,
            "dtype": str(dtype).replace("torch.", ""),
            "shape": shape,
            "fwd_ms": round(fwd[k][0], 4),
            "fwd_ms_min": round(fwd[k][1], 4),
            "ratio_vs_torch": round(fwd[k][0] / base, 4),
            "rel_rms_vs_torch": errs[k],
            "torch_norm_calls": torch_norm_calls(models[k]),
        }
        if both:
            row["fwdbwd_ms"] = round(both[k][0], 4)
            row["fwdbwd_ratio_vs_torch"] = round(both[k][0] / both["torch"][0], 4)
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--blocks", default=",".join(BLOCKS), help="comma list (default: all)")
    p.add_argument("--no-backward", action="store_true", help="forward only")
    p.add_argument("--dry", action="store_true", help="tiny shapes on the CPU (script check)")
    args = p.parse_args()
    blocks = [b.strip() for b in args.blocks.split(",") if b.strip()]
    unknown = [b for b in blocks if b not in BLOCKS]
    if unknown or not blocks:
        p.error(f"--blocks: expected names from {', '.join(BLOCKS)}, found {args.blocks!r}")
    if args.dry:
        device, dtype, shapes, extra = "cpu", torch.float32, DRY, DRY_EXTRA
        stem = "compiler_gpu_dry"
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device; use --dry to check the script on the CPU")
        device, dtype, shapes, extra, stem = "cuda", torch.bfloat16, SHAPES, EXTRA, "compiler_gpu"
    rows, bad = [], []
    for op in blocks:
        done = []
        for shape in shapes:
            sizes = sizes_for(op, shape, extra)
            label = " ".join(f"{a}={n}" for a, n in sizes.items())
            if sizes in done:
                print(f"{op} {label}: same sizes as an earlier shape, measured once")
                continue
            done.append(sizes)
            got = run_block(op, sizes, device, dtype, args.reps, not args.no_backward)
            rows += got
            print(f"{op} {label}")
            for r in got:
                extra_col = f"  fwd+bwd {r['fwdbwd_ms']:8.3f} ms" if "fwdbwd_ms" in r else ""
                ratio = f" x{r['fwdbwd_ratio_vs_torch']:.3f}" if "fwdbwd_ms" in r else ""
                print(
                    f"  {r['impl']:15} fwd {r['fwd_ms']:8.3f} ms x{r['ratio_vs_torch']:.3f}"
                    f"{extra_col}{ratio}  err {r['rel_rms_vs_torch']:.1e}"
                    f"  torch norms {r['torch_norm_calls']}"
                )
                if not r["rel_rms_vs_torch"] <= TOL[dtype]:
                    bad.append(f"{op} {label} {r['impl']}: rel RMS {r['rel_rms_vs_torch']:.2e}")
            if device == "cuda":
                torch.cuda.empty_cache()
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)"
    path = write(args.out, stem, {"meta": meta(name), "rows": rows})
    print(f"wrote {path}")
    if bad:
        sys.exit(f"outputs disagree with the hand-written block (rel RMS > {TOL[dtype]}):\n  "
                 + "\n  ".join(bad))  # fmt: skip


if __name__ == "__main__":
    main()
