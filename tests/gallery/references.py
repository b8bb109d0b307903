"""Hand-written PyTorch references for gallery circuits, written from the papers, not generated.

Each takes the parameters by their circuit names (`box.param`, laid out in the order of the
parameter's axes, e.g. a linear map D -> (H, K) has weight [H, K, D]) and the inputs by name.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def linear(p, name, x, eq, bias=True):
    y = torch.einsum(eq, x, p[f"{name}.weight"])
    return y + p[f"{name}.bias"] if bias else y


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


def transformer_block(p, x, prefix=""):
    pp = {k[len(prefix) :]: v for k, v in p.items() if k.startswith(prefix)}
    d = x.shape[-1]
    h = F.layer_norm(x, (d,), pp["ln1.weight"], pp["ln1.bias"])
    qh = linear(pp, "q_proj", h, "btd,hkd->bthk")
    kh = linear(pp, "k_proj", h, "btd,hkd->bthk")
    vh = linear(pp, "v_proj", h, "btd,hvd->bthv")
    s = torch.einsum("bthk,bshk->bths", qh, kh) * qh.shape[-1] ** -0.5
    o = torch.einsum("bths,bshv->bthv", s.softmax(-1), vh)
    x = x + linear(pp, "o_proj", o, "bthv,dhv->btd")
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


def recurrent(q, k, v, step):
    """Run S_t = step(S_{t-1}, t); o_t = S_tᵀ q_t token by token: [B, T, H, K] layout."""
    b, t, h, kk = q.shape
    s = q.new_zeros(b, h, kk, v.shape[-1])
    out = []
    for i in range(t):
        s = step(s, i)
        out.append(torch.einsum("bhk,bhkv->bhv", q[:, i], s))
    return torch.stack(out, 1)


def _block(p, x, mixer):
    h = F.rms_norm(x, (x.shape[-1],), p["norm.weight"], eps=1e-5)
    q = linear(p, "q_proj", h, "btd,hkd->bthk", bias=False)
    k = linear(p, "k_proj", h, "btd,hkd->bthk", bias=False)
    v = linear(p, "v_proj", h, "btd,hvd->bthv", bias=False)
    o = mixer(h, q, k, v)
    o = F.rms_norm(o, (o.shape[-1],), p["out_norm.weight"], eps=1e-5)
    return {"y": x + linear(p, "o_proj", o, "bthv,dhv->btd", bias=False)}


def transnormer_block(p, x):
    def mixer(h, q, k, v):
        q, k = F.silu(q), F.silu(k)
        heads = q.shape[2]
        lam = torch.tensor([math.exp(-(2.0 ** (-8.0 * i / heads))) for i in range(1, heads + 1)],
                           dtype=q.dtype)  # fmt: skip
        return recurrent(q, k, v, lambda s, i: lam[None, :, None, None] * s
                         + torch.einsum("bhk,bhv->bhkv", k[:, i], v[:, i]))  # fmt: skip

    return _block(p, x, mixer)


def gla_block(p, x):
    def mixer(h, q, k, v):
        g = F.logsigmoid(linear(p, "g_proj", h, "btd,hkd->bthk"))
        return recurrent(q, k, v, lambda s, i: g[:, i].exp()[..., None] * s
                         + torch.einsum("bhk,bhv->bhkv", k[:, i], v[:, i]))  # fmt: skip

    return _block(p, x, mixer)


def deltanet_block(p, x):
    def mixer(h, q, k, v):
        q, k = F.silu(q), F.normalize(F.silu(k), dim=-1, eps=1e-6)
        beta = torch.sigmoid(linear(p, "b_proj", h, "btd,hd->bth"))

        def step(s, i):
            kt, vt, bt = k[:, i], v[:, i], beta[:, i]
            err = vt - torch.einsum("bhkv,bhk->bhv", s, kt)
            return s + torch.einsum("bh,bhk,bhv->bhkv", bt, kt, err)

        return recurrent(q, k, v, step)

    return _block(p, x, mixer)


REFERENCES = {
    "mlp": mlp,
    "resnet_block": resnet_block,
    "mobilenetv2_block": mobilenetv2_block,
    "sesr_block": sesr_block,
    "vision_transformer": vision_transformer,
    "kronecker_attention": kronecker_attention,
    "transnormer_block": transnormer_block,
    "gla_block": gla_block,
    "deltanet_block": deltanet_block,
}
