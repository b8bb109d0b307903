"""Fused softmax attention: the Triton kernels (interpreted on the CPU) against the float64
reference, outputs and every gradient, and the argument checks."""

import pytest
import torch

from ncd.ops import softmax_attention
from ncd.ops.attention import fused
from ncd.ops.attention.reference import softmax_attention_reference


def rel_rms(x, ref):
    # NaN becomes inf: a NaN error would pass every `<` and be dropped by `max`.
    x, ref = x.double(), ref.double()
    err = ((x - ref).norm() / ref.norm()).item()
    return err if err == err else float("inf")


TOL = {torch.float32: 1e-4, torch.float16: 3e-3}

# (B, T, S, H, Hkv, D, Dv, causal, dtype): odd lengths, grouped heads, uneven head widths.
CASES = [
    (2, 63, 63, 4, 2, 32, 32, True, torch.float32),
    (1, 37, 50, 2, 1, 64, 64, False, torch.float16),
    (1, 64, 64, 2, 2, 64, 32, True, torch.float16),
    (1, 45, 45, 3, 1, 24, 24, True, torch.float32),
    (1, 33, 33, 1, 1, 128, 128, True, torch.float16),
    (2, 17, 40, 2, 2, 32, 16, True, torch.float32),
    (1, 21, 21, 2, 1, 20, 12, True, torch.float16),  # widths padded to 16-byte rows
    (2, 19, 37, 2, 1, 32, 32, False, torch.float16),
]


def run_case(B, T, S, H, Hkv, D, Dv, causal, dtype, seed=0, scale=None):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, D, generator=g).to(dtype).requires_grad_()
    k = torch.randn(B, S, Hkv, D, generator=g).to(dtype).requires_grad_()
    v = torch.randn(B, S, Hkv, Dv, generator=g).to(dtype).requires_grad_()
    o = softmax_attention(q, k, v, causal=causal, scale=scale, backend="triton")
    do = torch.randn(o.shape, generator=g).to(dtype)
    grads = torch.autograd.grad(o, (q, k, v), do)
    ref_in = [x.detach().double().requires_grad_() for x in (q, k, v)]
    o_ref = softmax_attention_reference(*ref_in, causal=causal, scale=scale)
    ref_grads = torch.autograd.grad(o_ref, ref_in, do.double())
    assert o.dtype == dtype and o.shape == (B, T, H, Dv)
    errs = [rel_rms(o, o_ref)] + [rel_rms(a, b) for a, b in zip(grads, ref_grads)]
    return errs


@pytest.mark.interpret
@pytest.mark.parametrize("case", CASES, ids=str)
def test_matches_reference(case, nan_alloc):
    errs = run_case(*case)
    assert max(errs) < TOL[case[-1]], errs


@pytest.mark.interpret
def test_scale_option(nan_alloc):
    errs = run_case(1, 20, 20, 2, 1, 32, 32, True, torch.float32, scale=0.3)
    assert max(errs) < TOL[torch.float32], errs


@pytest.mark.interpret
@pytest.mark.parametrize("atomic_dq", [False, True])
@pytest.mark.parametrize("kv_smem", [False, True])
@pytest.mark.parametrize("flat", [False, True])
def test_backward_schedules(atomic_dq, kv_smem, flat, monkeypatch, nan_alloc):
    """Both score layouts of the dK/dV pass, with dQ separate or added atomically, through
    2-d or 4-d tiles (forward and backward)."""
    monkeypatch.setattr(fused, "ATOMIC_DQ", atomic_dq)
    monkeypatch.setattr(fused, "INTERPRET_KV_SMEM", kv_smem)
    monkeypatch.setattr(fused, "FLAT_FORWARD", flat)
    monkeypatch.setattr(fused, "FLAT_DKDV", flat)
    monkeypatch.setattr(fused, "FLAT_DQ", flat)
    # Two batches, ragged (2-d tiles that reach the next batch's rows), then whole blocks.
    for T, S, causal in ((47, 45, False), (47, 47, True), (128, 128, True), (128, 128, False)):
        errs = run_case(2, T, S, 2, 1, 32, 32, causal, torch.float16, seed=1)
        assert max(errs) < TOL[torch.float16], (T, S, causal, errs)


@pytest.mark.interpret
@pytest.mark.parametrize("kv_smem", [False, True])
def test_mask_only_on_diagonal_blocks(kv_smem, monkeypatch, nan_alloc):
    """dK/dV with the causal mask applied only to the key blocks that cross the diagonal:
    ragged and whole-block lengths, 2-d and 4-d tiles, several blocks either side."""
    monkeypatch.setattr(fused, "INTERPRET_DIAG", True)
    monkeypatch.setattr(fused, "INTERPRET_KV_SMEM", kv_smem)
    for T, flat in ((47, False), (128, True)):
        monkeypatch.setattr(fused, "FLAT_DKDV", flat)
        errs = run_case(2, T, T, 2, 1, 32, 32, True, torch.float16, seed=3)
        assert max(errs) < TOL[torch.float16], (T, flat, errs)


@pytest.mark.interpret
@pytest.mark.parametrize("causal", [True, False])
def test_next_batch_cannot_leak(causal, monkeypatch, nan_alloc):
    """Through 2-d tiles the last query block of batch 0 also reads batch 1's first rows;
    infinities there must not reach batch 0's gradients (they are masked, not only given
    zero probability, which infinity times zero would undo)."""
    monkeypatch.setattr(fused, "FLAT_DKDV", True)
    g = torch.Generator().manual_seed(7)
    B, T, H, D = 2, 39, 2, 32
    q, k, v = (torch.randn(B, T, H, D, generator=g).half() for _ in range(3))
    q[1, :4] = float("inf")
    q, k, v = (x.requires_grad_() for x in (q, k, v))
    o = softmax_attention(q, k, v, causal=causal, backend="triton")
    do = torch.randn(o.shape, generator=g).half()
    do[1, :4] = float("inf")
    grads = torch.autograd.grad(o, (q, k, v), do)
    ref_in = [x[:1].detach().double().requires_grad_() for x in (q, k, v)]
    o_ref = softmax_attention_reference(*ref_in, causal=causal)
    ref_grads = torch.autograd.grad(o_ref, ref_in, do[:1].double())
    errs = [rel_rms(a[:1], b) for a, b in zip(grads, ref_grads)]
    assert max(errs) < TOL[torch.float16], errs


@pytest.mark.interpret
@pytest.mark.parametrize("causal", [True, False])
def test_forward_look_ahead(causal, monkeypatch, nan_alloc):
    """The forward loop that asks for the next block's scores before this block's softmax
    (`_fwd_tiles_ahead`): long enough for several unmasked key blocks per query block, and
    query blocks with none (the first ones, causal)."""
    monkeypatch.setattr(fused, "INTERPRET_AHEAD", True)
    errs = run_case(1, 83, 83, 2, 1, 32, 32, causal, torch.float32, seed=5)
    assert max(errs) < TOL[torch.float32], errs


@pytest.mark.interpret
def test_what_is_read_in_place(monkeypatch, nan_alloc):
    """A q cut from a wider tensor (padded rows) reaches the kernels as it is; permuted
    ``[B, H, T, D]`` views are copied (see `_tma_ready`). Values right either way, gradients in
    the inputs' layouts."""
    seen = []
    forward = fused._forward

    def spy(q, k, v, *a):
        seen.append([x.is_contiguous() for x in (q, k, v)])
        return forward(q, k, v, *a)

    monkeypatch.setattr(fused, "_forward", spy)
    g = torch.Generator().manual_seed(3)
    B, T, H, D = 2, 37, 2, 32
    q = torch.randn(B, T, H, 48, generator=g).half()[..., :D].requires_grad_()
    k, v = (torch.randn(B, H, T, D, generator=g).half().transpose(1, 2).requires_grad_()
            for _ in range(2))  # fmt: skip
    o = softmax_attention(q, k, v, causal=True, backend="triton")
    do = torch.randn(o.shape, generator=g).half()
    grads = torch.autograd.grad(o, (q, k, v), do)
    assert seen == [[False, True, True]]
    assert all(gr.shape == x.shape for gr, x in zip(grads, (q, k, v)))
    ref_in = [x.detach().double().requires_grad_() for x in (q, k, v)]
    o_ref = softmax_attention_reference(*ref_in, causal=True)
    ref_grads = torch.autograd.grad(o_ref, ref_in, do.double())
    errs = [rel_rms(o, o_ref)] + [rel_rms(a, b) for a, b in zip(grads, ref_grads)]
    assert max(errs) < TOL[torch.float16], errs


@pytest.mark.interpret
def test_sliced_and_grouped_inputs(nan_alloc):
    """q cut from a wider tensor (its rows 96 bytes apart) and grouped k, v seen through a
    transpose: each read in place or copied as the copy engine allows, all values right."""
    g = torch.Generator().manual_seed(4)
    q = torch.randn(2, 29, 4, 48, generator=g).half()[..., :32].requires_grad_()
    k, v = (torch.randn(2, 2, 29, 32, generator=g).half().transpose(1, 2).requires_grad_()
            for _ in range(2))  # fmt: skip
    o = softmax_attention(q, k, v, causal=True, backend="triton")
    do = torch.randn(o.shape, generator=g).half()
    grads = torch.autograd.grad(o, (q, k, v), do)
    ref_in = [x.detach().double().requires_grad_() for x in (q, k, v)]
    o_ref = softmax_attention_reference(*ref_in, causal=True)
    ref_grads = torch.autograd.grad(o_ref, ref_in, do.double())
    errs = [rel_rms(o, o_ref)] + [rel_rms(a, b) for a, b in zip(grads, ref_grads)]
    assert max(errs) < TOL[torch.float16], errs


def test_cpu_dispatch_runs_reference():
    q, k, v = (torch.randn(1, 9, 2, 16) for _ in range(3))
    torch.testing.assert_close(
        softmax_attention(q, k, v, causal=True),
        softmax_attention_reference(q, k, v, causal=True),
        rtol=0,
        atol=0,
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda q, k, v: (q[0], k, v), "expected 4 dims"),
        (lambda q, k, v: (q, k.half(), v), "dtypes"),
        (lambda q, k, v: (q, k[:, :, :1].expand(-1, -1, 3, -1), v), "v.shape[1:3]"),
        (lambda q, k, v: (q, k[..., :8], v), "head width"),
        (lambda q, k, v: (q[:, :, :3], k[:, :, :2], v[:, :, :2]), "a multiple of"),
        (lambda q, k, v: (q.int(), k.int(), v.int()), "float16, bfloat16 or float32"),
    ],
)
def test_bad_arguments(change, message):
    q, k, v = (torch.randn(1, 5, 4, 16) for _ in range(3))
    with pytest.raises(ValueError, match="softmax_attention") as err:
        softmax_attention(*change(q, k, v))
    assert message in str(err.value) and "expected" in str(err.value)
    assert "found" in str(err.value)


def test_bad_scale_and_backend():
    q = torch.randn(1, 5, 2, 16)
    with pytest.raises(ValueError, match="positive"):
        softmax_attention(q, q, q, scale=-1.0)
    with pytest.raises(ValueError, match="backend"):
        softmax_attention(q, q, q, backend="cuda")


@pytest.mark.interpret
def test_wide_heads_need_the_reference():
    q = torch.randn(1, 4, 1, 160)
    with pytest.raises(ValueError, match="at most 128"):
        softmax_attention(q, q, q, backend="triton")
    assert softmax_attention(q, q, q).shape == (1, 4, 1, 160)  # CPU: the reference


@pytest.mark.interpret
@pytest.mark.parametrize(
    "T, Hkv, dtype, grouped, taken",
    [
        (128, 2, torch.float16, False, True),  # whole blocks, no grouping, 16-bit: Gluon
        (128, 1, torch.float16, False, False),  # grouped heads: Triton, unless switched on
        (128, 1, torch.float16, True, True),  # (NCD_GLUON_DKDV_GROUPED=1)
        (47, 2, torch.float16, True, False),  # ragged length
        (128, 2, torch.float32, True, False),  # float32
    ],
)
def test_hopper_dkdv_dispatch(T, Hkv, dtype, grouped, taken, monkeypatch, nan_alloc):
    """Where `_backward` hands dK/dV to the Hopper (Gluon) kernel. The Gluon kernel cannot run
    here (no GPU, no interpreter for Gluon): a stand-in records the call and returns dK, dV of
    the float64 reference, so the gradients also check the arguments it was given (lse,
    delta, scale) and the separate dQ pass that follows it."""
    calls = []

    def stand_in(q, k, v, do, lse, delta, causal, scale):
        calls.append((tuple(q.shape), causal))
        # delta as the kernel reads it: rowsum(dO * O), [B, H, T].
        ref_in = [x.detach().double().requires_grad_() for x in (q, k, v)]
        with torch.enable_grad():  # backward runs with gradients off
            o = softmax_attention_reference(*ref_in, causal=causal, scale=scale)
            _, dk, dv = torch.autograd.grad(o, ref_in, do.double())
        o = o.detach()
        assert torch.allclose(delta.double(), (o * do.double()).sum(-1).transpose(1, 2),
                              atol=1e-2, rtol=1e-2)  # fmt: skip
        return dk.to(k.dtype), dv.to(v.dtype)

    monkeypatch.setattr(fused, "interpreting", lambda: False)  # _backend still interprets
    monkeypatch.setattr(fused.hopper, "usable", lambda x: True)
    monkeypatch.setattr(fused.hopper, "dkdv_hopper", stand_in)
    monkeypatch.setattr(fused, "HOPPER_DKDV_GROUPED", grouped)
    errs = run_case(1, T, T, 2, Hkv, 64, 64, True, dtype, seed=6)
    assert max(errs) < TOL[dtype], errs
    assert bool(calls) == taken, calls


def test_hopper_kernel_limits():
    """`hopper.supported`: the shapes, dtypes and layouts the Gluon dK/dV kernel takes."""
    from ncd.ops.attention import hopper

    def ok(T=256, S=256, H=2, Hkv=2, D=128, dtype=torch.bfloat16, causal=True, dv=None):
        q, do = torch.empty(1, T, H, D, dtype=dtype), torch.empty(1, T, H, dv or D, dtype=dtype)
        k, v = torch.empty(1, S, Hkv, D, dtype=dtype), torch.empty(1, S, Hkv, dv or D, dtype=dtype)
        return hopper.supported(q, k, v, do, causal)

    assert ok() and ok(D=64, dtype=torch.float16) and ok(S=512, causal=False)
    assert not ok(dtype=torch.float32)
    assert not ok(T=200, S=200)  # not whole 128-row blocks
    assert not ok(Hkv=1)  # grouped heads: only when asked for
    q = do = torch.empty(1, 256, 6, 128, dtype=torch.bfloat16)
    kv = [torch.empty(1, 256, n, 128, dtype=torch.bfloat16) for n in (1, 2, 3, 4)]
    assert [hopper.supported(q, k, k, do, True, grouped=True) for k in kv] == [
        True, True, True, False]  # fmt: skip
    assert not ok(D=96)
    assert not ok(dv=64)  # v narrower than k
    assert not ok(S=512)  # causal needs T == S
    assert not hopper.usable(torch.empty(1))  # no Hopper GPU here


def test_hopper_forward_limits():
    """`hopper_fwd.supported`: the Gluon forward takes whole-block 16-bit inputs with D 64 or
    128, grouped heads too (H a multiple of Hkv), and imports without a GPU."""
    from ncd.ops.attention import hopper_fwd

    def ok(T=256, S=256, Hkv=2, D=128, dtype=torch.bfloat16, causal=True, H=2):
        q = torch.empty(1, T, H, D, dtype=dtype)
        k = v = torch.empty(1, S, Hkv, D, dtype=dtype)
        return hopper_fwd.supported(q, k, v, causal)

    assert ok() and ok(D=64, dtype=torch.float16) and ok(S=512, causal=False)
    assert ok(Hkv=1) and ok(H=6, Hkv=2)  # grouped heads
    assert not ok(dtype=torch.float32) and not ok(T=200, S=200) and not ok(H=6, Hkv=4)
    assert not ok(D=96) and not ok(S=512)
    assert not hopper_fwd.usable(torch.empty(1))


@pytest.mark.interpret
@pytest.mark.parametrize(
    "enabled, T, Hkv, taken",
    [(True, 128, 2, True), (True, 128, 1, True), (True, 47, 2, False), (False, 128, 2, False)],
)
def test_hopper_forward_dispatch(enabled, T, Hkv, taken, monkeypatch, nan_alloc):
    """`_forward` hands whole-block 16-bit inputs, grouped heads too, to the Gluon forward
    unless switched off (NCD_GLUON_FORWARD=0). A stand-in returns the float64 reference's o
    and lse, so the backward that follows (Triton, interpreted) also checks the lse it was
    given."""
    calls = []

    def stand_in(q, k, v, causal, scale):
        calls.append(tuple(q.shape))
        qd, kd, vd = (x.detach().double() for x in (q, k, v))
        G = q.shape[2] // k.shape[2]
        kd, vd = kd.repeat_interleave(G, 2), vd.repeat_interleave(G, 2)
        s = torch.einsum("bthd,bshd->bhts", qd, kd) * scale
        if causal:
            s = s.masked_fill(torch.ones(s.shape[-2:]).triu(1).bool(), float("-inf"))
        lse = torch.logsumexp(s, -1) / torch.log(torch.tensor(2.0, dtype=torch.float64))
        o = torch.einsum("bhts,bshd->bthd", s.softmax(-1), vd)
        return o.to(q.dtype).contiguous(), lse.float().contiguous()

    monkeypatch.setattr(fused, "HOPPER_FORWARD", enabled)
    monkeypatch.setattr(fused, "interpreting", lambda: False)  # _backend still interprets
    monkeypatch.setattr(fused.hopper_fwd, "usable", lambda x: True)
    monkeypatch.setattr(fused.hopper_fwd, "forward_hopper", stand_in)
    errs = run_case(1, T, T, 2, Hkv, 64, 64, True, torch.float16, seed=8)
    assert max(errs) < TOL[torch.float16], errs
    assert bool(calls) == taken, calls


@pytest.mark.interpret
def test_gluon_failure_falls_back_to_triton(monkeypatch, nan_alloc):
    """A Gluon kernel that cannot be built here (another Triton 3.6 build, another ptxas)
    warns once and leaves both passes to the Triton kernels, whose results are checked."""
    calls = []

    def broken(*args):
        calls.append(len(args))
        raise RuntimeError("PTXASError: ptxas fatal")

    monkeypatch.setattr(fused, "GLUON_FAILED", set())
    monkeypatch.setattr(fused, "interpreting", lambda: False)  # _backend still interprets
    for mod, name in ((fused.hopper, "dkdv_hopper"), (fused.hopper_fwd, "forward_hopper")):
        monkeypatch.setattr(mod, "usable", lambda x: True)
        monkeypatch.setattr(mod, name, broken)
    with pytest.warns(RuntimeWarning, match="Gluon forward kernel failed.*PTXASError"):
        errs = run_case(1, 128, 128, 2, 2, 64, 64, True, torch.float16, seed=9)
    assert max(errs) < TOL[torch.float16], errs
    assert sorted(fused.GLUON_FAILED) == ["dkdv", "forward"] and len(calls) == 2
    run_case(1, 128, 128, 2, 2, 64, 64, True, torch.float16, seed=9)  # no second try
    assert len(calls) == 2
