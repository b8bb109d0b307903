"""The int8 matrix product with int32 accumulation (HAWQ-V3's integer GEMM): tiled Triton
kernels on tl.dot of int8 tiles into an int32 accumulator, with an optional fused epilogue
(int32 bias, then dyadic requantisation to int8), their launch wrapper and the public function
(inference only: no autograd).

Three kernels compute the same thing. Where both operands can be read through tensor maps (a
row-major with K contiguous, b K-major as ``weight.t()``, 16-byte aligned, K a multiple of
16): on Hopper, matmul_gluon.py's warp-specialized Gluon kernel for the int32 product; for
requantised outputs and on other GPUs `_int8_mm_tma_kernel`, one program per multiprocessor
walking the output tiles, the tiles loaded by the copy engine. Otherwise `_int8_mm_kernel`
runs one program per output tile reading through pointers (any strides). All store the tile
through pointers (the Triton kernels with `_epilogue`; the Gluon kernel adds the bias only).
"""

import math

import torch

from .. import _backend, _gluon
from .._backend import cdiv, check, launch, sm_count, use_triton
from .._kernels import grouped_tile
from .._traced import kernel_op, tracing
from .._triton import TensorDescriptor, tl, triton
from . import matmul_gluon
from .nonlinear import per_channel_values
from .reference import MAX_ACC_K, int8_matmul_reference


@triton.jit
def _epilogue(acc, c_ptr, bias_ptr, mult_ptr, shift_ptr, mult_s, shift_s, M, N, offs_m, offs_n,
              stride_cm, stride_cn, QMIN, QMAX, HAS_BIAS: tl.constexpr, REQUANT: tl.constexpr,
              PER_CHANNEL: tl.constexpr, BLOCK_N: tl.constexpr):  # fmt: skip
    """Store the int32 tile acc (rows offs_m, columns offs_n): plus the bias, then either as
    it is or requantised to int8 (round(acc * mult / 2^shift), halves up, clamped)."""
    n_mask = offs_n < N
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=n_mask, other=0)[None, :]
    c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
    mask = (offs_m[:, None] < M) & n_mask[None, :]
    if REQUANT:
        if PER_CHANNEL:
            mult = tl.load(mult_ptr + offs_n, mask=n_mask, other=0)[None, :]
            shift = tl.load(shift_ptr + offs_n, mask=n_mask, other=1)[None, :]
        else:
            mult = tl.full([1, BLOCK_N], mult_s, tl.int64)
            shift = tl.full([1, BLOCK_N], shift_s, tl.int64)
        half = tl.full([1, BLOCK_N], 1, tl.int64) << (shift - 1)
        y = (acc.to(tl.int64) * mult + half) >> shift
        y = tl.minimum(tl.maximum(y, QMIN), QMAX)
        tl.store(c_ptrs, y.to(c_ptr.dtype.element_ty), mask=mask)
    else:
        tl.store(c_ptrs, acc, mask=mask)


@triton.jit
def _int8_mm_kernel(
    a_ptr, b_ptr, c_ptr, bias_ptr, mult_ptr, shift_ptr, mult_s, shift_s, M, N, K,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn, QMIN, QMAX,
    HAS_BIAS: tl.constexpr, REQUANT: tl.constexpr, PER_CHANNEL: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):  # fmt: skip
    pid_m, pid_n = grouped_tile(tl.program_id(0), tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N), GROUP_M)
    offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    offs_n = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - k * BLOCK_K
        a = tl.load(a_ptrs, mask=(offs_m[:, None] < M) & (offs_k[None, :] < k_left), other=0)
        b = tl.load(b_ptrs, mask=(offs_k[:, None] < k_left) & (offs_n[None, :] < N), other=0)
        acc = tl.dot(a, b, acc, out_dtype=tl.int32)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    _epilogue(acc, c_ptr, bias_ptr, mult_ptr, shift_ptr, mult_s, shift_s, M, N, offs_m, offs_n,
              stride_cm, stride_cn, QMIN, QMAX, HAS_BIAS, REQUANT, PER_CHANNEL,
              BLOCK_N)  # fmt: skip


@triton.jit
def _int8_mm_tma_kernel(
    a_desc, b_desc, c_ptr, bias_ptr, mult_ptr, shift_ptr, mult_s, shift_s, M, N, K,
    stride_cm, stride_cn, QMIN, QMAX, NUM_PROGRAMS,
    HAS_BIAS: tl.constexpr, REQUANT: tl.constexpr, PER_CHANNEL: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):  # fmt: skip
    # a_desc: a [M, K]; b_desc: b as [N, K] (K-major). Program p takes tiles p, p + P, ...
    grid_m = tl.cdiv(M, BLOCK_M)
    grid_n = tl.cdiv(N, BLOCK_N)
    k_tiles = tl.cdiv(K, BLOCK_K)
    for tile in tl.range(tl.program_id(0), grid_m * grid_n, NUM_PROGRAMS, flatten=True):
        pid_m, pid_n = grouped_tile(tile, grid_m, grid_n, GROUP_M)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
        for k in range(k_tiles):
            a = a_desc.load([pid_m * BLOCK_M, k * BLOCK_K])
            b = b_desc.load([pid_n * BLOCK_N, k * BLOCK_K])
            acc = tl.dot(a, b.T, acc, out_dtype=tl.int32)
        offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
        offs_n = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
        _epilogue(acc, c_ptr, bias_ptr, mult_ptr, shift_ptr, mult_s, shift_s, M, N, offs_m,
                  offs_n, stride_cm, stride_cn, QMIN, QMAX, HAS_BIAS, REQUANT, PER_CHANNEL,
                  BLOCK_N)  # fmt: skip


# int8 tiles are half the bytes of 16-bit ones: BLOCK_K 128 keeps one tile row at 128 bytes.
CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8},
                  num_warps=w, num_stages=s)
    for bm, bn, bk, w, s in (
        (128, 256, 128, 8, 3), (256, 128, 128, 8, 3), (128, 128, 128, 8, 4),
        (128, 128, 128, 4, 4), (128, 256, 64, 8, 4), (64, 128, 128, 4, 4),
    )
]  # fmt: skip


def _set_blocks(nargs):
    """Give the two tensor maps the tile shapes of the configuration about to run."""
    nargs["a_desc"].block_shape = [nargs["BLOCK_M"], nargs["BLOCK_K"]]
    nargs["b_desc"].block_shape = [nargs["BLOCK_N"], nargs["BLOCK_K"]]


# The tensor-map kernel: BLOCK_K 128 fills a 128-byte swizzled row; the first tile won the sweep
# of bench/diagnose/int8_sweep.py at both benchmark shapes.
TMA_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8},
                  num_warps=w, num_stages=s, pre_hook=_set_blocks)
    for bm, bn, bk, w, s in (
        (256, 128, 128, 8, 3), (128, 128, 128, 4, 4), (128, 128, 128, 4, 5), (128, 256, 64, 8, 4),
    )
]  # fmt: skip
INTERPRET = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32, "GROUP_M": 2}
KEY = ["M", "N", "K"]


OP = "int8_matmul"


def _tma_ready(a2, b) -> bool:
    """Whether the copy engine reads both operands in place: a [M, K] and b [K, N] both
    K-contiguous (b a weight's transpose), rows 16-byte aligned, K a multiple of 16."""
    K = a2.shape[1]
    return (
        K % 16 == 0
        and a2.stride(1) == 1 and a2.stride(0) % 16 == 0 and a2.data_ptr() % 16 == 0
        and b.stride(0) == 1 and b.stride(1) % 16 == 0 and b.data_ptr() % 16 == 0
    )  # fmt: skip


def int8_matmul(
    a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None, multiplier=None,
    shift=None, bits: int = 8, backend: str = "auto",
) -> torch.Tensor:  # fmt: skip
    """``a @ b`` of int8 matrices with int32 accumulation (HAWQ-V3), optionally with an int32
    bias and dyadic requantisation fused into the epilogue.

    Args:
        a: int8 ``[..., K]`` (activations; any strides).
        b: int8 ``[K, N]`` (any strides; K-major, such as ``weight.t()`` of an ``[N, K]``
            weight, is what Hopper's int8 tensor cores read directly). K <= 131071, so that
            the int32 accumulator cannot overflow.
        bias: int32 ``[N]`` in the accumulator's units (scale_a * scale_b), or None.
        multiplier, shift: None (return the int32 accumulator), or ints / integer tensors
            ``[N]`` (per output channel) from ``reference.dyadic(scale_a * scale_b /
            scale_out)``: the output is ``clamp(round((acc + bias) * multiplier / 2^shift))``
            to `bits` signed bits, rounded to nearest with halves upwards.
        bits: output bits with requantisation (2..8).
        backend: ``"auto"`` (Triton on CUDA tensors, the reference on CPU), ``"triton"`` or
            ``"reference"``.

    Returns:
        int32 ``[..., N]``, or int8 ``[..., N]`` with requantisation.

    >>> a = torch.full((2, 3), 100, dtype=torch.int8)
    >>> b = torch.full((3, 4), -100, dtype=torch.int8)
    >>> int8_matmul(a, b)[0, 0].item(), int8_matmul(a, b, None, 1 << 30, 40)[0, 0].item()
    (-30000, -29)
    """
    for name, t in (("a", a), ("b", b)):
        check(isinstance(t, torch.Tensor) and t.dtype == torch.int8, OP, f"{name}.dtype",
              "torch.int8", getattr(t, "dtype", type(t).__name__))  # fmt: skip
    check(a.dim() >= 1, OP, "a.shape", "[..., K]", tuple(a.shape))
    check(b.dim() == 2 and b.shape[0] == a.shape[-1], OP, "b.shape",
          f"[K, N] with K = {a.shape[-1]} (a's last axis)", tuple(b.shape))  # fmt: skip
    check(b.device == a.device, OP, "b.device", str(a.device), b.device)
    K, N = b.shape
    check(K <= MAX_ACC_K, OP, "K", f"at most {MAX_ACC_K} (int32 accumulation)", K)
    if bias is not None:
        check(isinstance(bias, torch.Tensor) and bias.dtype == torch.int32
              and tuple(bias.shape) == (N,), OP, "bias", f"int32 [{N}]",
              (getattr(bias, "dtype", None), tuple(getattr(bias, "shape", ()))))  # fmt: skip
    check((multiplier is None) == (shift is None), OP, "multiplier and shift",
          "both given or both None", (multiplier, shift))  # fmt: skip
    requant = multiplier is not None
    per_channel, mult, sh = False, 0, 0
    if requant:
        check(isinstance(bits, int) and 2 <= bits <= 8, OP, "bits", "an int from 2 to 8", bits)
        mult = per_channel_values(multiplier, N, OP, "multiplier", a.device, keep_int=True)
        sh = per_channel_values(shift, N, OP, "shift", a.device, keep_int=True)
        per_channel = isinstance(mult, torch.Tensor) or isinstance(sh, torch.Tensor)
        if per_channel:
            mult, sh = (per_channel_values(v, N, OP, n, a.device) if isinstance(v, int)
                        else v for v, n in ((mult, "multiplier"), (sh, "shift")))  # fmt: skip
        # Values checked: ints always, tensors on the host (CUDA ones are trusted: no sync)
        # outside tracing (fake tensors have no values).
        if not per_channel:
            check(abs(mult) < 2**31 and 1 <= sh <= 62, OP, "multiplier, shift",
                  "|multiplier| < 2^31 and shift in 1..62", ([mult], [sh]))  # fmt: skip
        elif not a.is_cuda and not tracing():
            check(bool(((mult.abs() < 2**31) & (sh >= 1) & (sh <= 62)).all()), OP,
                  "multiplier, shift", "|multiplier| < 2^31 and shift in 1..62",
                  (mult.tolist()[:4], sh.tolist()[:4]))  # fmt: skip
    lead = a.shape[:-1]
    a2 = a.reshape(math.prod(lead), K)
    if not use_triton(a, backend, OP) or K == 0:  # K = 0: bias alone, no product to run
        out = int8_matmul_reference(a2, b, bias, mult if requant else None,
                                    sh if requant else None, bits)  # fmt: skip
        return out.reshape(*lead, N)
    c = _int8_matmul(
        a2, b, bias, mult if per_channel else None, sh if per_channel else None,
        0 if per_channel else mult, 0 if per_channel else sh, requant, bits,
    )  # fmt: skip
    return c.reshape(*lead, N)


def _int8_matmul_2d(
    a2: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None, mult: torch.Tensor | None,
    shift: torch.Tensor | None, mult_s: int, shift_s: int, requant: bool, bits: int,
) -> torch.Tensor:  # fmt: skip
    """The kernels' product of a2 [M, K] and b [K, N] (int8, K >= 1) -> c [M, N], int32, or
    int8 requantised (`requant`) by mult, shift (int64 [N], per channel) or, where those are
    None, by the ints mult_s, shift_s; bias int32 [N] or None."""
    (M, K), N = a2.shape, b.shape[1]
    c = torch.empty(M, N, dtype=torch.int8 if requant else torch.int32, device=a2.device)
    if M == 0 or N == 0 or _backend.skip_launches:  # fake tensors: no data pointer to read
        return c
    per_channel = mult is not None
    dummy = c
    epilogue = (dummy if bias is None else bias, mult if per_channel else dummy,
                shift if per_channel else dummy, mult_s, shift_s)  # fmt: skip
    flags = {"HAS_BIAS": bias is not None, "REQUANT": requant, "PER_CHANNEL": per_channel}
    tma = _tma_ready(a2, b)
    if tma and matmul_gluon.available() and matmul_gluon.supports(a2, b, requant)[0]:
        done = _gluon.attempt(OP, matmul_gluon.run, a2, b, c, bias, sm_count(a2.device))
        if done is not None:
            return c
    if tma:
        programs = sm_count(a2.device)
        launch(
            _int8_mm_tma_kernel, TMA_CONFIGS,
            lambda m: (min(programs, cdiv(M, m["BLOCK_M"]) * cdiv(N, m["BLOCK_N"])),),
            (TensorDescriptor(a2, [M, K], [K, 1], [16, 16]),
             TensorDescriptor(b.t(), [N, K], [K, 1], [16, 16]), c, *epilogue, M, N, K,
             *c.stride(), -(1 << (bits - 1)), (1 << (bits - 1)) - 1, programs),
            flags, INTERPRET, key=KEY, pre_hook=_set_blocks,
        )  # fmt: skip
        return c
    launch(
        _int8_mm_kernel, CONFIGS,
        lambda m: (cdiv(M, m["BLOCK_M"]) * cdiv(N, m["BLOCK_N"]),),
        (a2, b, c, *epilogue, M, N, K, *a2.stride(), *b.stride(), *c.stride(),
         -(1 << (bits - 1)), (1 << (bits - 1)) - 1),
        flags, INTERPRET, key=KEY,
    )  # fmt: skip
    return c


_int8_matmul = kernel_op("ivit_int8_matmul", _int8_matmul_2d)
