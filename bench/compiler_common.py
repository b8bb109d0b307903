"""Shared by the compiler benchmarks: a hand-written transformer block (the reference), weight
mapping by name, interleaved timing, and the result file layout

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


class Block(nn.Module):
    """Pre-norm transformer block written by hand, nanoGPT style (the reference)."""

    def __init__(self, d, heads, ff, sdpa=False):
        super().__init__()
        self.heads, self.sdpa = heads, sdpa
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.o = nn.Linear(d, d)
        self.up, self.down = nn.Linear(d, ff), nn.Linear(ff, d)

    def attn(self, x):
        B, T, D = x.shape
        q = self.q(x).view(B, T, self.heads, -1).transpose(1, 2)  # (B, H, T, K)
        k = self.k(x).view(B, T, self.heads, -1).transpose(1, 2)
        v = self.v(x).view(B, T, self.heads, -1).transpose(1, 2)
        if self.sdpa:
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            att = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
            o = att.softmax(-1) @ v
        return self.o(o.transpose(1, 2).reshape(B, T, D))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.down(F.gelu(self.up(self.ln2(x))))


def load_from_compiled(ref: Block, compiled: nn.Module) -> Block:
    """The compiled block's weights, by box name: nn.Linear's and nn.LayerNorm's as they are."""
    sd = compiled.state_dict()
    names = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj", "up": "ff_up",
             "down": "ff_down", "ln1": "ln1", "ln2": "ln2"}  # fmt: skip
    with torch.no_grad():
        for mine, box in names.items():
            layer = getattr(ref, mine)
            layer.weight.copy_(sd[f"{box}.weight"])
            layer.bias.copy_(sd[f"{box}.bias"])
    return ref


def interleaved(fns: dict, reps: int, warmup: int = 3, sync=lambda: None) -> dict:
    """Median and min milliseconds of each function, timed in turn (A B A B ...)."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    sync()
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
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
