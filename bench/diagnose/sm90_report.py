"""Registers, spills and shared memory of the op library's kernels compiled for the H200
(sm_90) on a machine without a GPU (a tuning aid, not a test).

Triton compiles for a named target with no device present, and the cuobjdump bundled with it
reads the cubin. A kernel that spills (stack > 0) or asks for more than the H200's 227 KiB of
shared memory is found here before any device time is spent. The GPU machine runs Triton
3.6; to see what that version does, install it apart and put it first:

    pip install --no-deps --target /tmp/t36 triton==3.6.0
    PYTHONPATH=/tmp/t36 .venv/bin/python bench/diagnose/sm90_report.py --kernels fwd,dkdv,dq
    PYTHONPATH=/tmp/t36 .venv/bin/python bench/diagnose/sm90_report.py --kernels lin,gluon
    PYTHONPATH=/tmp/t36 .venv/bin/python bench/diagnose/sm90_report.py --sass /tmp/sass_a

--kernels: `fwd`, `dkdv`, `dq` (the softmax Triton kernels in the library's configurations,
with `--extra` rows to try), `lin` (the linear-attention kernels as the GPU's JIT specialises
them at the benchmark shapes: pointers 16-byte aligned, strides and lengths multiples of 16),
`gluon` (the Gluon forward and dK/dV, grouped or not). --sass DIR writes the SASS of every
kernel in every listed configuration, one file each: diff two such folders (two commits, or
a change to a kernel's source) to see whether the code the GPU runs changed at all.
"""

import argparse
import ast
import os
import re
import subprocess
import tempfile

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from ncd.ops.attention import fused
from ncd.ops.attention.gluon import common as gluon_common
from ncd.ops.attention.gluon import dkdv as gluon_dkdv
from ncd.ops.attention.gluon import forward as gluon_forward
from ncd.ops.linear_attention import chunk

SMEM_LIMIT = 232448  # bytes a block may ask for on the H200
TY = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
TARGET = GPUTarget("cuda", 90, 32)
TOOL = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/cuobjdump")


def cubin_resources(ck) -> dict:
    """Registers at launch, spilled (stack) bytes, shared memory, wgmma count, local-memory
    accesses in the PTX, the highest register the SASS touches (a warp-specialized
    partition's real use under its setmaxnreg), the setmaxnreg values and the SASS
    instruction count; also the SASS itself (instructions only)."""
    with tempfile.NamedTemporaryFile("wb", suffix=".cubin", delete=False) as f:
        f.write(ck.asm["cubin"])
    use = subprocess.run([TOOL, "--dump-resource-usage", f.name], capture_output=True, text=True)
    sass = subprocess.run([TOOL, "-sass", f.name], capture_output=True, text=True).stdout
    os.unlink(f.name)
    ptx = ck.asm["ptx"]
    instrs = [ln for ln in sass.splitlines() if re.match(r"^\s+/\*[0-9a-f]{4,}\*/", ln)]
    m = re.search(r"REG:(\d+) STACK:(\d+)", use.stdout)
    regs, stack = (int(x) for x in m.groups()) if m else (None, None)
    return dict(
        regs=regs, stack=stack, smem=ck.metadata.shared,
        wgmma=len(re.findall(r"wgmma.mma_async", ptx)),
        local=len(re.findall(r"\b(?:ld|st)\.local", ptx)),
        max_reg=1 + max((int(r) for r in re.findall(r"\bR(\d+)\b", sass)), default=-1),
        setmaxnreg=sorted(set(re.findall(r"setmaxnreg\.\w+\.sync\.aligned\.u32\s+(\d+)", ptx)),
                          key=int),
        instrs=len(instrs), sass="\n".join(instrs) + "\n",
    )  # fmt: skip


def _compile(kernel, sig, consts, warps, stages=None, divisible=()):
    """Compile a Triton kernel for sm_90; `divisible`: arguments the JIT would see as
    multiples of 16 (or 16-byte aligned pointers)."""
    names = kernel.arg_names
    consts = {k: v for k, v in consts.items() if k in names}
    full = {n: "constexpr" if n in consts else sig[n] for n in names}
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names) if n in divisible}
    src = ASTSource(kernel, full, {(names.index(k),): v for k, v in consts.items()}, attrs)
    opts = dict(num_warps=warps) if stages is None else dict(num_warps=warps, num_stages=stages)
    return triton.compile(src, target=TARGET, options=opts)


def softmax_kernel(name, ty, D, cfg, flat, causal=True):
    """One softmax Triton kernel ("fwd", "dkdv", "dq") in one configuration."""
    kernel = {"fwd": fused._fwd_kernel, "dkdv": fused._bwd_dkdv_kernel,
              "dq": fused._bwd_dq_kernel}[name]  # fmt: skip
    bm, bn, warps, stages, *rest = cfg
    consts = dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=D, BLOCK_DV=D, CAUSAL=causal, FLAT=flat,
                  KV_SMEM=False, DIAG=False)  # fmt: skip
    consts.update(rest[0] if rest else {})
    tiles = {"q_desc": bm, "do_desc": bm, "o_desc": bm, "dq_desc": bm,
             "k_desc": bn, "v_desc": bn, "dk_desc": bn, "dv_desc": bn}  # fmt: skip
    inputs = {"q_desc", "k_desc", "v_desc", "do_desc"}  # outputs are always 4-d
    sig = {}
    for n in kernel.arg_names:
        if n in tiles:
            shape = [tiles[n], D] if flat and n in inputs else [1, tiles[n], 1, D]
            sig[n] = f"tensordesc<{ty}[{','.join(map(str, shape))}]>"
        else:
            sig[n] = {"LSE": "*fp32", "DELTA": "*fp32", "qk_scale": "fp32",
                      "sm_scale": "fp32"}.get(n, "i32")  # fmt: skip
    return _compile(kernel, sig, consts, warps, stages, ("LSE", "DELTA", "T", "S", "H", "HKV"))


def linear_kernel(kernel, cfg, D=128):
    consts = dict(K_DIM=D, V_DIM=D, HAS_DECAY=False, USE_S0=False, USE_DST=False,
                  STORE_DS0=False, STORE_ST=False, VARLEN=False, PRECISE=False, DOT="tf32",
                  BLOCK_K=D, BLOCK_KF=D, BLOCK_VF=D, **cfg.kwargs)  # fmt: skip
    sig, div = {}, []
    for n in kernel.arg_names:
        strides = n.startswith("S") and len(n) == 3
        sig[n] = ("fp32" if n == "scale" else "*i32" if n == "CU" else
                  "i32" if n in ("H", "T") or strides else "*bf16")  # fmt: skip
        if sig[n] != "fp32" and n != "H":
            div.append(n)
    return _compile(kernel, sig, consts, cfg.num_warps, cfg.num_stages, div)


def gluon_kernel(which, D, dtype, causal, group=1):
    """The Gluon forward or dK/dV as the library launches it."""
    from triton.experimental.gluon._runtime import GluonASTSource
    from triton.runtime.jit import mangle_type

    x = torch.empty(256, 1, 1, D, dtype=getattr(torch, dtype))  # only for the descriptor types
    if which == "forward":
        fn, descs = gluon_forward._fwd_ws_kernel, gluon_forward._descs(x, x, x, x)
        names = ["q_desc", "k_desc", "v_desc", "o_desc"]
        consts = dict(CAUSAL=causal, NUM_STAGES=gluon_forward.NUM_STAGES,
                      CONSUMER_REGS=gluon_forward.CONSUMER_REGS,
                      PRODUCER_REGS=gluon_forward.PRODUCER_REGS)  # fmt: skip
    else:
        fn = gluon_dkdv._dkdv_kernel
        rows = gluon_dkdv._row_descs(torch.empty(1024), torch.empty(1024))
        descs = (*gluon_dkdv._descs(x, x, x, x, x, x), *rows)
        names = ["q_desc", "k_desc", "v_desc", "do_desc", "dk_desc", "dv_desc", "lse_desc",
                 "delta_desc"]  # fmt: skip
        consts = dict(CAUSAL=causal, NUM_STAGES=gluon_dkdv.NUM_STAGES, GROUP=group,
                      CONSUMER_REGS=gluon_dkdv.CONSUMER_REGS,
                      PRODUCER_REGS=gluon_dkdv.PRODUCER_REGS)  # fmt: skip
    vals = dict(zip(names, descs))
    sig, cs = {}, {}
    for i, n in enumerate(fn.arg_names):
        if n in vals:
            sig[n] = mangle_type(vals[n])
        elif n in consts:
            sig[n], cs[(i,)] = "constexpr", consts[n]
        else:
            sig[n] = "*fp32" if n == "LSE" else "fp32" if n.endswith("scale") else "i32"
    return triton.compile(GluonASTSource(fn, sig, cs), target=TARGET, options=dict(num_warps=4))


def every_kernel(kernels, dtype, D, extra):
    """(name, compile function) of each kernel in each configuration asked for."""
    ty, f32 = TY[dtype], dtype == "float32"
    lists = {
        "fwd": (fused.F32_FWD_CONFIGS if f32 else fused.FWD_CONFIGS, (False,)),
        "dkdv": (fused.F32_DKDV_CONFIGS if f32 else fused.DKDV_CONFIGS, (True, False)),
        "dq": (fused.F32_DQ_CONFIGS if f32 else fused.DQ_CONFIGS, (False,)),
    }
    for name in kernels:
        if name in lists:
            cfgs, tiles = lists[name]
            for cfg in [*cfgs, *extra]:
                for flat in tiles:
                    for causal in (True, False):
                        label = f"{name} {'2-d' if flat else '4-d'} causal={causal:d} {cfg}"
                        yield label, lambda n=name, c=cfg, f=flat, ca=causal: softmax_kernel(
                            n, ty, D, c, f, ca)  # fmt: skip
        elif name == "lin":
            for kname in ("_fwd_kernel", "_bwd_kernel"):
                cfgs = chunk.FWD_CONFIGS if kname == "_fwd_kernel" else chunk.BWD_CONFIGS
                for cfg in cfgs:
                    yield f"lin {kname} {cfg.kwargs}", lambda k=kname, c=cfg: linear_kernel(
                        getattr(chunk, k), c, D)  # fmt: skip
        elif name == "gluon" and not f32:
            for which, groups in (("forward", (1,)), ("dkdv", (1, 4))):
                for group in groups:
                    for causal in (True, False):
                        label = f"gluon {which} group={group} causal={causal:d}"
                        yield label, lambda w=which, ca=causal, g=group: gluon_kernel(
                            w, D, dtype, ca, g)  # fmt: skip


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernels", default="fwd,dkdv,dq", help="fwd, dkdv, dq, lin, gluon")
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(TY))
    ap.add_argument("--D", type=int, default=128, help="head width (a power of two)")
    ap.add_argument("--extra", default="", help='more rows, e.g. "(64, 32, 4, 2); (128, 64, 8, 3)"')
    ap.add_argument("--sass", help="write every kernel's SASS here (all kernels, both 16-bit "
                    "dtypes and float32, D 64 and 128) instead of the table")  # fmt: skip
    args = ap.parse_args()
    if "gluon" in args.kernels or args.sass:
        assert gluon_common.GLUON, "the Gluon kernels need Triton 3.6 first on the path"
    extra = [ast.literal_eval(r.strip()) for r in args.extra.split(";") if r.strip()]
    if args.sass:
        os.makedirs(args.sass, exist_ok=True)
        for dtype in ("bfloat16", "float16", "float32"):
            for D in (128, 64):
                every = ["fwd", "dkdv", "dq", "gluon"] + (["lin"] if D == 128 else [])
                for label, make in every_kernel(every, dtype, D, []):
                    name = re.sub(r"[^A-Za-z0-9=_.-]+", "_", f"{dtype}_D{D}_{label}")
                    with open(os.path.join(args.sass, name + ".sass"), "w") as f:
                        f.write(cubin_resources(make())["sass"])
                    print(name, flush=True)
        return
    print(f"Triton {triton.__version__}, sm_90, {args.dtype}, D = {args.D}")
    print(f"{'kernel':52} {'regs':>4} {'stack B':>7} {'smem KiB':>8} {'max reg':>7} "
          f"{'instrs':>6}  wgmma")  # fmt: skip
    for label, make in every_kernel(args.kernels.split(","), args.dtype, args.D, extra):
        try:
            r = cubin_resources(make())
        except Exception as e:  # a configuration that does not compile is reported
            print(f"{label:52} {type(e).__name__}: {str(e)[:90]}")
            continue
        over = "  over the H200's shared memory" if r["smem"] > SMEM_LIMIT else ""
        print(f"{label:52} {r['regs']:4} {r['stack']:7} {r['smem'] / 1024:8.1f} "
              f"{r['max_reg']:7} {r['instrs']:6}  {r['wgmma']}{over}")  # fmt: skip


if __name__ == "__main__":
    main()
