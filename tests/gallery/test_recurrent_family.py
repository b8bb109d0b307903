"""The gated / linear-recurrence entries of the gallery against hand-written references from
their papers (tests/gallery/ref_recurrent.py), a short training run each, and the decoder-only
transformer's causality."""

from __future__ import annotations

import pytest
import torch

from ncd import gallery
from ncd.compiler import compile as ncd_compile

from .ref_recurrent import REFERENCES

NAMES = sorted(REFERENCES)


def test_transformer_logits_at_a_position_ignore_later_tokens():
    """Decoder-only: changing the last token moves no logit before the last position."""
    model = ncd_compile(gallery.get("transformer"), dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 50, (2, 16), generator=gen)
    later = tokens.clone()
    later[:, -1] = (tokens[:, -1] + 1) % 50
    a, b = model(tokens), model(later)
    torch.testing.assert_close(a[:, :-1], b[:, :-1], rtol=0, atol=1e-12)
    assert (a[:, -1] - b[:, -1]).abs().max() > 1e-3  # the last position does see it


def _setup(name, dtype, seed=0):
    """The compiled entry in `dtype` with random non-trivial parameters, and float64 inputs."""
    circuit = gallery.get(name)
    checked = circuit.check()
    gen = torch.Generator().manual_seed(seed)
    model = ncd_compile(circuit, dtype=dtype)
    with torch.no_grad():  # norms would start at 1/0 and gates at their init otherwise
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.3 + 0.1)
    xs = {}
    for inp, t in checked.inputs.items():
        shape = [checked.number(a.size) for a in t.axes]
        xs[inp] = torch.randn(*shape, generator=gen, dtype=torch.float64)
    return model, xs


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_compiled_matches_the_papers_reference(name, dtype):
    """Outputs and the gradient of every input and parameter (mapped by name) agree with the
    float64 reference: to rounding in float64, to float32's precision in float32."""
    model, xs = _setup(name, dtype)
    params = dict(model.named_parameters())
    ins = {k: v.to(dtype).requires_grad_(True) for k, v in xs.items()}
    got = model(*ins.values())
    got = got if isinstance(got, dict) else {"y": got}
    ref_p = {k: v.detach().double().requires_grad_(True) for k, v in params.items()}
    ref_x = {k: v.detach().double().requires_grad_(True) for k, v in ins.items()}
    want = REFERENCES[name](ref_p, **ref_x)
    tol = {"rtol": 1e-9, "atol": 1e-9} if dtype == torch.float64 else {"rtol": 2e-3, "atol": 2e-4}
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == dtype
        torch.testing.assert_close(got[k].double(), want[k], **tol)
    gen = torch.Generator().manual_seed(1)
    w = {k: torch.randn(want[k].shape, generator=gen, dtype=torch.float64) for k in want}
    g_got = torch.autograd.grad(sum((got[k].double() * w[k]).sum() for k in got),
                                [*ins.values(), *params.values()])  # fmt: skip
    g_want = torch.autograd.grad(sum((want[k] * w[k]).sum() for k in want),
                                 [*ref_x.values(), *ref_p.values()])  # fmt: skip
    for n, a, b in zip([*ins, *params], g_got, g_want, strict=True):
        torch.testing.assert_close(a.double(), b, **tol, msg=lambda m, n=n: f"d{n}: {m}")


@pytest.mark.parametrize("name", NAMES)
def test_training_lowers_the_loss(name):
    """Thirty Adam steps on predicting the previous token's input: the loss falls."""
    torch.manual_seed(0)
    model = ncd_compile(gallery.get(name))
    x = torch.randn(2, 32, 16)
    target = x.roll(1, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = (model(x) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_each_tnl_layer_has_its_own_decay():
    """lightning_block: layer 1 decays (rate 1/2), layer 2 does not (rate 1 - L/L = 0)."""
    c = gallery.get("lightning_block")
    rates = [c.box(f"l{i}_mixer").decay_scale for i in (1, 2)]
    assert rates == ["1/2", "0"]


@pytest.mark.parametrize("fused", ["auto", "ncd"])
def test_packed_deltanet_is_deltanet_per_sequence(fused):
    """deltanet_packed on three sequences packed along T (lengths 5, 1 and 42: shorter than the
    convolutions' width, and several chunks): outputs and every gradient are those of the
    paper's DeltaNet (ref_recurrent.deltanet_block) run on each sequence alone; through
    PyTorch's per-sequence convolutions and ncd.ops (`fused="ncd"`: their CPU references)."""
    from .ref_recurrent import deltanet_block

    model = ncd_compile(gallery.get("deltanet_packed"), dtype=torch.float64, fused=fused)
    seeded, _ = _setup("deltanet_packed", torch.float64)  # random non-trivial parameters
    model.load_state_dict(seeded.state_dict())
    params = dict(model.named_parameters())
    cuts = [0, 5, 6, 48]
    x = torch.randn(48, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x.requires_grad_(True)
    got = model(x, torch.tensor(cuts, dtype=torch.int32))
    ref_p = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    ref_x = x.detach().clone().requires_grad_(True)
    want = torch.cat([deltanet_block(ref_p, ref_x[None, a:z])["y"][0]
                      for a, z in zip(cuts, cuts[1:])])  # fmt: skip
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    w = torch.randn(want.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    g_got = torch.autograd.grad((got * w).sum(), [x, *params.values()])
    g_want = torch.autograd.grad((want * w).sum(), [ref_x, *ref_p.values()])
    for n, a, b in zip(["x", *params], g_got, g_want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=lambda m, n=n: f"d{n}: {m}")
