"""Shared by the compiler benchmarks: the gallery blocks written by hand in PyTorch (the
references: multi-head attention, the pre-norm block, the MLP recogniser, the decoder stack), a
loader per block that copies a compiled module's weights by box name, interleaved timing, and
the result file layout

    {"meta": {device, date, commit, torch, triton}, "rows": [{"op", "impl", ..., "fwd_ms"}]}
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: results_meta
from results_meta import commit  # noqa: E402


class MultiheadAttention(nn.Module):
    """Multi-head attention written by hand, nanoGPT style: q, k, v, o projections of width
    d = heads * head size; PyTorch's SDPA (`sdpa`) or softmax(q kᵀ / sqrt(K)) v written out."""

    def __init__(self, d, heads, sdpa=True, causal=False):
        super().__init__()
        self.heads, self.sdpa, self.causal = heads, sdpa, causal
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.o = nn.Linear(d, d)

    def forward(self, x):
        B, T, D = x.shape
        q = self.q(x).view(B, T, self.heads, -1).transpose(1, 2)  # (B, H, T, K)
        k = self.k(x).view(B, T, self.heads, -1).transpose(1, 2)
        v = self.v(x).view(B, T, self.heads, -1).transpose(1, 2)
        if self.sdpa:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        else:
            att = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
            if self.causal:
                keep = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
                att = att.masked_fill(~keep, float("-inf"))
            o = att.softmax(-1) @ v
        return self.o(o.transpose(1, 2).reshape(B, T, D))


class Block(nn.Module):
    """Pre-norm transformer block written by hand, nanoGPT style (the reference)."""

    def __init__(self, d, heads, ff, sdpa=False, causal=False):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = MultiheadAttention(d, heads, sdpa=sdpa, causal=causal)
        self.up, self.down = nn.Linear(d, ff), nn.Linear(ff, d)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.down(F.gelu(self.up(self.ln2(x))))


class MLP(nn.Module):
    """The basic MLP image recogniser written by hand: flatten the pixels, Linear, ReLU,
    Linear, log_softmax over the classes."""

    def __init__(self, pixels, hidden, classes):
        super().__init__()
        self.hidden, self.classify = nn.Linear(pixels, hidden), nn.Linear(hidden, classes)

    def forward(self, image):  # (B, Y, X)
        h = F.relu(self.hidden(image.flatten(1)))
        return F.log_softmax(self.classify(h), dim=-1)


class GPT(nn.Module):
    """Decoder-only stack written by hand, nanoGPT style: token embedding, `layers` causal
    pre-norm blocks (SDPA with is_causal=True), final LayerNorm, unembedding without bias."""

    def __init__(self, vocab, d, heads, ff, layers):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(
            Block(d, heads, ff, sdpa=True, causal=True) for _ in range(layers)
        )
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)

    def forward(self, tokens):  # (B, T) int64
        x = self.wte(tokens)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def _copy(ref: nn.Module, sd: dict, names: dict[str, str], prefix: str = "") -> None:
    """Each submodule of `ref` named in `names` takes the compiled state's `weight` (and `bias`
    where it has one) of the box `names` maps it to; `prefix` goes before the box name."""
    with torch.no_grad():
        for mine, box in names.items():
            layer = ref.get_submodule(mine)
            for p in ("weight", "bias"):
                if getattr(layer, p, None) is None:
                    continue
                key = f"{prefix}{box}.{p}"
                if key not in sd:
                    raise KeyError(f"{type(ref).__name__}.{mine}.{p}: expected {key!r} in "
                                   f"the compiled state, found {sorted(sd)[:8]} ...")  # fmt: skip
                getattr(layer, p).copy_(sd[key])


MHA_NAMES = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj"}
BLOCK_NAMES = {"attn." + k: v for k, v in MHA_NAMES.items()} | {
    "up": "ff_up", "down": "ff_down", "ln1": "ln1", "ln2": "ln2"}  # fmt: skip


def load_from_compiled(ref: Block, compiled: nn.Module, prefix: str = "") -> Block:
    """The compiled block's weights, by box name: nn.Linear's and nn.LayerNorm's as they are."""
    _copy(ref, compiled.state_dict(), BLOCK_NAMES, prefix)
    return ref


def load_mha(ref: MultiheadAttention, compiled: nn.Module) -> MultiheadAttention:
    """The compiled multihead_attention's four projections, by box name."""
    _copy(ref, compiled.state_dict(), MHA_NAMES)
    return ref


def load_mlp(ref: MLP, compiled: nn.Module) -> MLP:
    """The compiled mlp's two linear maps, by box name."""
    _copy(ref, compiled.state_dict(), {"hidden": "hidden", "classify": "classify"})
    return ref


def load_gpt(ref: GPT, compiled: nn.Module) -> GPT:
    """The compiled transformer's weights: the embedding, each block `blocks.<i>.`, the final
    norm and the unembedding, by box name."""
    sd = compiled.state_dict()
    _copy(ref, sd, {"wte": "embed", "ln_f": "ln_f", "lm_head": "unembed"})
    for i, block in enumerate(ref.blocks):
        _copy(block, sd, BLOCK_NAMES, f"blocks.{i}.")
    return ref


def interleaved(fns: dict, reps: int, warmup: int = 3, sync=lambda: None) -> dict:
    """Median and min milliseconds of each function, timed in turn, the order rotated every
    round (A B C, B C A, C A B, ...) so that no function always takes the first place after
    the wait, which identical modules showed to be slower."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    sync()
    times = {k: [] for k in fns}
    keys = list(fns)
    for r in range(reps):
        for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
            f = fns[k]
            sync()
            t = time.perf_counter()
            f()
            sync()
            times[k].append((time.perf_counter() - t) * 1e3)
    return {k: (statistics.median(v), min(v)) for k, v in times.items()}


def meta(device: str) -> dict:
    try:
        import triton

        tv = triton.__version__
    except ImportError:
        tv = None
    return {
        "device": device,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit(),
        "torch": torch.__version__,
        "triton": tv,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }


def write(out_dir: str | Path, stem: str, result: dict) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    path = out / f"{stem}_{day}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
