"""The delta rule and the gated delta rule: the chunked PyTorch form (float64) and the Triton
kernels (interpreted on the CPU, float32 and float16) against the token-by-token recurrence
written from the papers' equations; outputs, final states and every gradient (q, k, v, beta,
g, initial state); the one-token steps chained against the whole sequence; argument checks."""

import pytest
import torch
import triton
import triton.language as tl

from ncd.ops import config
from ncd.ops.delta_rule import (
    chunk,
    delta_rule,
    delta_rule_step,
    gated_delta_rule,
    gated_delta_rule_chunked,
    gated_delta_rule_reference,
    gated_delta_rule_step,
)

from .compare import rel_rms

TOL = {torch.float32: 1e-4, torch.float16: 3e-3}


def make(B, T, H, K, V, seed, gated, normalized=True, N=None):
    """q, k, v, beta, g (None when not gated) and an initial state for N sequences, float32."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=gen)
    k = torch.randn(B, T, H, K, generator=gen)
    if normalized:
        k = torch.nn.functional.normalize(k, dim=-1)
    v = torch.randn(B, T, H, V, generator=gen)
    beta = torch.rand(B, T, H, generator=gen)
    g = -0.3 * torch.rand(B, T, H, generator=gen) if gated else None
    s0 = torch.randn(B if N is None else N, H, K, V, generator=gen)
    return q, k, v, beta, g, s0, gen


def call(fn, xs, gated, **kw):
    """fn(q, k, v, [g,] beta, initial_state=s0, ...) on xs = [q, k, v, beta, s0, (g)]."""
    q, k, v, beta, s0 = xs[:5]
    if fn in (gated_delta_rule_reference, gated_delta_rule_chunked):
        return fn(q, k, v, xs[5] if gated else None, beta, initial_state=s0, **kw)
    if gated:
        return fn(q, k, v, xs[5], beta, initial_state=s0, **kw)
    return fn(q, k, v, beta, initial_state=s0, **kw)


def compare(fn, case, dtype=torch.float32, tol=None, reference_dtype=torch.float64, **extra):
    """Outputs and every gradient of fn against the float64 token-by-token reference."""
    B, T, H, K, V, gated, cu, use_s0 = case
    N = B if cu is None else len(cu) - 1
    q, k, v, beta, g, s0, gen = make(B, T, H, K, V, seed=T + K, gated=gated, N=N)
    xs = [q.to(dtype), k.to(dtype), v.to(dtype), beta, s0 if use_s0 else None]
    if gated:
        xs.append(g)
    if dtype == torch.float64:  # else the gates and the state stay float32, as in models
        xs = [None if x is None else x.double() for x in xs]
    xs = [None if x is None else x.clone().requires_grad_() for x in xs]
    kw = dict(
        scale=0.4, output_final_state=True, cu_seqlens=None if cu is None else torch.tensor(cu)
    )
    o, s_t = call(fn, xs, gated, **kw, **extra)
    assert o.shape == (B, T, H, V) and o.dtype == dtype
    assert s_t.shape == (N, H, K, V)
    do = torch.randn(o.shape, generator=gen).to(dtype)
    ds = torch.randn(s_t.shape, generator=gen)
    inputs = [x for x in xs if x is not None]
    grads = torch.autograd.grad([o, s_t], inputs, [do, ds])
    ref_xs = [None if x is None else x.detach().to(reference_dtype).requires_grad_() for x in xs]
    ref_in = [x for x in ref_xs if x is not None]
    o_ref, s_ref = call(gated_delta_rule_reference, ref_xs, gated, **kw)
    ref_grads = torch.autograd.grad(
        [o_ref, s_ref], ref_in, [do.to(o_ref.dtype), ds.to(s_ref.dtype)]
    )
    names = ["o", "S_T"] + [
        n for n, x in zip(["dq", "dk", "dv", "dbeta", "dS0", "dg"], xs) if x is not None
    ]
    errs = {
        n: rel_rms(a, b) for n, a, b in zip(names, [o, s_t, *grads], [o_ref, s_ref, *ref_grads])
    }
    for x, gr in zip(inputs, grads):
        assert gr.dtype == x.dtype and gr.shape == x.shape
    tol = TOL[dtype] if tol is None else tol
    assert max(errs.values()) < tol, errs


def keeping(keep):
    """The ops switches that keep, for the backward, the chunk states and V' ("states"), V' in
    place of -W ("values", both rules) or neither ("none")."""
    return dict(
        delta_keep_states=keep == "states",
        delta_keep_values=keep == "values",
        gated_delta_keep_values=keep == "values",
    )


# (B, T, H, K, V, gated, cu_seqlens, initial state)
CASES = [
    (2, 63, 2, 32, 24, False, None, True),
    (2, 63, 2, 32, 24, True, None, True),
    (1, 50, 2, 16, 32, True, [0, 7, 7, 40, 50], True),
    (1, 45, 3, 24, 20, False, [0, 16, 45], False),
    (2, 37, 1, 16, 40, True, None, False),
]


@pytest.mark.parametrize("chunk_size", [16, 64])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_chunked_form_matches_recurrence(case, chunk_size):
    """The PyTorch chunked form (the CPU path) in float64: the same function to rounding."""
    compare(gated_delta_rule_chunked, case, torch.float64, tol=1e-11, chunk_size=chunk_size)


@pytest.mark.interpret
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_kernels_match_recurrence(case, dtype, nan_alloc):
    fn = gated_delta_rule if case[5] else delta_rule
    compare(fn, case, dtype, backend="triton")


@pytest.mark.interpret
@pytest.mark.parametrize("keep", ["states", "values", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("case", CASES[1:4], ids=str)
def test_forward_keeping_or_recomputing_states(case, dtype, keep, monkeypatch, nan_alloc):
    """Config delta_keep_states on: the forward's scan writes the entering states and V'
    beside the output, autograd keeps them, and the backward runs without its own scan of
    them (one launch of the forward scan per step); (gated_)delta_keep_values: the forward's
    scan writes V', kept in place of -W, the backward's scan reads it (LOAD_VN) and its
    reverse scan forms W^T dV' from T; neither: the backward's scan forms V' again. Outputs
    and every gradient against the recurrence each way."""
    launches = []
    real = chunk._launch

    def counted(kernel, configs, grid, args, lay, **meta):
        launches.append((kernel, meta.get("STORE_VN"), meta.get("LOAD_VN")))
        return real(kernel, configs, grid, args, lay, **meta)

    monkeypatch.setattr(chunk, "_launch", counted)
    fn = gated_delta_rule if case[5] else delta_rule
    with config.override(**keeping(keep)):
        compare(fn, case, dtype, backend="triton")
    scans = [(w, r) for kernel, w, r in launches if kernel is chunk._scan_fwd_kernel]
    want = {
        "states": [(True, False)],  # output, states and V' in one launch
        "values": [(True, False), (False, True)],  # V' written, then read
        "none": [(False, False), (True, False)],  # V' formed twice
    }[keep]
    assert scans == want, launches


@pytest.mark.interpret
@pytest.mark.parametrize("keep", ["none", "states", "values"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("case", CASES[:3] + [(2, 150, 2, 32, 16, True, None, False)], ids=str)
def test_scans_with_the_prepared_products(case, dtype, keep, monkeypatch, nan_alloc):
    """Config delta_prepared_qk: the prepare kernel writes the chunk's scale (Q K^T * E *
    causal) and the decayed keys, and the forward's scan reads them (the backward's scans
    read them from _qk_kernel); outputs and every gradient against the recurrence, the
    scan's output with the states kept or not, several chunks, packed sequences (empty ones
    among them)."""
    seen = []
    real = chunk._launch

    def counted(kernel, configs, grid, args, lay, **meta):
        seen.append((kernel, meta.get("STORE_QK", meta.get("PREPARED"))))
        return real(kernel, configs, grid, args, lay, **meta)

    monkeypatch.setattr(chunk, "_launch", counted)
    fn = gated_delta_rule if case[5] else delta_rule
    with config.override(**keeping(keep), delta_prepared_qk=True):
        compare(fn, case, dtype, backend="triton")
    assert (chunk._prep_kernel, True) in seen and (chunk._scan_fwd_kernel, True) in seen, seen
    # the backward's scans read them too, from its own chunk-parallel pass
    assert (chunk._qk_kernel, None) in seen and (chunk._scan_bwd_kernel, True) in seen, seen


@pytest.mark.interpret
@pytest.mark.parametrize("values", [False, True], ids=["w", "values"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("case", CASES + [(1, 150, 2, 16, 16, True, [0, 20, 21, 150], True)],
                         ids=str)  # fmt: skip
def test_checkpointed_states(case, dtype, values, monkeypatch, nan_alloc):
    """Config delta_checkpoint_states: the training forward keeps the state entering every
    second chunk (the interpreter's checkpoint length), and the backward's states scan starts
    each two-chunk segment from its checkpoint, the segments as a third grid axis (packed
    sequences of one, two and nine chunks among the cases). Outputs and every gradient
    against the recurrence, with -W or V' kept; the forward writes the checkpoints and the
    backward's scan reads them, each once."""
    launches = []
    real = chunk._launch

    def counted(kernel, configs, grid, args, lay, **meta):
        if kernel is chunk._scan_fwd_kernel:
            launches.append((meta["STORE_CK"], meta["SEGMENTED"], grid({"BV": 16})[2]))
        return real(kernel, configs, grid, args, lay, **meta)

    monkeypatch.setattr(chunk, "_launch", counted)
    fn = gated_delta_rule if case[5] else delta_rule
    keep = dict(delta_keep_values=values, gated_delta_keep_values=values)
    with config.override(delta_checkpoint_states=True, **keep):
        compare(fn, case, dtype, backend="triton")
    B, T, _, _, _, _, cu, _ = case
    chunks = [-(-T // 16)] * B if cu is None else [-(-(b - a) // 16) for a, b in zip(cu, cu[1:])]
    assert launches == [(True, False, 1), (False, True, -(-max(chunks) // 2))], launches


@pytest.mark.interpret
@pytest.mark.parametrize("factored", [True, False], ids=["factored", "decay_matrix"])
@pytest.mark.parametrize("keep", ["none", "states", "values"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("case", [CASES[1], CASES[2], CASES[4]], ids=str)
def test_scans_with_and_without_the_factored_decay(case, dtype, keep, factored, monkeypatch,
                                                    nan_alloc):  # fmt: skip
    """Config gated_delta_factored on (the default): the gated rule's scans take the decay
    matrix as scalings of rows (every chunk here within the bound; the backward's scan of the
    states too, which needs no bound); off: every scan forms the matrix. Outputs and every
    gradient against the recurrence, with the states or V' kept or not, packed sequences (an
    empty one among them)."""
    seen = []
    real = chunk._launch

    def counted(kernel, configs, grid, args, lay, **meta):
        seen.append((kernel, meta.get("FACTOR")))
        return real(kernel, configs, grid, args, lay, **meta)

    monkeypatch.setattr(chunk, "_launch", counted)
    with config.override(**keeping(keep), gated_delta_factored=factored):
        compare(gated_delta_rule, case, dtype, backend="triton")
    scans = [f for kernel, f in seen if kernel in (chunk._scan_fwd_kernel, chunk._scan_bwd_kernel)]
    assert scans == [factored] * (2 if keep == "states" else 3), seen  # the states scan's too


@pytest.mark.interpret
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_factored_decay_only_within_the_bound(dtype, nan_alloc):
    """A program whose sequence has a chunk whose log decays sum to less than -bound takes
    the decay matrix in every chunk, the others the factored form: packed sequences, one of
    weak chunks, one with a strong chunk. The strong one's output equals the switch's off
    path bit for bit (the same loop), the weak one's differs (the factors); outputs and every
    gradient match the recurrence (the backward's scans: the states scan needs no bound, the
    reverse scan takes the factors in the weak sequence only)."""
    C = chunk.INTERPRET_CHUNK
    T, H, K, V = 5 * C, 2, 16, 16
    cu = [0, 2 * C + 3, T]  # sequence 0 weak, sequence 1 with one strong chunk
    q, k, v, beta, _, _, gen = make(1, T, H, K, V, seed=5, gated=True)
    nats = chunk._bound(q.to(dtype))  # a chunk's bound on its summed log decays
    g = -0.5 * nats / C * torch.rand(1, T, H, generator=gen)  # every chunk within
    g[0, cu[1] + C : cu[1] + 2 * C] = -4.0 * nats / C  # past it: its factors overflow
    offsets = torch.tensor(cu)
    runs = []
    for factored in (False, True):
        xs = [x.to(dtype).requires_grad_() for x in (q, k, v)]
        xs += [g.clone().requires_grad_(), beta.clone().requires_grad_()]
        with config.override(gated_delta_factored=factored):
            o, _ = gated_delta_rule(*xs, scale=0.4, cu_seqlens=offsets, backend="triton")
            do = torch.randn(o.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
            runs.append([o, *torch.autograd.grad(o, xs, do)])
    weak, strong = slice(0, cu[1]), slice(cu[1], T)
    # the strong sequence's output scan takes the decay matrix, the weak one's the factors
    assert torch.equal(runs[0][0][:, strong], runs[1][0][:, strong])
    assert not torch.equal(runs[0][0][:, weak], runs[1][0][:, weak])
    ref_xs = [x.double().requires_grad_() for x in (q, k, v, g, beta)]
    o_ref, _ = gated_delta_rule_reference(*ref_xs, scale=0.4, cu_seqlens=offsets)
    do = torch.randn(o_ref.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    ref = [o_ref, *torch.autograd.grad(o_ref, ref_xs, do.double())]
    errs = [rel_rms(a, b) for a, b in zip(runs[1], ref)]
    assert max(errs) < TOL[dtype], errs


@pytest.mark.interpret
@pytest.mark.parametrize("gated, chunk_size", [(False, 64), (True, 64), (True, 32)])
def test_kernels_at_the_gpu_chunk_length(gated, chunk_size, monkeypatch, nan_alloc):
    """Chunks of 64 (the GPU's; the inverse's block series runs) and 32: several chunks, a
    short last one, packed sequences."""
    monkeypatch.setattr(chunk, "INTERPRET_CHUNK", chunk_size)
    fn = gated_delta_rule if gated else delta_rule
    compare(fn, (1, 150, 2, 32, 32, gated, [0, 130, 150], True), backend="triton")


@pytest.mark.interpret
def test_mixed_dtypes_and_l2norm(nan_alloc):
    """float16 q, k, v with float32 g and bfloat16 beta, unnormalised keys normalised inside
    the op: the gradients of the gates come back in their dtypes."""
    q, k, v, beta, g, _, gen = make(2, 33, 2, 16, 16, seed=4, gated=True, normalized=False)
    xs = [q.half(), k.half(), v.half(), g, beta.bfloat16()]
    xs = [x.clone().requires_grad_() for x in xs]
    o, _ = gated_delta_rule(*xs, use_qk_l2norm=True, backend="triton")
    do = torch.randn(o.shape, generator=gen).half()
    grads = torch.autograd.grad(o, xs, do)
    ref = [x.detach().double().requires_grad_() for x in xs]
    o_ref, _ = gated_delta_rule_reference(*ref, use_qk_l2norm=True)
    ref_grads = torch.autograd.grad(o_ref, ref, do.double())
    assert [gr.dtype for gr in grads] == [x.dtype for x in xs]
    errs = [rel_rms(o, o_ref)] + [rel_rms(a, b) for a, b in zip(grads, ref_grads)]
    assert max(errs[:-1]) < 3e-3 and errs[-1] < 1e-2, errs  # beta's gradient rounded to bf16


def test_l2norm_on_the_cpu_path():
    q, k, v, beta, g, s0, _ = make(1, 20, 2, 8, 8, seed=5, gated=True, normalized=False)
    xs = [x.double().requires_grad_() for x in (q, k, v, g, beta)]
    o, _ = gated_delta_rule(*xs, use_qk_l2norm=True)
    o_ref, _ = gated_delta_rule_reference(*xs, use_qk_l2norm=True)
    torch.testing.assert_close(o, o_ref)
    grads = torch.autograd.grad(o.sum(), xs[:2])
    ref_grads = torch.autograd.grad(o_ref.sum(), xs[:2])
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


def test_cpu_dispatch_runs_the_chunked_form():
    q, k, v, beta, g, s0, _ = make(1, 9, 2, 8, 8, seed=0, gated=True)
    o, _ = gated_delta_rule(q, k, v, g, beta)
    o_ref, _ = gated_delta_rule_chunked(q, k, v, g, beta)
    torch.testing.assert_close(o, o_ref, rtol=0, atol=0)


@pytest.mark.parametrize("B, T", [(2, 0), (0, 5)], ids=["T=0", "B=0"])
@pytest.mark.parametrize("op", ["delta_rule", "gated_delta_rule", "simple_gla", "gla"])
def test_empty_sequences_on_the_cpu_path(op, B, T):
    """No tokens (T = 0) or no sequences (B = 0) through each gated family's CPU form: an
    empty output on the graph (a training step over it runs), and the initial state passed
    through as the final state, with its gradient the final state's."""
    from ncd import ops

    H, K, V = 3, 8, 4
    q = torch.randn(B, T, H, K, requires_grad=True)
    k, v = torch.randn(B, T, H, K), torch.randn(B, T, H, V, requires_grad=True)
    s0 = torch.randn(B, H, K, V, requires_grad=True)
    gates = {
        "delta_rule": (torch.rand(B, T, H),),
        "gated_delta_rule": (-torch.rand(B, T, H), torch.rand(B, T, H)),
        "simple_gla": (-torch.rand(B, T, H),),
        "gla": (-torch.rand(B, T, H, K),),
    }[op]
    o, s = getattr(ops, op)(q, k, v, *gates, initial_state=s0, output_final_state=True)
    assert o.shape == (B, T, H, V) and o.requires_grad
    torch.testing.assert_close(s, s0, rtol=0, atol=0)
    ds = torch.randn_like(s)
    (o.sum() + (s * ds).sum()).backward()
    torch.testing.assert_close(s0.grad, ds, rtol=0, atol=0)


@pytest.mark.parametrize("gated", [False, True])
def test_step_continues_a_prompt(gated):
    """Prompt through the chunked op with its final state, then one token at a time: the same
    outputs and final state as the recurrence on the whole sequence."""
    q, k, v, beta, g, s0, _ = make(2, 12, 3, 8, 5, seed=1, gated=gated)
    q, k, v, beta, s0 = (x.double() for x in (q, k, v, beta, s0))
    g = None if g is None else g.double()
    o_ref, s_ref = gated_delta_rule_reference(
        q, k, v, g, beta, scale=0.5, initial_state=s0, output_final_state=True
    )
    p = slice(0, 7)
    if gated:
        _, state = gated_delta_rule(q[:, p], k[:, p], v[:, p], g[:, p], beta[:, p], scale=0.5,
                                    initial_state=s0, output_final_state=True)  # fmt: skip
    else:
        _, state = delta_rule(q[:, p], k[:, p], v[:, p], beta[:, p], scale=0.5, initial_state=s0,
                              output_final_state=True)  # fmt: skip
    for t in range(7, 12):
        if gated:
            o_t, state = gated_delta_rule_step(q[:, t], k[:, t], v[:, t], g[:, t], beta[:, t],
                                               state, scale=0.5)  # fmt: skip
        else:
            o_t, state = delta_rule_step(q[:, t], k[:, t], v[:, t], beta[:, t], state, scale=0.5)
        torch.testing.assert_close(o_t, o_ref[:, t])
    torch.testing.assert_close(state, s_ref)


def test_step_from_nothing_with_default_scale():
    q, k, v, beta, _, _, _ = make(1, 3, 2, 4, 4, seed=2, gated=False)
    o_ref, _ = gated_delta_rule_reference(q, k, v, None, beta)
    state = None
    for t in range(3):
        o_t, state = delta_rule_step(q[:, t], k[:, t], v[:, t], beta[:, t], state)
        torch.testing.assert_close(o_t, o_ref[:, t])
    assert state.dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(g=torch.zeros(2, 5)), "g.shape"),
        (dict(beta=torch.zeros(2, 5, 3)), "beta.shape"),
        (dict(beta=torch.zeros(2, 5, 2, dtype=torch.int32)), "beta.dtype"),
        (dict(initial_state=torch.zeros(2, 2, 8, 3)), "initial_state shape"),
        (dict(cu_seqlens=torch.tensor([0, 3, 5])), "batch size with cu_seqlens"),
        (dict(scale=float("nan")), "scale"),
        (dict(backend="cuda"), "backend"),
    ],
)
def test_bad_arguments(kwargs, message):
    q, k, v, beta, g, _, _ = make(2, 5, 2, 8, 4, seed=0, gated=True)
    args = dict(q=q, k=k, v=v, g=g, beta=beta)
    args.update(kwargs)
    with pytest.raises(ValueError, match="gated_delta_rule") as err:
        gated_delta_rule(**args)
    assert message in str(err.value) and ("expected" in str(err.value) or "backend" in message)


def test_bad_shapes_and_packing():
    q, k, v, beta, _, _, _ = make(1, 6, 2, 8, 4, seed=0, gated=False)
    with pytest.raises(ValueError, match="delta_rule: k.shape"):
        delta_rule(q, k[..., :4], v, beta)
    with pytest.raises(ValueError, match="cu_seqlens"):
        delta_rule(q, k, v, beta, cu_seqlens=torch.tensor([0, 2, 5]))
    with pytest.raises(ValueError, match="non-decreasing"):
        delta_rule(q, k, v, beta, cu_seqlens=torch.tensor([0, 4, 2, 6]))
    with pytest.raises(ValueError, match="state shape"):
        delta_rule_step(q[:, 0], k[:, 0], v[:, 0], beta[:, 0], torch.zeros(1, 2, 8, 5))


@pytest.mark.interpret
def test_wide_keys_need_the_pytorch_form():
    q = torch.nn.functional.normalize(torch.randn(1, 4, 1, 160), dim=-1)
    beta = torch.rand(1, 4, 1)
    with pytest.raises(ValueError, match="at most 128"):
        delta_rule(q, q, q, beta, backend="triton")
    assert delta_rule(q, q, q, beta)[0].shape == (1, 4, 1, 160)  # CPU: the PyTorch form


def test_cost_formulas_take_symbols():
    """The cost formulas are plain arithmetic in B, T, H, K, V (sympy symbols work), and the
    chunked kernels do more than the recurrence's minimum."""
    sympy = pytest.importorskip("sympy")
    from ncd.ops.delta_rule import cost

    B, T, H, K, V = sympy.symbols("B T H K V", positive=True)
    for fn in (cost.flops_forward, cost.flops_backward, cost.io_forward, cost.io_backward,
               cost.activation_bytes, cost.backward_temp_bytes):  # fmt: skip
        assert isinstance(sympy.expand(fn(B, T, H, K, V)), sympy.Expr)
    assert isinstance(cost.activation_bytes(B, T, H, K, V, checkpoints=True), sympy.Expr)
    assert cost.checkpoint_bytes(2, 1025, 3, 8, 4) == 2 * 3 * 4 * 8 * 4 * 2  # two segments
    n = dict(B=4, T=8192, H=16, K=128, V=128)
    assert cost.flops_forward(**n) > cost.flops_minimal(**n)
    assert cost.inverse_macs(64) == 30 * 64**3


@pytest.mark.interpret
@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize(
    "switches",
    [{}, {"delta_keep_states": True},
     {"delta_keep_values": True, "gated_delta_keep_values": True}, {"delta_prepared_qk": True}],
    ids=["default", "keep_states", "keep_values", "prepared"],
)  # fmt: skip
def test_flops_are_the_products_the_kernels_run(dot_macs, gated, switches):
    """The cost model's FLOPs against the multiply-adds of every product the kernels execute,
    counted in the interpreter's dot (at its chunk and value block), forward and backward."""
    from ncd.ops.delta_rule import cost

    macs = dot_macs
    gen = torch.Generator().manual_seed(3)
    B, T, H, K, V = 1, 48, 2, 32, 32
    q, v = torch.randn(B, T, H, K, generator=gen), torch.randn(B, T, H, V, generator=gen)
    k = torch.nn.functional.normalize(torch.randn(B, T, H, K, generator=gen), dim=-1)
    beta, g = torch.rand(B, T, H, generator=gen), -torch.rand(B, T, H, generator=gen) / 8
    xs = [x.requires_grad_() for x in (q, k, v, beta, g)]
    with config.override(**switches):
        if gated:
            o, _ = gated_delta_rule(*xs, backend="triton")
        else:
            o, _ = delta_rule(*xs[:4], backend="triton")
        forward, macs[:] = 2 * sum(macs), []
        o.sum().backward()
        s = config.settings  # the switches in force, the defaults among them
        values = s.gated_delta_keep_values if gated else s.delta_keep_values
        keep_states, prepared = s.delta_keep_states, s.delta_prepared_qk
    kw = dict(C=chunk.INTERPRET_CHUNK, block_v=chunk.INTERPRET_CONFIG["BV"], gated=gated,
              prepared=prepared)  # fmt: skip
    assert forward == cost.flops_forward(B, T, H, K, V, **kw)
    assert 2 * sum(macs) == cost.flops_backward(
        B, T, H, K, V, **kw, keep_states=keep_states, keep_values=values
    )


@pytest.mark.interpret
def test_nearly_parallel_keys(monkeypatch, nan_alloc):
    """Keys within 1 % of one direction and beta near 1: the chunk's triangular system is at
    its worst (the inverse's series has its largest terms). float32 chunks of 64 stay within
    5e-5 of the float64 recurrence (inverting 16 x 16 blocks by series gave 1.3e-4)."""
    monkeypatch.setattr(chunk, "INTERPRET_CHUNK", 64)
    gen = torch.Generator().manual_seed(0)
    B, T, H, K, V = 1, 128, 2, 32, 32
    base = torch.randn(1, 1, H, K, generator=gen)
    k = torch.nn.functional.normalize(base + 0.01 * torch.randn(B, T, H, K, generator=gen), dim=-1)
    q, v = torch.randn(B, T, H, K, generator=gen), torch.randn(B, T, H, V, generator=gen)
    beta = 0.9 + 0.1 * torch.rand(B, T, H, generator=gen)
    g = -0.01 * torch.rand(B, T, H, generator=gen)
    xs = [x.clone().requires_grad_() for x in (q, k, v, g, beta)]
    o, _ = gated_delta_rule(*xs, backend="triton")
    do = torch.randn(o.shape, generator=gen)
    grads = torch.autograd.grad(o, xs, do)
    ref = [x.detach().double().requires_grad_() for x in xs]
    o_ref, _ = gated_delta_rule_reference(*ref)
    ref_grads = torch.autograd.grad(o_ref, ref, do.double())
    errs = [rel_rms(o, o_ref)] + [rel_rms(a, b) for a, b in zip(grads, ref_grads)]
    assert max(errs) < 5e-5, errs


@pytest.mark.interpret
@pytest.mark.parametrize("scale", [0.01, 0.3, 20.0])
def test_scales_in_and_outside_the_unscaled_reverse_scan(scale, monkeypatch, nan_alloc):
    """The ungated reverse scan carries dS / scale for scales within 2^-4..2^4 and the scaled
    dS outside: both against the float64 recurrence, with an initial state and a final-state
    gradient (the scan's first and last values are where the division is applied and undone)."""
    monkeypatch.setattr(chunk, "INTERPRET_CHUNK", 16)
    q, k, v, beta, _, s0, gen = make(1, 40, 2, 16, 16, seed=3, gated=False)
    xs = [x.clone().requires_grad_() for x in (q, k, v, beta, s0)]
    o, s_t = delta_rule(*xs[:4], initial_state=xs[4], scale=scale, output_final_state=True,
                        backend="triton")  # fmt: skip
    do, ds = torch.randn(o.shape, generator=gen), torch.randn(s_t.shape, generator=gen)
    grads = torch.autograd.grad([o, s_t], xs, [do, ds])
    ref = [x.detach().double().requires_grad_() for x in xs]
    o_ref, s_ref = gated_delta_rule_reference(*ref[:3], None, ref[3], initial_state=ref[4],
                                              scale=scale, output_final_state=True)  # fmt: skip
    ref_grads = torch.autograd.grad([o_ref, s_ref], ref, [do.double(), ds.double()])
    errs = [rel_rms(o, o_ref), rel_rms(s_t, s_ref)]
    errs += [rel_rms(a, b) for a, b in zip(grads, ref_grads)]
    assert max(errs) < 1e-4, errs


@pytest.mark.interpret
def test_float16_errors_near_the_rounding_floor(monkeypatch, nan_alloc):
    """float16, unit keys and queries, scale K^-0.5 (not a power of two), chunks of 64: each of
    o, dq, dk, dv and dbeta against the float64 recurrence, over the error of rounding the
    exact value to float16 once; their mean stays under 2.8. The kernels round T diag(beta)
    (not v or k scaled by beta) and scan dS / scale (not q scaled): 2.67 here; rounding the
    scaled rows instead gave 2.96."""
    monkeypatch.setattr(chunk, "INTERPRET_CHUNK", 64)
    B, T, H, K = 1, 512, 2, 32
    ratios = {}
    for seed in range(4):
        gen = torch.Generator().manual_seed(seed)
        q, k = (torch.nn.functional.normalize(torch.randn(B, T, H, K, generator=gen), dim=-1)
                for _ in range(2))  # fmt: skip
        v = torch.randn(B, T, H, K, generator=gen)
        beta = torch.sigmoid(torch.randn(B, T, H, generator=gen))
        do = torch.randn(B, T, H, K, generator=gen).half()
        xs = [x.half().requires_grad_() for x in (q, k, v, beta)]
        o, _ = delta_rule(*xs, backend="triton")
        got = [o, *torch.autograd.grad(o, xs, do)]
        ref = [x.detach().double().requires_grad_() for x in xs]
        o_ref, _ = gated_delta_rule_reference(ref[0], ref[1], ref[2], None, ref[3], scale=K**-0.5)
        want = [o_ref, *torch.autograd.grad(o_ref, ref, do.double())]
        for n, a, b in zip(["o", "dq", "dk", "dv", "dbeta"], got, want):
            ratios.setdefault(n, []).append(rel_rms(a, b) / rel_rms(b.half(), b))
    mean = {n: sum(r) / len(r) for n, r in ratios.items()}
    assert sum(mean.values()) / len(mean) < 2.8, mean


def _inverse_tile(A, AI, X, HI, BT: tl.constexpr, SPLIT: tl.constexpr):
    """Decorated in the test, where TRITON_INTERPRET is set (conftest.py)."""
    offs = tl.arange(0, BT)
    p = offs[:, None] * BT + offs[None, :]
    tl.store(AI + p, chunk._unit_lower_inverse(tl.load(A + p), BT, SPLIT))
    tl.store(HI + p, chunk._tf32_split(tl.load(X + p))[0])


@pytest.mark.interpret
@pytest.mark.parametrize("BT", [16, 32, 64])
def test_inverse_tile_and_tf32_split(BT):
    """The prepare kernel's in-register inverse of I + A (A strictly lower, entries as nearly
    parallel keys with beta near 1 give them) against torch.linalg.inv in float64, its
    products on tf32 halves; and the tf32 split's high part against the nearest number with
    11 significant bits (ties away from zero), computed from frexp. (The bfloat16 halves of
    bfloat16 inputs are checked on the GPU: bench/gpu_check.py --ops delta_rule; the
    interpreter's bfloat16 is not right.)"""
    gen = torch.Generator().manual_seed(BT)
    a = (0.9 + 0.1 * torch.rand(BT, BT, generator=gen)).tril(-1)
    x = torch.randn(BT, BT, generator=gen) * 10.0 ** torch.randint(-3, 4, (BT, BT), generator=gen)
    x[0, :4] = torch.tensor([1.5, -2.5, 1 + 2.0**-11, -(1 + 3 * 2.0**-11)])  # ties
    ai, hi = torch.empty_like(a), torch.empty_like(x)
    triton.jit(_inverse_tile)[(1,)](a, ai, x, hi, BT=BT, SPLIT="tf32")
    ref = torch.linalg.inv(torch.eye(BT, dtype=torch.float64) + a.double())
    assert (ai.double() - ref).abs().max().item() < 1e-5 * ref.abs().max().item()
    m, e = torch.frexp(x.double())  # x = m 2^e, 0.5 <= |m| < 1
    y = m * 2.0**11
    expected = torch.sign(y) * torch.floor(y.abs() + 0.5) * 2.0 ** (e - 11).double()
    torch.testing.assert_close(hi.double(), expected, rtol=0, atol=0)


# ---------------------------------------------------------------- grouped heads
# (B, T, G, H, K, V, gated, cu_seqlens, initial state, final state): q and k of G heads read by
# the H heads of v, beta and g, value head h reading q/k head h // (H / G)
GROUPED = [
    (2, 37, 1, 3, 16, 8, False, None, True, True),
    (2, 37, 2, 4, 16, 24, True, None, True, False),
    (1, 45, 2, 4, 8, 16, True, [0, 7, 7, 30, 45], False, True),
    (1, 40, 1, 2, 16, 16, False, [0, 20, 40], True, True),
]


def run_grouped(case, dtype=torch.float32, tol=None, **extra):
    """The op on grouped q, k against the token-by-token float64 recurrence on q, k repeated
    to the H heads by repeat_interleave: outputs, final states and every gradient (dq and dk
    of the reference summed over each group's heads by autograd)."""
    B, T, G, H, K, V, gated, cu, use_s0, want_state = case
    N = B if cu is None else len(cu) - 1
    q, k, *_ = make(B, T, G, K, V, seed=T + G, gated=gated)
    _, _, v, beta, g, s0, gen = make(B, T, H, K, V, seed=H, gated=gated, N=N)
    xs = [q.to(dtype), k.to(dtype), v.to(dtype), beta, s0 if use_s0 else None]
    if gated:
        xs.append(g)
    xs = [None if x is None else x.clone().requires_grad_() for x in xs]
    kw = dict(scale=0.4, output_final_state=want_state,
              cu_seqlens=None if cu is None else torch.tensor(cu))  # fmt: skip
    fn = gated_delta_rule if gated else delta_rule
    o, s_t = call(fn, xs, gated, **kw, **extra)
    assert o.shape == (B, T, H, V) and o.dtype == dtype
    ref_xs = [None if x is None else x.detach().double().requires_grad_() for x in xs]
    ref_in = [x for x in ref_xs if x is not None]
    rep = [x.repeat_interleave(H // G, 2) for x in ref_xs[:2]] + ref_xs[2:]
    o_ref, s_ref = call(gated_delta_rule_reference, rep, gated, **kw)
    outs, refs = [o] + [s_t] * want_state, [o_ref] + [s_ref] * want_state
    cot = [torch.randn(x.shape, generator=gen).to(x.dtype) for x in outs]
    inputs = [x for x in xs if x is not None]
    grads = torch.autograd.grad(outs, inputs, cot)
    ref_grads = torch.autograd.grad(refs, ref_in, [c.double() for c in cot])
    for x, gr in zip(inputs, grads):
        assert gr.dtype == x.dtype and gr.shape == x.shape
    names = ["o", "S_T"][: len(outs)] + [
        n for n, x in zip(["dq", "dk", "dv", "dbeta", "dS0", "dg"], xs) if x is not None
    ]
    errs = {n: rel_rms(a, b) for n, a, b in zip(names, outs + list(grads), refs + list(ref_grads))}
    assert max(errs.values()) < (TOL[dtype] if tol is None else tol), errs


@pytest.mark.parametrize("case", GROUPED, ids=str)
def test_grouped_heads_in_the_chunked_form(case):
    run_grouped(case)  # CPU tensors: the chunked PyTorch form


@pytest.mark.interpret
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("case", GROUPED, ids=str)
def test_grouped_heads_match_the_recurrence(case, dtype, nan_strided):
    run_grouped(case, dtype, backend="triton")


@pytest.mark.interpret
@pytest.mark.parametrize("prepared", [False, True], ids=["formed", "prepared"])
@pytest.mark.parametrize("keep", ["states", "values", "none"])
@pytest.mark.parametrize("case", GROUPED[1:3], ids=str)
def test_grouped_heads_with_every_scan_option(case, keep, prepared, nan_strided):
    """The kernels' other readers of q and k: the prepared Q K^T (prepare kernel and the
    backward's _qk_kernel), the states kept or rescanned from checkpoints, V' kept, and the
    gated scans' decay matrix beside the factored decay."""
    with config.override(**keeping(keep), delta_prepared_qk=prepared,
                         gated_delta_factored=keep != "none"):  # fmt: skip
        run_grouped(case, backend="triton")


def test_grouped_steps_continue_a_prompt():
    """q and k of 2 heads read by 4 value heads: a prompt through the op, then one token at a
    time, against the recurrence on q and k repeated to the heads."""
    q, k, *_ = make(2, 12, 2, 8, 5, seed=1, gated=True)
    _, _, v, beta, g, s0, _ = make(2, 12, 4, 8, 5, seed=2, gated=True)
    q, k, v, beta, g, s0 = (x.double() for x in (q, k, v, beta, g, s0))
    for gated in (False, True):
        gg = g if gated else None
        o_ref, s_ref = gated_delta_rule_reference(
            q.repeat_interleave(2, 2), k.repeat_interleave(2, 2), v, gg, beta, scale=0.5,
            initial_state=s0, output_final_state=True,
        )  # fmt: skip
        p = slice(0, 7)
        if gated:
            _, state = gated_delta_rule(q[:, p], k[:, p], v[:, p], g[:, p], beta[:, p],
                                        scale=0.5, initial_state=s0,
                                        output_final_state=True)  # fmt: skip
        else:
            _, state = delta_rule(q[:, p], k[:, p], v[:, p], beta[:, p], scale=0.5,
                                  initial_state=s0, output_final_state=True)  # fmt: skip
        for t in range(7, 12):
            if gated:
                o_t, state = gated_delta_rule_step(q[:, t], k[:, t], v[:, t], g[:, t],
                                                   beta[:, t], state, scale=0.5)  # fmt: skip
            else:
                o_t, state = delta_rule_step(q[:, t], k[:, t], v[:, t], beta[:, t], state,
                                             scale=0.5)  # fmt: skip
            torch.testing.assert_close(o_t, o_ref[:, t])
        torch.testing.assert_close(state, s_ref)


def test_grouped_heads_must_divide():
    q, k, *_ = make(1, 6, 3, 8, 4, seed=0, gated=True)
    _, _, v, beta, g, _, _ = make(1, 6, 4, 8, 4, seed=0, gated=True)
    message = "heads H of v: expected a multiple of the G = 3"
    calls = (lambda: delta_rule(q, k, v, beta),
             lambda: gated_delta_rule(q, k, v, g, beta),
             lambda: delta_rule_step(q[:, 0], k[:, 0], v[:, 0], beta[:, 0]),
             lambda: gated_delta_rule_step(q[:, 0], k[:, 0], v[:, 0], g[:, 0],
                                           beta[:, 0]))  # fmt: skip
    for call_ in calls:
        with pytest.raises(ValueError, match=message):
            call_()
    with pytest.raises(ValueError, match="beta.shape"):  # the gates are per value head
        delta_rule(q[:, :, :2], k[:, :, :2], v, beta[:, :, :2])


def test_grouped_heads_leave_the_gluon_kernels(monkeypatch):
    """On Hopper the backward's chunk pass may go to the Gluon kernels, which address q and k
    as v's heads: grouped calls are left to the Triton kernel before any other test."""
    monkeypatch.setattr(chunk.gluon_chunk, "available", lambda: True)
    monkeypatch.setattr(chunk.gluon_chunk, "supports", lambda *a: (True, ""))
    ran = []
    monkeypatch.setattr(chunk.gluon_common, "attempt", lambda *a: ran.append(a) or True)
    q, k, *_ = make(1, 64, 1, 64, 64, seed=0, gated=True)
    _, _, v, beta, g, _, _ = make(1, 64, 2, 64, 64, seed=0, gated=True)
    lay = chunk._Layout(q, None, 64, 16, group=2)
    args = (q, k, v, g, None, beta, None, None, None, None, None, None, None, None, None, g)
    with config.override(delta_gluon=True, gated_delta_gluon=True):
        assert chunk._chunk_backward_gluon(*args, 1.0, lay) is False
        lay.group = 1
        assert chunk._chunk_backward_gluon(*args, 1.0, lay) is True
    assert len(ran) == 1
