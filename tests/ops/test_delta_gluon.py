"""The delta rules' Gluon chunk kernels (ops/delta_rule/gluon.py ungated, gluon_gated.py
gated): where the backward hands them the chunk pass, what they are given, and the inputs
they take. Gluon has no interpreter and no
GPU is here, so a float64 PyTorch stand-in written from the chunk pass's equations (the
kernel's module docstring) takes its place; the end-to-end gradients against the
token-by-token recurrence then check both the arguments and those equations. The kernel
itself is checked on the GPU (`bench/gpu_check.py --ops delta_rule`)."""

import pytest
import torch

from ncd.ops import _gluon as gluon_common
from ncd.ops import config
from ncd.ops.delta_rule import delta_rule, gated_delta_rule, gluon_gated
from ncd.ops.delta_rule import gluon as gluon_chunk

from .test_delta_rule import compare


def chunk_pass(q, k, v, ai, beta, do, vn, dvn, hs, dhs, dq, dk, dv, dbeta, g, dg, scale):
    """dq, dk, dv, dbeta (and dg, gated) of the delta rules from the scans' outputs, in
    float64: per chunk, with S entering it (hs), dS' leaving it (dhs), T (ai's rows), V', dV'
    and (gated) G the in-chunk cumulative log decays (g, head-major), gamma = exp(G),
    E_ij = exp(G_i - G_j), G_last its last:

        dps = scale (dO V'^T * E * causal),  dB_u = T^T dV',  dB_w = dB_u S^T,
        dA = strictly_lower(-dB_u V'^T * E),  dab = diag(beta) dA,
        dK_state = diag(exp(G_last - G)) V' dS'^T,  t_w = -rowsum(dB_w * k),
        dq = scale diag(gamma) dO S^T + dps K,  dv = diag(beta) dB_u,
        dk = dK_state - diag(beta gamma) dB_w + dps^T Q + (dab + dab^T) K,
        dbeta = rowsum(dB_u * v) + gamma t_w + rowsum(dA * K K^T),
        dG = beta gamma t_w + rowsum(q * dq_inter) + rowsum(dps * Q K^T) - colsum(..)
             + rowsum(dab * K K^T) - colsum(..) + [last] exp(G_last) <S, dS'>,
        dg = reverse cumsum(dG) + exclusive cumsum(rowsum(k * dK_state))."""
    B, T, H, K = q.shape
    V, C = v.shape[-1], ai.shape[-1]
    NT = T // C

    def chunks(x):  # [B, T, H, d] -> [B, NT, H, C, d]
        return x.double().reshape(B, NT, C, H, -1).permute(0, 1, 3, 2, 4)

    def tr(x):
        return x.transpose(-1, -2)

    def rows(x):  # [..., C, 1] -> [..., C]
        return x[..., 0]

    qc, kc, vc, doc, vnc, dvnc, tm = map(chunks, (q, k, v, do, vn, dvn, ai))
    bt = chunks(beta[..., None])
    if g is None:
        G = torch.zeros(B, NT, H, C, 1, dtype=torch.float64)
    else:  # [H, B * T] -> [B, NT, H, C, 1]
        G = g.double().reshape(H, B, NT, C).permute(1, 2, 0, 3)[..., None]
    gamma, g_last = G.exp(), G[..., -1:, :]
    s = hs.double().reshape(B, NT, H, K, V)
    ds = dhs.double().reshape(B, NT, H, K, V)
    causal = torch.ones(C, C, dtype=torch.bool).tril()
    strict = causal.tril(-1)
    E = torch.exp((G - tr(G)).masked_fill(~causal, 0.0))
    dps = scale * (doc @ tr(vnc)) * E * causal
    db_u = tr(tm) @ dvnc
    db_w = db_u @ tr(s)
    da = -(db_u @ tr(vnc)) * E * strict
    dab = bt * da
    dk_state = (g_last - G).exp() * (vnc @ tr(ds))
    t_w = -(db_w * kc).sum(-1, keepdim=True)
    dq_inter = scale * gamma * (doc @ tr(s))
    kk = kc @ tr(kc)
    out_q = dq_inter + dps @ kc
    out_k = dk_state - bt * gamma * db_w + tr(dps) @ qc + (dab + tr(dab)) @ kc
    out_beta = rows((db_u * vc).sum(-1, keepdim=True) + gamma * t_w) + (da * kk).sum(-1)

    def back(x):  # [B, NT, H, C, d] -> [B, T, H, d]
        return x.permute(0, 1, 3, 2, 4).reshape(B, T, H, -1)

    dq.copy_(back(out_q))
    dk.copy_(back(out_k))
    dv.copy_(back(bt * db_u))
    dbeta.copy_(back(out_beta[..., None])[..., 0])
    if g is not None:
        m = dps * (qc @ tr(kc)) + dab * kk
        d_g = rows(bt * gamma * t_w) + (qc * dq_inter).sum(-1) + m.sum(-1) - m.sum(-2)
        d_g[..., -1] += g_last[..., 0, 0].exp() * (s * ds).sum((-1, -2))
        ks = (kc * dk_state).sum(-1)
        out_g = d_g.flip(-1).cumsum(-1).flip(-1) + ks.cumsum(-1) - ks
        dg.copy_(back(out_g[..., None])[..., 0])
    return True


@pytest.fixture
def gluon_here(monkeypatch):
    """The Gluon chunk kernels switched on (configs delta_gluon, gated_delta_gluon), passing
    their device checks here and taking the interpreter's 16-token chunks, however few; the
    test puts a stand-in in place of each kernel."""
    monkeypatch.setattr(gluon_common, "available", lambda: True)
    monkeypatch.setattr(gluon_common, "on_hopper", lambda x: True)
    monkeypatch.setattr(gluon_common, "FAILED", set())
    monkeypatch.setattr(gluon_chunk, "BT", 16)
    monkeypatch.setattr(gluon_chunk, "MIN_CHUNKS", 0)
    monkeypatch.setattr(config.settings, "delta_gluon", True)
    monkeypatch.setattr(config.settings, "gated_delta_gluon", True)


@pytest.mark.interpret
@pytest.mark.parametrize(
    "case, dtype, taken",
    [
        ((2, 48, 2, 64, 64, False, None, True), torch.float16, True),  # whole chunks: Gluon
        ((2, 48, 2, 64, 64, False, None, False), torch.float16, True),  # no initial state
        ((1, 48, 2, 64, 64, False, [0, 16, 48], True), torch.float16, False),  # packed
        ((2, 40, 2, 64, 64, False, None, True), torch.float16, False),  # ragged chunk
        ((2, 48, 2, 64, 64, True, None, True), torch.float16, True),  # gated: gluon_gated
        ((2, 48, 2, 64, 64, True, None, False), torch.float16, True),
        ((2, 48, 2, 64, 64, False, None, True), torch.float32, False),  # float32
        ((2, 48, 2, 32, 32, False, None, True), torch.float16, False),  # narrow heads
    ],
    ids=str,
)
def test_gluon_chunk_dispatch(case, dtype, taken, gluon_here, monkeypatch, nan_alloc):
    """Where the delta rule's backward hands the chunk pass to the Gluon kernel (the stand-in
    records its calls), and outputs and every gradient against the recurrence either way."""
    calls = []

    def ungated(*args):  # gluon.run's arguments
        calls.append("ungated")
        return chunk_pass(*args[:-2], None, None, args[-2])

    def gated(*args):  # gluon_gated.run's
        calls.append("gated")
        return chunk_pass(*args[:-1])

    monkeypatch.setattr(gluon_chunk, "run", ungated)
    monkeypatch.setattr(gluon_gated, "run", gated)
    kind = "gated" if case[5] else "ungated"
    fn = gated_delta_rule if case[5] else delta_rule
    compare(fn, case, dtype, backend="triton")
    assert calls == ([kind] if taken else []), calls
    if taken:  # the rule's switch off: the Triton kernel
        calls.clear()
        with config.override(**{"gated_delta_gluon" if case[5] else "delta_gluon": False}):
            compare(fn, case, dtype, backend="triton")
        assert not calls


def test_gluon_chunk_limits(monkeypatch):
    """`gluon.supports`: the inputs the Gluon chunk kernel takes, with the reason when not;
    importable without a GPU."""
    monkeypatch.setattr(gluon_common, "on_hopper", lambda x: True)

    def ok(T=256, K=128, V=None, dtype=torch.bfloat16, varlen=False, chunk=64, tensors=()):
        q = torch.empty(1, T, 2, K, dtype=dtype)
        v = torch.empty(1, T, 2, V or K, dtype=dtype)
        good, why = gluon_chunk.supports(q, v, varlen, chunk, tensors)
        assert good == (why == ""), why
        return good

    monkeypatch.setattr(gluon_chunk, "MIN_CHUNKS", 8)  # 4 chunks x 2 heads at T = 256
    assert ok() and ok(K=64, dtype=torch.float16)
    assert not ok(T=128)  # 4 chunk programs: taken as host-bound
    assert not ok(dtype=torch.float32) and not ok(varlen=True)
    assert not ok(T=200) and not ok(chunk=16)
    assert not ok(K=96) and not ok(K=128, V=64) and not ok(K=32)
    base = torch.empty(2 * 256 * 2 * 128 + 1, dtype=torch.bfloat16)
    assert not ok(tensors=(base[1:].view(2, 256, 2, 128),))  # off a 16-byte boundary
    assert not ok(tensors=(torch.empty(1, 2, 256, 128, dtype=torch.bfloat16).transpose(1, 2),))
    monkeypatch.undo()
    good, why = gluon_chunk.supports(torch.empty(1, 256, 2, 128), torch.empty(1, 256, 2, 128),
                                     False, 64)  # fmt: skip
    assert not good and "Hopper" in why  # no Hopper GPU here


@pytest.mark.interpret
@pytest.mark.parametrize("gated", [False, True])
def test_gluon_chunk_failure_falls_back_to_triton(gated, gluon_here, monkeypatch, nan_alloc):
    """A Gluon chunk kernel that fails here (a compiler error, say) warns once, and the chunk
    pass is the Triton kernel's from then on: gradients right, that kernel not tried again;
    the other rule's kernel is still tried."""
    calls = []

    def failing(*args):
        calls.append(1)
        raise RuntimeError("PTXASError: ptxas fatal")

    monkeypatch.setattr(gluon_gated if gated else gluon_chunk, "run", failing)
    case = (2, 48, 2, 64, 64, gated, None, True)
    fn = gated_delta_rule if gated else delta_rule
    op = (gluon_gated if gated else gluon_chunk).OP
    with pytest.warns(RuntimeWarning, match=op):
        compare(fn, case, torch.float16, backend="triton")
    compare(fn, case, torch.float16, backend="triton")
    assert calls == [1]
    other = []

    def working(*args):  # the other kernel's stand-in: gluon.run's or gluon_gated.run's args
        other.append(1)
        return chunk_pass(*args[:-2], None, None, args[-2]) if gated else chunk_pass(*args[:-1])

    monkeypatch.setattr(gluon_chunk if gated else gluon_gated, "run", working)
    fn = delta_rule if gated else gated_delta_rule
    compare(fn, (2, 48, 2, 64, 64, not gated, None, True), torch.float16, backend="triton")
    assert other == [1]
