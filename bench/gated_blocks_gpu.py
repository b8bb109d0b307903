"""Compiled gated blocks against the same blocks written by hand with fla's kernels, on the GPU:
one training step (forward, backward, AdamW) of the gallery's `gla_block` and `deltanet_block`,
bf16 parameters, side by side (interleaved) in one run, after checking the outputs agree.
Target (issue #15): the compiled block's step >= 1.0x the hand-written fla block's.

    python3 bench/gated_blocks_gpu.py --out DIR [--blocks gla_block] [--fla-warmup-s 420] [--dry]

Blocks (`op`, `--blocks`, default both, in this order):
  deltanet_block  RMSNorm, q/k/v projections each through a causal depthwise convolution of
                  width 4 and SiLU, q and k L2-normalised per head, β = σ(x W_β), the delta rule
                  (fla: `chunk_delta_rule`), RMSNorm per head, output projection, residual
  gla_block       RMSNorm, q/k/v projections, the rank-R gate log σ(x W_α1 W_α2 + b_α)/16, the
                  GLA recurrence (fla: `chunk_gla`), LayerNorm per head, the Swish output gate,
                  output projection, residual
Sizes: B = 4, T = 4096, H = 16, K = V = 128 (D = H·K = 2048), the gate's rank R = 16; `--B`,
`--T`, `--H`, `--K` (V = K) change them.

Rows (`impl`): "ncd" (`ncd.compile(circuit, sizes, dtype=bfloat16, device="cuda")`) and "fla"
(the block written by hand in PyTorch, the token mixer fla-core's chunk kernel in its [B, T, H, K]
layout with scale 1, as the circuit's mixer box has it; its weights copied from the compiled
module by box name). Before timing, each block's update y - x (the residual adds the same x to
both), on the input scaled by CHECK_SCALE, is compared: "ncd" against "fla" (rel RMS,
`rel_err_vs_fla`; over TOL: reported, and the script exits 1 after writing), and each against
the hand-written block in float32 with ncd's token-by-token PyTorch recurrence as its mixer
(`rel_err`); the parameters' gradients of one backward, ncd against fla (`grad_rel_err`, the
largest over the parameters; reported only). Then, interleaved: `step_ms` (zero_grad, forward,
backward with a fixed random dy, AdamW step), `fwd_ms` (forward under no_grad), and `peak_mib`
(peak memory of one step above what the models and optimiser states hold). The ncd row carries
`step_ratio_fla_over_ncd` and `fwd_ratio_fla_over_ncd` (>= 1: ncd is faster). `--variant
l2_norm=torch` also compiles the block with that choice-table entry on CUDA (its weights
ncd's) and times it in the same interleaving: a row with impl "ncd", `variant` and
`step_ratio_over_ncd` (> 1: the variant is slower than the run's table).

fla autotunes its kernels on first use, for minutes on a fresh machine. Before the timed process
touches fla, each block is run once (forward and backward, ncd and fla, at the exact sizes) in a
child process under a time limit: `--fla-warmup-s` seconds for all blocks together, each block
given what is left but a quarter of the budget for each block after it. Triton keeps the
compiled kernels and fla's autotuning results in its cache (TRITON_CACHE_DIR), where the timed
process finds them. A block whose warm-up does not finish gets an fla row with `error` and its
ncd row alone; an exception in one block is recorded in its rows and the next block still runs
(exit 1 after writing). On the GPU each block is measured in a process of its own
(`--isolate`, the default with several blocks): a CUDA error such as an illegal memory access
leaves the process's context unusable, and would otherwise fail every block after it.

`--dry` runs tiny sizes in float32 on the CPU, ncd's chunked PyTorch mixers in place of fla's,
without the warm-up (`--dry-warmup` runs it too), to check the script itself.
Results: `<out>/gated_blocks_gpu_<date>_<commit>.json` (`gated_blocks_gpu_dry_...` for --dry).
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: compiler_common

from compiler_common import interleaved, meta, write  # noqa: E402
from results_meta import commit  # noqa: E402

from ncd import gallery  # noqa: E402
from ncd.compiler import choices  # noqa: E402
from ncd.compiler import compile as ncd_compile  # noqa: E402

# In warm-up order: the delta rule's fla warm-up is the shorter one; GLA's gets what is left.
BLOCKS = ("deltanet_block", "gla_block")
SIZES = {"B": 4, "T": 4096, "H": 16, "K": 128, "R": 16}
DRY_SIZES = {"B": 2, "T": 64, "H": 2, "K": 16, "R": 16}
CONV = 4  # width of the short causal convolutions (gallery.linear_family.CONV)
GATE_TEMPERATURE = 16  # τ of GLA's gate: log α = logsigmoid(.) / τ
# Largest rel RMS of ncd's update against fla's that counts as agreeing, per dtype.
TOL = {torch.bfloat16: 2e-2, torch.float32: 1e-4}
# The outputs are compared on the input scaled by this: RMSNorm makes the update y - x nearly
# independent of x's scale, and a smaller x rounds less of the update away in bf16 y.
CHECK_SCALE = 1 / 16
FLA_KERNELS = {
    "gla_block": ("fla.ops.gla", "chunk_gla"),
    "deltanet_block": ("fla.ops.delta_rule", "chunk_delta_rule"),
}


# ---------------------------------------------------------------- the blocks written by hand
def causal_short_conv(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """SiLU of a causal depthwise convolution over T: x [B, T, C] -> [B, T, C], output t from
    x_{t-3} ... x_t (`conv` pads CONV - 1 on both sides; the first T outputs are kept)."""
    T = x.shape[1]
    return F.silu(conv(x.transpose(1, 2))[..., :T].transpose(1, 2))


def fla_short_conv(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """The same through fla-core's Triton `causal_conv1d` (its ShortConvolution's kernel):
    x [B, T, C] read in place, the weight [C, W] of `conv`, SiLU fused."""
    from fla.modules.causal_conv1d.ops import causal_conv1d

    return causal_conv1d(x, conv.weight[:, 0], activation="silu", backend="triton")[0]


# the hand-written blocks' short convolution (--hand-conv): PyTorch's conv1d or fla's kernel
HAND_CONV = {"torch": causal_short_conv, "fla": fla_short_conv}
SHORT_CONV = {"fn": causal_short_conv}


class GLABlock(nn.Module):
    """The GLA layer (Yang et al. 2024, §4.1 and §4.4), pre-norm, with its residual:
    h = RMSNorm(x); q, k, v = h W_Q, h W_K, h W_V per head; log α = logsigmoid(h W_α1 W_α2 +
    b_α) / 16 per head and key channel; o = GLA(q, k, v, log α) with scale 1; O' = LayerNorm(o)
    per head; y = x + (Swish(h W_r + b_r) ⊙ O') W_O. `mixer(q, k, v, g, scale=)` takes
    [B, T, H, K] tensors (fla's `chunk_gla` signature) and returns (o [B, T, H, V], state).
    Attributes are named as the circuit's boxes, so the compiled weights load by name."""

    def __init__(self, d: int, heads: int, k: int, v: int, rank: int, mixer):
        super().__init__()
        self.heads, self.k, self.v, self.mixer = heads, k, v, mixer
        self.norm = nn.RMSNorm(d, eps=1e-5)
        self.q_proj = nn.Linear(d, heads * k, bias=False)
        self.k_proj = nn.Linear(d, heads * k, bias=False)
        self.v_proj = nn.Linear(d, heads * v, bias=False)
        self.g_down = nn.Linear(d, rank, bias=False)
        self.g_up = nn.Linear(rank, heads * k)
        self.out_norm = nn.LayerNorm(v, eps=1e-5)
        self.r_proj = nn.Linear(d, heads * v)
        self.o_proj = nn.Linear(heads * v, d, bias=False)

    def forward(self, x):  # x [B, T, D]
        B, T, _ = x.shape
        H, K, V = self.heads, self.k, self.v
        h = self.norm(x)
        q = self.q_proj(h).view(B, T, H, K)
        k = self.k_proj(h).view(B, T, H, K)
        v = self.v_proj(h).view(B, T, H, V)
        g = F.logsigmoid(self.g_up(self.g_down(h))).view(B, T, H, K) / GATE_TEMPERATURE
        o = self.mixer(q, k, v, g, scale=1.0)[0]  # [B, T, H, V]
        o = self.out_norm(o)
        r = F.silu(self.r_proj(h)).view(B, T, H, V)
        return x + self.o_proj((r * o).reshape(B, T, H * V))


class DeltaNetBlock(nn.Module):
    """The DeltaNet layer (Yang et al. 2024, §2.2 and §3.3), pre-norm, with its residual:
    h = RMSNorm(x); q, k, v = SiLU(ShortConv(h W_Q)), ... split into heads; q and k L2-normalised
    per head; β = σ(h W_β) per head and token; o = DeltaRule(q, k, v, β) with scale 1;
    y = x + RMSNorm(o) W_O with the RMSNorm per head. `mixer(q, k, v, beta, scale=)` takes
    q, k [B, T, H, K], v [B, T, H, V], beta [B, T, H] (fla's `chunk_delta_rule` signature).
    Attributes are named as the circuit's boxes, so the compiled weights load by name."""

    def __init__(self, d: int, heads: int, k: int, v: int, mixer):
        super().__init__()
        self.heads, self.k, self.v, self.mixer = heads, k, v, mixer
        self.norm = nn.RMSNorm(d, eps=1e-5)
        self.q_proj = nn.Linear(d, heads * k, bias=False)
        self.k_proj = nn.Linear(d, heads * k, bias=False)
        self.v_proj = nn.Linear(d, heads * v, bias=False)

        def conv(c):
            return nn.Conv1d(c, c, CONV, padding=CONV - 1, groups=c, bias=False)

        self.q_conv, self.k_conv, self.v_conv = conv(heads * k), conv(heads * k), conv(heads * v)
        self.b_proj = nn.Linear(d, heads, bias=False)
        self.out_norm = nn.RMSNorm(v, eps=1e-5)
        self.o_proj = nn.Linear(heads * v, d, bias=False)

    def forward(self, x):  # x [B, T, D]
        B, T, _ = x.shape
        H, K, V = self.heads, self.k, self.v
        h = self.norm(x)
        conv = SHORT_CONV["fn"]
        q = conv(self.q_conv, self.q_proj(h)).view(B, T, H, K)
        k = conv(self.k_conv, self.k_proj(h)).view(B, T, H, K)
        v = conv(self.v_conv, self.v_proj(h)).view(B, T, H, V)
        q, k = F.normalize(q, dim=-1, eps=1e-6), F.normalize(k, dim=-1, eps=1e-6)
        beta = torch.sigmoid(self.b_proj(h))  # [B, T, H]
        o = self.mixer(q, k, v, beta, scale=1.0)[0]  # [B, T, H, V]
        return x + self.o_proj(self.out_norm(o).reshape(B, T, H * V))


def reference_mixer(op: str):
    """ncd's chunked PyTorch form of the block's token mixer (the fla signature)."""
    if op == "gla_block":
        from ncd.ops.gla import gla

        return functools.partial(gla, backend="reference")
    from ncd.ops.delta_rule import delta_rule

    return functools.partial(delta_rule, backend="reference")


def recurrence_mixer(op: str):
    """ncd's token-by-token PyTorch recurrence of the block's token mixer (the fla signature):
    the float32 ground truth."""
    if op == "gla_block":
        from ncd.ops.gla import gla_reference

        return gla_reference
    from ncd.ops.delta_rule import delta_rule_reference

    return delta_rule_reference


def fla_mixer(op: str):
    """fla-core's chunk kernel of the block's token mixer."""
    import importlib

    module, name = FLA_KERNELS[op]
    return getattr(importlib.import_module(module), name)


def hand_written(op: str, sizes: dict, mixer) -> nn.Module:
    H, K = sizes["H"], sizes["K"]
    if op == "gla_block":
        return GLABlock(H * K, H, K, K, sizes["R"], mixer)
    if op == "deltanet_block":
        return DeltaNetBlock(H * K, H, K, K, mixer)
    raise ValueError(f"block: expected one of {', '.join(BLOCKS)}, found {op!r}")


def load_by_box_name(ref: nn.Module, compiled: nn.Module) -> nn.Module:
    """Every parameter of `ref` takes the compiled module's entry of the same name (its box's
    name and `weight`/`bias`), cast to `ref`'s dtype; both must name the same set of
    parameters with the same shapes."""
    sd, mine = compiled.state_dict(), ref.state_dict()
    missing, extra = sorted(set(mine) - set(sd)), sorted(set(sd) - set(mine))
    if missing or extra:
        raise KeyError(f"{type(ref).__name__}: expected the compiled state to name its "
                       f"parameters {sorted(mine)}; missing {missing}, not in the hand-written "
                       f"block {extra}")  # fmt: skip
    with torch.no_grad():
        for name, p in mine.items():
            if sd[name].shape != p.shape:
                raise ValueError(f"{type(ref).__name__}.{name}: expected shape "
                                 f"{tuple(p.shape)}, found {tuple(sd[name].shape)} in the "
                                 "compiled state")  # fmt: skip
            p.copy_(sd[name])
    return ref


def circuit_sizes(op: str, sizes: dict) -> dict:
    """The sizes the gallery circuit `op` is compiled at: V = K, the rest from `sizes`."""
    pool = dict(sizes, V=sizes["K"])
    return {a: pool[a] for a in gallery.get(op).sizes}


# ---------------------------------------------------------------- measuring
def rel_rms(a, b) -> float:
    a, b = a.double(), b.double()
    err = ((a - b).square().mean().sqrt() / b.square().mean().sqrt().clamp_min(1e-30)).item()
    return err if err == err else float("inf")  # NaN would pass every `<`


def inputs(sizes: dict, device, dtype):
    g = torch.Generator().manual_seed(1)
    shape = (sizes["B"], sizes["T"], sizes["H"] * sizes["K"])
    x = torch.randn(*shape, generator=g).to(device=device, dtype=dtype)
    dy = torch.randn(*shape, generator=g).to(device=device, dtype=dtype)
    return x, dy


def build(op: str, sizes: dict, device, dtype, mixer, reference: bool):
    """The compiled block, the hand-written one with `mixer` (weights copied from the compiled
    one by name) and, if `reference`, the hand-written one in float32 with ncd's token-by-token
    recurrence as its mixer (the same weights)."""
    torch.manual_seed(0)
    ncd = ncd_compile(gallery.get(op), sizes=circuit_sizes(op, sizes), dtype=dtype, device=device)
    hand = load_by_box_name(hand_written(op, sizes, mixer).to(device=device, dtype=dtype), ncd)
    ref = None
    if reference:
        ref = hand_written(op, sizes, recurrence_mixer(op)).to(device=device)
        load_by_box_name(ref, ncd)
    return ncd, hand, ref


def train_step(model, opt, x, dy):
    opt.zero_grad(set_to_none=True)
    model(x).backward(dy)
    opt.step()


def agreement(models: dict, ref, x, dy) -> dict:
    """rel RMS of each model's update y - x against the float32 reference's, ncd's against
    fla's, and the largest rel RMS of a parameter gradient, ncd's against fla's."""
    xc = (x * CHECK_SCALE).to(x.dtype)
    with torch.no_grad():
        want = ref(xc.float()) - xc.float()
        upd = {k: m(xc).float() - xc.float() for k, m in models.items()}
    out = {f"rel_err_{k}": rel_rms(u, want) for k, u in upd.items()}
    out["rel_err_vs_fla"] = rel_rms(upd["ncd"], upd["fla"])
    grads = {}
    for k, m in models.items():
        m.zero_grad(set_to_none=True)
        m(x).backward(dy)
        grads[k] = {n: p.grad.detach().clone() for n, p in m.named_parameters()}
        m.zero_grad(set_to_none=True)
    errs = {n: rel_rms(grads["ncd"][n], g) for n, g in grads["fla"].items()}
    worst = max(errs, key=errs.get)
    out["grad_rel_err"], out["grad_rel_err_param"] = errs[worst], worst
    return out


def measure(models: dict, x, dy, device, reps: int) -> dict:
    """step_ms (median, min), fwd_ms and peak_mib of each model, interleaved."""
    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-5) for k, m in models.items()}
    steps = {k: functools.partial(train_step, m, opts[k], x, dy) for k, m in models.items()}
    step = interleaved(steps, reps, warmup=3, sync=sync)
    with torch.no_grad():
        fwd = interleaved({k: functools.partial(m, x) for k, m in models.items()}, reps, sync=sync)
    out = {k: {"step_ms": step[k][0], "step_ms_min": step[k][1], "fwd_ms": fwd[k][0]}
           for k in models}  # fmt: skip
    for k in models:
        peak = None
        if cuda:
            opts[k].zero_grad(set_to_none=True)
            sync()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            steps[k]()
            sync()
            peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        out[k]["peak_mib"] = peak
    for o in opts.values():
        o.zero_grad(set_to_none=True)
    return out


def base_row(op: str, impl: str, sizes: dict, dtype) -> dict:
    H, K = sizes["H"], sizes["K"]
    return {"op": op, "impl": impl, "B": sizes["B"], "T": sizes["T"], "D": H * K, "H": H,
            "K": K, "V": K, "dtype": str(dtype).removeprefix("torch.")}  # fmt: skip


def variant(op: str, sizes: dict, device, dtype, ncd: nn.Module, entries: str) -> nn.Module:
    """The block compiled again with the choice table's CUDA entries `entries` ("kind=impl,...")
    in place of the run's, with `ncd`'s weights."""
    saved = {k: dict(v) for k, v in choices.FASTEST.items()}
    try:
        for pair in entries.split(","):
            kind, impl = pair.split("=")
            choices.FASTEST.setdefault(kind, {})["cuda"] = impl
        other = ncd_compile(gallery.get(op), sizes=circuit_sizes(op, sizes), dtype=dtype,
                            device=device)  # fmt: skip
    finally:
        choices.FASTEST.clear()
        choices.FASTEST.update(saved)
    other.load_state_dict(ncd.state_dict())
    return other


def run_block(op, sizes, device, dtype, mixer, reps, variants=()) -> list[dict]:
    ncd, hand, ref = build(op, sizes, device, dtype, mixer, reference=True)
    models = {"ncd": ncd, "fla": hand}
    models |= {f"ncd[{v}]": variant(op, sizes, device, dtype, ncd, v) for v in variants}
    x, dy = inputs(sizes, device, dtype)
    errs = agreement(models, ref, x, dy)
    del ref
    if device == "cuda":
        torch.cuda.empty_cache()
    got = measure(models, x, dy, device, reps)
    rows = []
    for k in models:
        row = base_row(op, k.split("[")[0], sizes, dtype)
        row.update({m: round(v, 4) if v is not None else None for m, v in got[k].items()})
        row["rel_err"] = errs[f"rel_err_{k}"]
        if "[" in k:  # a variant: its table entries and its step time over the run's ncd's
            row["variant"] = k[k.index("[") + 1 : -1]
            row["step_ratio_over_ncd"] = round(got[k]["step_ms"] / got["ncd"]["step_ms"], 4)
        if k == "ncd":
            row["rel_err_vs_fla"] = errs["rel_err_vs_fla"]
            row["grad_rel_err"] = errs["grad_rel_err"]
            row["grad_rel_err_param"] = errs["grad_rel_err_param"]
            row["step_ratio_fla_over_ncd"] = round(got["fla"]["step_ms"] / got["ncd"]["step_ms"], 4)
            row["fwd_ratio_fla_over_ncd"] = round(got["fla"]["fwd_ms"] / got["ncd"]["fwd_ms"], 4)
        rows.append(row)
    return rows


def run_ncd_alone(op, sizes, device, dtype, reps) -> dict:
    """The ncd row of a block whose fla warm-up did not finish: times and error against the
    float32 reference only."""
    ncd, _, ref = build(op, sizes, device, dtype, reference_mixer(op), reference=True)
    x, dy = inputs(sizes, device, dtype)
    xc = (x * CHECK_SCALE).to(x.dtype)
    with torch.no_grad():
        err = rel_rms(ncd(xc).float() - xc.float(), ref(xc.float()) - xc.float())
    del ref
    got = measure({"ncd": ncd}, x, dy, device, reps)["ncd"]
    row = base_row(op, "ncd", sizes, dtype)
    row.update({m: round(v, 4) if v is not None else None for m, v in got.items()})
    row["rel_err"] = err
    return row


# ---------------------------------------------------------------- the warm-up child
def warm_child(args) -> None:
    """Runs in the child: one forward and backward of the compiled block and of the
    hand-written fla block at the exact sizes, printing `WARM <impl> <seconds>` after each."""
    device, dtype, sizes, _ = setting(args)
    x, dy = inputs(sizes, device, dtype)
    mixer = reference_mixer(args.warm_child) if args.dry else fla_mixer(args.warm_child)
    ncd, hand, _ = build(args.warm_child, sizes, device, dtype, mixer, reference=False)
    for impl, m in (("ncd", ncd), ("fla", hand)):
        start = time.time()
        m(x).backward(dy)
        if device == "cuda":
            torch.cuda.synchronize()
        print(f"WARM {impl} {time.time() - start:.1f}", flush=True)


def warm_up(op: str, args, limit: float) -> tuple[bool, str]:
    """Runs `warm_child` for `op` in a child process for at most `limit` seconds. Returns
    (whether fla's forward and backward finished, what happened)."""
    if limit <= 0:
        return False, "fla warm-up not started: no time left of --fla-warmup-s"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--warm-child", op]
    for a in ("B", "T", "H", "K"):
        cmd += [f"--{a}", str(getattr(args, a))]
    if args.dry:
        cmd.append("--dry")
    limit = round(limit, 1)
    start = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timed_out = False
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # a grandchild (ptxas) still holds the pipes
            out, err = "", ""
    secs = time.time() - start
    warm = [line for line in out.splitlines() if line.startswith("WARM ")]
    if timed_out:
        return False, f"fla warm-up did not finish within {limit:g} s (done: {warm})"
    if proc.returncode != 0 or not any(line.startswith("WARM fla") for line in warm):
        tail = " | ".join(err.strip().splitlines()[-3:])
        return False, f"fla warm-up failed (rc={proc.returncode}, {secs:.0f} s): {tail}"
    return True, f"warm-up {secs:.0f} s: {warm}"


# ---------------------------------------------------------------- main
def setting(args):
    """(device, dtype, sizes, stem) of the run."""
    sizes = {"B": args.B, "T": args.T, "H": args.H, "K": args.K, "R": SIZES["R"]}
    if args.dry:
        return "cpu", torch.float32, sizes, "gated_blocks_gpu_dry"
    return "cuda", torch.bfloat16, sizes, "gated_blocks_gpu"


def parse(argv):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--reps", type=int, default=None, help="timed steps per impl (default 30)")
    p.add_argument("--blocks", default=",".join(BLOCKS), help="comma list (default: both)")
    for a in ("B", "T", "H", "K"):
        p.add_argument(f"--{a}", type=int, default=None, help=f"default {SIZES[a]}")
    p.add_argument("--fla-warmup-s", type=float, default=420.0,
                   help="seconds for all blocks' warm-up children together")  # fmt: skip
    p.add_argument("--short-conv", choices=("auto", "ncd", "torch"), default="auto",
                   help="the compiled blocks' short convolutions on CUDA: ncd.ops.short_conv's "
                   "kernels or PyTorch's conv1d (default: compiler/choices.py)")  # fmt: skip
    p.add_argument("--l2-norm", choices=("auto", "ncd", "torch"), default="auto",
                   help="the compiled blocks' L2 normalisations (deltanet_block's q, k) on CUDA: "
                   "ncd.ops.l2_norm or F.normalize (default: compiler/choices.py)")  # fmt: skip
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        dest="variants",
        metavar="KIND=IMPL[,KIND=IMPL]",
        help="also time the block compiled with these choice-table entries on CUDA "
        "(rows: impl ncd, `variant`), interleaved with the others; repeatable",
    )
    p.add_argument("--hand-conv", choices=tuple(HAND_CONV), default="torch",
                   help="the hand-written blocks' short convolutions: PyTorch's conv1d or "
                   "fla-core's causal_conv1d kernel (CUDA only)")  # fmt: skip
    p.add_argument("--dry", action="store_true", help="tiny sizes on the CPU (script check)")
    p.add_argument("--dry-warmup", action="store_true", help="with --dry: run the warm-up too")
    p.add_argument("--warm-child", choices=BLOCKS, help=argparse.SUPPRESS)
    p.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure each block in a process of its own, so that a CUDA error in "
        "one cannot end the others (default: on the GPU with several blocks)",
    )
    p.add_argument("--measure-child", choices=BLOCKS, help=argparse.SUPPRESS)
    p.add_argument("--fla-skipped", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for a in ("B", "T", "H", "K"):
        if getattr(args, a) is None:
            setattr(args, a, (DRY_SIZES if args.dry else SIZES)[a])
    if args.reps is None:
        args.reps = 2 if args.dry else 30
    if args.dry and args.hand_conv == "fla":
        p.error("--hand-conv fla needs CUDA (fla's kernel); not with --dry")
    args.block_list = [b.strip() for b in args.blocks.split(",") if b.strip()]
    if args.isolate is None:
        args.isolate = not args.dry and len(args.block_list) > 1
    unknown = [b for b in args.block_list if b not in BLOCKS]
    if unknown or not args.block_list:
        p.error(f"--blocks: expected names from {', '.join(BLOCKS)}, found {args.blocks!r}")
    return args


def show(r: dict) -> str:
    if "error" in r:
        return f"  {r['impl']:4} ERROR {r['error']}"
    if "variant" in r:
        return (f"  ncd[{r['variant']}] step {r['step_ms']:9.3f} ms  fwd {r['fwd_ms']:9.3f} ms"
                f"  peak {r['peak_mib']} MiB  err vs f32 {r['rel_err']:.1e}  step over ncd's "
                f"x{r['step_ratio_over_ncd']:.3f}")  # fmt: skip
    peak = f"  peak {r['peak_mib']:8.1f} MiB" if r.get("peak_mib") is not None else ""
    line = (f"  {r['impl']:4} step {r['step_ms']:9.3f} ms  fwd {r['fwd_ms']:9.3f} ms{peak}  "
            f"err vs f32 {r['rel_err']:.1e}")  # fmt: skip
    if "step_ratio_fla_over_ncd" in r:
        line += (f"  vs fla {r['rel_err_vs_fla']:.1e} (grads {r['grad_rel_err']:.1e}, "
                 f"{r['grad_rel_err_param']})  fla/ncd step x{r['step_ratio_fla_over_ncd']:.3f}"
                 f" fwd x{r['fwd_ratio_fla_over_ncd']:.3f}")  # fmt: skip
    return line


CHILD_ROWS = "ROWS "  # the prefix of a measuring child's result line


def measure_block(op, sizes, device, dtype, args, ok, note) -> tuple[list, list]:
    """(rows, failures) of one block: ncd and fla measured side by side, or ncd alone with an
    fla row carrying `note` when fla's warm-up did not finish; an exception is recorded in
    both rows."""
    mixer = reference_mixer(op) if args.dry else None
    try:
        if ok:
            mixer = mixer or fla_mixer(op)
            return run_block(op, sizes, device, dtype, mixer, args.reps, args.variants), []
        err = base_row(op, "fla", sizes, dtype) | {"error": note}
        return [run_ncd_alone(op, sizes, device, dtype, args.reps), err], []
    except Exception as e:  # noqa: BLE001 - recorded in the rows, the next block runs
        traceback.print_exc()
        msg = f"{type(e).__name__}: {e}"
        rows = [base_row(op, k, sizes, dtype) | {"error": msg} for k in ("ncd", "fla")]
        return rows, [f"{op}: {msg}"]
    finally:
        if device == "cuda":
            torch.cuda.empty_cache()


def measure_in_child(op, sizes, dtype, ok, note, argv) -> tuple[list, list]:
    """measure_block in a process of its own (the same arguments, this block only)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--blocks", op,
           "--measure-child", op, "--no-isolate"]  # fmt: skip
    if not ok:
        cmd += ["--fla-skipped", note]
    done = subprocess.run(cmd, capture_output=True, text=True)
    sys.stderr.write(done.stderr[-4000:])
    for line in done.stdout.splitlines():
        if line.startswith(CHILD_ROWS):
            got = json.loads(line[len(CHILD_ROWS) :])
            return got["rows"], got["failed"]
    tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
    msg = f"the measuring process ended with rc={done.returncode} and no rows: {tail}"
    rows = [base_row(op, k, sizes, dtype) | {"error": msg} for k in ("ncd", "fla")]
    return rows, [f"{op}: {msg}"]


def main(argv=None) -> int:
    args = parse(argv)
    if args.short_conv != "auto":
        choices.FASTEST["short_conv"] = {"cuda": args.short_conv, "cpu": "torch"}
    if args.l2_norm != "auto":
        choices.FASTEST["l2_norm"] = {"cuda": args.l2_norm}
    SHORT_CONV["fn"] = HAND_CONV[args.hand_conv]
    if args.warm_child:
        warm_child(args)
        return 0
    device, dtype, sizes, stem = setting(args)
    if args.measure_child:  # one block's rows as one JSON line on stdout
        note = args.fla_skipped
        got, why = measure_block(args.measure_child, sizes, device, dtype, args, note is None,
                                 note)  # fmt: skip
        print(CHILD_ROWS + json.dumps({"rows": got, "failed": why}), flush=True)
        return 0
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device; use --dry to check the script on the CPU")
    start = time.time()
    label = " ".join(f"{a}={n}" for a, n in sizes.items())
    print(f"sizes {label} D={sizes['H'] * sizes['K']} dtype {dtype} reps {args.reps}")
    warm = {}
    if not args.dry or args.dry_warmup:
        for i, op in enumerate(args.block_list):
            after = len(args.block_list) - 1 - i
            left = args.fla_warmup_s * (1 - after / 4) - (time.time() - start)
            warm[op] = warm_up(op, args, left)
            print(f"{op}: {warm[op][1]}", flush=True)
    warm_s = time.time() - start
    rows, bad, failed = [], [], []
    for op in args.block_list:
        ok, note = warm.get(op, (True, "no warm-up (--dry)"))
        if args.isolate:
            got, why = measure_in_child(op, sizes, dtype, ok, note, argv)
        else:
            got, why = measure_block(op, sizes, device, dtype, args, ok, note)
        rows += got
        failed += why
        print(op)
        for r in got:
            print(show(r), flush=True)
            if r.get("rel_err_vs_fla") is not None and not r["rel_err_vs_fla"] <= TOL[dtype]:
                bad.append(f"{op}: rel RMS of ncd's update against fla's {r['rel_err_vs_fla']:.2e}")
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)"
    info = meta(name) | {
        "sizes": sizes,
        "reps": args.reps,
        "short_conv": args.short_conv,
        "l2_norm": args.l2_norm,
        "hand_conv": args.hand_conv,
        "variants": args.variants,
        "warmup": {o: w[1] for o, w in warm.items()},
        "warmup_s": round(warm_s, 1),
        "measure_s": round(time.time() - start - warm_s, 1),
    }
    path = write(args.out, stem, {"meta": info, "rows": rows})
    final = path.with_name(f"{path.stem}_{commit()}.json")
    path.replace(final)
    print(f"wrote {final} (warm-up {warm_s:.0f} s, measuring {info['measure_s']:.0f} s)")
    if bad or failed:
        print(f"outputs disagree (rel RMS > {TOL[dtype]}) or a block failed:\n  "
              + "\n  ".join(bad + failed), file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
