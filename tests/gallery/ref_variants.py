"""Hand-written PyTorch references for the convolution figures and the attention variants,
written from the papers' equations (cited in each docstring), not from the circuits.

Each reference takes the parameters by their circuit names (`box.param`, laid out in the order
of the parameter's axes, a linear map's as nn.Linear's: D -> (H, K) has weight [H*K, D], its
rows head-major) and the inputs by name, and returns the outputs by name.
`check_equivalence` and `check_training` are the two checks the tests run on every entry.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ncd import gallery
from ncd.compiler import compile as ncd_compile

HEADS = 2  # the heads (H) of the gallery's attention variants


def _rows(w, *sizes):
    """nn.Linear's weight [out, in] of a map D -> (*sizes, F), viewed [*sizes, F, D]."""
    return w.reshape(*sizes, -1, w.shape[-1])


def _cols(w, *sizes):
    """nn.Linear's weight [out, in] of a map (*sizes, F) -> D, viewed [D, *sizes, F]."""
    return w.reshape(w.shape[0], *sizes, -1)


# ------------------------------------------------------------------ NCD paper: convolutions
def convolutions(p, x):
    """y[o, i] = Σ_{c, j} w[o, c, j] x[c, s·i + d·j - pad] + b[o] (the NCD paper's ★k):
    strided s = 2, dilated d = 2, depthwise (one filter per channel), and the transposed
    convolution, the adjoint of a strided one (its input scattered s apart, then convolved)."""
    c = x.shape[1]
    return {
        "strided": F.conv2d(x, p["strided.weight"], p["strided.bias"], stride=2, padding=1),
        "dilated": F.conv2d(x, p["dilated.weight"], p["dilated.bias"], dilation=2, padding=2),
        "depthwise": F.conv2d(x, p["depthwise.weight"], p["depthwise.bias"], padding=1,
                              groups=c),  # fmt: skip
        "transposed": _conv_transpose_by_scatter(x, p["transposed.weight"],
                                                 p["transposed.bias"], stride=2, padding=1),
    }  # fmt: skip


def unet(p, image):
    """U-Net (Ronneberger et al. 2015, Fig. 1; the NCD paper's U-Net figure), two levels, padded
    3×3 convolutions each followed by batch normalisation (batch statistics) and a ReLU:
    contracting path of (two such convolutions, max-pool 2), expansive path of (2×2
    up-convolution halving the channels, concatenation with the contracting path's map at that
    level, two such convolutions), and a 1×1 convolution to the classes."""

    def level(h, tag):
        for i in (1, 2):
            h = F.conv2d(h, p[f"{tag}_conv{i}.weight"], padding=1)
            h = F.batch_norm(h, None, None, p[f"{tag}_bn{i}.weight"], p[f"{tag}_bn{i}.bias"],
                             training=True)  # fmt: skip
            h = F.relu(h)
        return h

    def up(h, tag):
        return F.conv_transpose2d(h, p[f"{tag}.weight"], p[f"{tag}.bias"], stride=2)

    e1 = level(image, "down1")
    e2 = level(F.max_pool2d(e1, 2), "down2")
    h = level(F.max_pool2d(e2, 2), "bottom")
    h = level(torch.cat([up(h, "up2"), e2], 1), "dec2")
    h = level(torch.cat([up(h, "up1"), e1], 1), "dec1")
    return {"logits": F.conv2d(h, p["head.weight"], p["head.bias"])}


def _conv_transpose_by_scatter(x, w, bias, stride, padding):
    """The transposed convolution from its definition: each input pixel scatters its kernel
    w[c, o, :, :] times x[c] into the output at stride `stride`, then `padding` is cropped."""
    b, c, h, wd = x.shape
    _, o, kh, kw = w.shape
    full = x.new_zeros(b, o, (h - 1) * stride + kh, (wd - 1) * stride + kw)
    for i in range(kh):
        for j in range(kw):
            contrib = torch.einsum("bcyx,co->boyx", x, w[:, :, i, j])
            full[
                :, :, i : i + (h - 1) * stride + 1 : stride, j : j + (wd - 1) * stride + 1 : stride
            ] += contrib  # noqa: E501
    out = full[:, :, padding : full.shape[2] - padding, padding : full.shape[3] - padding]
    return out + bias[None, :, None, None]


# ------------------------------------------------------------------ attention variants
def causal_linear_attention(fq, fk, v):
    """y_i = Σ_{j<=i} (fq_i·fk_j) v_j / Σ_{j<=i} fq_i·fk_j, by the quadratic form ([B, H, T, F])."""
    a = torch.einsum("bhtf,bhsf->bhts", fq, fk).tril()
    return torch.einsum("bhts,bhsv->bhtv", a, v) / a.sum(-1, keepdim=True)


def hedgehog_attention(p, q, k, v):
    """Hedgehog (Zhang et al. 2024): φ(x) = [softmax(Wx + b) ⊕ softmax(−Wx − b)] per head, its
    own map for queries and keys (Sec. 4), in causal linear attention (Sec. 2)."""

    def phi(x, tag):
        z = (
            torch.einsum("bhtk,hfk->bhtf", x, p[f"phi_{tag}_w.weight"])
            + p[f"phi_{tag}_b.weight"][:, None]
        )  # noqa: E501
        return torch.cat([z.softmax(-1), (-z).softmax(-1)], -1)

    return {"y": causal_linear_attention(phi(q, "q"), phi(k, "k"), v)}


def softplus_attention(p, q, k, v, power=2):
    """LSSA with re-weighting (Gao & Spratling 2025, Sec. 3): a_ij = Softplus(log(i) q_i·k_j
    / √d) over the i keys j <= i (1-based), l1-normalised, then re-weighted a^p / Σ a^p."""
    t, d = q.shape[2], q.shape[-1]
    n = torch.arange(1, t + 1, dtype=q.dtype)
    s = torch.einsum("bhtk,bhsk->bhts", q, k) * torch.log(n)[:, None] / math.sqrt(d)
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    a = torch.where(causal, F.softplus(s), torch.zeros_like(s))
    a = a / a.sum(-1, keepdim=True)  # LSSA's l1 normalisation
    w = a**power
    w = w / w.sum(-1, keepdim=True)  # the re-weighting
    return {"y": torch.einsum("bhts,bhsv->bhtv", w, v)}


def ecoformer_attention(p, x):
    """EcoFormer (Liu et al. 2022): h(x) = sign(Aᵀ κ(x)), κ_j(x) = exp(−‖x − a_j‖² / 2σ²)
    (Sec. 3.2); attention weights the code agreements (b + h(q)·h(k)) / 2 (Sec. 3.3), as
    non-causal normalised linear attention; σ² = K."""
    q = torch.einsum("btd,hkd->bthk", x, _rows(p["q_proj.weight"], HEADS))
    k = torch.einsum("btd,hkd->bthk", x, _rows(p["k_proj.weight"], HEADS))
    v = torch.einsum("btd,hvd->bthv", x, _rows(p["v_proj.weight"], HEADS))
    anchors, proj = p["anchors.weight"], p["hash_proj.weight"]  # [H M K], [H C M]
    d = q.shape[-1]

    def hash_(t):
        dist = ((t[:, :, :, None, :] - anchors[None, None]) ** 2).sum(-1)  # B T H M
        return torch.sign(torch.einsum("bthm,hcm->bthc", torch.exp(-dist / (2 * d)), proj))

    hq, hk = hash_(q), hash_(k)
    bits = hq.shape[-1]
    agree = (bits + torch.einsum("bthc,bshc->bhts", hq, hk)) / 2
    y = torch.einsum("bhts,bshv->bthv", agree, v) / agree.sum(-1).transpose(1, 2)[..., None]
    return {"y": torch.einsum("bthv,dhv->btd", y, _cols(p["o_proj.weight"], HEADS))}


def soft_attention(p, x, window=4, steps=20):
    """SOFT (Lu et al. 2021, Sec. 3): Q = K = X W_q, Gaussian kernel exp(−‖q − k‖² / 2√d)
    (Sec. 3.1), landmarks Q̃ by average pooling windows of `window` tokens, Ŝ = exp(Q ⊖ Q̃) A⁺
    exp(Q̃ ⊖ K) with A = exp(Q̃ ⊖ Q̃) (Sec. 3.2), A⁺ by `steps` Newton–Schulz iterations
    X ← 2X − XAX from X₀ = Aᵀ / (‖A‖₁‖A‖∞) (Sec. 3.3); y = Ŝ V, then the output projection."""
    q = torch.einsum("btd,hkd->bhtk", x, _rows(p["q_proj.weight"], HEADS))
    v = torch.einsum("btd,hvd->bhtv", x, _rows(p["v_proj.weight"], HEADS))
    d = q.shape[-1]
    b, h, t, _ = q.shape
    marks = q.reshape(b, h, t // window, window, d).mean(3)  # [B H M K]

    def kernel(a, c):  # exp(-‖a_i - c_j‖² / 2√d), from the differences
        return torch.exp(-((a[..., :, None, :] - c[..., None, :, :]) ** 2).sum(-1)
                         / (2 * math.sqrt(d)))  # fmt: skip

    a = kernel(marks, marks)
    norm_1 = a.abs().sum(-2).amax(-1)  # max column sum
    norm_inf = a.abs().sum(-1).amax(-1)  # max row sum
    inv = a.transpose(-1, -2) / (norm_1 * norm_inf)[..., None, None]
    for _ in range(steps):
        inv = 2 * inv - inv @ a @ inv
    s_hat = kernel(q, marks) @ inv @ kernel(marks, q)  # [B H T T]
    y = s_hat @ v
    return {"y": torch.einsum("bhtv,dhv->btd", y, _cols(p["o_proj.weight"], HEADS))}


def mom_block(p, x, top=2):
    """MoM (Du et al. 2025, Sec. 3): router scores p_t = softmax(x_t W_g), the top-k memories of
    each token with their scores renormalised to g_t; memory m's state sums k_t^mᵀ v_t^m over
    the tokens routed to it only (here: each memory runs causal linear attention over the
    subsequence of its routed tokens, gathered, and its outputs are scattered back); the read
    o_t = q_t (M_t^s + Σ_m g_t^m M_t^m) with an always-active shared memory M^s; the
    load-balancing loss M Σ_m f_m P_m (f_m the share of tokens routed to m, P_m the mean score)."""
    q = torch.einsum("btd,hkd->bthk", x, _rows(p["q_proj.weight"], HEADS))
    n_mem = p["router.weight"].shape[0]  # the memories' maps D -> (M, H, F)
    k = torch.einsum("btd,ehkd->btehk", x, _rows(p["k_proj.weight"], n_mem, HEADS))
    v = torch.einsum("btd,ehvd->btehv", x, _rows(p["v_proj.weight"], n_mem, HEADS))
    probs = torch.einsum("btd,ed->bte", x, p["router.weight"]).softmax(-1)
    scores, chosen = probs.topk(top, dim=-1)
    gates = scores / scores.sum(-1, keepdim=True)  # renormalised over the kept memories
    n_b, n_t, n_m = probs.shape

    def causal_read(qq, kk, vv):  # o_i = q_i Σ_{j<=i} k_jᵀ v_j, [T H K] x2, [T H V]
        state = torch.einsum("thk,thv->thkv", kk, vv).cumsum(0)
        return torch.einsum("thk,thkv->thv", qq, state)

    k_shared, v_shared = (_rows(p[f"{n}.weight"], HEADS) for n in ("k_shared", "v_shared"))
    out = torch.zeros(n_b, n_t, *v.shape[-2:], dtype=x.dtype)
    out = out + torch.stack(
        [causal_read(q[i], torch.einsum("td,hkd->thk", x[i], k_shared),
                     torch.einsum("td,hvd->thv", x[i], v_shared))
         for i in range(n_b)]
    )  # fmt: skip
    for i in range(n_b):
        for m in range(n_m):
            slot = chosen[i] == m  # [T, top]
            tokens = slot.any(-1).nonzero()[:, 0]
            if len(tokens) == 0:
                continue
            g = (gates[i] * slot).sum(-1)[tokens]  # the token's weight for memory m
            read = causal_read(q[i, tokens], k[i, tokens, m], v[i, tokens, m])
            out[i] = out[i].index_add(0, tokens, g[:, None, None] * read)
    routed = torch.zeros_like(probs).scatter(-1, chosen, 1.0)
    aux = n_m * (routed.mean((0, 1)) * probs.mean((0, 1))).sum()
    return {"y": torch.einsum("bthv,dhv->btd", out, _cols(p["o_proj.weight"], HEADS)), "aux": aux}


def sea_attention(p, q, k, v, top=4):
    """SEA (Lee et al. 2024, Sec. 3): estimate Â = φ(Q)φ(K)ᵀ (φ = elu + 1), keep the top-k
    keys of each causal row of Â (the positions topk returns, set in a mask by scatter),
    softmax attention of q·k / √d over the kept keys only."""
    t, s_len = q.shape[2], k.shape[2]
    causal = torch.ones(t, s_len, dtype=torch.bool).tril()
    est = torch.einsum("bhtk,bhsk->bhts", F.elu(q) + 1, F.elu(k) + 1)
    est = est.masked_fill(~causal, float("-inf"))
    chosen = est.topk(top, dim=-1).indices
    keep = torch.zeros_like(est, dtype=torch.bool).scatter(-1, chosen, True) & causal
    s = torch.einsum("bhtk,bhsk->bhts", q, k) / math.sqrt(q.shape[-1])
    a = s.masked_fill(~keep, float("-inf")).softmax(-1)
    return {"y": torch.einsum("bhts,bhsv->bhtv", a, v)}


def scatterformer_attention(p, x, offsets):
    """Scattered Linear Attention (He et al. 2024, Sec. 3.2): per window w (positions
    offsets[w] … offsets[w+1] − 1), q = ReLU(x W_q), k = ReLU(x W_k), v = x W_v per head,
    y_i = q_i (Σ_j k_jᵀ v_j) / (q_i · Σ_j k_j + 1e-10) over the window's j, then the output
    projection (with bias). Window by window, each on its own."""
    q = F.relu(torch.einsum("td,hkd->thk", x, _rows(p["q_proj.weight"], HEADS)))
    k = F.relu(torch.einsum("td,hkd->thk", x, _rows(p["k_proj.weight"], HEADS)))
    v = torch.einsum("td,hvd->thv", x, _rows(p["v_proj.weight"], HEADS))
    bounds = offsets.tolist()
    ys = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        qw, kw, vw = q[start:stop], k[start:stop], v[start:stop]
        kv = torch.einsum("thk,thv->hkv", kw, vw)
        den = torch.einsum("thk,hk->th", qw, kw.sum(0))[..., None] + 1e-10
        ys.append(torch.einsum("thk,hkv->thv", qw, kv) / den)
    y = torch.cat(ys)
    return {
        "y": torch.einsum("thv,dhv->td", y, _cols(p["o_proj.weight"], HEADS)) + p["o_proj.bias"]
    }


def window_inputs(checked, gen, dtype=torch.float64):
    """Random voxel features and windows of lengths 3, 5, 1 and 7 packed end to end."""
    xs = random_inputs(checked, gen, dtype)  # the float offsets it makes are replaced
    return {**xs, "offsets": torch.tensor([0, 3, 8, 9, 16], dtype=torch.int32)}


# ------------------------------------------------------------------ the checks
def random_inputs(checked, gen, dtype=torch.float64):
    """A random float tensor for every input, shaped by the circuit's sizes, with gradients."""
    out = {}
    for name, t in checked.inputs.items():
        shape = [checked.number(a.size) for a in t.axes]
        out[name] = torch.randn(*shape, generator=gen, dtype=dtype, requires_grad=True)
    return out


def _outputs(checked, got):
    return got if isinstance(got, dict) else {next(iter(checked.outputs)): got}


def check_equivalence(name, reference, inputs=None, *, dtype=torch.float64, tol=1e-9, scale=0.3,
                      sizes=None):  # fmt: skip
    """Compile gallery entry `name`, give its parameters random values, and compare outputs
    and the gradients of every input and parameter with `reference(params, **inputs)`.

    `inputs(checked, gen)` makes the inputs (default: `random_inputs`); integer inputs get no
    gradient.
    """
    circuit = gallery.get(name)
    checked = circuit.check()
    gen = torch.Generator().manual_seed(0)
    model = ncd_compile(circuit, sizes=sizes, dtype=dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale + 0.1)
    params = dict(model.named_parameters())
    xs = (inputs or random_inputs)(checked, gen)
    got = _outputs(checked, model(*xs.values()))
    want = reference(params, **xs)
    assert set(got) == set(want), (sorted(got), sorted(want))
    for k in want:
        assert got[k].shape == want[k].shape, (k, got[k].shape, want[k].shape)
        torch.testing.assert_close(
            got[k], want[k], rtol=tol, atol=tol, msg=lambda m, k=k: f"{k}: {m}"
        )  # noqa: E501
    weights = {k: torch.randn(want[k].shape, generator=gen, dtype=want[k].dtype) for k in want}
    leaves = {n: t for n, t in xs.items() if t.requires_grad} | params
    g_got = torch.autograd.grad(sum((got[k] * weights[k]).sum() for k in got),
                                list(leaves.values()), allow_unused=True)  # fmt: skip
    g_want = torch.autograd.grad(sum((want[k] * weights[k]).sum() for k in want),
                                 list(leaves.values()), allow_unused=True)  # fmt: skip
    for n, a, b in zip(leaves, g_got, g_want, strict=True):
        assert (a is None) == (b is None), f"{n}: gradient {a is None} vs {b is None}"
        if a is not None:
            torch.testing.assert_close(
                a, b, rtol=tol * 10, atol=tol * 10, msg=lambda m, n=n: f"{n}: {m}"
            )  # noqa: E501


def check_training(name, inputs=None, *, steps=15, lr=1e-2, sizes=None):
    """A few Adam steps of the compiled entry (float32) towards a teacher, the same circuit
    with other random weights: the loss must fall. A circuit without parameters learns its
    float inputs instead, towards half the teacher's outputs."""
    circuit = gallery.get(name)
    checked = circuit.check()
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    model = ncd_compile(circuit, sizes=sizes)
    teacher = ncd_compile(circuit, sizes=sizes)
    with torch.no_grad():
        for t in teacher.parameters():
            t.copy_(torch.randn(t.shape, generator=gen) * 0.3 + 0.1)
    xs = {n: t.detach() for n, t in (inputs or random_inputs)(checked, gen).items()}
    xs = {n: t.float() if t.is_floating_point() else t for n, t in xs.items()}
    with torch.no_grad():
        targets = {k: v for k, v in _outputs(checked, teacher(*xs.values())).items()
                   if v.is_floating_point()}  # fmt: skip
    params = list(model.parameters())
    if not params:
        params = [t.requires_grad_() for t in xs.values() if t.is_floating_point()]
        targets = {k: 0.5 * v for k, v in targets.items()}
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    for _ in range(steps):
        out = _outputs(checked, model(*xs.values()))
        loss = sum(F.mse_loss(out[k], t) for k, t in targets.items())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(map(torch.isfinite, map(torch.tensor, losses))), losses
    assert losses[-1] < 0.9 * losses[0], losses
    return losses


REFERENCES = {
    "convolutions": convolutions,
    "unet": unet,
    "hedgehog_attention": hedgehog_attention,
    "softplus_attention": softplus_attention,
    "ecoformer_attention": ecoformer_attention,
    "soft_attention": soft_attention,
    "mom_block": mom_block,
    "sea_attention": sea_attention,
    "scatterformer_attention": scatterformer_attention,
}

INPUTS = {"scatterformer_attention": window_inputs}
"""Entries whose inputs are not all random floats: name -> inputs(checked, gen)."""
