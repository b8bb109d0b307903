"""WTA-CRS as Triton kernels: the forward's gather of the sampled rows of x with their weights,
and the backward's weight gradient from them, dW = Σ_t dy[idx_t]ᵀ kept_t, with the rows of dy
gathered inside the matrix product (no [k, J] copy of them). README.md gives the maths.
"""

import torch

from .._backend import cdiv, launch, launch_compiled
from .._kernels import mm
from .._traced import kernel_op
from .._triton import tl, triton


@triton.jit
def _gather_scale_kernel(
    X, IDX, WT, OUT, k, D, sxn, sxd,
    BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """OUT[t, d] = X[IDX[t], d] · WT[t] for one [BLOCK_T, BLOCK_D] tile, the product in
    float32, stored in OUT's dtype (contiguous [k, D])."""
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    tin = t < k
    rows = tl.load(IDX + t, mask=tin, other=0).to(tl.int64)
    w = tl.load(WT + t, mask=tin, other=0.0).to(tl.float32)
    mask = tin[:, None] & (d[None, :] < D)
    x = tl.load(X + rows[:, None] * sxn + d[None, :] * sxd, mask=mask, other=0.0)
    out = x.to(tl.float32) * w[:, None]
    tl.store(OUT + t[:, None].to(tl.int64) * D + d[None, :], out.to(OUT.dtype.element_ty),
             mask=mask)  # fmt: skip


@triton.jit
def _sampled_dw_kernel(
    DY, IDX, XK, DW, k, J, D,
    sdn, sdj, sxt, sxd, swj, swd,
    BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr, GROUP: tl.constexpr,
):  # fmt: skip
    """DW[j, d] = Σ_t DY[IDX[t], j] · XK[t, d] for one [BLOCK_J, BLOCK_D] tile of DW, summed
    in float32 over blocks of BLOCK_T sampled rows. Tiles are visited GROUP rows of tiles at a
    time, so that programs running together share their DY and XK columns in L2."""
    pid = tl.program_id(0)
    n_j, n_d = tl.cdiv(J, BLOCK_J), tl.cdiv(D, BLOCK_D)
    per_group = GROUP * n_d
    first = (pid // per_group) * GROUP
    size = min(n_j - first, GROUP)
    pj = first + (pid % per_group) % size
    pd = (pid % per_group) // size
    j = pj * BLOCK_J + tl.arange(0, BLOCK_J)
    d = pd * BLOCK_D + tl.arange(0, BLOCK_D)
    ts = tl.arange(0, BLOCK_T)
    acc = tl.zeros((BLOCK_J, BLOCK_D), dtype=tl.float32)
    for t0 in range(0, k, BLOCK_T):
        t = t0 + ts
        tin = t < k
        rows = tl.load(IDX + t, mask=tin, other=0).to(tl.int64)
        dy = tl.load(DY + rows[:, None] * sdn + j[None, :] * sdj,
                     mask=tin[:, None] & (j[None, :] < J), other=0.0)  # fmt: skip
        xk = tl.load(XK + t[:, None].to(tl.int64) * sxt + d[None, :] * sxd,
                     mask=tin[:, None] & (d[None, :] < D), other=0.0)  # fmt: skip
        acc = mm(tl.trans(dy), xk, acc)
    tl.store(DW + j[:, None].to(tl.int64) * swj + d[None, :] * swd, acc.to(DW.dtype.element_ty),
             mask=(j[:, None] < J) & (d[None, :] < D))  # fmt: skip


GATHER_BLOCK = {"BLOCK_T": 8, "BLOCK_D": 512}
INTERPRET_DW = {"BLOCK_J": 16, "BLOCK_D": 16, "BLOCK_T": 16}
DW_CONFIGS = [
    triton.Config({"BLOCK_J": bj, "BLOCK_D": bd, "BLOCK_T": bt}, num_warps=w, num_stages=s)
    for bj, bd, bt, w, s in (
        (128, 128, 64, 8, 3),
        (128, 256, 64, 8, 3),
        (128, 128, 32, 4, 4),
        (64, 128, 64, 4, 4),
    )
]
# float32 tiles take twice the shared memory per stage, and tf32x3 three products per tile
DW_CONFIGS_F32 = [
    triton.Config({"BLOCK_J": bj, "BLOCK_D": bd, "BLOCK_T": bt}, num_warps=w, num_stages=s)
    for bj, bd, bt, w, s in ((128, 128, 32, 8, 2), (64, 128, 32, 4, 3), (64, 64, 32, 4, 3))
]


def _gather_scale(x: torch.Tensor, idx: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x [n, D], idx [k] (int64), weight [k] -> x[idx] · weight[:, None], [k, D] in x's dtype
    (contiguous), one pass over the k rows."""
    k, D = idx.shape[0], x.shape[1]
    out = torch.empty(k, D, device=x.device, dtype=x.dtype)
    if k and D:
        c = GATHER_BLOCK
        grid = (cdiv(k, c["BLOCK_T"]), cdiv(D, c["BLOCK_D"]))
        launch_compiled(_gather_scale_kernel, grid, (x, idx, weight, out, k, D, *x.stride()), c)
    return out


gather_scale = kernel_op("wtacrs_gather_scale", _gather_scale)


def sampled_weight_grad(dy: torch.Tensor, idx: torch.Tensor, kept: torch.Tensor, dtype):
    """dy [n, J], idx [k], kept [k, D] (the sampled rows with their weights) ->
    dW = dy[idx]ᵀ kept, [J, D] in `dtype`, summed in float32."""
    J, D, k = dy.shape[1], kept.shape[1], idx.shape[0]
    if dy.dtype != kept.dtype:
        dy = dy.to(kept.dtype)
    dw = torch.empty(J, D, device=dy.device, dtype=dtype)
    if k == 0:
        return dw.zero_()
    if J == 0 or D == 0:
        return dw

    def grid(c):
        return (cdiv(J, c["BLOCK_J"]) * cdiv(D, c["BLOCK_D"]),)

    configs = DW_CONFIGS_F32 if kept.dtype == torch.float32 else DW_CONFIGS
    args = (dy, idx, kept, dw, k, J, D, *dy.stride(), *kept.stride(), *dw.stride())
    launch(_sampled_dw_kernel, configs, grid, args, {"GROUP": 8}, INTERPRET_DW, key=["J", "D"])
    return dw
