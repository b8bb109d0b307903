# ruff: noqa: B023 (closures called before the loop moves on)
"""int8 x int8 -> int32 matrix product on the GPU: the library's two kernels
(ops/ivit/matmul.py) tile by tile, beside the bf16 product and cuBLASLt's int8 product
(torch._int_mm) of the same shape (a tuning aid for their configurations, not a test).

    python3 bench/diagnose/int8_sweep.py [--rows 4096,16384] [--D 4096] [--variants lib_tma]

Variants, each over a list of tiles (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages): `lib`
the pointer kernel (one program per output tile); `lib_tma` the tensor-map kernel (one program
per SM, both operands read by the copy engine, b K-major as a weight [N, K]); `gluon` the
warp-specialized Gluon kernel over (BLOCK_N, stages, persistent, ahead). Each row: ms
(do_bench median), TOP/s, ratio to the bf16 product and to torch._int_mm, bit-exact against
torch._int_mm. The sweep that chose the tensor-map kernel (also a one-program-per-tile
variant, a staged tensor-map store and warp specialisation) is in
results/int8_sweep_2026-12-03.json and this file's history.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import triton
from triton.testing import do_bench
from triton.tools.tensor_descriptor import TensorDescriptor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: results_meta
from results_meta import commit  # noqa: E402

TILES = [
    (128, 256, 128, 8, 3), (128, 256, 128, 8, 4), (256, 128, 128, 8, 3), (256, 128, 128, 8, 4),
    (128, 128, 128, 4, 4), (128, 128, 128, 8, 5), (128, 256, 64, 8, 4), (128, 256, 64, 8, 5),
    (256, 128, 64, 8, 5), (128, 128, 256, 8, 3), (256, 256, 64, 8, 3), (256, 256, 128, 16, 3),
    (128, 256, 128, 8, 2), (256, 128, 128, 8, 2), (128, 128, 128, 4, 3), (128, 128, 128, 4, 5),
    (128, 128, 256, 8, 2), (128, 256, 128, 16, 3),
]  # fmt: skip


def lib_tma(a, w, tile):
    """The library's tensor-map kernel at one tile."""
    from ncd.ops.ivit import matmul as mm

    bm, bn, bk, warps, stages = tile
    M, K = a.shape
    N = w.shape[0]
    c = torch.empty(M, N, dtype=torch.int32, device=a.device)
    sms = torch.cuda.get_device_properties(a.device).multi_processor_count
    grid = (min(sms, triton.cdiv(M, bm) * triton.cdiv(N, bn)),)
    ad = TensorDescriptor(a, [M, K], [K, 1], [bm, bk])
    bd = TensorDescriptor(w, [N, K], [K, 1], [bn, bk])
    mm._int8_mm_tma_kernel[grid](
        ad, bd, c, c, c, c, 0, 0, M, N, K, *c.stride(), -128, 127, sms,
        HAS_BIAS=False, REQUANT=False, PER_CHANNEL=False, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk,
        GROUP_M=8, num_warps=warps, num_stages=stages,
    )  # fmt: skip
    return c


# The Gluon kernel (ops/ivit/matmul_gluon.py): (BLOCK_N, ring stages, persistent: one
# program per SM walking its tiles, else one program per tile; a product kept in flight).
GLUON_TILES = [
    (128, 4, True, True), (128, 5, True, True), (128, 6, True, True), (128, 5, False, True),
    (128, 5, True, False), (128, 6, True, False), (256, 3, True, True), (256, 4, True, False),
]  # fmt: skip


def gluon(a, w, tile):
    """The library's warp-specialized Gluon kernel at one (BLOCK_N, stages, persistent, ahead)."""
    from ncd.ops.ivit import matmul_gluon as mg

    block_n, stages, persistent, ahead = tile
    M, N = a.shape[0], w.shape[0]
    c = torch.empty(M, N, dtype=torch.int32, device=a.device)
    sms = torch.cuda.get_device_properties(a.device).multi_processor_count
    return mg.run(a, w.t(), c, None, sms if persistent else 2**31, block_n, stages, ahead)


def lib(a, w, tile):
    from ncd.ops.ivit import matmul as mm

    bm, bn, bk, warps, stages = tile
    M, K = a.shape
    N = w.shape[0]
    b = w.t()
    c = torch.empty(M, N, dtype=torch.int32, device=a.device)
    grid = (triton.cdiv(M, bm) * triton.cdiv(N, bn),)
    mm._int8_mm_kernel[grid](
        a, b, c, c, c, c, 0, 0, M, N, K, *a.stride(), *b.stride(), *c.stride(), -128, 127,
        HAS_BIAS=False, REQUANT=False, PER_CHANNEL=False, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk,
        GROUP_M=8, num_warps=warps, num_stages=stages,
    )  # fmt: skip
    return c


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default="4096,16384")
    p.add_argument("--D", type=int, default=4096)
    p.add_argument("--out", default=None)
    p.add_argument("--variants", default=None, help="comma list (default: all)")
    args = p.parse_args()
    dev = "cuda"
    rows_out = []
    for M in (int(r) for r in args.rows.split(",")):
        D = args.D
        g = torch.Generator(device=dev).manual_seed(0)
        a = torch.randint(-128, 128, (M, D), dtype=torch.int8, device=dev, generator=g)
        w = torch.randint(-128, 128, (D, D), dtype=torch.int8, device=dev, generator=g)
        ref = torch._int_mm(a, w.t())
        ab, wb = a.to(torch.bfloat16), w.to(torch.bfloat16)
        ms_bf16 = do_bench(lambda: ab @ wb.t(), warmup=25, rep=100, return_mode="median")
        ms_int_mm = do_bench(lambda: torch._int_mm(a, w.t()), warmup=25, rep=100,
                             return_mode="median")  # fmt: skip
        ops = 2 * M * D * D
        base = {"M": M, "N": D, "K": D}
        rows_out.append({**base, "impl": "bf16", "ms": ms_bf16, "tops": ops / ms_bf16 / 1e9})
        rows_out.append({**base, "impl": "torch_int_mm", "ms": ms_int_mm,
                         "tops": ops / ms_int_mm / 1e9})  # fmt: skip
        print(f"M={M}: bf16 {ms_bf16:.4f} ms, _int_mm {ms_int_mm:.4f} ms", flush=True)
        variants = {"lib": lambda t: lib(a, w, t), "lib_tma": lambda t: lib_tma(a, w, t),
                    "gluon": lambda t: gluon(a, w, t)}  # fmt: skip
        if args.variants:
            variants = {k: v for k, v in variants.items() if k in args.variants.split(",")}
        for name, fn in variants.items():
            for tile in GLUON_TILES if name == "gluon" else TILES:
                row = {**base, "impl": name, "tile": list(tile)}
                try:
                    exact = bool(torch.equal(fn(tile), ref))
                    ms = do_bench(lambda: fn(tile), warmup=25, rep=100, return_mode="median")
                except Exception as e:  # a tile that does not fit (shared memory, registers)
                    row["error"] = f"{type(e).__name__}: {str(e)[:120]}"
                    print(name, tile, row["error"], flush=True)
                    rows_out.append(row)
                    continue
                row.update(ms=ms, tops=ops / ms / 1e9, exact=exact, vs_bf16=ms_bf16 / ms,
                           vs_int_mm=ms_int_mm / ms)  # fmt: skip
                print(f"{name:15s} {tile} {ms:.4f} ms {row['tops']:.0f} TOP/s "
                      f"{row['vs_bf16']:.2f}x bf16 {row['vs_int_mm']:.2f}x _int_mm exact={exact}",
                      flush=True)  # fmt: skip
                rows_out.append(row)
    if args.out:
        meta = {"device": torch.cuda.get_device_name(), "commit": commit(),
                "torch": torch.__version__, "triton": triton.__version__}  # fmt: skip
        Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows_out}, indent=1))


if __name__ == "__main__":
    main()
