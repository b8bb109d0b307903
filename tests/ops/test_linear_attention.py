"""Chunked causal linear attention: the Triton kernels (interpreted on the CPU) against the
float64 quadratic reference, outputs, final states and every gradient; the one-token step
against the same reference; the argument checks."""

import pytest
import torch

from ncd.ops import config, linear_attention, linear_attention_step
from ncd.ops.linear_attention import chunk, linear_attention_chunked, linear_attention_reference

from ..cpu_memory import allocations, saved_storages
from .compare import output_and_gradient_errors, rel_rms

TOL = {torch.float32: 1e-4, torch.float16: 3e-3}


def make(B, T, H, K, V, dtype, seed, positive=False, permuted=False):
    """q, k, v; permuted: ``[B, H, T, .]`` leaves seen through transpose(1, 2), as compiled
    circuits pass them."""
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, T, H, K, generator=g) for _ in range(2))
    if positive:  # a positive feature map keeps the normaliser away from zero
        q, k = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    v = torch.randn(B, T, H, V, generator=g)
    if permuted:
        return [x.transpose(1, 2).contiguous().to(dtype).requires_grad_().transpose(1, 2)
                for x in (q, k, v)], g  # fmt: skip
    return [x.to(dtype).requires_grad_() for x in (q, k, v)], g


# (B, T, H, K, V, dtype, decay, initial state, final state, normalize, cu_seqlens)
CASES = [
    (2, 63, 2, 32, 16, torch.float32, False, False, False, False, None),
    (2, 63, 2, 32, 48, torch.float32, True, True, True, False, None),
    (1, 50, 2, 16, 32, torch.float32, True, True, True, False, [0, 7, 7, 40, 50]),
    (1, 70, 2, 64, 64, torch.float16, False, False, True, False, None),
    (1, 45, 3, 24, 20, torch.float16, True, False, False, False, [0, 16, 45]),
    (2, 37, 2, 32, 32, torch.float32, True, True, True, True, None),
]


@pytest.mark.interpret
@pytest.mark.parametrize("case", CASES, ids=str)
def test_matches_reference(case, nan_alloc):
    run_case(case)


@pytest.mark.interpret
@pytest.mark.parametrize("case", [CASES[1], CASES[2], CASES[5]], ids=str)
def test_permuted_inputs_are_read_in_place(case, monkeypatch, nan_alloc):
    """``[B, H, T, .]`` tensors seen through transpose(1, 2) reach the kernels as they are (no
    relayout copy) when config linear_in_place is on, and outputs and gradients still match
    the reference."""
    seen = []
    forward = chunk._forward

    def spy(q, k, v, *a, **kw):
        seen.append(q.is_contiguous() or k.is_contiguous())
        return forward(q, k, v, *a, **kw)

    monkeypatch.setattr(chunk, "_forward", spy)
    with config.override(linear_in_place=True):
        grads, inputs = run_case(case, permuted=True)
    assert seen and not any(seen)
    assert all(gr.stride() == x.stride() for gr, x in zip(grads[:3], inputs[:3]))


@pytest.mark.interpret
@pytest.mark.parametrize("in_place", [False, True])
def test_q_and_k_in_different_layouts(in_place, nan_alloc):
    """q permuted, k contiguous: the kernels take one layout for both, so both are copied."""
    (q, k, v), g = make(2, 33, 2, 16, 16, torch.float32, seed=5)
    qp = q.detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
    with config.override(linear_in_place=in_place):
        o, _ = linear_attention(qp, k, v, scale=0.5, backend="triton")
    do = torch.randn(o.shape, generator=g)
    grads = torch.autograd.grad(o, (qp, k, v), do)
    ref_in = [x.detach().double().requires_grad_() for x in (q, k, v)]
    o_ref, _ = linear_attention_reference(*ref_in, scale=0.5)
    ref_grads = torch.autograd.grad(o_ref, ref_in, do.double())
    errs = [rel_rms(o, o_ref)] + [rel_rms(a, b) for a, b in zip(grads, ref_grads)]
    assert max(errs) < TOL[torch.float32], errs


def run_case(case, permuted=False):
    B, T, H, K, V, dtype, use_decay, use_s0, want_state, normalize, cu = case
    (q, k, v), g = make(B, T, H, K, V, dtype, seed=T, positive=normalize, permuted=permuted)
    cu = None if cu is None else torch.tensor(cu)
    N = B if cu is None else len(cu) - 1
    decay = (0.8 + 0.2 * torch.rand(H, generator=g)) if use_decay else None
    inputs = [q, k, v]
    s0 = None
    if use_s0:
        s0 = torch.randn(N, H, K, V, generator=g).requires_grad_()
        inputs.append(s0)
        if normalize:
            z0 = torch.rand(N, H, K, generator=g).requires_grad_()
            inputs.append(z0)
            s0 = (s0, z0)
    kw = dict(decay=decay, initial_state=s0, output_final_state=want_state,
              normalize=normalize, cu_seqlens=cu, scale=0.3)  # fmt: skip
    o, st = linear_attention(q, k, v, backend="triton", **kw)
    ref_in = [x.detach().double().requires_grad_() for x in inputs]
    ref_s0 = None if s0 is None else (tuple(ref_in[3:]) if normalize else ref_in[3])
    o_ref, st_ref = linear_attention_reference(*ref_in[:3], **dict(kw, initial_state=ref_s0))
    assert o.shape == (B, T, H, V) and o.dtype == dtype
    outs, refs = [o], [o_ref]
    if want_state:
        st, st_ref = (st, st_ref) if normalize else ((st,), (st_ref,))
        outs += list(st)
        refs += list(st_ref)
        assert st[0].dtype == torch.float32 and st[0].shape == (N, H, K, V)
    cotangents = [torch.randn(x.shape, generator=g).to(x.dtype) for x in outs]
    grads = torch.autograd.grad(outs, inputs, cotangents)
    ref_grads = torch.autograd.grad(refs, ref_in, [c.double() for c in cotangents])
    errs = [rel_rms(a, b) for a, b in zip(outs, refs)]
    errs += [rel_rms(a, b) for a, b in zip(grads, ref_grads)]
    assert max(errs) < TOL[dtype], errs
    return grads, inputs


def test_cpu_dispatch_runs_the_chunked_form():
    (q, k, v), _ = make(1, 9, 2, 8, 8, torch.float32, 0)
    o, _ = linear_attention(q, k, v)
    torch.testing.assert_close(o, linear_attention_chunked(q, k, v)[0], rtol=0, atol=0)
    torch.testing.assert_close(o, linear_attention_reference(q, k, v)[0])


@pytest.mark.parametrize("case", CASES, ids=str)
def test_chunked_form_matches_the_reference(case):
    """The CPU path (chunks of 16 here, so that every case spans several) against the
    quadratic reference in float64: outputs, final states and every gradient, with decay,
    states in and out, the normaliser and packed sequences."""
    B, T, H, K, V, _, use_decay, use_s0, want_state, normalize, cu = case
    (q, k, v), g = make(B, T, H, K, V, torch.float64, seed=T, positive=normalize)
    cu = None if cu is None else torch.tensor(cu)
    N = B if cu is None else len(cu) - 1
    decay = (0.8 + 0.2 * torch.rand(H, generator=g, dtype=torch.float64)) if use_decay else None
    inputs = [q, k, v]
    s0 = None
    if use_s0:
        s0 = torch.randn(N, H, K, V, generator=g, dtype=torch.float64).requires_grad_()
        inputs.append(s0)
        if normalize:
            z0 = torch.rand(N, H, K, generator=g, dtype=torch.float64).requires_grad_()
            inputs.append(z0)
            s0 = (s0, z0)
    kw = dict(decay=decay, initial_state=s0, output_final_state=want_state,
              normalize=normalize, cu_seqlens=cu, scale=0.3)  # fmt: skip
    got = linear_attention_chunked(q, k, v, chunk_size=16, **kw)
    want = linear_attention_reference(q, k, v, **kw)

    def flat(r):
        o, st = r
        return [o] + ([] if st is None else list(st) if isinstance(st, tuple) else [st])

    got, want = flat(got), flat(want)
    assert len(got) == len(want) == 1 + want_state * (1 + normalize)
    cot = [torch.randn(x.shape, generator=g, dtype=torch.float64) for x in want]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    for a, b in zip(torch.autograd.grad(got, inputs, cot), torch.autograd.grad(want, inputs, cot)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_cpu_path_memory_is_linear_in_T():
    """At T = 8192 the CPU path allocates a small multiple of its inputs (chunk-sized score
    tiles), not the T x T score matrix of the quadratic form (512 MiB here)."""
    (q, k, v), _ = make(1, 8192, 2, 16, 16, torch.float32, 0)
    with torch.no_grad():
        _, peak, _ = allocations(lambda: linear_attention(q, k, v, decay=torch.tensor([0.9, 0.99])))
    assert peak < 16 * q.numel() * 4, peak  # inputs are 1 MiB each


@pytest.mark.parametrize("normalize", [False, True])
def test_step_continues_a_prompt(normalize):
    """Prompt through the chunked op with its final state, then one token at a time: the same
    outputs as the reference on the whole sequence."""
    (q, k, v), g = make(2, 12, 3, 8, 5, torch.float64, 1, positive=True)
    q, k, v = q.detach(), k.detach(), v.detach()
    decay = torch.tensor([1.0, 0.9, 0.7], dtype=torch.float64)
    kw = dict(decay=decay, normalize=normalize, scale=0.5)
    o_ref, _ = linear_attention_reference(q, k, v, **kw)
    _, state = linear_attention(q[:, :7], k[:, :7], v[:, :7], output_final_state=True, **kw)
    for t in range(7, 12):
        o_t, state = linear_attention_step(q[:, t], k[:, t], v[:, t], state, **kw)
        torch.testing.assert_close(o_t, o_ref[:, t])


def test_step_from_nothing():
    (q, k, v), _ = make(1, 3, 2, 4, 4, torch.float32, 2)
    q, k, v = q.detach(), k.detach(), v.detach()
    o_ref, _ = linear_attention_reference(q, k, v)
    state = None
    for t in range(3):
        o_t, state = linear_attention_step(q[:, t], k[:, t], v[:, t], state)
        torch.testing.assert_close(o_t, o_ref[:, t])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(causal=False), "causal"),
        (dict(decay=torch.ones(3)), "decay.shape"),
        (dict(decay=torch.full((2,), 1.5)), "in (0, 1]"),
        (dict(decay=torch.full((2,), 0.9, requires_grad=True)), "requires_grad"),
        (dict(initial_state=torch.zeros(2, 2, 8, 3)), "initial_state shape"),
        (dict(initial_state=torch.zeros(2, 2, 8, 4), normalize=True), "tuple"),
        (dict(cu_seqlens=torch.tensor([0, 3, 5])), "batch size with cu_seqlens"),
        (dict(scale=float("nan")), "scale"),
    ],
)
def test_bad_arguments(kwargs, message):
    (q, k, v), _ = make(2, 5, 2, 8, 4, torch.float32, 0)
    with pytest.raises(ValueError, match="linear_attention") as err:
        linear_attention(q, k, v, **kwargs)
    assert message in str(err.value) and "expected" in str(err.value)


def test_bad_shapes_and_packing():
    (q, k, v), _ = make(1, 6, 2, 8, 4, torch.float32, 0)
    with pytest.raises(ValueError, match="k.shape"):
        linear_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="cu_seqlens"):
        linear_attention(q, k, v, cu_seqlens=torch.tensor([0, 2, 5]))
    with pytest.raises(ValueError, match="non-decreasing"):
        linear_attention(q, k, v, cu_seqlens=torch.tensor([0, 4, 2, 6]))
    with pytest.raises(ValueError, match="state shape"):
        linear_attention_step(q[:, 0], k[:, 0], v[:, 0], torch.zeros(1, 2, 8, 5))


@pytest.mark.interpret
def test_wide_heads_need_the_reference():
    q = torch.randn(1, 4, 1, 160)
    with pytest.raises(ValueError, match="at most 128"):
        linear_attention(q, q, q, backend="triton")
    assert linear_attention(q, q, q)[0].shape == (1, 4, 1, 160)  # CPU: the reference


@pytest.mark.interpret
@pytest.mark.parametrize("use_decay", [False, True])
def test_normalize_with_state_at_the_rounding_floor(use_decay):
    """Regression: with normalize=True the gradients of the numerator and the denominator
    cancel (o is unchanged when q is scaled). Rounded to the input dtype separately and added
    there, they gave dq ~5x the error of one rounding of the exact gradient (bf16 8.2e-3 on
    the H200, float16 4.2x here). Each float16 output and gradient must stay within 2x of that
    floor: the float32 reference on the same float16 inputs, rounded once to float16."""
    B, T, H, K, V = 2, 63, 3, 32, 32
    (q, k, v), g = make(B, T, H, K, V, torch.float16, seed=3, positive=True)
    decay = (0.9 + 0.1 * torch.rand(H, generator=g)) if use_decay else None
    s0 = torch.randn(B, H, K, V, generator=g).requires_grad_()
    z0 = torch.rand(B, H, K, generator=g).requires_grad_()
    inputs = [q, k, v, s0, z0]
    kw = dict(decay=decay, output_final_state=True, normalize=True, scale=0.2)

    def run(fn, xs, **extra):
        o, (s_t, z_t) = fn(*xs[:3], initial_state=(xs[3], xs[4]), **kw, **extra)
        return [o, s_t, z_t]

    outs = run(linear_attention, inputs, backend="triton")
    cot = [torch.randn(x.shape, generator=g).to(x.dtype) for x in outs]
    grads = torch.autograd.grad(outs, inputs, cot)
    results = {}
    for ct in (torch.float64, torch.float32):
        xs = [x.detach().to(ct).requires_grad_() for x in inputs]
        refs = run(linear_attention_reference, xs)
        results[ct] = refs + list(torch.autograd.grad(refs, xs, [c.to(ct) for c in cot]))
    names = ["o", "S_T", "z_T", "dq", "dk", "dv", "dS0", "dz0"]
    for name, x, ref, f32 in zip(names, outs + list(grads), results[torch.float64],
                                 results[torch.float32]):  # fmt: skip
        err = rel_rms(x, ref)
        if x.dtype == torch.float16:
            floor = rel_rms(f32.to(torch.float16), ref)
            assert err < 2 * floor, (name, err, floor)
        else:  # the float32 states and their gradients, from float16 products (and decays)
            assert err < 5e-4, (name, err)


def _normalized_token_by_token(q, k, v, decay, scale):
    """float64, one token at a time: S_t = lam S + k^T v, z_t = lam z + k,
    o_t = c q S_t / (c q . z_t + 1e-10), and 0 (a constant) where c q . z_t = 0."""
    B, T, H, K = q.shape
    lam = torch.ones(H, dtype=torch.float64) if decay is None else decay.double()
    S = q.new_zeros(B, H, K, v.shape[-1], dtype=torch.float64)
    z = q.new_zeros(B, H, K, dtype=torch.float64)
    outs = []
    for t in range(T):
        qt, kt, vt = q[:, t].double(), k[:, t].double(), v[:, t].double()
        S = lam[:, None, None] * S + kt[..., :, None] * vt[..., None, :]
        z = lam[:, None] * z + kt
        num = scale * torch.einsum("bhk,bhkv->bhv", qt, S)
        den = scale * (qt * z).sum(-1, keepdim=True)
        empty = den == 0
        outs.append(torch.where(empty, 0.0, num / torch.where(empty, 1.0, den + 1e-10)))
    return torch.stack(outs, 1)


@pytest.mark.parametrize("use_decay", [False, True])
@pytest.mark.parametrize(
    "backend", [pytest.param("triton", marks=pytest.mark.interpret), "reference"]
)
def test_normalize_with_all_zero_features_in_float16(backend, use_decay, nan_alloc):
    """Regression: with a ReLU feature map a query can have no nonzero feature, and the first
    keys can all be zero, so that c q . z = 0 and the denominator was 1e-10 alone. Such a row
    reads 0, but its gradient through num / 1e-10 (c S^T do / 1e-10 for dq, about 1e11 here)
    overflowed float16: inf in dq and dk on the CPU path, NaN in dq, dk and dv from the
    kernels. Now such a row is a constant (output 0, no gradient): float16 outputs and
    gradients are finite and match a float64 token-by-token loop of that definition."""
    g = torch.Generator().manual_seed(11)
    B, T, H, K, V = 1, 70, 2, 16, 16
    q, k = (torch.relu(torch.randn(B, T, H, K, generator=g)) for _ in "qk")
    v = torch.randn(B, T, H, V, generator=g)
    q[:, [5, 33]] = 0  # queries with no feature, in two chunks
    q[:, 50, 1] = 0
    k[:, :3] = 0  # before the first nonzero key z = 0, whatever the query
    decay = (0.8 + 0.2 * torch.rand(H, generator=g)) if use_decay else None
    do = torch.randn(B, T, H, V, generator=g)
    xs = [x.half().requires_grad_() for x in (q, k, v)]
    o, _ = linear_attention(*xs, decay=decay, normalize=True, scale=0.5, backend=backend)
    grads = torch.autograd.grad(o, xs, do.half())
    ref_in = [x.detach().double().requires_grad_() for x in xs]
    o_ref = _normalized_token_by_token(*ref_in, decay, 0.5)
    ref_grads = torch.autograd.grad(o_ref, ref_in, do.half().double())
    for name, x, ref in zip(["o", "dq", "dk", "dv"], [o, *grads], [o_ref, *ref_grads]):
        assert x.dtype == torch.float16 and bool(x.isfinite().all()), name
        assert rel_rms(x, ref) < TOL[torch.float16], (name, rel_rms(x, ref))
    assert bool((o[:, [5, 33]] == 0).all()) and bool((grads[0][:, [5, 33]] == 0).all())


@pytest.mark.interpret
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("normalize", [False, True])
def test_flops_are_the_products_the_kernels_run(dot_macs, dtype, normalize):
    """The cost model's FLOPs against the multiply-adds of every product the kernels execute,
    counted in the interpreter's dot at its blocks (two key blocks, four value blocks), forward
    and backward; normalised 16-bit inputs multiply their float32 operands as hi + lo pairs."""
    from ncd.ops.linear_attention import cost

    gen = torch.Generator().manual_seed(4)
    B, T, H, K, V = 1, 48, 2, 32, 64
    q, k = (torch.rand(B, T, H, K, generator=gen).to(dtype).requires_grad_() for _ in "qk")
    v = torch.randn(B, T, H, V, generator=gen).to(dtype).requires_grad_()
    o, _ = linear_attention(q, k, v, decay=torch.tensor([0.9, 0.95]), normalize=normalize,
                            backend="triton")  # fmt: skip
    forward, dot_macs[:] = 2 * sum(dot_macs), []
    o.float().sum().backward()
    blocks = dict(C=chunk.INTERPRET_FWD["BLOCK_T"], normalize=normalize,
                  precise=dtype != torch.float32)  # fmt: skip
    assert chunk.INTERPRET_BWD["BLOCK_T"] == blocks["C"]
    assert forward == cost.flops_forward(
        B, T, H, K, V, block_v=chunk.INTERPRET_FWD["BLOCK_V"], **blocks
    )
    assert 2 * sum(dot_macs) == cost.flops_backward(
        B, T, H, K, V, block_k=chunk.INTERPRET_BWD["BLOCK_KS"],
        block_v=chunk.INTERPRET_BWD["BLOCK_VS"], **blocks,
    )  # fmt: skip


# ---------------------------------------------------------------- grouped heads
# (B, T, G, H, K, V, dtype, decay, initial state, final state, normalize, cu_seqlens): q and k
# of G heads read by the H heads of v, head h reading h // (H / G)
GROUPED = [
    (2, 63, 1, 4, 32, 16, torch.float32, False, False, False, False, None),
    (2, 63, 2, 4, 32, 48, torch.float32, True, True, True, False, None),
    (1, 63, 2, 4, 16, 32, torch.float32, True, True, True, False, [0, 7, 7, 40, 63]),
    (1, 63, 1, 4, 24, 20, torch.float16, True, False, True, False, [0, 16, 63]),
    (2, 63, 2, 4, 32, 32, torch.float32, True, True, True, True, None),
    (2, 63, 1, 4, 16, 16, torch.float16, False, True, True, True, None),
]


def run_grouped(case, **fn_kw):
    """The op on grouped q, k against the quadratic float64 reference on q, k repeated to
    the H heads by repeat_interleave: outputs, final states and every gradient (dq and dk
    of the reference summed over each group's heads by autograd)."""
    B, T, G, H, K, V, dtype, use_decay, use_s0, want_state, normalize, cu = case
    q, k = make(B, T, G, K, K, dtype, seed=T + G, positive=normalize)[0][:2]
    gen = torch.Generator().manual_seed(G)
    v = torch.randn(B, T, H, V, generator=gen).to(dtype).requires_grad_()
    cu = None if cu is None else torch.tensor(cu)
    N = B if cu is None else len(cu) - 1
    decay = (0.8 + 0.2 * torch.rand(H, generator=gen)) if use_decay else None
    inputs, s0 = [q, k, v], None
    if use_s0:
        s0 = torch.randn(N, H, K, V, generator=gen).requires_grad_()
        inputs.append(s0)
        if normalize:
            inputs.append(torch.rand(N, H, K, generator=gen).requires_grad_())
            s0 = (s0, inputs[-1])
    kw = dict(decay=decay, output_final_state=want_state, normalize=normalize, cu_seqlens=cu,
              scale=0.3)  # fmt: skip
    o, st = linear_attention(q, k, v, initial_state=s0, **kw, **fn_kw)
    ref_in = [x.detach().double().requires_grad_() for x in inputs]
    rq, rk = (x.repeat_interleave(H // G, 2) for x in ref_in[:2])
    ref_s0 = None if s0 is None else (tuple(ref_in[3:]) if normalize else ref_in[3])
    o_ref, st_ref = linear_attention_reference(rq, rk, ref_in[2], initial_state=ref_s0, **kw)
    assert o.shape == (B, T, H, V) and o.dtype == dtype
    outs, refs = [o], [o_ref]
    if want_state:
        outs += list(st) if normalize else [st]
        refs += list(st_ref) if normalize else [st_ref]
    errs = output_and_gradient_errors(outs, refs, inputs, ref_in, gen)
    assert max(errs) < TOL[dtype], errs


@pytest.mark.interpret
@pytest.mark.parametrize("case", GROUPED, ids=str)
def test_grouped_heads_match_the_reference(case, nan_strided):
    run_grouped(case, backend="triton")


@pytest.mark.parametrize("case", GROUPED, ids=str)
def test_grouped_heads_in_the_chunked_form(case):
    run_grouped(case)  # CPU tensors: the chunked PyTorch form


@pytest.mark.interpret
def test_grouped_heads_keep_no_copies():
    """One group of q and k read by 4 heads: the kernels keep q, k and v themselves (nothing
    of 4 heads' size beside v); dq and dk come back in q's and k's shape and layout."""
    B, T, H, K, V = 1, 40, 4, 16, 16
    q, k = make(B, T, 1, K, K, torch.float32, seed=1, permuted=True)[0][:2]
    v = torch.randn(B, T, H, V).requires_grad_()
    o, kept = saved_storages(lambda: linear_attention(q, k, v, backend="triton")[0])
    assert kept == {x.untyped_storage().data_ptr(): 4 * x.numel() for x in (q, k, v)}
    dq, dk = torch.autograd.grad(o.sum(), (q, k))
    assert dq.stride() == q.stride() and dk.stride() == k.stride()


def test_grouped_chunked_form_keeps_no_copies():
    """The CPU path keeps no tensor of q's or k's size repeated to the heads: no kept storage
    is as large as q of 4 heads, which the same call on repeated q and k does keep."""
    B, T, H, K, V = 1, 128, 4, 32, 8
    q, k = make(B, T, 1, K, K, torch.float32, seed=1)[0][:2]
    v = torch.randn(B, T, H, V).requires_grad_()
    repeated = [x.repeat_interleave(H, 2) for x in (q, k)]
    for qq, kk, copies in ((q, k, False), (*repeated, True)):
        _, kept = saved_storages(lambda a=qq, b=kk: linear_attention_chunked(a, b, v, chunk_size=8))
        assert (max(kept.values()) >= 4 * B * T * H * K) == copies, kept


@pytest.mark.parametrize("normalize", [False, True])
def test_grouped_step_continues_a_prompt(normalize):
    """q and k of 2 groups read by 4 heads, a prompt through the op then one token at a time:
    the reference on q and k repeated to the heads."""
    q, k = (x.detach() for x in make(2, 12, 2, 8, 8, torch.float64, 1, positive=True)[0][:2])
    v = torch.randn(2, 12, 4, 5, dtype=torch.float64)
    kw = dict(decay=torch.tensor([1.0, 0.9, 0.7, 0.8], dtype=torch.float64),
              normalize=normalize, scale=0.5)  # fmt: skip
    o_ref, _ = linear_attention_reference(q.repeat_interleave(2, 2), k.repeat_interleave(2, 2),
                                          v, **kw)  # fmt: skip
    _, state = linear_attention(q[:, :7], k[:, :7], v[:, :7], output_final_state=True, **kw)
    for t in range(7, 12):
        o_t, state = linear_attention_step(q[:, t], k[:, t], v[:, t], state, **kw)
        torch.testing.assert_close(o_t, o_ref[:, t])


def test_grouped_heads_must_divide():
    (q, k, v), _ = make(1, 6, 3, 8, 4, torch.float32, 0)
    v4 = torch.randn(1, 6, 4, 4)
    for call in (lambda: linear_attention(q, k, v4),
                 lambda: linear_attention_step(q[:, 0], k[:, 0], v4[:, 0], None)):  # fmt: skip
        with pytest.raises(ValueError, match="heads H of v: expected a multiple of the G = 3"):
            call()
    with pytest.raises(ValueError, match=r"v.shape\[:2\] \(B, T\)"):
        linear_attention(q, k, v[:, :5])
