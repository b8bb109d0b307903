"""Hand-written PyTorch references for gallery circuits, written from the papers (LLaMA's as
its code writes it), not generated (the gated / linear-recurrence blocks are in
ref_recurrent.py).

Each takes the parameters by their circuit names (`box.param`, a linear map's as nn.Linear's:
D -> (H, K) has weight [H*K, D], heads split off its rows as nanoGPT's `view(B, T, H, K)`) and
the inputs by name.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

HEADS = 4  # the attention heads of the gallery's transformer blocks
LLAMA_HEADS, LLAMA_KV_HEADS = 4, 2  # llama_block: H query heads, G key/value heads


def linear(p, name, x, eq, bias=True, **sizes):
    """`einsum(eq, x, W)` with nn.Linear's weight [out, in] viewed over the equation's letters
    for it (`hkd`: [H, K, D]); `sizes` gives those of letters x lacks, but for one, read off
    the rows. The bias [out] is added over the output's trailing letters of W."""
    xs, ws = eq.split("->")[0].split(",")
    known = dict(zip(xs, x.shape, strict=True)) | sizes
    y = torch.einsum(eq, x, p[f"{name}.weight"].reshape([known.get(c, -1) for c in ws]))
    if not bias:
        return y
    out = eq.split("->")[1]
    ys = dict(zip(out, y.shape, strict=True))
    return y + p[f"{name}.bias"].reshape([ys[c] for c in ws if c in out])


def mlp(p, image):
    h = image.flatten(1)  # B (Y X)
    h = F.relu(h @ p["hidden.weight"].T + p["hidden.bias"])
    return {"log_probs": F.log_softmax(h @ p["classify.weight"].T + p["classify.bias"], -1)}


def bn(p, name, x):
    return F.batch_norm(x, None, None, p[f"{name}.weight"], p[f"{name}.bias"], training=True)


def resnet_block(p, x):
    h = F.conv2d(x, p["conv1.weight"], padding=1)
    h = F.relu(bn(p, "bn1", h))
    h = bn(p, "bn2", F.conv2d(h, p["conv2.weight"], padding=1))
    return {"y": F.relu(x + h)}


def mobilenetv2_block(p, x):
    e = p["expand.weight"].shape[0]
    h = F.relu6(bn(p, "bn1", F.conv2d(x, p["expand.weight"])))
    h = F.relu6(bn(p, "bn2", F.conv2d(h, p["depthwise.weight"], padding=1, groups=e)))
    h = bn(p, "bn3", F.conv2d(h, p["project.weight"]))
    return {"y": x + h}


def sesr_block(p, x):
    h = F.conv2d(x, p["expand.weight"], p["expand.bias"], padding=1)
    h = F.conv2d(h, p["project.weight"], p["project.bias"])
    return {"y": F.relu(h + x)}


def transformer_block(p, x, prefix="", heads=HEADS):
    pp = {k[len(prefix) :]: v for k, v in p.items() if k.startswith(prefix)}
    d = x.shape[-1]
    h = F.layer_norm(x, (d,), pp["ln1.weight"], pp["ln1.bias"])
    qh = linear(pp, "q_proj", h, "btd,hkd->bthk", h=heads)
    kh = linear(pp, "k_proj", h, "btd,hkd->bthk", h=heads)
    vh = linear(pp, "v_proj", h, "btd,hvd->bthv", h=heads)
    s = torch.einsum("bthk,bshk->bths", qh, kh) * qh.shape[-1] ** -0.5
    o = torch.einsum("bths,bshv->bthv", s.softmax(-1), vh)
    x = x + linear(pp, "o_proj", o, "bthv,dhv->btd")  # h, v read off o
    h = F.layer_norm(x, (d,), pp["ln2.weight"], pp["ln2.bias"])
    h = F.gelu(h @ pp["ff_up.weight"].T + pp["ff_up.bias"])
    return x + h @ pp["ff_down.weight"].T + pp["ff_down.bias"]


def vision_transformer(p, image, n_blocks=2, prefix="blocks.{i}."):
    h = F.conv2d(image, p["patchify.weight"], p["patchify.bias"], stride=4)  # B D Y X
    h = h.flatten(2).transpose(1, 2)  # B (Y X) D
    h = h + p["pos_embed.weight"]
    for i in range(n_blocks):
        h = transformer_block(p, h, prefix.format(i=i))
    h = F.layer_norm(h, (h.shape[-1],), p["ln_f.weight"], p["ln_f.bias"]).mean(1)
    return {"logits": h @ p["head.weight"].T + p["head.bias"]}


def kronecker_attention(p, q, k1, k2, v1, v2):
    s = torch.einsum("btk,bsk,buk->btsu", q, k1, k2) * q.shape[-1] ** -0.5
    b, t, n1, n2 = s.shape
    a = s.reshape(b, t, n1 * n2).softmax(-1).reshape(b, t, n1, n2)
    return {"y": torch.einsum("btsu,bsv,buv->btv", a, v1, v2)}


def rotate_half(x):
    """Hugging Face's LLaMA: the halves swapped, the second negated."""
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def llama_block(p, x, heads=LLAMA_HEADS, kv_heads=LLAMA_KV_HEADS, base=10000.0, eps=1e-5):
    """The LLaMA block as LLaMA's code writes it ([B, T, D] in, batch-first heads): RMSNorm,
    x W^T maps without bias (Meta's names), Hugging Face's rotate_half rotary, repeat_kv, a
    causal softmax, SwiGLU."""
    B, T, _ = x.shape
    H, G = heads, kv_heads
    K = p["wq.weight"].shape[0] // H

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    h = rms(x, p["attention_norm.weight"])
    q = (h @ p["wq.weight"].T).view(B, T, H, K).transpose(1, 2)
    k = (h @ p["wk.weight"].T).view(B, T, G, K).transpose(1, 2)
    v = (h @ p["wv.weight"].T).view(B, T, G, -1).transpose(1, 2)
    inv = 1.0 / base ** (torch.arange(0, K, 2, dtype=torch.float64) / K)
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    emb = torch.cat((freqs, freqs), -1)
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
    k, v = k.repeat_interleave(H // G, 1), v.repeat_interleave(H // G, 1)
    s = q @ k.transpose(-1, -2) / math.sqrt(K)
    s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    o = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, T, -1)
    x = x + o @ p["wo.weight"].T
    h = rms(x, p["ffn_norm.weight"])
    return {"y": x + (F.silu(h @ p["w1.weight"].T) * (h @ p["w3.weight"].T)) @ p["w2.weight"].T}


def _fftconv_ref(u, k, D):
    """safari's `fftconv_ref` (gelu off, no dropout): u [B, C, T], k [C, T], D [C]; FFT of
    length 2T, the filter's spectrum divided by it, the inverse unscaled (norm="forward")."""
    seqlen = u.shape[-1]
    fft_size = 2 * seqlen
    k_f = torch.fft.rfft(k, n=fft_size) / fft_size
    u_f = torch.fft.rfft(u.to(dtype=k.dtype), n=fft_size)
    y = torch.fft.irfft(u_f * k_f, n=fft_size, norm="forward")[..., :seqlen]
    return (y + u * D.unsqueeze(-1)).to(dtype=u.dtype)


def _hyena_filter(p, L, d_model, dtype):
    """safari's HyenaFilter.filter(L) with l_max = L: PositionalEmbedding (emb_dim 3, one band
    f = 1e-4), the implicit FFN whose Sin activations are one module (one `freq`), then
    ExponentialModulation (target 1e-2, fast 0.3, slow 1.5, shift 0). Returns k [1, L, D]."""
    t = torch.linspace(0, 1, L, dtype=dtype)[None, :, None]  # 1, L, 1
    bands = (3 - 1) // 2
    t_rescaled = torch.linspace(0, L - 1, L, dtype=dtype)[None, :, None]
    w = 2 * math.pi * t_rescaled / L
    f = torch.linspace(1e-4, bands - 1, bands, dtype=dtype)[None, None]
    z = torch.exp(-1j * f * w)
    z = torch.cat([t, z.real, z.imag], dim=-1)
    freq = p["freq.weight"]
    n_maps = sum(1 for k in p if k.startswith("ffn") and k.endswith(".weight"))
    h = z
    for i in range(1, n_maps + 1):
        h = h @ p[f"ffn{i}.weight"].T
        if i < n_maps:
            h = torch.sin(freq * (h + p[f"ffn{i}.bias"]))
    max_decay = math.log(1e-2) / 0.3
    min_decay = math.log(1e-2) / 1.5
    deltas = torch.linspace(min_decay, max_decay, d_model, dtype=dtype)[None, None]
    return h * (torch.exp(-t * deltas.abs()) + 0.0)


def hyena_block(p, u, order=2, short_filter_order=3):
    """safari's HyenaOperator.forward (one head, one block, inner factor 1, no dropout,
    identity activation, no outer mixing or post-order FFN): u [B, T, D]."""
    l = u.size(-2)
    d_model = u.size(-1)
    u = u @ p["in_proj.weight"].T + p["in_proj.bias"]
    u = u.transpose(1, 2)  # b d l
    width = u.shape[1]
    uc = F.conv1d(u, p["short_filter.weight"], p["short_filter.bias"],
                  padding=short_filter_order - 1, groups=width)[..., :l]  # fmt: skip
    *x, v = uc.split(d_model, dim=1)
    k = _hyena_filter(p, l, d_model, u.dtype)  # 1, l, (D (order - 1))
    k = k[0].reshape(l, d_model, order - 1).permute(2, 1, 0)  # 'c l (v o) -> c o v l'
    bias = p["filter_bias.weight"].reshape(d_model, order - 1).T  # '(v o) -> o v'
    for o, x_i in enumerate(reversed(x[1:])):
        v = v * x_i
        v = _fftconv_ref(v, k[o], bias[o])
    y = (v * x[0]).transpose(1, 2)  # b l d
    return {"y": y @ p["out_proj.weight"].T + p["out_proj.bias"]}


REFERENCES = {
    "mlp": mlp,
    "resnet_block": resnet_block,
    "mobilenetv2_block": mobilenetv2_block,
    "sesr_block": sesr_block,
    "vision_transformer": vision_transformer,
    "kronecker_attention": kronecker_attention,
    "llama_block": llama_block,
    "hyena_block": hyena_block,
}
