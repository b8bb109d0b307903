"""The int8 matrix product on Hopper (sm_90) in Gluon: a warp-specialized kernel, the
tensor-core pipeline of a CUTLASS-style GEMM that Triton's own software pipelining does not
reach for int8 (matmul.py's kernels: README.md, "The int8 product").

Output tiles of BLOCK_M = 128 rows and BLOCK_N columns, ordered in groups of GROUP_M tile rows
(L2 reuse of b: `ops/_kernels.py`'s `grouped_tile`, as in matmul.py); program p takes tiles p,
p + P, ... (persistent with P the number of multiprocessors, so a tile's epilogue runs while
the producer already loads the next tile's first stages). `gl.warp_specialize`:

- a 1-warp producer (`PRODUCER_REGS` registers by setmaxnreg) streams the K steps: per step
  the two 64-row halves of a's tile and b's tile (BLOCK_N x BLOCK_K, K-major) by TMA into a
  ring of `NUM_STAGES` shared-memory stages, one ready barrier per stage;
- two consumer warpgroups, each its own partition (4 warps, `CONSUMER_REGS` registers), each
  owning 64 of the 128 rows: per step an async wgmma of int8 operands from shared memory
  into an int32 accumulator in registers, one product left in flight while the next stage
  is awaited; a stage is released (its empty barrier, one arrive per consumer) once the
  product that read it has completed.

Epilogue per consumer: plus the bias, the int32 tile stored through pointers (masked at the
edges). Requantised outputs are not taken (`supports`): matmul.py's tensor-map kernel gives
them.
TMA zero-fills reads past a's and b's edges, so M, N and K need not be multiples of the tile.
Inputs it takes: `supports`.
"""

from __future__ import annotations

import torch

from .. import _gluon as common
from .._backend import cdiv, launch_compiled
from .._gluon import (
    TensorDescriptor,
    fence_async_shared,
    gl,
    gluon,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)
from .._kernels import grouped_tile

BLOCK_M = 128  # output rows per program (64 per consumer warpgroup)
BLOCK_N = 128  # output columns per program
BLOCK_K = 128  # K per step: a 128-byte swizzled row of int8
GROUP_M = 8  # tile rows per group of the tile order
NUM_STAGES = 5  # ring depth: (128 + BLOCK_N) x BLOCK_K bytes a stage
# Each consumer keeps its last product in flight while it awaits the next stage (True), or
# waits for each product before the next (False; the two warpgroups' products interleave)
AHEAD = True
CONSUMER_REGS = 232  # registers per thread of the consumer warpgroups (setmaxnreg)
PRODUCER_REGS = 40  # of the 1-warp TMA producer


if common.GLUON:

    @gluon.jit
    def _producer(a_desc, b_desc, a_smem, b_smem, ready, empty, M, N, K,
                  GROUP_M: gl.constexpr, NUM_STAGES: gl.constexpr):  # fmt: skip
        BH: gl.constexpr = a_desc.block_type.shape[0]
        BK: gl.constexpr = a_desc.block_type.shape[1]
        BN: gl.constexpr = b_desc.block_type.shape[0]
        nbytes: gl.constexpr = 2 * a_desc.block_type.nbytes + b_desc.block_type.nbytes
        grid_m = gl.cdiv(M, 2 * BH)
        grid_n = gl.cdiv(N, BN)
        k_steps = gl.cdiv(K, BK)
        step = 0  # the ring's position runs on across tiles
        for tile in range(gl.program_id(0), grid_m * grid_n, gl.num_programs(0)):
            pid_m, pid_n = grouped_tile(tile, grid_m, grid_n, GROUP_M)
            for j in range(k_steps):
                s = step % NUM_STAGES
                # A fresh barrier counts as having completed the phase before phase 0: the
                # first NUM_STAGES waits (parity 1) pass at once.
                mbarrier.wait(empty.index(s), ((step // NUM_STAGES) & 1) ^ 1)
                bar = ready.index(s)
                mbarrier.expect(bar, nbytes)
                k = j * BK
                off_m = pid_m * 2 * BH
                tma.async_copy_global_to_shared(a_desc, [off_m, k], bar, a_smem.index(2 * s))
                tma.async_copy_global_to_shared(a_desc, [off_m + BH, k], bar,
                                                a_smem.index(2 * s + 1))  # fmt: skip
                tma.async_copy_global_to_shared(b_desc, [pid_n * BN, k], bar, b_smem.index(s))
                step += 1

    @gluon.jit
    def _consumer(a_smem, b_smem, ready, empty, c_ptr, bias_ptr, M, N, K, stride_cm, stride_cn,
                  HALF: gl.constexpr, HAS_BIAS: gl.constexpr, GROUP_M: gl.constexpr,
                  NUM_STAGES: gl.constexpr, AHEAD: gl.constexpr):  # fmt: skip
        """Rows [HALF * BH, (HALF + 1) * BH) of each of the program's tiles, one warpgroup."""
        BH: gl.constexpr = a_smem.shape[1]
        BK: gl.constexpr = a_smem.shape[2]
        BN: gl.constexpr = b_smem.shape[1]
        grid_m = gl.cdiv(M, 2 * BH)
        grid_n = gl.cdiv(N, BN)
        k_steps = gl.cdiv(K, BK)
        step = 0
        for tile in range(gl.program_id(0), grid_m * grid_n, gl.num_programs(0)):
            pid_m, pid_n = grouped_tile(tile, grid_m, grid_n, GROUP_M)
            _consume_tile(a_smem, b_smem, ready, empty, step, k_steps, c_ptr, bias_ptr, M, N,
                          pid_m * 2 * BH, pid_n * BN, stride_cm, stride_cn, HALF, HAS_BIAS,
                          NUM_STAGES, AHEAD)  # fmt: skip
            step += k_steps

    @gluon.jit
    def _consume_tile(a_smem, b_smem, ready, empty, step, k_steps, c_ptr, bias_ptr, M, N, off_m,
                      off_n, stride_cm, stride_cn, HALF: gl.constexpr, HAS_BIAS: gl.constexpr,
                      NUM_STAGES: gl.constexpr, AHEAD: gl.constexpr):  # fmt: skip
        """One tile's rows of this warpgroup: its K steps from ring position `step` on, then
        the int32 tile (plus the bias) stored."""
        BH: gl.constexpr = a_smem.shape[1]
        BN: gl.constexpr = b_smem.shape[1]
        # int8 wgmma of up to 128 columns an instruction (Triton 3.6 emits no wider one)
        acc_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, min(BN, 128), 32]
        )
        acc = gl.zeros([BH, BN], gl.int32, acc_layout)
        for j in range(k_steps):
            s = (step + j) % NUM_STAGES
            mbarrier.wait(ready.index(s), ((step + j) // NUM_STAGES) & 1)
            tok = warpgroup_mma(a_smem.index(2 * s + HALF), b_smem.index(s).permute((1, 0)), acc,
                                is_async=True)  # fmt: skip
            if AHEAD:  # the product of step j - 1 has completed: its stage is free
                acc = warpgroup_mma_wait(num_outstanding=1, deps=(tok,))
                if j > 0:
                    mbarrier.arrive(empty.index((step + j - 1) % NUM_STAGES), count=1)
            else:  # this step's product has completed (the other warpgroup's runs meanwhile)
                acc = warpgroup_mma_wait(num_outstanding=0, deps=(tok,))
                mbarrier.arrive(empty.index(s), count=1)
        if AHEAD:
            acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
            mbarrier.arrive(empty.index((step + k_steps - 1) % NUM_STAGES), count=1)

        offs_m = off_m + HALF * BH + gl.arange(0, BH, layout=gl.SliceLayout(1, acc_layout))
        offs_n = off_n + gl.arange(0, BN, layout=gl.SliceLayout(0, acc_layout))
        n_mask = offs_n < N
        if HAS_BIAS:
            acc += gl.expand_dims(gl.load(bias_ptr + offs_n, mask=n_mask, other=0), 0)
        # one 64-bit base per tile, 32-bit offsets in it (`supports`: 64 rows of c fit them)
        base = c_ptr + (off_m + HALF * BH).to(gl.int64) * stride_cm + off_n.to(gl.int64) * stride_cn
        r = gl.arange(0, BH, layout=gl.SliceLayout(1, acc_layout))
        c = gl.arange(0, BN, layout=gl.SliceLayout(0, acc_layout))
        c_ptrs = base + (gl.expand_dims(r * stride_cm, 1) + gl.expand_dims(c * stride_cn, 0))
        mask = gl.expand_dims(offs_m < M, 1) & gl.expand_dims(n_mask, 0)
        gl.store(c_ptrs, acc, mask=mask)

    @gluon.jit
    def _int8_mm_ws_kernel(a_desc, b_desc, c_ptr, bias_ptr, M, N, K, stride_cm, stride_cn,
                           HAS_BIAS: gl.constexpr, GROUP_M: gl.constexpr,
                           NUM_STAGES: gl.constexpr, AHEAD: gl.constexpr,
                           PRODUCER_REGS: gl.constexpr, CONSUMER_REGS: gl.constexpr):  # fmt: skip
        """a_desc: tiles of BH = 64 rows of a ``[M, K]``; b_desc: tiles of BN rows of b as
        ``[N, K]`` (K-major); both BK wide."""
        BH: gl.constexpr = a_desc.block_type.shape[0]
        BK: gl.constexpr = a_desc.block_type.shape[1]
        BN: gl.constexpr = b_desc.block_type.shape[0]
        a_smem = gl.allocate_shared_memory(gl.int8, [2 * NUM_STAGES, BH, BK], a_desc.layout)
        b_smem = gl.allocate_shared_memory(gl.int8, [NUM_STAGES, BN, BK], b_desc.layout)
        ready = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        empty = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        for st in gl.static_range(NUM_STAGES):
            mbarrier.init(ready.index(st), count=1)
            mbarrier.init(empty.index(st), count=2)  # one arrive per consumer warpgroup
        fence_async_shared()

        gl.warp_specialize(
            [
                (_consumer, (a_smem, b_smem, ready, empty, c_ptr, bias_ptr, M, N, K, stride_cm,
                             stride_cn, 0, HAS_BIAS, GROUP_M, NUM_STAGES, AHEAD)),
                (_consumer, (a_smem, b_smem, ready, empty, c_ptr, bias_ptr, M, N, K, stride_cm,
                             stride_cn, 1, HAS_BIAS, GROUP_M, NUM_STAGES, AHEAD)),
                (_producer, (a_desc, b_desc, a_smem, b_smem, ready, empty, M, N, K, GROUP_M,
                             NUM_STAGES)),
            ],
            [4, 1],
            [CONSUMER_REGS, PRODUCER_REGS],
        )  # fmt: skip


def available() -> bool:
    """Gluon of Triton 3.6 can run here (`ops/_gluon.py`)."""
    return common.available()


def supports(a2: torch.Tensor, b: torch.Tensor, requant: bool) -> tuple[bool, str]:
    """Whether `int8_matmul` gives a ``[M, K]`` and b ``[K, N]`` (both read in place by the
    copy engine: matmul.py's `_tma_ready`, checked by the caller) to this kernel, and if not
    why."""
    if not common.on_hopper(a2):
        return False, f"needs a Hopper GPU (sm_90), found {a2.device}"
    if requant:  # an int64 requantising epilogue here spilled and was slower (README.md)
        return False, "requantised outputs go to the tensor-map kernel"
    if 64 * b.shape[1] >= 2**31:
        return False, f"the epilogue's 32-bit offsets need 64 * N < 2^31, found N = {b.shape[1]}"
    if "int8_matmul" in common.FAILED:
        return False, "the Gluon kernel failed earlier in this process"
    return True, ""


def descs(a2: torch.Tensor, b: torch.Tensor, block_n: int = BLOCK_N):
    """The tensor maps: a ``[M, K]`` in tiles of BLOCK_M / 2 rows, b as ``[N, K]`` in tiles
    of block_n rows, both BLOCK_K wide."""
    (M, K), N = a2.shape, b.shape[1]
    lay_a = common.tile_layout(BLOCK_M // 2, BLOCK_K, torch.int8)
    lay_b = common.tile_layout(block_n, BLOCK_K, torch.int8)
    a_desc = TensorDescriptor(a2, [M, K], [a2.stride(0), 1], [BLOCK_M // 2, BLOCK_K], lay_a)
    return a_desc, TensorDescriptor(b.t(), [N, K], [b.stride(1), 1], [block_n, BLOCK_K], lay_b)


def run(a2, b, c, bias, programs, block_n=BLOCK_N, stages=NUM_STAGES, ahead=AHEAD):
    """c = a2 @ b (+ bias, int32 ``[N]``, or None) into c, int32 and contiguous; at most
    `programs` programs, each walking its tiles."""
    if not common.GLUON:
        raise RuntimeError("ncd.ops.ivit.matmul_gluon: needs Triton 3.6's Gluon")
    (M, K), N = a2.shape, b.shape[1]
    launch_compiled(
        _int8_mm_ws_kernel, (min(programs, cdiv(M, BLOCK_M) * cdiv(N, block_n)),),
        (*descs(a2, b, block_n), c, c if bias is None else bias, M, N, K, *c.stride()),
        dict(HAS_BIAS=bias is not None, GROUP_M=GROUP_M, NUM_STAGES=stages, AHEAD=ahead,
             PRODUCER_REGS=PRODUCER_REGS, CONSUMER_REGS=CONSUMER_REGS, num_warps=4),
    )  # fmt: skip
    return c
