"""Five small models written as a new user writes them, from the papers' and reference
repositories' code, for the importer tests: a ConvNeXt block (Liu et al. 2022), Swin's window
attention without the shift (Liu et al. 2021), a DiT block with adaLN-Zero (Peebles & Xie
2023), RetNet's retention in its parallel form (Sun et al. 2023) and a Perceiver
cross-attention from learned latents to padded inputs (Jaegle et al. 2021, lucidrains'
einops style)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn


# (a) ConvNeXt block, as the ConvNeXt repo writes it (timm-like drop path as Identity)
class ConvNeXtBlock(nn.Module):
    def __init__(self, dim=32, layer_scale_init_value=1e-6):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale_init_value * torch.ones(dim))
        self.drop_path = nn.Identity()

    def forward(self, x):
        shortcut = x
        x = self.dwconv(x)
        x = x.permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        x = self.norm(x)
        x = self.pwconv1(x)
        x = self.act(x)
        x = self.pwconv2(x)
        x = self.gamma * x
        x = x.permute(0, 3, 1, 2)
        return shortcut + self.drop_path(x)


# (b) Swin-style window attention (no shift)
def window_partition(x, ws):
    B, H, W, C = x.shape
    x = x.view(B, H // ws, ws, W // ws, ws, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, C)


def window_merge(windows, ws, B, H, W):
    C = windows.shape[-1]
    x = windows.view(B, H // ws, W // ws, ws, ws, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(B, H, W, C)


class WindowAttention(nn.Module):
    def __init__(self, dim=32, window=4, heads=4):
        super().__init__()
        self.ws, self.heads = window, heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.randn((2 * window - 1) ** 2, heads) * 0.02)
        coords = torch.stack(
            torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        ).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + window - 1
        self.register_buffer("rel_index", rel[..., 0] * (2 * window - 1) + rel[..., 1])

    def forward(self, x):
        B, H, W, C = x.shape
        win = window_partition(x, self.ws)
        Bw, N, _ = win.shape
        qkv = self.qkv(win).reshape(Bw, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.bias_table[self.rel_index.view(-1)].view(N, N, -1).permute(2, 0, 1)
        attn = (attn + bias.unsqueeze(0)).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(Bw, N, C)
        return window_merge(self.proj(out), self.ws, B, H, W)


# (c) DiT block with adaLN-Zero
def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class DiTBlock(nn.Module):
    def __init__(self, hidden=32, heads=4, mlp_ratio=4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden, heads)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        h = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, h), nn.GELU(approximate="tanh"), nn.Linear(h, hidden)
        )
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))
        nn.init.zeros_(self.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.adaLN_modulation[-1].bias)

    def forward(self, x, c):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(
            c
        ).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


# (d) RetNet retention, parallel form
class MultiScaleRetention(nn.Module):
    def __init__(self, dim=32, heads=4):
        super().__init__()
        self.heads, self.hd = heads, dim // heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.g_proj = nn.Linear(dim, dim, bias=False)
        self.out_proj = nn.Linear(dim, dim, bias=False)
        self.register_buffer("gamma", 1 - 2.0 ** (-5 - torch.arange(heads, dtype=torch.float)))
        self.group_norm = nn.GroupNorm(heads, dim)

    def forward(self, x):
        B, T, C = x.shape
        q = self.q_proj(x).view(B, T, self.heads, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.heads, self.hd).transpose(1, 2) * self.hd**-0.5
        v = self.v_proj(x).view(B, T, self.heads, self.hd).transpose(1, 2)
        n = torch.arange(T, device=x.device)
        diff = (n[:, None] - n[None, :]).to(x.dtype)
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device))
        decay = self.gamma.to(x.dtype)[:, None, None] ** diff.clamp(min=0)
        decay = decay.masked_fill(~mask, 0.0)  # D[n, m] = gamma^(n-m) for n >= m, else 0
        ret = (q @ k.transpose(-1, -2)) * decay
        out = (ret @ v).transpose(1, 2).reshape(B * T, C)
        out = self.group_norm(out).view(B, T, C)
        return self.out_proj(F.silu(self.g_proj(x)) * out)


# (e) Perceiver cross-attention: learned latents attend to padded inputs (lucidrains style)
class PerceiverCrossAttention(nn.Module):
    def __init__(self, dim=24, latent_dim=32, num_latents=8, heads=2, dim_head=16):
        super().__init__()
        self.heads, self.scale = heads, dim_head**-0.5
        self.latents = nn.Parameter(torch.randn(num_latents, latent_dim))
        self.norm_latents = nn.LayerNorm(latent_dim)
        self.norm_context = nn.LayerNorm(dim)
        inner = heads * dim_head
        self.to_q = nn.Linear(latent_dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, latent_dim)
        self.ff = nn.Sequential(
            nn.LayerNorm(latent_dim),
            nn.Linear(latent_dim, latent_dim * 2),
            nn.GELU(),
            nn.Linear(latent_dim * 2, latent_dim),
        )

    def forward(self, data, mask):  # mask: (B, S) bool, True where there is a token
        b = data.shape[0]
        x = repeat(self.latents, "n d -> b n d", b=b)
        h = self.heads
        q = self.to_q(self.norm_latents(x))
        k, v = self.to_kv(self.norm_context(data)).chunk(2, dim=-1)
        q, k, v = (rearrange(t, "b n (h d) -> (b h) n d", h=h) for t in (q, k, v))
        sim = torch.einsum("b i d, b j d -> b i j", q, k) * self.scale
        mask = repeat(mask, "b j -> (b h) () j", h=h)
        sim.masked_fill_(~mask, -torch.finfo(sim.dtype).max)
        attn = sim.softmax(dim=-1)
        out = torch.einsum("b i j, b j d -> b i d", attn, v)
        out = rearrange(out, "(b h) n d -> b n (h d)", h=h)
        x = self.to_out(out) + x
        return self.ff(x) + x
