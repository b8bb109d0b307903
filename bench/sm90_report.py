"""Registers, spills and shared memory of the softmax kernels compiled for the H200 (sm_90) on
a machine without a GPU (a tuning aid, not a test).

Triton compiles for a named target with no device present, and the cuobjdump bundled with it
reads the cubin's resource usage. A kernel that spills (STACK > 0) or asks for more than the
H200's 227 KiB of shared memory is found here, before any device time is spent. The lent GPU
machine runs Triton 3.6; to see what that version does, install it apart and put it first:

    pip install --no-deps --target /tmp/t36 triton==3.6.0
    PYTHONPATH=/tmp/t36 .venv/bin/python bench/sm90_report.py --dtype bfloat16 --D 128

`--kernels lin` compiles the linear-attention kernels (ops/linear_attention/chunk.py, bf16,
K = V = 128, the library's configurations) with the argument divisibility the GPU's JIT
specialises on, and counts SASS instructions: there this report reproduced the GPU's own
build of a 40 % slower backward (250 registers, 4096 instructions, against 255 and 4000 for
the fast one; bench/RESULTS.md) without device time.

Configurations are the library's own lists (ops/attention/fused.py), with its 2-d/4-d tile
choice per kernel; `--extra` adds (BLOCK_M, BLOCK_N, warps, stages) rows to try. The GPU's
own compile can differ by a few registers (2026-11-28: forward (64, 64, 4, 3) 179 here, 170
there; spills agreed in kind).
"""

import argparse
import ast

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from ncd.ops.attention import fused
from ncd.ops.attention.hopper import cubin_resources
from ncd.ops.linear_attention import chunk

SMEM_LIMIT = 232448  # bytes a block may ask for on the H200
TY = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


def desc(ty, rows, cols, flat):
    return f"tensordesc<{ty}[{rows},{cols}]>" if flat else f"tensordesc<{ty}[1,{rows},1,{cols}]>"


def signature(kernel, ty, D, bm, bn, flat, consts):
    """Argument types of `kernel` for one configuration (everything in `consts` constexpr)."""
    tiles = {"q_desc": bm, "do_desc": bm, "o_desc": bm, "dq_desc": bm,
             "k_desc": bn, "v_desc": bn, "dk_desc": bn, "dv_desc": bn}  # fmt: skip
    inputs = {"q_desc", "k_desc", "v_desc", "do_desc"}  # outputs are always 4-d
    sig = {}
    for name in kernel.arg_names:
        if name in consts:
            sig[name] = "constexpr"
        elif name in tiles:
            sig[name] = desc(ty, tiles[name], D, flat and name in inputs)
        elif name in ("LSE", "DELTA"):
            sig[name] = "*fp32"
        elif name in ("qk_scale", "sm_scale"):
            sig[name] = "fp32"
        else:
            sig[name] = "i32"
    return sig


def compile_one(kernel, ty, D, cfg, flat, causal=True):
    bm, bn, warps, stages, *rest = cfg
    consts = dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=D, BLOCK_DV=D, CAUSAL=causal, FLAT=flat)
    consts.update(rest[0] if rest else {})
    if kernel is fused._fwd_kernel:
        consts = {"WS": False, "AHEAD": False, **consts}
    if kernel is fused._bwd_dkdv_kernel:
        consts.update(dq_desc=None, DQ=None, ATOMIC_DQ=False, DQ_TMA=False)
        consts.setdefault("KV_SMEM", False)
    sig = signature(kernel, ty, D, bm, bn, flat, consts)
    src = ASTSource(kernel, sig, {(kernel.arg_names.index(k),): v for k, v in consts.items()})
    ck = triton.compile(
        src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=warps, num_stages=stages)
    )
    r = cubin_resources(ck)
    return r["regs"], r["stack"], r["smem"], r["wgmma"] > 0


def _cubin_report(ck):
    """(registers, stack bytes, SASS instruction count) of a compiled kernel."""
    r = cubin_resources(ck)
    return r["regs"], r["stack"], r["instrs"]


def compile_linear(kernel, cfg, D=128):
    """A linear-attention kernel as the GPU's JIT specialises it at the benchmark shapes:
    pointers 16-byte aligned, sequence/batch strides and lengths multiples of 16."""
    consts = dict(K_DIM=D, V_DIM=D, HAS_DECAY=False, USE_S0=False, USE_DST=False,
                  STORE_DS0=False, STORE_ST=False, VARLEN=False, PRECISE=False, DOT="tf32",
                  BLOCK_K=D, BLOCK_KF=D, BLOCK_VF=D, **cfg.kwargs)  # fmt: skip
    consts = {k: v for k, v in consts.items() if k in kernel.arg_names}
    sig, attrs = {}, {}
    for i, n in enumerate(kernel.arg_names):
        if n in consts:
            sig[n] = "constexpr"
            continue
        sig[n] = "fp32" if n == "scale" else "*i32" if n == "CU" else "i32" if n == "H" or (
            n.startswith("S") and len(n) == 3) or n == "T" else "*bf16"  # fmt: skip
        if sig[n] != "fp32" and n != "H":
            attrs[(i,)] = [["tt.divisibility", 16]]
    src = ASTSource(kernel, sig, {(kernel.arg_names.index(k),): v for k, v in consts.items()},
                    attrs)  # fmt: skip
    opts = dict(num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return _cubin_report(triton.compile(src, target=GPUTarget("cuda", 90, 32), options=opts))


def linear_report():
    print(f"{'kernel':14} {'configuration':44} {'regs':>4} {'stack B':>7} {'SASS instrs':>11}")
    for name, cfgs in (("_fwd_kernel", chunk.FWD_CONFIGS), ("_bwd_kernel", chunk.BWD_CONFIGS)):
        for cfg in cfgs:
            regs, stack, n = compile_linear(getattr(chunk, name), cfg)
            print(f"{name:14} {str(cfg.kwargs):44} {regs:4} {stack:7} {n:11}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernels", default="fwd,dkdv,dq")
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(TY))
    ap.add_argument("--D", type=int, default=128, help="head width (a power of two)")
    ap.add_argument("--extra", default="", help='more rows, e.g. "(64, 32, 4, 2); (128, 64, 8, 3)"')
    args = ap.parse_args()
    f32 = args.dtype == "float32"
    lists = {
        "fwd": (fused._fwd_kernel, fused.F32_FWD_CONFIGS if f32 else fused.FWD_CONFIGS,
                fused.FLAT_FORWARD),
        "dkdv": (fused._bwd_dkdv_kernel, fused.F32_DKDV_CONFIGS if f32 else fused.DKDV_CONFIGS,
                 fused.FLAT_DKDV),
        "dq": (fused._bwd_dq_kernel, fused.F32_DQ_CONFIGS if f32 else fused.DQ_CONFIGS,
               fused.FLAT_DQ),
    }  # fmt: skip
    extra = [ast.literal_eval(r.strip()) for r in args.extra.split(";") if r.strip()]
    print(f"Triton {triton.__version__}, sm_90, {args.dtype}, D = {args.D}")
    if set(args.kernels.split(",")) - {"lin"}:
        print(f"{'kernel':6} {'tiles':5} {'configuration':44} {'regs':>4} {'stack B':>7} "
              f"{'smem KiB':>8}  wgmma")  # fmt: skip
    for name in args.kernels.split(","):
        if name == "lin":
            linear_report()
            continue
        kernel, cfgs, flat = lists[name]
        for cfg in [*cfgs, *extra]:
            try:
                regs, stack, smem, wg = compile_one(kernel, TY[args.dtype], args.D, cfg, flat)
                over = "  over the H200's shared memory" if smem > SMEM_LIMIT else ""
                print(f"{name:6} {'2-d' if flat else '4-d':5} {cfg!s:44} {regs:4} {stack:7} "
                      f"{smem / 1024:8.1f}  {wg}{over}")  # fmt: skip
            except Exception as e:  # a configuration that does not compile is reported
                print(f"{name:6} {cfg!s:44} {type(e).__name__}: {str(e)[:90]}")


if __name__ == "__main__":
    main()
