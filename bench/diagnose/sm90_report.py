"""Registers, spills and shared memory of the op library's kernels compiled for the H200
(sm_90) on a machine without a GPU (a tuning aid, not a test).

Triton compiles for a named target with no device present, and the cuobjdump bundled with it
reads the cubin. A kernel that spills (stack > 0) or asks for more than the H200's 227 KiB of
shared memory is found here before any device time is spent. The GPU machine runs Triton
3.6; to see what that version does, install it apart and put it first:

    pip install --no-deps --target /tmp/t36 triton==3.6.0
    PYTHONPATH=/tmp/t36 .venv/bin/python bench/diagnose/sm90_report.py --kernels fwd,dkdv,dq
    PYTHONPATH=/tmp/t36 .venv/bin/python bench/diagnose/sm90_report.py --kernels lin,gluon
    PYTHONPATH=/tmp/t36 .venv/bin/python bench/diagnose/sm90_report.py --kernels lin,gated
    PYTHONPATH=/tmp/t36 .venv/bin/python bench/diagnose/sm90_report.py --sass /tmp/sass_a
    PYTHONPATH=/tmp/t36 .venv/bin/python bench/diagnose/sm90_report.py --kernels norm --D 4096
    PYTHONPATH=/tmp/t36 .venv/bin/python bench/diagnose/sm90_report.py --kernels wtacrs --D 16384

--kernels: `fwd`, `dkdv`, `dq` (the softmax Triton kernels in the library's configurations,
with `--extra` rows to try), `lin` (the linear-attention kernels as the GPU's JIT specialises
them at the benchmark shapes: pointers 16-byte aligned, strides and lengths multiples of 16),
`lindecay` (the same with a constant per-head decay: the scalar-gate kernels' counterpart),
`gluon` (the Gluon forward and dK/dV, grouped or not), `sgla` / `simple_gla`, `gla`,
`delta` / `delta_rule` or `gated` (all three: every kernel of the gated families in each launch
configuration, with and without the switches that change the code, gates as the launchers pass
them; for the delta rule also its Gluon chunk kernel, 8 warps), `norm` (the row normalisations
at rows of `--D` features: forward and backward of LayerNorm and of RMSNorm with a residual in
each num_warps tried, and the gradient reduction), `wtacrs` (the WTA-CRS selection's three
kernels and the gather of the kept rows, for `--D` rows), `conv` (the short convolution's
forward and backward at W = 4), `int8` (the int8 matrix product, pointer and tensor-map
kernels).
The last column gives, per loop of the SASS (the chunk loops; one per role of a multi-role
kernel), its instructions, barriers and local-memory accesses on one
trip: in a kernel that runs one 4-warp program per SM these set the latency of a chunk.
--arch 80 / 86 / 89 / 100 / 120 compiles for another GPU (A100; RTX 30xx and A-series; RTX
40xx, L4 and L40; B200; RTX 50xx) against its shared memory per block: a row over it is
compiled again at one stage, as `ops._backend.launch` retries a launch that no configuration
of its list fits, and the last line lists the kernels none of whose rows fit even so (they
would fail there).
--group N compiles the linear-attention and scalar-gate kernels for grouped heads (N value heads
per head of q and k; 1, the default, is the ungrouped code).
--sass DIR writes the SASS of every kernel in every listed configuration, one file each (the
`--kernels` given, else the softmax, Gluon and linear-attention ones): diff two such folders
(two commits, or a change to a kernel's source) to see whether the code the GPU runs changed
at all; --dump DIR writes the SASS and PTX of the table's rows (--match
REGEX narrows them).
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

from ncd.ops import _gluon as gluon_common
from ncd.ops.attention import fused
from ncd.ops.attention.gluon import dkdv as gluon_dkdv
from ncd.ops.attention.gluon import forward as gluon_forward
from ncd.ops.delta_rule import chunk as delta_chunk
from ncd.ops.gla import chunk as gla_chunk
from ncd.ops.linear_attention import chunk
from ncd.ops.norm import rowwise as norm_rowwise
from ncd.ops.simple_gla import chunk as sgla_chunk

# bytes of shared memory a block may ask for, per compute capability (sm_90: the H100 / H200)
SMEM_LIMITS = {80: 166912, 86: 101376, 89: 101376, 90: 232448, 100: 232448, 120: 101376}
SMEM_LIMIT = SMEM_LIMITS[90]
TY = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
TARGET = GPUTarget("cuda", 90, 32)
ONE_STAGE = False  # compile every configuration at one stage (the launcher's retry)
GROUP = 1  # value heads per q/k head of the linear-attention kernels (--group)
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
        mma=len(re.findall(r"\bmma\.sync", ptx)),
        bar=len(re.findall(r"\bBAR\.(?:SYNC|ARV|RED)", sass)),
        ldl_stl=len(re.findall(r"\b(?:LDL|STL)\b", sass)),
        local=len(re.findall(r"\b(?:ld|st)\.local", ptx)),
        max_reg=1 + max((int(r) for r in re.findall(r"\bR(\d+)\b", sass)), default=-1),
        setmaxnreg=sorted(set(re.findall(r"setmaxnreg\.\w+\.sync\.aligned\.u32\s+(\d+)", ptx)),
                          key=int),
        instrs=len(instrs), sass="\n".join(instrs) + "\n", loops=sass_loops(instrs),
    )  # fmt: skip


def sass_loops(instrs) -> list:
    """The outermost loops of a SASS listing (a backward branch to an earlier address, not
    inside another such span): per loop its instruction count, barriers, local-memory
    accesses and exponentials (MUFU) on one trip, the static figures the chunk loops' latency
    follows. Loops of under 40 instructions (waits, small reductions) are left out."""
    addr = [int(re.match(r"^\s+/\*([0-9a-f]+)\*/", ln).group(1), 16) for ln in instrs]
    spans = []
    for i, ln in enumerate(instrs):
        m = re.search(r"\bBRA\s+(?:`\(\.L_x_\d+\)\s*)?0x([0-9a-f]+)", ln)
        if m and int(m.group(1), 16) < addr[i]:
            j = addr.index(int(m.group(1), 16)) if int(m.group(1), 16) in addr else None
            if j is not None and i - j >= 40:
                spans.append((j, i))
    outer = [a for a in spans if not any(b != a and b[0] <= a[0] and a[1] <= b[1] for b in spans)]
    out = []
    for j, i in sorted(set(outer)):
        body = "\n".join(instrs[j : i + 1])
        out.append(dict(
            instrs=i + 1 - j, bar=len(re.findall(r"\bBAR\.(?:SYNC|ARV|RED)", body)),
            local=len(re.findall(r"\b(?:LDL|STL)\b", body)),
            mufu=len(re.findall(r"\bMUFU\b", body)),
        ))  # fmt: skip
    return out


def _compile(kernel, sig, consts, warps, stages=None, divisible=(), maxnreg=None):
    """Compile a Triton kernel for sm_90; `divisible`: arguments the JIT would see as
    multiples of 16 (or 16-byte aligned pointers)."""
    names = kernel.arg_names
    consts = {k: v for k, v in consts.items() if k in names}
    full = {n: "constexpr" if n in consts else sig[n] for n in names}
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names) if n in divisible}
    src = ASTSource(kernel, full, {(names.index(k),): v for k, v in consts.items()}, attrs)
    if ONE_STAGE:
        stages = 1
    opts = dict(num_warps=warps) if stages is None else dict(num_warps=warps, num_stages=stages)
    if maxnreg is not None:
        opts["maxnreg"] = maxnreg
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


def linear_kernel(kernel, cfg, D=128, decay=False):
    consts = dict(K_DIM=D, V_DIM=D, HAS_DECAY=decay, USE_S0=False, USE_DST=False,
                  STORE_DS0=False, STORE_ST=False, VARLEN=False, PRECISE=False, DOT="tf32",
                  BLOCK_K=D, BLOCK_KF=D, BLOCK_VF=D, GROUP=GROUP, **cfg.kwargs)  # fmt: skip
    sig, div = {}, []
    for n in kernel.arg_names:
        strides = n.startswith("S") and len(n) == 3
        sig[n] = ("fp32" if n == "scale" else "*i32" if n == "CU" else
                  "i32" if n in ("H", "T") or strides else "*bf16")  # fmt: skip
        if sig[n] != "fp32" and n != "H":
            div.append(n)
        if n == "LOG2_DECAY":
            sig[n] = "*fp32"
    return _compile(kernel, sig, consts, cfg.num_warps, cfg.num_stages, div)


# ---- the gated family (ops/simple_gla, ops/gla, ops/delta_rule) ----------------------------
# Integer (non-pointer) arguments of the gated kernels; every other upper-case argument that is
# not a constexpr is a pointer. At the benchmark shapes (B = 4, T = 4096, H = 16, K = V = 128)
# all of them are multiples of 16, as the JIT sees them.
GATED_INTS = {
    "T",
    "TT",
    "H",
    "NT",
    "CKPT",
    "SQB",
    "SQT",
    "SQH",
    "SVB",
    "SVT",
    "SVH",
    "SGB",
    "SGS",
    "SDR",
}
# Pointers that are float32 whatever the inputs' dtype, per family (the launchers' buffers);
# "gate" names take the gates' dtype (GLA reads g as given; the others convert it to float32).
GATED_F32 = {
    "sgla": {"GATE", "DG", "S0", "ST", "DST", "DS0"},
    "gla": {"A", "DA", "DQ32", "DK32", "W", "HB", "GC", "S0", "ST", "DST", "DS0"},
    "delta": {"BETA", "GATE", "DBETA", "DG", "S0", "ST", "DST", "DS0", "CK"},
}
GATED_GATE = {"gla": {"G", "DG"}}
GATED_IPTR = {"CU", "COFF", "CHUNKS", "SOFF"}


def gated_kernel(family, kernel, cfg, consts, ty, gate_ty):
    """One gated-family kernel in one launch configuration (a triton.Config) and one set of
    the launcher's compile-time switches."""
    consts = {**consts, **cfg.kwargs}
    sig, div = {}, []
    for n in kernel.arg_names:
        if n in consts:
            continue
        if n == "scale":
            sig[n] = "fp32"
            continue
        if n in GATED_INTS:
            sig[n] = "i32"
        elif n in GATED_IPTR:
            sig[n] = "*i32"
        elif n in GATED_GATE.get(family, ()):
            sig[n] = f"*{gate_ty}"
        elif n in GATED_F32[family]:
            sig[n] = "*fp32"
        else:
            sig[n] = f"*{ty}"
        if n != "H":
            div.append(n)
    stages = cfg.num_stages
    if family == "sgla" and ty == "fp32":  # the launcher's clamp
        stages = min(stages, sgla_chunk.F32_STAGES)
    return _compile(kernel, sig, consts, cfg.num_warps, stages, div, cfg.maxnreg)


def _switches(names, *variants):
    """Named variants of boolean switches: each variant lists the switches set True."""
    for label, on in variants:
        yield label, {n: n in on for n in names}


def gated_rows(family, dtype, D):
    """(label, compile function) of every kernel of one gated family as its launcher runs it:
    each launch configuration, with the switches that change the code (state in/out, packed
    sequences, gradients wanted, gated or not)."""
    ty = TY[dtype]
    f32 = dtype == "float32"
    dot = "tf32x3" if f32 else "tf32"
    rows = []

    def add(name, cfgs, names, *variants, **consts):
        kernel = getattr(c, name.split()[0])
        for lab, sw in _switches(names, *variants):
            for cfg in cfgs:
                rows.append((f"{name} {lab}", kernel, cfg, {**base, **consts, **sw}))

    none, varlen = ("", ()), ("varlen", ("VARLEN",))
    if family == "sgla":
        c, gate_ty = sgla_chunk, "fp32"
        base = dict(K_DIM=D, V_DIM=D, DOT=dot, GROUP=GROUP)
        if hasattr(c, "BOUND"):  # the factored decay's bound, per input dtype
            base["BOUND"] = c.BOUND[getattr(torch, dtype)]
        if hasattr(c, "CHUNK"):  # the chunk is fixed; the gates' in-chunk cumsum, a pre-pass
            base["BLOCK_T"] = c.CHUNK
            add("_chunk_cumsum", [triton.Config({}, num_warps=4)], ("VARLEN",), none, varlen,
                NB=c.CUMSUM_CHUNKS)  # fmt: skip
        add("_fwd_kernel", c.FWD_CONFIGS, ("USE_S0", "STORE_ST", "VARLEN"), none,
            ("s0,st", ("USE_S0", "STORE_ST")), varlen, BLOCK_K=D)  # fmt: skip
        precise = c.PRECISE_DG and not f32
        for dg in (True, False):
            add(f"_bwd_kernel{' dg' if dg else ''}{',precise' if dg and precise else ''}",
                c.BWD_CONFIGS, ("USE_S0", "USE_DST", "STORE_DS0", "VARLEN"), none,
                ("s0,dst,ds0", ("USE_S0", "USE_DST", "STORE_DS0")), varlen,
                BLOCK_KF=D, BLOCK_VF=D, WANT_DG=dg, PRECISE=dg and precise)  # fmt: skip
    elif family == "gla":
        c, gate_ty = gla_chunk, ty
        base = dict(K_DIM=D, V_DIM=D, DOT=dot, GDOT=dot, C=c.CHUNK, BC=c.SUB)
        add("_fwd_A", c.A_CONFIGS, ("VARLEN",), none, varlen, BLOCK_K=D)
        add("_fwd_walk", c.WALK_CONFIGS, ("USE_S0", "STORE_ST", "VARLEN"), none,
            ("s0,st", ("USE_S0", "STORE_ST")), varlen, BLOCK_K=D)  # fmt: skip
        add("_bwd_states", c.STATES_CONFIGS, ("USE_S0", "VARLEN"), none, ("s0", ("USE_S0",)),
            varlen, BLOCK_VF=D)  # fmt: skip
        add("_bwd_scan", c.SCAN_CONFIGS, ("USE_DST", "STORE_DS0", "VARLEN"), none,
            ("dst,ds0", ("USE_DST", "STORE_DS0")), varlen, BLOCK_KF=D, BLOCK_VF=D)  # fmt: skip
        add("_bwd_dA", c.DA_CONFIGS, ("VARLEN",), none, varlen)
        add("_bwd_intra", c.INTRA_CONFIGS, ("VARLEN",), none, varlen)
    else:
        c, gate_ty = delta_chunk, "fp32"
        base = dict(K_DIM=D, V_DIM=D, DOT=dot, BK=D, BT=c.CHUNK,
                    BOUND=c._bound(torch.empty(0, dtype=getattr(torch, dtype))))  # fmt: skip
        for gated in (False, True):
            g = "gated" if gated else "ungated"
            split = c.INVERSE_SPLIT[getattr(torch, dtype)]
            add(f"_prep_kernel {g}", c.PREP_CONFIGS, ("STORE_U", "STORE_QK", "VARLEN"), none,
                ("u", ("STORE_U",)), ("u,qk", ("STORE_U", "STORE_QK")), ("qk", ("STORE_QK",)),
                varlen, HAS_G=gated, SPLIT=split)  # fmt: skip
            fwd = ("USE_S0", "STORE_ST", "STATES", "OUTPUT", "FORM_U", "PREPARED", "VARLEN",
                   "STORE_VN", "LOAD_VN", "FACTOR", "STORE_CK", "SEGMENTED")  # fmt: skip
            add(f"_scan_fwd_kernel {g}", c.FWD_CONFIGS, fwd, ("", ("OUTPUT",)),
                ("checkpoints", ("OUTPUT", "STORE_CK", *(("FACTOR",) if gated else ()))),
                ("states segmented", ("STATES", "FORM_U", "SEGMENTED",
                                      *(("FACTOR",) if gated else ()))),
                ("s0,st", ("OUTPUT", "USE_S0", "STORE_ST")), ("form_u", ("OUTPUT", "FORM_U")),
                ("states", ("STATES", "FORM_U")), ("output+states", ("OUTPUT", "STATES", "FORM_U")),
                ("varlen", ("OUTPUT", "VARLEN")), ("values", ("OUTPUT", "STORE_VN")),
                ("states from values", ("STATES", "LOAD_VN")),
                *([("factored", ("OUTPUT", "FACTOR")),
                   ("output+states factored", ("OUTPUT", "STATES", "FORM_U", "FACTOR")),
                   ("states factored", ("STATES", "FORM_U", "FACTOR")),
                   ("states from values factored", ("STATES", "LOAD_VN", "FACTOR"))]
                  if gated else []), HAS_G=gated)  # fmt: skip
            add(f"_scan_fwd_kernel {g}", c.FWD_PREPARED_CONFIGS, fwd,
                ("prepared", ("OUTPUT", "PREPARED")),
                ("output+states prepared", ("OUTPUT", "STATES", "FORM_U", "PREPARED")),
                ("s0,st prepared", ("OUTPUT", "USE_S0", "STORE_ST", "PREPARED")),
                ("varlen prepared", ("OUTPUT", "VARLEN", "PREPARED")), HAS_G=gated)  # fmt: skip
            u = () if gated else ("UNSCALED",)  # as the launcher: ungated and not prepared
            add(f"_scan_bwd_kernel {g}", c.BWD_SCAN_CONFIGS,
                ("USE_DST", "STORE_DS0", "PREPARED", "W_FROM_T", "VARLEN", "FACTOR", "UNSCALED"),
                ("", u), ("dst,ds0", ("USE_DST", "STORE_DS0", *u)), ("varlen", ("VARLEN", *u)),
                ("prepared", ("PREPARED",)), ("w_from_t", ("W_FROM_T", *u)),
                *([("factored", ("FACTOR",))] if gated else []), HAS_G=gated)  # fmt: skip
            add(f"_qk_kernel {g}", c.QK_CONFIGS, ("VARLEN",), none, HAS_G=gated)
            add(f"_bwd_chunk_kernel {g}", c.BWD_CHUNK_CONFIGS, ("VARLEN",), none, varlen,
                HAS_G=gated)  # fmt: skip
            if gluon_common.GLUON and dtype != "float32":  # the rule's Gluon kernel
                name = "_bwd_chunk_gated_kernel" if gated else "_bwd_chunk_ws_kernel"
                rows.append((f"delta gluon {name} [K={D}]", None, None, {"gated": gated}))
    for lab, kernel, cfg, consts in rows:
        if kernel is None:  # a Gluon row, labelled in full
            yield lab, lambda c=consts: delta_gluon_kernel(D, dtype, **c)
            continue
        tune = ",".join(f"{k}={v}" for k, v in cfg.kwargs.items())
        regs = f" r{cfg.maxnreg}" if cfg.maxnreg else ""
        label = f"{family} {lab.strip()} [{tune} w{cfg.num_warps} s{cfg.num_stages}{regs}]"
        yield label, lambda k=kernel, c=cfg, cs=consts: gated_kernel(family, k, c, cs, ty, gate_ty)


def gluon_kernel(which, D, dtype, causal, group=1):
    """The Gluon forward or dK/dV as the library launches it."""
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
    others = {"LSE": "*fp32", **{n: "fp32" for n in fn.arg_names if n.endswith("scale")}}
    return _gluon_compile(fn, dict(zip(names, descs)), consts, others)


def delta_gluon_kernel(D, dtype, gated):
    """The delta rules' Gluon chunk kernels (ops/delta_rule/gluon.py, gluon_gated.py) as
    their `run` launches them."""
    from ncd.ops.delta_rule import gluon as dg
    from ncd.ops.delta_rule import gluon_gated

    x = torch.empty(1, 256, 2, D, dtype=getattr(torch, dtype))  # only for the descriptor types
    ai = torch.empty(1, 256, 2, dg.BT, dtype=x.dtype)
    hs = torch.empty(8 * D, D, dtype=x.dtype)  # the 4 chunks x 2 heads' states
    names = ("ai_desc", "q_desc", "k_desc", "do_desc", "vn_desc", "dvn_desc", "v_desc",
             "hs_desc", "dhs_desc")  # fmt: skip
    tiles = dg.producer_descs(x, x, x, ai, x, x, x, hs, hs, "sm90_report")[0]
    consts = dict(K_DIM=D, V_DIM=D, NUM_STAGES=dg.NUM_STAGES, PRODUCER_REGS=dg.PRODUCER_REGS)
    ptrs = {n: "*fp32" for n in ("BETA", "DBETA")}
    ptrs.update({n: f"*{TY[dtype]}" for n in ("DQ", "DK", "DV")})
    if not gated:
        return _gluon_compile(dg._bwd_chunk_ws_kernel, dict(zip(names, tiles)), consts,
                              {**ptrs, "scale": "fp32"}, warps=8)  # fmt: skip
    consts.update(CONSUMER_REGS=gluon_gated.CONSUMER_REGS)
    ptrs.update(GATE="*fp32", DG="*fp32")
    return _gluon_compile(gluon_gated._bwd_chunk_gated_kernel, dict(zip(names, tiles)), consts,
                          {**ptrs, "scale": "fp32"}, warps=4)  # fmt: skip


def _gluon_compile(fn, descs, consts, others, warps=4):
    """Compile a Gluon kernel for sm_90 at `warps` warps: `descs` its tensor descriptors by
    argument name, `consts` its constexprs, `others` the types of the other arguments ("i32"
    if not named)."""
    from triton.experimental.gluon._runtime import GluonASTSource
    from triton.runtime.jit import mangle_type

    sig, cs = {}, {}
    for i, n in enumerate(fn.arg_names):
        if n in descs:
            sig[n] = mangle_type(descs[n])
        elif n in consts:
            sig[n], cs[(i,)] = "constexpr", consts[n]
        else:
            sig[n] = others.get(n, "i32")
    return triton.compile(GluonASTSource(fn, sig, cs), target=TARGET,
                          options=dict(num_warps=warps))  # fmt: skip


def norm_rows(dtype, N):
    """The row-normalisation kernels (ops/norm) for rows of N features, as the launchers pass
    them: forward and backward of LayerNorm (weight, bias) and of RMSNorm with a residual
    (weight), in every num_warps the autotuner tries; then the gradient reduction."""
    ty = TY[dtype]
    ints = ("M", "N", "G", "plane0", "plane1")
    for kind, kernel in (("fwd", norm_rowwise._fwd_kernel), ("bwd", norm_rowwise._bwd_kernel)):
        for rms, extra in ((False, False), (True, True)):
            bm, configs, meta = norm_rowwise._plan(kind, N, rms, True, not rms, extra)
            used = {"RES": extra, "SUM": extra, "DSUM": extra, "B": not rms}
            sig, div = {}, []
            for n in kernel.arg_names:
                if n in meta:
                    continue
                if n in ("W", "B"):
                    sig[n] = f"*{ty}"
                elif n in ("STATS", "PART"):
                    sig[n] = "*fp32"
                elif n == "eps":
                    sig[n] = "fp32"
                elif n in ints or n.startswith("s"):
                    sig[n] = "i32"
                else:
                    sig[n] = f"*{ty}"
                if not used.get(n, True):
                    sig[n] = "constexpr"
                elif n != "eps":
                    div.append(n)
            consts = {**meta, **{n: None for n, v in sig.items() if v == "constexpr"}}
            for cfg in configs:
                label = f"norm {kind} {'rms+res' if rms else 'layer'} N={N} BLOCK_M={bm} {cfg}"
                yield label, lambda k=kernel, s=sig, c=consts, w=cfg.num_warps, d=div: _compile(
                    k, s, c, w, None, d)  # fmt: skip
    k = norm_rowwise._sum_kernel
    sig = {n: "i32" if n in ints else "*fp32" if n == "PART" else f"*{ty}" for n in k.arg_names}
    meta = norm_rowwise._SUM_META
    for cfg in norm_rowwise._SUM_CONFIGS:
        yield f"norm sum {meta} {cfg}", lambda c=cfg: _compile(
            k, sig, meta, c.num_warps, None, ("PART", "OUT0", "OUT1", "N"))  # fmt: skip


def conv_rows(dtype, W=4):
    """The short convolution's forward and backward (ops/short_conv) at width W, with and
    without SiLU and bias and packed sequences, in every configuration the autotuner tries."""
    from ncd.ops.short_conv import kernels as sc

    ty = TY[dtype]
    ptrs = {"X": f"*{ty}", "Wt": f"*{ty}", "BIAS": f"*{ty}", "Y": f"*{ty}", "DO": f"*{ty}",
            "DX": f"*{ty}", "DY": f"*{ty}", "PART": "*fp32", "START": "*i32"}  # fmt: skip
    kernels = (("_fwd_kernel", sc._CONFIGS), ("_bwd_dy_kernel", sc._DY_CONFIGS),
               ("_bwd_dx_kernel", sc._CONFIGS))  # fmt: skip
    for kname, configs in kernels:
        kernel = getattr(sc, kname)
        for silu, bias, varlen in ((True, False, False), (True, True, False), (False, False, True)):
            meta = dict(KW=W, HAS_B=bias, SILU=silu, VARLEN=varlen, KP=W, SPAN=sc.SPAN)
            meta = {k: v for k, v in meta.items() if k in kernel.arg_names}
            sig = {a: ptrs.get(a, "i32") for a in kernel.arg_names}
            strides = ("C", "sxb", "sxt", "syb", "syt", "sdb", "sdt", "sob", "sot")
            div = [a for a in kernel.arg_names if a in ptrs or a in strides]
            for cfg in configs:
                consts = {**meta, **cfg.kwargs}
                label = f"conv {kname} W={W} silu={silu:d} bias={bias:d} varlen={varlen:d} {cfg}"
                yield label, lambda k=kernel, s=sig, c=consts, w=cfg.num_warps, d=div: _compile(
                    k, s, c, w, None, d)  # fmt: skip


def every_kernel(kernels, dtype, D, extra):
    """(name, compile function) of each kernel in each configuration asked for."""
    ty, f32 = TY[dtype], dtype == "float32"
    lists = {
        "fwd": (fused.F32_FWD_CONFIGS if f32 else fused.FWD_CONFIGS, (False,)),
        "dkdv": (fused.F32_DKDV_CONFIGS if f32 else fused.DKDV_CONFIGS, (True, False)),
        "dq": (fused.F32_DQ_CONFIGS if f32 else fused.DQ_CONFIGS, (False,)),
    }
    aliases = {"gated": ["sgla", "gla", "delta"], "simple_gla": ["sgla"],
               "delta_rule": ["delta"]}  # fmt: skip
    kernels = [n for name in kernels for n in aliases.get(name, [name])]
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
        elif name == "lindecay":  # the ungated kernels with a constant per-head decay
            for kname in ("_fwd_kernel", "_bwd_kernel"):
                cfgs = chunk.FWD_CONFIGS if kname == "_fwd_kernel" else chunk.BWD_CONFIGS
                for cfg in cfgs:
                    yield f"lin {kname} decay {cfg.kwargs}", lambda k=kname, c=cfg: linear_kernel(
                        getattr(chunk, k), c, D, decay=True)  # fmt: skip
        elif name in ("sgla", "gla", "delta"):
            yield from gated_rows(name, dtype, D)
        elif name == "norm":  # D is the row width here
            yield from norm_rows(dtype, D)
        elif name == "gluon" and not f32:
            for which, groups in (("forward", (1,)), ("dkdv", (1, 4))):
                for group in groups:
                    for causal in (True, False):
                        label = f"gluon {which} group={group} causal={causal:d}"
                        yield label, lambda w=which, ca=causal, g=group: gluon_kernel(
                            w, D, dtype, ca, g)  # fmt: skip
        elif name == "wtacrs":  # D is the number of rows here
            yield from wtacrs_rows(D)
        elif name == "int8":
            yield from int8_rows()
        elif name == "conv":
            yield from conv_rows(dtype)


def int8_rows():
    """The int8 matrix product's two kernels (ops/ivit/matmul.py) in each configuration, with
    the requantising epilogue (per-channel) and without (int32 out), at K = N = 4096."""
    from ncd.ops.ivit import matmul as im

    ptrs = {"a_ptr": "*i8", "b_ptr": "*i8", "c_ptr": "*i32", "bias_ptr": "*i32",
            "mult_ptr": "*i64", "shift_ptr": "*i64"}  # fmt: skip
    kernels = ((im._int8_mm_kernel, im.CONFIGS), (im._int8_mm_tma_kernel, im.TMA_CONFIGS))
    for kernel, cfgs in kernels:
        for requant in (False, True):
            for cfg in cfgs:
                kw = cfg.kwargs
                consts = {"HAS_BIAS": False, "REQUANT": requant, "PER_CHANNEL": requant, **kw}
                descs = {"a_desc": kw["BLOCK_M"], "b_desc": kw["BLOCK_N"]}
                sig = {a: (f"tensordesc<i8[{descs[a]},{kw['BLOCK_K']}]>" if a in descs else
                           ptrs.get(a, "i32")) for a in kernel.arg_names}  # fmt: skip
                if requant:
                    sig["c_ptr"] = "*i8"
                div = [a for a in kernel.arg_names if a in ptrs or a in ("N", "K")]
                name = kernel.fn.__name__
                label = f"int8 {name} requant={requant:d} [{kw} w{cfg.num_warps} s{cfg.num_stages}]"
                yield label, lambda kn=kernel, sg=sig, c=consts, g=cfg, d=div: _compile(
                    kn, sg, c, g.num_warps, g.num_stages, d)  # fmt: skip
    if gluon_common.GLUON:  # the warp-specialized Gluon kernel (matmul_gluon.py)
        for block_n in (128, 256):
            for ahead in (True, False):
                label = f"int8 gluon _int8_mm_ws_kernel BLOCK_N={block_n} AHEAD={ahead:d}"
                yield label, lambda n=block_n, a=ahead: int8_gluon_kernel(n, a)


def int8_gluon_kernel(block_n, ahead):
    """The Gluon int8 product (int32 out, with a bias) at K = N = 4096."""
    from ncd.ops.ivit import matmul_gluon as mg

    x = torch.empty(256, 4096, dtype=torch.int8)
    descs = dict(zip(("a_desc", "b_desc"), mg.descs(x, x.t(), block_n)))
    consts = dict(HAS_BIAS=True, GROUP_M=mg.GROUP_M, AHEAD=ahead,
                  NUM_STAGES=mg.NUM_STAGES if block_n == mg.BLOCK_N else 3,
                  PRODUCER_REGS=mg.PRODUCER_REGS, CONSUMER_REGS=mg.CONSUMER_REGS)  # fmt: skip
    others = {"c_ptr": "*i32", "bias_ptr": "*i32"}
    return _gluon_compile(mg._int8_mm_ws_kernel, descs, consts, others)


def wtacrs_rows(n):
    """The WTA-CRS selection's kernels (ops/wtacrs/selection.py) for n rows, with and without
    gradient norms, as `select` launches them on the GPU (the all-pairs ranking up to
    ALL_PAIRS_ROWS rows, the block sort and ranks above); then the gather of the kept rows
    (bfloat16)."""
    from ncd.ops.wtacrs import kernels as wk
    from ncd.ops.wtacrs import selection as ws

    cfg = ws.GPU
    B = cfg["sort"]["B"]
    if n <= ws.ALL_PAIRS_ROWS:
        BI = cfg["rank_all"]["BI"]
        ranks = (("rank_all", ws._rank_all_kernel, {"B": B}),)
    else:
        BI = cfg["rank"]["BI"]
        ranks = (
            ("sort", ws._block_sort_kernel, {"BI": BI}),
            ("rank", ws._rank_kernel, {"B": B, "LOG_B": B.bit_length() - 1}),
        )
    nch = -(-n // BI)
    parts = (
        *ranks,
        (
            "draw",
            ws._draw_kernel,
            {"B": B, "BI": BI, "NCH": max(2, triton.next_power_of_2(nch)), "GATHER": True},
        ),
    )
    ptrs = {"NRM": "*fp32", "G": "*fp16", "SCR": "*i64", "IDX": "*i64", "WT": "*fp32",
            "U": "*fp64", "X": "*bf16", "OUT": "*bf16"}  # fmt: skip
    for part, kernel, more in parts:
        meta = {k: v for k, v in cfg[part].items() if k != "num_warps"}
        for has_g in (False, True):
            consts = {**meta, **more, "HAS_G": has_g, **({} if has_g else {"G": None})}
            sig = {a: ptrs.get(a, "fp32" if a == "two_b" else "i32") for a in kernel.arg_names}
            div = [a for a in kernel.arg_names if a in ptrs or a in ("n", "nb", "D", "sxn")]
            label = f"wtacrs {kernel.fn.__name__} n={n} g={has_g:d} {cfg[part]}"
            yield label, lambda kn=kernel, s=sig, c=consts, w=cfg[part]["num_warps"], d=div: (
                _compile(kn, s, c, w, None, d))  # fmt: skip
    g = wk.GATHER_BLOCK
    sig = {a: {"X": "*bf16", "IDX": "*i64", "WT": "*fp32", "OUT": "*bf16"}.get(a, "i32")
           for a in wk._gather_scale_kernel.arg_names}  # fmt: skip
    yield (
        f"wtacrs _gather_scale_kernel {g}",
        lambda: _compile(
            wk._gather_scale_kernel, sig, g, 4, None, ("X", "IDX", "WT", "OUT", "D", "sxn")
        ),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--kernels",
        default=None,
        help="fwd, dkdv, dq, lin, lindecay, gluon, "
        "sgla (or simple_gla), gla, delta (or delta_rule), gated (the three), "
        "norm (ops/norm at rows of --D features), wtacrs (the WTA-CRS selection at --D rows), "
        "conv (the short convolution, W = 4), int8 (the int8 matrix product's kernels)",
    )
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(TY))
    ap.add_argument(
        "--arch",
        type=int,
        default=90,
        choices=sorted(SMEM_LIMITS),
        help="compute capability to compile for (90: the H100 / H200)",
    )
    ap.add_argument("--D", type=int, default=128, help="head width (a power of two)")
    ap.add_argument("--group", type=int, default=1, help="lin, lindecay, sgla: value heads per "
                    "head of q and k (grouped heads; 1: the ungrouped kernels)")  # fmt: skip
    ap.add_argument("--extra", default="", help='more rows, e.g. "(64, 32, 4, 2); (128, 64, 8, 3)"')
    ap.add_argument("--sass", help="write the SASS of every configuration here, both 16-bit "
                    "dtypes and float32, D 64 and 128, instead of the table: the --kernels "
                    "given, else the softmax, Gluon and linear-attention kernels")  # fmt: skip
    ap.add_argument("--match", help="only the table's rows whose label matches this regex")
    ap.add_argument("--dump", help="also write the SASS and PTX of the table's rows here")
    args = ap.parse_args()
    global TARGET, SMEM_LIMIT, ONE_STAGE, GROUP
    TARGET, SMEM_LIMIT = GPUTarget("cuda", args.arch, 32), SMEM_LIMITS[args.arch]
    GROUP = args.group
    if "gluon" in (args.kernels or "") or (args.sass and not args.kernels):
        assert gluon_common.GLUON, "the Gluon kernels need Triton 3.6 first on the path"
    extra = [ast.literal_eval(r.strip()) for r in args.extra.split(";") if r.strip()]
    if args.sass:
        os.makedirs(args.sass, exist_ok=True)
        for dtype in ("bfloat16", "float16", "float32"):
            for D in (128, 64):
                every = ["fwd", "dkdv", "dq", "gluon"] + (["lin"] if D == 128 else [])
                every = args.kernels.split(",") if args.kernels else every
                for label, make in every_kernel(every, dtype, D, []):
                    name = re.sub(r"[^A-Za-z0-9=_.-]+", "_", f"{dtype}_D{D}_{label}")
                    with open(os.path.join(args.sass, name + ".sass"), "w") as f:
                        f.write(cubin_resources(make())["sass"])
                    print(name, flush=True)
        return
    print(f"Triton {triton.__version__}, sm_{args.arch} ({SMEM_LIMIT / 1024:.1f} KiB of shared "
          f"memory a block), {args.dtype}, D = {args.D}")  # fmt: skip
    rows = list(every_kernel((args.kernels or "fwd,dkdv,dq").split(","), args.dtype, args.D,
                             extra))  # fmt: skip
    rows = [r for r in rows if not args.match or re.search(args.match, r[0])]
    if args.dump:
        os.makedirs(args.dump, exist_ok=True)
    w = max([52] + [len(label) for label, _ in rows])
    print(f"{'kernel':{w}} {'regs':>4} {'stack B':>7} {'smem KiB':>8} {'max reg':>7} "
          f"{'instrs':>6} {'bar':>4} {'LDL+STL':>7}  wgmma (+mma.sync)"
          "  loops: instrs/bar/local")  # fmt: skip
    fits: dict = {}  # kernel variant (the label up to its configuration) -> some row fits
    for label, make in rows:
        kname = re.split(r" (?=[\[{(]|BLOCK_|BT:|num_warps)", label)[0]
        try:
            ck = make()
            r = cubin_resources(ck)
        except Exception as e:  # a configuration that does not compile is reported
            msg = " ".join(str(e).split())
            print(f"{label:{w}} {type(e).__name__}: {msg[:300]} ... {msg[-400:]}", flush=True)
            fits.setdefault(kname, False)
            continue
        over = f"  over sm_{args.arch}'s shared memory" if r["smem"] > SMEM_LIMIT else ""
        fits[kname] = fits.get(kname, False) or not over
        if over and args.arch != 90:
            ONE_STAGE = True
            one = cubin_resources(make())["smem"]
            ONE_STAGE = False
            over += f" (one stage: {one / 1024:.1f} KiB{', fits' if one <= SMEM_LIMIT else ''})"
            fits[kname] = fits[kname] or one <= SMEM_LIMIT
        mma = f" (+{r['mma']})" if r["mma"] else ""
        loops = " ".join(f"{x['instrs']}/{x['bar']}/{x['local']}" for x in r["loops"])
        print(f"{label:{w}} {r['regs']:4} {r['stack']:7} {r['smem'] / 1024:8.1f} "
              f"{r['max_reg']:7} {r['instrs']:6} {r['bar']:4} {r['ldl_stl']:7}  {r['wgmma']}"
              f"{mma}{over}  {loops}", flush=True)  # fmt: skip
        if args.dump:
            name = re.sub(r"[^A-Za-z0-9=_.-]+", "_", f"{args.dtype}_D{args.D}_{label}")
            for ext, text in (("sass", r["sass"]), ("ptx", ck.asm["ptx"])):
                with open(os.path.join(args.dump, f"{name}.{ext}"), "w") as f:
                    f.write(text)
    unfit = [n for n, ok in fits.items() if not ok]
    print(f"kernel variants with no row that fits sm_{args.arch}, even at one stage: "
          f"{', '.join(unfit) if unfit else 'none'}")  # fmt: skip


if __name__ == "__main__":
    main()
