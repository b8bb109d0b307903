"""The WTA-CRS selection (sampled.py's `wtacrs_select`) as three Triton kernels (two up to
ALL_PAIRS_ROWS rows), the same (idx, weight) bit for bit from the same uniforms, with no host
read. README.md gives the maths and the design.

1. `_block_sort_kernel`, one program per block of B rows: the block's rows in order of their
   keys (score, then lower index first), with the running sum of their integer scores.
2. `_rank_kernel`, one program per chunk of BI rows: each row's rank and the sum of the
   integer scores ahead of it, by binary search in every sorted block; the winners (a prefix
   of the ranks) write their index and weight 1 at their rank; per chunk, the number of
   winners and the score left outside them.
3. `_draw_kernel`, one program per BT positions: |C| and the rest's mass from the chunks'
   sums, and each draw by locating floor(u · mass) among the chunks' cumulative sums, then
   inside its chunk; for the layer (`select(..., x=x)`) also the gather of the kept rows
   times their weights, one program per BT positions and BD columns.

Up to ALL_PAIRS_ROWS rows `_rank_all_kernel` does the work of 1 and 2 in one launch: each
program compares its BI rows with every row.
"""

import functools

import torch

from .. import _backend
from .._backend import cdiv, interpreting, launch_compiled, next_pow2
from .._traced import kernel_op
from .._triton import tl, triton

# A key below every row's key (keys are ≥ -2^32), and a sum above every cumulative score.
_NOKEY: tl.constexpr = tl.constexpr(-(1 << 40))
_BIG: tl.constexpr = tl.constexpr((1 << 63) - 1)

# Rows per sorted block (a power of two), and the largest n the kernels take: the draw
# kernel holds one cumulative sum per chunk of RANK["BI"] rows in registers.
GPU = {
    "sort": {"B": 256, "BJ": 16, "num_warps": 4},
    "rank": {"BI": 128, "NBB": 32, "num_warps": 4},
    "rank_all": {"BI": 16, "BJ": 64, "num_warps": 4},
    "draw": {"BT": 16, "BD": 256, "num_warps": 4},
}
INTERPRET = {
    "sort": {"B": 32, "BJ": 32},
    "rank": {"BI": 32, "NBB": 16},
    "rank_all": {"BI": 16, "BJ": 32},
    "draw": {"BT": 32, "BD": 32},
}
MAX_ROWS = 32768
# Up to this many rows the ranks come from comparing every pair in one kernel (`_rank_all_kernel`,
# n² comparisons over n / BI programs) instead of the block sort and the binary searches: one
# launch fewer.
ALL_PAIRS_ROWS = 4096


@triton.jit
def _scores(NRM, G, j, mask, HAS_G: tl.constexpr):
    """s_j = NRM[j] (· G[j]), float32; 0 where masked."""
    s = tl.load(NRM + j, mask=mask, other=0.0)
    if HAS_G:
        s = s * tl.load(G + j, mask=mask, other=0.0).to(tl.float32)
    return s


@triton.jit
def _scale(smax, two_b):
    """2^bits · (1 / max s) in float64 (0 when every score is 0): q = ceil(s · scale)."""
    pos = smax > 0
    return tl.where(pos, (1.0 / tl.where(pos, smax.to(tl.float64), 1.0)) * two_b, 0.0)


@triton.jit
def _integer(s, scale):
    return tl.math.ceil(s.to(tl.float64) * scale).to(tl.int64)


@triton.jit
def _keys(s, j):
    """Unique int64 keys in the selection's order: a larger score first, then the lower index
    (non-negative float32 bits order as integers)."""
    bits = s.to(tl.int32, bitcast=True) & 0x7FFFFFFF
    return (bits.to(tl.int64) << 32) - j.to(tl.int64)


@triton.jit
def _layout(SCR, n, nb, B: tl.constexpr, BI: tl.constexpr):
    """The scratch buffer's parts (int64): SKEY, SINC, TKEY, TQ [nb·B] each, TOT [nb],
    SMAX [1], FLAG [n], CW, RS [cdiv(n, BI)] each; then the weights (`_weights`)."""
    SINC = SCR + nb * B
    TKEY = SINC + nb * B
    TQ = TKEY + nb * B
    TOT = TQ + nb * B
    FLAG = TOT + nb + 1
    CW = FLAG + n
    RS = CW + tl.cdiv(n, BI)
    return SINC, TKEY, TQ, TOT, FLAG, CW, RS


@triton.jit
def _weights(RS, n, BI: tl.constexpr):
    """The weights WT [k] (float32, two to an int64 place) after RS in the scratch buffer;
    made where they are stored, so that no pointer to them is held through a kernel's loop."""
    return (RS + tl.cdiv(n, BI)).to(tl.pointer_type(tl.float32))


@triton.jit
def _max_score(NRM, G, n, HAS_G: tl.constexpr, BJ: tl.constexpr):
    """max s over the n rows (every program of the selection needs it for the integer
    scores), read BJ at a time."""
    m = tl.zeros([BJ], tl.float32)
    for j0 in range(0, n, BJ):
        j = j0 + tl.arange(0, BJ)
        m = tl.maximum(m, _scores(NRM, G, j, j < n, HAS_G))
    return tl.max(m, 0)


@triton.jit
def _store_winners(IDX, FLAG, CW, RS, p, i, iin, qi, rank, ahead, total, n, k, BI: tl.constexpr):
    """Rows i of chunk p with their ranks and the q ahead of them: a winner iff rank < k and
    q_i (k − rank) > Σq − ahead; a winner stores IDX[rank] = i, WT[rank] = 1. FLAG[i] = 1 for
    a winner, else 0; CW[p] = the chunk's winners, RS[p] = Σ q over its other rows."""
    win = iin & (rank < k) & (qi * (k - rank).to(tl.int64) > total - ahead)
    WT = _weights(RS, n, BI)
    tl.store(FLAG + i, win.to(tl.int64), mask=iin)
    tl.store(IDX + rank, i.to(tl.int64), mask=win)
    tl.store(WT + rank, tl.full([BI], 1.0, WT.dtype.element_ty), mask=win)
    tl.store(CW + p, tl.sum(win.to(tl.int64), 0))
    tl.store(RS + p, tl.sum(tl.where(win, 0, qi), 0))


@triton.jit
def _block_sort_kernel(
    NRM, G, SCR, n, nb, two_b,
    HAS_G: tl.constexpr, B: tl.constexpr, BJ: tl.constexpr, BI: tl.constexpr,
):  # fmt: skip
    """Block b of B rows: SKEY[b·B + r] = the key of rank r in the block (_NOKEY past the last
    row), SINC[b·B + r] = Σ q over ranks ≤ r, TOT[b] = Σ q of the block; program 0 also stores
    max s (its float32 bits) at SMAX. The rows' keys and q go to TKEY, TQ first, from where
    every thread reads them all."""
    b = tl.program_id(0)
    SINC, TKEY, TQ, TOT, FLAG, CW, RS = _layout(SCR, n, nb, B, BI)
    smax = _max_score(NRM, G, n, HAS_G, B)
    scale = _scale(smax, two_b)
    i = b * B + tl.arange(0, B)
    iin = i < n
    si = _scores(NRM, G, i, iin, HAS_G)
    ki = tl.where(iin, _keys(si, i), _NOKEY)
    qi = _integer(si, scale)
    tl.store(TKEY + i, ki)
    tl.store(TQ + i, qi)
    tl.debug_barrier()
    rank = tl.zeros([B], tl.int32)
    ahead = tl.zeros([B], tl.int64)
    for j0 in range(0, B, BJ):
        j = b * B + j0 + tl.arange(0, BJ)
        kj = tl.load(TKEY + j)
        gt = kj[:, None] > ki[None, :]  # [BJ, B]: row j ahead of row i
        rank += tl.sum(gt.to(tl.int32), 0)
        ahead += tl.sum(tl.where(gt, tl.load(TQ + j)[:, None], 0), 0)
    # the ranks of the block's rows are 0 .. (rows - 1); the places past them, i >= n
    pos = tl.where(iin, b * B + rank, i)
    tl.store(SCR + pos, ki)
    tl.store(SINC + pos, ahead + qi, mask=iin)
    tl.store(TOT + b, tl.sum(qi, 0))
    if b == 0:
        tl.store(TOT + nb, smax.to(tl.int32, bitcast=True).to(tl.int64))


@triton.jit
def _rank_kernel(
    NRM, G, SCR, IDX, n, k, nb, two_b,
    HAS_G: tl.constexpr, B: tl.constexpr, LOG_B: tl.constexpr, BI: tl.constexpr,
    NBB: tl.constexpr,
):  # fmt: skip
    """Rows i of chunk p (BI rows): rank r_i = Σ_b #(keys of block b above key_i), ahead
    P_i = Σ_b SINC[b·B + that count − 1]; winner iff r_i < k and q_i (k − r_i) > Σq − P_i.
    A winner stores IDX[r_i] = i, WT[r_i] = 1. FLAG[i] = 1 for a winner, else 0; CW[p] = the
    chunk's winners, RS[p] = Σ q over its other rows (after SMAX in SCR: FLAG [n], CW, RS)."""
    p = tl.program_id(0)
    SINC, TKEY, TQ, TOT, FLAG, CW, RS = _layout(SCR, n, nb, B, BI)
    smax = tl.load(TOT + nb).to(tl.int32).to(tl.float32, bitcast=True)
    scale = _scale(smax, two_b)
    i = p * BI + tl.arange(0, BI)
    iin = i < n
    si = _scores(NRM, G, i, iin, HAS_G)
    ki = _keys(si, i)
    qi = _integer(si, scale)
    rank = tl.zeros([BI], tl.int32)
    ahead = tl.zeros([BI], tl.int64)
    tot = tl.zeros([NBB], tl.int64)
    for b0 in range(0, nb, NBB):
        bb = b0 + tl.arange(0, NBB)
        bin_ = bb < nb
        tot += tl.load(TOT + bb, mask=bin_, other=0)
        base = (bb * B)[None, :]
        live = bin_[None, :]
        lo = tl.zeros([BI, NBB], tl.int32)  # keys of block bb at places < lo are above key_i
        for s in tl.static_range(LOG_B):
            probe = tl.load(SCR + base + lo + ((B >> (s + 1)) - 1), mask=live, other=_NOKEY)
            lo = tl.where(probe > ki[:, None], lo + (B >> (s + 1)), lo)
        probe = tl.load(SCR + base + lo, mask=live, other=_NOKEY)
        lo = tl.where(probe > ki[:, None], lo + 1, lo)
        inc = tl.load(SINC + base + lo - 1, mask=live & (lo > 0), other=0)
        rank += tl.sum(lo, 1)
        ahead += tl.sum(inc, 1)
    total = tl.sum(tot, 0)
    _store_winners(IDX, FLAG, CW, RS, p, i, iin, qi, rank, ahead, total, n, k, BI)


@triton.jit
def _rank_all_kernel(
    NRM, G, SCR, IDX, n, k, nb, two_b,
    HAS_G: tl.constexpr, B: tl.constexpr, BI: tl.constexpr, BJ: tl.constexpr,
):  # fmt: skip
    """`_rank_kernel`'s results (FLAG, CW, RS, the winners' IDX and WT, for chunks of BI rows)
    without the block sort: rank r_i and ahead P_i counted over every row j directly, r_i =
    #(keys above key_i), P_i = Σ q_j over them, with Σ q over all rows. Program 0 also stores
    max s at SMAX, which the draw kernel reads."""
    p = tl.program_id(0)
    SINC, TKEY, TQ, TOT, FLAG, CW, RS = _layout(SCR, n, nb, B, BI)
    smax = _max_score(NRM, G, n, HAS_G, BJ)
    scale = _scale(smax, two_b)
    i = p * BI + tl.arange(0, BI)
    iin = i < n
    si = _scores(NRM, G, i, iin, HAS_G)
    ki = _keys(si, i)
    qi = _integer(si, scale)
    # per-lane partial sums, reduced once after the loop (no cross-thread sum per trip)
    rank_t = tl.zeros([BI, BJ], tl.int32)
    ahead_t = tl.zeros([BI, BJ], tl.int64)
    tot = tl.zeros([BJ], tl.int64)
    for j0 in range(0, n, BJ):
        j = j0 + tl.arange(0, BJ)
        jin = j < n
        sj = _scores(NRM, G, j, jin, HAS_G)
        kj = tl.where(jin, _keys(sj, j), _NOKEY)
        qj = tl.where(jin, _integer(sj, scale), 0)
        tot += qj
        gt = kj[None, :] > ki[:, None]  # [BI, BJ]: row j ahead of row i
        rank_t += gt.to(tl.int32)
        ahead_t += tl.where(gt, qj[None, :], 0)
    rank = tl.sum(rank_t, 1)
    ahead = tl.sum(ahead_t, 1)
    total = tl.sum(tot, 0)
    _store_winners(IDX, FLAG, CW, RS, p, i, iin, qi, rank, ahead, total, n, k, BI)
    if p == 0:
        tl.store(TOT + nb, smax.to(tl.int32, bitcast=True).to(tl.int64))


@triton.jit
def _draw_kernel(
    NRM, G, SCR, U, IDX, X, OUT, n, k, nb, two_b, D, sxn, sxd,
    HAS_G: tl.constexpr, B: tl.constexpr, BI: tl.constexpr, BT: tl.constexpr,
    NCH: tl.constexpr, GATHER: tl.constexpr, BD: tl.constexpr,
):  # fmt: skip
    """Positions t of block p = program_id(0) (BT of them), those t ≥ |C| = Σ CW: with
    mass = Σ RS and T = min(floor(U[t] · mass), mass − 1), IDX[t] = #{j : cdf_j ≤ T}, cdf the
    running sum of q over the rows outside C in index order, and WT[t] = mass / ((k − |C|)
    q_idx) (0 when mass = 0): first the chunk (#chunks whose cumulative sum is ≤ T), then
    inside it. Programs with program_id(1) = 0 store them.
    GATHER: also OUT[t, d] = X[IDX[t], d] · WT[t] (float32 product, OUT's dtype, contiguous
    [k, D]) for columns d of block program_id(1) (BD of them), the winners' rows (t < |C|, weight
    1) read from IDX, where the rank kernel wrote them."""
    p = tl.program_id(0)
    SINC, TKEY, TQ, TOT, FLAG, CW, RS = _layout(SCR, n, nb, B, BI)
    nch = tl.cdiv(n, BI)
    smax = tl.load(TOT + nb).to(tl.int32).to(tl.float32, bitcast=True)
    scale = _scale(smax, two_b)
    ch = tl.arange(0, NCH)
    cw = tl.load(CW + ch, mask=ch < nch, other=0)
    rs = tl.load(RS + ch, mask=ch < nch, other=0)
    c = tl.sum(cw, 0)
    ends = tl.cumsum(rs, 0)  # cdf at the end of each chunk
    mass = tl.sum(rs, 0)
    ends = tl.where(ch < nch, ends, _BIG)
    t = p * BT + tl.arange(0, BT)
    draw = (t < k) & (t >= c)
    u = tl.load(U + t, mask=draw, other=0.0)
    target = tl.minimum((u * mass.to(tl.float64)).to(tl.int64), mass - 1)  # [BT]
    chunk = tl.sum((ends[None, :] <= target[:, None]).to(tl.int32), 1)
    start = tl.sum(tl.where(ch[None, :] == chunk[:, None] - 1, ends[None, :], 0), 1)
    j = chunk[:, None] * BI + tl.arange(0, BI)[None, :]  # [BT, BI]
    jm = draw[:, None] & (j < n)
    q = _integer(_scores(NRM, G, j, jm, HAS_G), scale)
    rest = tl.where(tl.load(FLAG + j, mask=jm, other=1) != 0, 0, q)
    cdf = start[:, None] + tl.cumsum(rest, 1)
    row = chunk * BI + tl.sum(((cdf <= target[:, None]) & jm).to(tl.int32), 1)
    qd = _integer(_scores(NRM, G, row, draw, HAS_G), scale)
    qd = tl.where(qd > 0, qd, 1)  # a draw has q > 0 when mass > 0
    w = tl.where(mass > 0, mass.to(tl.float64) / ((k - c).to(tl.float64) * qd.to(tl.float64)),
                 0.0)  # fmt: skip
    WT = _weights(RS, n, BI)
    w = w.to(WT.dtype.element_ty)
    if tl.program_id(1) == 0:
        tl.store(IDX + t, row.to(tl.int64), mask=draw)
        tl.store(WT + t, w, mask=draw)
    if GATHER:
        won = (t < k) & (t < c)
        row = tl.where(won, tl.load(IDX + t, mask=won, other=0), row).to(tl.int64)
        w = tl.where(won, 1.0, w.to(tl.float32))
        d = tl.program_id(1) * BD + tl.arange(0, BD)
        mask = (t < k)[:, None] & (d[None, :] < D)
        x = tl.load(X + row[:, None] * sxn + d[None, :] * sxd, mask=mask, other=0.0)
        out = x.to(tl.float32) * w[:, None]
        tl.store(OUT + t[:, None].to(tl.int64) * D + d[None, :], out.to(OUT.dtype.element_ty),
                 mask=mask)  # fmt: skip


def score_bits(n: int) -> int:
    """The integer scores' scale for n rows: the largest is 2^bits, so that n of them, and any
    of them times a count below n, stay below 2^62 (int64 sums are exact in any order)."""
    return 62 - n.bit_length()


def select(norms, k, uniforms, grad_norms=None, x=None):
    """The WTA-CRS selection of k of n rows, as `wtacrs_select(norms · grad_norms, k,
    uniforms=uniforms)` gives it, in three kernel launches (two up to ALL_PAIRS_ROWS rows);
    with x, the last one also gathers the kept rows times their weights.

    norms: [n] float32, contiguous (the rows' norms); k: rows kept; uniforms: [k] float64 in
    [0, 1); grad_norms: optional [n] (any float dtype), multiplied in as float32; x: optional
    [n, D] -> (idx [k] int64, weight [k] float32), and with x also kept [k, D] (x's dtype,
    contiguous: x[idx] · weight[:, None], the product in float32)."""
    n = norms.shape[0]
    if k >= n:
        idx, weight = torch.arange(n, device=norms.device), torch.ones(n, device=norms.device)
        return (idx, weight) if x is None else (idx, weight, x.contiguous())
    outs, launches = plan(norms, k, uniforms, grad_norms, x)
    for launch in launches:
        launch_compiled(*launch)
    return outs


def _select_kept(
    norms: torch.Tensor, k: int, uniforms: torch.Tensor, grad_norms: torch.Tensor | None,
    x: torch.Tensor,
) -> list[torch.Tensor]:  # fmt: skip
    """`select(norms, k, uniforms, grad_norms, x)` for k < n as the layer runs it: [idx,
    kept] alone, the weights left in the scratch buffer (no view of them made)."""
    idx, _, _, kept, launches = _prepare(norms, k, uniforms, grad_norms, x)
    for launch in launches:
        launch_compiled(*launch)
    return [idx, kept]


select_kept = kernel_op("wtacrs_select_kept", _select_kept)


def plan(norms, k, uniforms, grad_norms=None, x=None):
    """The outputs `select` fills (k < n) and its launches, (kernel, grid, args, meta, key)
    each, for `launch_compiled`, in order (each a function of the ones before:
    bench/ops_effops.py times them one by one)."""
    idx, scratch, wt_at, kept, launches = _prepare(norms, k, uniforms, grad_norms, x)
    weight = scratch[wt_at:].view(torch.float32)[:k]
    return ((idx, weight) if x is None else (idx, weight, kept)), launches


@functools.lru_cache(maxsize=512)
def _sizes(n, k, D, has_g, gather, all_pairs_rows, interpret):
    """What the launches for these sizes share, made once: (scratch length in int64 places,
    where the weights start in it, nb, 2^bits, [(kernel, grid, its arguments: 0 the block
    sort's, 1 the ranks', 2 the draws', constexprs), ...]) in order."""
    cfg = INTERPRET if interpret else GPU
    all_pairs = n <= all_pairs_rows
    B, BT = cfg["sort"]["B"], cfg["draw"]["BT"]
    BI = cfg["rank_all" if all_pairs else "rank"]["BI"]
    # all pairs: no sorted blocks (nb = 0), the scratch is SMAX, FLAG, CW and RS alone
    nb, nch = 0 if all_pairs else cdiv(n, B), cdiv(n, BI)
    wt_at = 4 * nb * B + nb + 1 + n + 2 * nch
    two_b = float(2 ** score_bits(n))
    if all_pairs:
        ranks = [(_rank_all_kernel, (nch,), 1, {"HAS_G": has_g, "B": B, **cfg["rank_all"]})]
    else:
        ranks = [
            (_block_sort_kernel, (nb,), 0, {"HAS_G": has_g, "BI": BI, **cfg["sort"]}),
            (_rank_kernel, (nch,), 1,
             {"HAS_G": has_g, "B": B, "LOG_B": B.bit_length() - 1, **cfg["rank"]}),
        ]  # fmt: skip
    draw_grid = (cdiv(k, BT), max(1, cdiv(D, cfg["draw"]["BD"])) if gather else 1)
    draw = {"HAS_G": has_g, "B": B, "BI": BI, "NCH": max(2, next_pow2(nch)), "GATHER": gather,
            **cfg["draw"]}  # fmt: skip
    return wt_at + cdiv(k, 2), wt_at, nb, two_b, (*ranks, (_draw_kernel, draw_grid, 2, draw))


def _prepare(norms, k, uniforms, grad_norms, x):
    """select's buffers (idx, the scratch with the weights at their offset, kept or None)
    and its launches."""
    n = norms.shape[0]
    if n > MAX_ROWS:
        raise ValueError(f"wtacrs select: rows: expected at most {MAX_ROWS}, found {n}")
    g = grad_norms
    if g is not None and not g.is_contiguous():
        g = g.contiguous()
    D = 0 if x is None else x.shape[1]
    sizes = (n, k, D, g is not None, x is not None, ALL_PAIRS_ROWS, interpreting())
    length, wt_at, nb, two_b, steps = _sizes(*sizes)
    dev = norms.device
    scratch = torch.empty(length, device=dev, dtype=torch.int64)
    idx = torch.empty(k, device=dev, dtype=torch.int64)
    if x is None:
        kept, X, sx = None, norms, (0, 0)
    else:
        kept, X, sx = torch.empty(k, D, device=dev, dtype=x.dtype), x, x.stride()
    # What the compiled kernels depend on beyond the sizes (launch_compiled's key): the given
    # tensors' dtypes and 16-byte alignment, x's strides. The buffers made here are fresh
    # allocations, which PyTorch aligns to 64 bytes or more.
    given = (norms, uniforms, X) if g is None else (norms, uniforms, X, g)
    aligned = () if _backend.skip_launches else tuple(not t.data_ptr() & 15 for t in given)
    var = (norms.dtype, X.dtype, sx, None if g is None else g.dtype, aligned)
    args = (
        (norms, g, scratch, n, nb, two_b),
        (norms, g, scratch, idx, n, k, nb, two_b),
        (norms, g, scratch, uniforms, idx, X, idx if kept is None else kept, n, k, nb, two_b, D,
         *sx),
    )  # fmt: skip
    launches = [
        (kernel, grid, args[a], meta, (kernel, sizes, var)) for kernel, grid, a, meta in steps
    ]
    return idx, scratch, wt_at, kept, launches
