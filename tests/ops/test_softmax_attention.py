"""Fused softmax attention: the Triton kernels (interpreted on the CPU) against the float64
reference, outputs and every gradient, and the argument checks."""

import subprocess
import sys
import textwrap

import pytest
import torch

from ncd.ops import _gluon as gluon_common
from ncd.ops import config, softmax_attention
from ncd.ops.attention import fused
from ncd.ops.attention.gluon import dkdv as gluon_dkdv
from ncd.ops.attention.gluon import forward as gluon_forward
from ncd.ops.attention.reference import softmax_attention_reference

from .compare import rel_rms

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
@pytest.mark.parametrize("kv_smem", [False, True])
def test_backward_schedules(kv_smem, nan_alloc):
    """Both score layouts of the dK/dV pass, through 4-d tiles (ragged lengths) and 2-d tiles
    (whole 128-row blocks), two batches."""
    with config.override(interpret_kv_smem=kv_smem):
        for T, S, causal in ((47, 45, False), (47, 47, True), (128, 128, True), (128, 128, False)):
            errs = run_case(2, T, S, 2, 1, 32, 32, causal, torch.float16, seed=1)
            assert max(errs) < TOL[torch.float16], (T, S, causal, errs)


@pytest.mark.interpret
@pytest.mark.parametrize("kv_smem", [False, True])
def test_mask_only_on_diagonal_blocks(kv_smem, nan_alloc):
    """dK/dV with the causal mask applied only to the key blocks that cross the diagonal:
    ragged (4-d tiles) and whole-block (2-d tiles) lengths, several blocks either side."""
    with config.override(interpret_diag=True, interpret_kv_smem=kv_smem):
        for T in (47, 128):
            errs = run_case(2, T, T, 2, 1, 32, 32, True, torch.float16, seed=3)
            assert max(errs) < TOL[torch.float16], (T, errs)


@pytest.mark.interpret
@pytest.mark.parametrize("causal", [True, False])
def test_next_batch_cannot_leak(causal, nan_alloc):
    """Infinities in batch 1's first rows must not reach batch 0's outputs or gradients (a
    tile of batch 0's last rows must not read them, or must mask them: zero probability
    alone would not do, since infinity times zero is not zero)."""
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


@pytest.mark.parametrize(
    "T, S, H, Hkv, causal, dtype",
    [(9, 9, 4, 2, True, torch.float32), (7, 13, 2, 1, True, torch.float32),
     (13, 7, 2, 2, True, torch.float32), (33, 33, 3, 3, False, torch.float32)],
)  # fmt: skip
def test_cpu_path_matches_the_reference(T, S, H, Hkv, causal, dtype):
    """On the CPU the op runs PyTorch's scaled_dot_product_attention: grouped heads, T != S
    (causal top-left aligned), outputs and gradients as the reference's to rounding; the
    reference itself on request."""
    q = torch.randn(2, T, H, 16, dtype=dtype, requires_grad=True)
    k = torch.randn(2, S, Hkv, 16, dtype=dtype, requires_grad=True)
    v = torch.randn(2, S, Hkv, 8, dtype=dtype, requires_grad=True)
    o = softmax_attention(q, k, v, causal=causal)
    ref = softmax_attention_reference(q, k, v, causal=causal)
    assert o.shape == (2, T, H, 8) and o.is_contiguous()
    do = torch.randn_like(o)
    for a, b in zip((o, *torch.autograd.grad(o, (q, k, v), do)),
                    (ref, *torch.autograd.grad(ref, (q, k, v), do))):  # fmt: skip
        torch.testing.assert_close(a, b)
    forced = softmax_attention(q, k, v, causal=causal, backend="reference")
    assert torch.equal(forced, ref)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, sets RLIMIT_AS")
def test_cpu_path_memory_stays_linear_in_T():
    """T = S = 16384 on one head: the reference's scores alone take 1 GiB; the op runs within
    256 MiB of address space above what the process held (a child process under that limit),
    and the reference does not."""
    script = textwrap.dedent(
        """
        import re, resource, torch
        from ncd.ops import softmax_attention
        from ncd.ops.attention.reference import softmax_attention_reference
        q, k, v = (torch.randn(1, 16384, 1, 32) for _ in range(3))
        softmax_attention(q[:, :64], k[:, :64], v[:, :64], causal=True)  # pools, kernels
        held = re.search(r"VmSize:\\s+(\\d+) kB", open("/proc/self/status").read())
        limit = int(held.group(1)) * 1024 + (256 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
        assert softmax_attention(q, k, v, causal=True).shape == (1, 16384, 1, 32)
        try:
            softmax_attention_reference(q, k, v, causal=True)
        except RuntimeError:
            print("reference refused")
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "reference refused" in run.stdout


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda q, k, v: (q[0], k, v), "expected 4 dims"),
        (lambda q, k, v: (q, k.half(), v), "dtypes"),
        (lambda q, k, v: (q, k[:, :, :1].expand(-1, -1, 3, -1), v), "v.shape[1:3]"),
        (lambda q, k, v: (q, k[..., :8], v), "head width"),
        (lambda q, k, v: (q[:, :, :3], k[:, :, :2], v[:, :, :2]), "a multiple of"),
        (lambda q, k, v: (q.int(), k.int(), v.int()), "float16, bfloat16, float32 or float64"),
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
def test_wide_heads_take_pytorchs_attention(monkeypatch):
    """Heads wider than 128: the kernels refuse them when asked for; "auto" gives them to
    PyTorch's attention, also where the kernels would run (use_triton patched to say so)."""
    q = torch.randn(1, 4, 1, 160)
    with pytest.raises(ValueError, match="at most 128"):
        softmax_attention(q, q, q, backend="triton")
    assert softmax_attention(q, q, q).shape == (1, 4, 1, 160)  # CPU: PyTorch's SDPA
    monkeypatch.setattr(fused, "use_triton", lambda *a: True)
    torch.testing.assert_close(
        softmax_attention(q, q, q, causal=True), softmax_attention_reference(q, q, q, causal=True)
    )


@pytest.fixture
def gluon_here(monkeypatch):
    """The Gluon backends pass their device checks here (they cannot run: no GPU, and Gluon
    has no interpreter); tests put stand-ins in place of their kernels."""
    monkeypatch.setattr(gluon_common, "available", lambda: True)
    monkeypatch.setattr(gluon_common, "on_hopper", lambda x: True)
    monkeypatch.setattr(gluon_common, "FAILED", set())


@pytest.mark.interpret
@pytest.mark.parametrize(
    "T, Hkv, dtype, grouped, taken",
    [
        (128, 2, torch.float16, False, True),  # whole blocks, no grouping, 16-bit: Gluon
        (128, 1, torch.float16, False, False),  # grouped heads: Triton, unless switched on
        (128, 1, torch.float16, True, True),  # (config gluon_dkdv_grouped)
        (47, 2, torch.float16, True, False),  # ragged length
        (128, 2, torch.float32, True, False),  # float32
    ],
)
def test_gluon_dkdv_dispatch(T, Hkv, dtype, grouped, taken, gluon_here, monkeypatch, nan_alloc):
    """Where `_backward` hands dK/dV to the Gluon kernel. A stand-in records the call and
    returns dK, dV of the float64 reference, so the gradients also check the arguments it was
    given (lse, delta, scale) and the separate dQ pass that follows it."""
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

    monkeypatch.setattr(gluon_dkdv, "run", stand_in)
    with config.override(gluon_dkdv_grouped=grouped, gluon_forward=False):
        errs = run_case(1, T, T, 2, Hkv, 64, 64, True, dtype, seed=6)
    assert max(errs) < TOL[dtype], errs
    assert bool(calls) == taken, calls


def test_gluon_dkdv_limits(monkeypatch):
    """`gluon.dkdv.supports`: the shapes, dtypes and layouts the Gluon dK/dV kernel takes,
    with the reason when not."""
    monkeypatch.setattr(gluon_common, "on_hopper", lambda x: True)

    def ok(T=256, S=256, H=2, Hkv=2, D=128, dtype=torch.bfloat16, causal=True, dv=None):
        q = torch.empty(1, T, H, D, dtype=dtype)
        k, v = torch.empty(1, S, Hkv, D, dtype=dtype), torch.empty(1, S, Hkv, dv or D, dtype=dtype)
        good, why = gluon_dkdv.supports(q, k, v, causal)
        assert good == (why == ""), why
        return good

    assert ok() and ok(D=64, dtype=torch.float16) and ok(S=512, causal=False)
    assert not ok(dtype=torch.float32)
    assert not ok(T=200, S=200)  # not whole 128-row blocks
    assert not ok(Hkv=1)  # grouped heads: only when asked for
    q = torch.empty(1, 256, 6, 128, dtype=torch.bfloat16)
    kv = [torch.empty(1, 256, n, 128, dtype=torch.bfloat16) for n in (1, 2, 3, 4)]
    assert [gluon_dkdv.supports(q, k, k, True, grouped=True)[0] for k in kv] == [
        True, True, True, False]  # fmt: skip
    assert not ok(D=96)
    assert not ok(dv=64)  # v narrower than k
    assert not ok(S=512)  # causal needs T == S
    assert "T == S" in gluon_dkdv.supports(q, kv[0][:, :128], kv[0][:, :128], True, True)[1]
    monkeypatch.undo()
    good, why = gluon_dkdv.supports(q, kv[0], kv[0], True, grouped=True)
    assert not good and "Hopper" in why  # no Hopper GPU here


def test_gluon_forward_limits(monkeypatch):
    """`gluon.forward.supports`: the Gluon forward takes whole-block 16-bit inputs with D 64
    or 128, grouped heads too (H a multiple of Hkv), and imports without a GPU."""
    monkeypatch.setattr(gluon_common, "on_hopper", lambda x: True)

    def ok(T=256, S=256, Hkv=2, D=128, dtype=torch.bfloat16, causal=True, H=2):
        q = torch.empty(1, T, H, D, dtype=dtype)
        k = v = torch.empty(1, S, Hkv, D, dtype=dtype)
        good, why = gluon_forward.supports(q, k, v, causal)
        assert good == (why == ""), why
        return good

    assert ok() and ok(D=64, dtype=torch.float16) and ok(S=512, causal=False)
    assert ok(Hkv=1) and ok(H=6, Hkv=2)  # grouped heads
    assert not ok(dtype=torch.float32) and not ok(T=200, S=200) and not ok(H=6, Hkv=4)
    assert not ok(D=96) and not ok(S=512)
    monkeypatch.undo()
    q = torch.empty(1, 256, 2, 128, dtype=torch.bfloat16)
    good, why = gluon_forward.supports(q, q, q, True)
    assert not good and "Hopper" in why


def test_choose_says_why():
    """`fused.choose` names the backend of each pass and, when it is not Gluon, why."""
    q = torch.empty(1, 256, 2, 128, dtype=torch.bfloat16)
    for kind in ("forward", "dkdv"):
        backend, why = fused.choose(kind, q, q, q, True)
        assert backend == "triton" and why  # no Hopper GPU, or no Gluon here
    with config.override(gluon_forward=False):
        assert "gluon_forward" in fused.choose("forward", q, q, q, True)[1]
    with config.override(gluon_dkdv=False):
        assert "gluon_dkdv" in fused.choose("dkdv", q, q, q, True)[1]
    with pytest.raises(ValueError, match="kind"):
        fused.choose("dq", q, q, q, True)


@pytest.mark.interpret
@pytest.mark.parametrize(
    "enabled, T, Hkv, taken",
    [(True, 128, 2, True), (True, 128, 1, True), (True, 47, 2, False), (False, 128, 2, False)],
)
def test_gluon_forward_dispatch(enabled, T, Hkv, taken, gluon_here, monkeypatch, nan_alloc):
    """`_forward` hands whole-block 16-bit inputs, grouped heads too, to the Gluon forward
    unless switched off (config gluon_forward). A stand-in returns the float64 reference's o
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

    monkeypatch.setattr(gluon_forward, "run", stand_in)
    with config.override(gluon_forward=enabled, gluon_dkdv=False):
        errs = run_case(1, T, T, 2, Hkv, 64, 64, True, torch.float16, seed=8)
    assert max(errs) < TOL[torch.float16], errs
    assert bool(calls) == taken, calls


@pytest.mark.interpret
def test_gluon_failure_falls_back_to_triton(gluon_here, monkeypatch, nan_alloc):
    """A Gluon kernel that cannot be built here (another Triton 3.6 build, another ptxas)
    warns once and leaves both passes to the Triton kernels, whose results are checked."""
    calls = []

    def broken(*args):
        calls.append(len(args))
        raise RuntimeError("PTXASError: ptxas fatal")

    monkeypatch.setattr(gluon_dkdv, "run", broken)
    monkeypatch.setattr(gluon_forward, "run", broken)
    failed = "Gluon kernel of softmax_attention forward failed.*PTXASError"
    with pytest.warns(RuntimeWarning, match=failed):
        errs = run_case(1, 128, 128, 2, 2, 64, 64, True, torch.float16, seed=9)
    assert max(errs) < TOL[torch.float16], errs
    assert (
        sorted(gluon_common.FAILED) == ["softmax_attention dkdv", "softmax_attention forward"]
        and len(calls) == 2
    )
    assert "failed earlier" in fused.choose("forward", *[torch.empty(1, 128, 2, 64)] * 3, True)[1]
    run_case(1, 128, 128, 2, 2, 64, 64, True, torch.float16, seed=9)  # no second try
    assert len(calls) == 2
