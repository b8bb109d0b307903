"""The delta rule's Gluon chunk kernel (ops/delta_rule/gluon.py): where the backward hands it
the chunk pass, what it is given, and the inputs it takes. Gluon has no interpreter and no
GPU is here, so a float64 PyTorch stand-in written from the chunk pass's equations (the
kernel's module docstring) takes its place; the end-to-end gradients against the
token-by-token recurrence then check both the arguments and those equations. The kernel
itself is checked on the GPU (`bench/gpu_check.py --ops delta_rule`)."""

import pytest
import torch

from ncd.ops import _gluon as gluon_common
from ncd.ops import config
from ncd.ops.delta_rule import delta_rule, gated_delta_rule
from ncd.ops.delta_rule import gluon as gluon_chunk

from .test_delta_rule import compare


def chunk_pass(q, k, v, ai, beta, do, vn, dvn, hs, dhs, dq, dk, dv, dbeta, scale, programs):
    """dq, dk, dv, dbeta of the ungated delta rule from the scans' outputs, in float64:
    per chunk, with S entering it (hs), dS' leaving it (dhs), T (ai's rows), V' and dV',

        dps = scale (dO V'^T * causal),  dB_u = T^T dV',  dB_w = dB_u S^T,
        dA = strictly_lower(-dB_u V'^T),  dab = diag(beta) dA
        dq = scale dO S^T + dps K,  dv = diag(beta) dB_u,
        dk = V' dS'^T - diag(beta) dB_w + dps^T Q + (dab + dab^T) K,
        dbeta = rowsum(dB_u * v) - rowsum(dB_w * k) + rowsum(dA * K K^T)."""
    B, T, H, K = q.shape
    V, C = v.shape[-1], ai.shape[-1]
    NT = T // C

    def chunks(x):  # [B, T, H, d] -> [B, NT, H, C, d]
        return x.double().reshape(B, NT, C, H, -1).permute(0, 1, 3, 2, 4)

    def tr(x):
        return x.transpose(-1, -2)

    qc, kc, vc, doc, vnc, dvnc, tm = map(chunks, (q, k, v, do, vn, dvn, ai))
    bt = chunks(beta[..., None])
    s = hs.double().reshape(B, NT, H, K, V)
    ds = dhs.double().reshape(B, NT, H, K, V)
    causal = torch.ones(C, C, dtype=torch.bool).tril()
    strict = causal.tril(-1)
    dps = scale * (doc @ tr(vnc)) * causal
    db_u = tr(tm) @ dvnc
    db_w = db_u @ tr(s)
    da = -(db_u @ tr(vnc)) * strict
    dab = bt * da
    out_q = scale * doc @ tr(s) + dps @ kc
    out_k = vnc @ tr(ds) - bt * db_w + tr(dps) @ qc + (dab + tr(dab)) @ kc
    out_beta = (db_u * vc).sum(-1) - (db_w * kc).sum(-1) + (da * (kc @ tr(kc))).sum(-1)

    def back(x):  # [B, NT, H, C, d] -> [B, T, H, d]
        return x.permute(0, 1, 3, 2, 4).reshape(B, T, H, -1)

    dq.copy_(back(out_q))
    dk.copy_(back(out_k))
    dv.copy_(back(bt * db_u))
    dbeta.copy_(back(out_beta[..., None])[..., 0])
    return True


@pytest.fixture
def gluon_here(monkeypatch):
    """The Gluon chunk kernel switched on (config delta_gluon), passing its device checks here
    and taking the interpreter's 16-token chunks, however few; the test puts a stand-in in
    place of the kernel."""
    monkeypatch.setattr(gluon_common, "available", lambda: True)
    monkeypatch.setattr(gluon_common, "on_hopper", lambda x: True)
    monkeypatch.setattr(gluon_common, "FAILED", set())
    monkeypatch.setattr(gluon_chunk, "BT", 16)
    monkeypatch.setattr(gluon_chunk, "MIN_CHUNKS", 0)
    monkeypatch.setattr(config.settings, "delta_gluon", True)


@pytest.mark.interpret
@pytest.mark.parametrize(
    "case, dtype, taken",
    [
        ((2, 48, 2, 64, 64, False, None, True), torch.float16, True),  # whole chunks: Gluon
        ((2, 48, 2, 64, 64, False, None, False), torch.float16, True),  # no initial state
        ((1, 48, 2, 64, 64, False, [0, 16, 48], True), torch.float16, False),  # packed
        ((2, 40, 2, 64, 64, False, None, True), torch.float16, False),  # ragged chunk
        ((2, 48, 2, 64, 64, True, None, True), torch.float16, False),  # gated
        ((2, 48, 2, 64, 64, False, None, True), torch.float32, False),  # float32
        ((2, 48, 2, 32, 32, False, None, True), torch.float16, False),  # narrow heads
    ],
    ids=str,
)
def test_gluon_chunk_dispatch(case, dtype, taken, gluon_here, monkeypatch, nan_alloc):
    """Where the delta rule's backward hands the chunk pass to the Gluon kernel (the stand-in
    records its calls), and outputs and every gradient against the recurrence either way."""
    calls = []

    def stand_in(*args):
        calls.append(tuple(args[0].shape))
        return chunk_pass(*args)

    monkeypatch.setattr(gluon_chunk, "run", stand_in)
    fn = gated_delta_rule if case[5] else delta_rule
    compare(fn, case, dtype, backend="triton")
    assert bool(calls) == taken, calls
    if taken:  # config delta_gluon off: the Triton kernel
        calls.clear()
        with config.override(delta_gluon=False):
            compare(fn, case, dtype, backend="triton")
        assert not calls


def test_gluon_chunk_limits(monkeypatch):
    """`gluon.supports`: the inputs the Gluon chunk kernel takes, with the reason when not;
    importable without a GPU."""
    monkeypatch.setattr(gluon_common, "on_hopper", lambda x: True)

    def ok(T=256, K=128, V=None, dtype=torch.bfloat16, gated=False, varlen=False, chunk=64,
           tensors=()):  # fmt: skip
        q = torch.empty(1, T, 2, K, dtype=dtype)
        v = torch.empty(1, T, 2, V or K, dtype=dtype)
        good, why = gluon_chunk.supports(q, v, gated, varlen, chunk, tensors)
        assert good == (why == ""), why
        return good

    monkeypatch.setattr(gluon_chunk, "MIN_CHUNKS", 8)  # 4 chunks x 2 heads at T = 256
    assert ok() and ok(K=64, dtype=torch.float16)
    assert not ok(T=128)  # 4 chunk programs: taken as host-bound
    assert not ok(dtype=torch.float32) and not ok(gated=True) and not ok(varlen=True)
    assert not ok(T=200) and not ok(chunk=16)
    assert not ok(K=96) and not ok(K=128, V=64) and not ok(K=32)
    base = torch.empty(2 * 256 * 2 * 128 + 1, dtype=torch.bfloat16)
    assert not ok(tensors=(base[1:].view(2, 256, 2, 128),))  # off a 16-byte boundary
    assert not ok(tensors=(torch.empty(1, 2, 256, 128, dtype=torch.bfloat16).transpose(1, 2),))
    monkeypatch.undo()
    good, why = gluon_chunk.supports(torch.empty(1, 256, 2, 128), torch.empty(1, 256, 2, 128),
                                     False, False, 64)  # fmt: skip
    assert not good and "Hopper" in why  # no Hopper GPU here


@pytest.mark.interpret
def test_gluon_chunk_failure_falls_back_to_triton(gluon_here, monkeypatch, nan_alloc):
    """A Gluon chunk kernel that fails here (a compiler error, say) warns once, and the chunk
    pass is the Triton kernel's from then on: gradients right, the kernel not tried again."""
    calls = []

    def failing(*args):
        calls.append(1)
        raise RuntimeError("PTXASError: ptxas fatal")

    monkeypatch.setattr(gluon_chunk, "run", failing)
    case = (2, 48, 2, 64, 64, False, None, True)
    with pytest.warns(RuntimeWarning, match="delta_rule backward chunk"):
        compare(delta_rule, case, torch.float16, backend="triton")
    compare(delta_rule, case, torch.float16, backend="triton")
    assert calls == [1]
