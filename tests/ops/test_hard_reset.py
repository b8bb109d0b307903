"""A hard reset in the gated families: a log-decay of -inf at token r empties the state, so
every output from r on is that of the same op run on tokens r.. alone from a zero state, and
every output before r that of the op on tokens ..r-1 (and likewise the gradients of q, k, v
and of the other gates). The chunked PyTorch forms and the kernels (interpreted) against the
op run twice on the two pieces, whose gates are all finite; plus very strong finite gates,
which the chunked forms take as the floor `GATE_FLOOR` without losing the weak gates' precision
in the same chunk."""

import pytest
import torch
import torch.nn.functional as F

from ncd import ops
from ncd.ops.simple_gla.reference import simple_gla_recurrent_reference

B, T, H, K, V, R = 2, 70, 2, 16, 8, 37  # R: the reset, in the second chunk


def _inputs(family, dtype):
    g = torch.Generator().manual_seed(3)
    q, k = (torch.randn(B, T, H, K, generator=g, dtype=dtype) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=g, dtype=dtype)
    if family == "gated_delta_rule":
        k = F.normalize(k, dim=-1)
    shape = (B, T, H, K) if family == "gla" else (B, T, H)
    gate = F.logsigmoid(torch.randn(shape, generator=g) + 2).to(dtype)
    beta = torch.rand(B, T, H, generator=g, dtype=dtype)
    return q, k, v, gate, beta


def _run(family, backend, q, k, v, gate, beta):
    op = getattr(ops, family)
    args = (q, k, v, gate, beta) if family == "gated_delta_rule" else (q, k, v, gate)
    return op(*args, backend=backend)[0]


COTANGENT = torch.cos(torch.arange(B * T * H * V, dtype=torch.float32)).reshape(B, T, H, V)


def _grads(family, backend, tensors, tokens):
    """Output and gradients of q, k, v, the gates and beta, on `tokens` of the sequences."""
    leaves = [t[:, tokens].clone().requires_grad_() for t in tensors]
    o = _run(family, backend, *leaves)
    o.backward(COTANGENT[:, tokens])
    return [o.detach()] + [x.grad for x in leaves]


KERNELS = pytest.param("triton", marks=pytest.mark.interpret)


@pytest.mark.parametrize("backend", ["reference", KERNELS])
@pytest.mark.parametrize("family", ["simple_gla", "gla", "gated_delta_rule"])
def test_a_hard_reset_splits_the_sequence(family, backend, nan_alloc):
    q, k, v, gate, beta = _inputs(family, torch.float32)
    gate[:, R] = -float("inf")
    tensors = (q, k, v, gate, beta)
    whole = _grads(family, backend, tensors, slice(0, T))
    gate[:, R] = 0.0  # the pieces' gates all finite (the reset's gradient is not compared)
    parts = [_grads(family, backend, tensors, sl) for sl in (slice(0, R), slice(R, T))]
    for i, name in enumerate(["o", "dq", "dk", "dv", "dgate", "dbeta"]):
        if name == "dbeta" and family != "gated_delta_rule":
            continue
        got = whole[i]
        want = torch.cat([parts[0][i], parts[1][i]], 1)
        if name == "dgate":
            got, want = got.clone(), want.clone()
            got[:, R] = want[:, R] = 0.0
        assert torch.isfinite(got).all(), name
        torch.testing.assert_close(got, want, rtol=2e-4, atol=2e-5, msg=name)


@pytest.mark.parametrize("strength", [1e3, 1e5, 1e7])
def test_a_very_strong_finite_gate_keeps_the_weak_ones_precise(strength):
    """One token's log-decay of -strength in a chunk of weak ones: the decays between the weak
    tokens after it are differences of cumulative sums near -strength, which float32 would
    hold to about strength * 2^-24; at the floor they stay exact to float32."""
    q, k, v, gate, _ = _inputs("simple_gla", torch.float32)
    gate[:, 1] = -strength
    o = ops.simple_gla(q, k, v, gate, backend="reference")[0]
    want = simple_gla_recurrent_reference(*(x.double() for x in (q, k, v, gate)))[0]
    err = (o.double() - want).norm() / want.norm()
    assert err < 1e-5, err
