"""Row normalisations (ops/norm): the Triton kernels (interpreted on the CPU) against
torch.nn.functional.layer_norm / rms_norm run on float32 (or float64) copies of the inputs,
outputs and every gradient; the residual forms against the add followed by the norm.

float32 and float16 only: the interpreter's bfloat16 is not trusted (conftest.py); bf16 is
checked on the GPU by bench/ops_norm.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import ncd
from ncd import ops
from ncd.circuits.builder import Builder
from ncd.compiler import choices, lowerings
from ncd.ops import _backend
from ncd.ops.norm import cost, rowwise

from ..cpu_memory import saved_storages

TOL = {torch.float32: 2e-5, torch.float16: 2e-3}


def _torch_norm(s, w, b, eps, rms):
    n = (s.shape[-1],)
    return F.rms_norm(s, n, w, eps) if rms else F.layer_norm(s, n, w, b, eps)


def _case(M, N, dtype, residual, rms, affine=True, bias=True, seed=0, lead=None):
    g = torch.Generator().manual_seed(seed)
    shape = (M, N) if lead is None else (*lead, N)
    x = (torch.randn(shape, generator=g) * 2 + 3).to(dtype)  # a mean far from 0
    r = torch.randn(shape, generator=g).to(dtype) if residual else None
    w = torch.randn(N, generator=g) if affine else None
    b = torch.randn(N, generator=g) if affine and bias and not rms else None
    dy = torch.randn(shape, generator=g).to(dtype)
    ds = torch.randn(shape, generator=g).to(dtype) if residual else None
    return x, r, w, b, dy, ds


def _run(fn, x, r, w, b, dy, ds, eps, rms, **kw):
    """Outputs and gradients of (x, r, w, b) for the loss sum(y dy) (+ sum(s ds))."""
    leaves = [t.clone().requires_grad_() if t is not None else None for t in (x, r, w, b)]
    out = fn(*leaves, eps=eps, rms=rms, **kw)
    y, s = out if isinstance(out, tuple) else (out, None)
    loss = (y.float() * dy.float()).sum()
    if s is not None:
        loss = loss + (s.float() * ds.float()).sum()
    loss.backward()
    return y, s, [None if t is None else t.grad for t in leaves]


def _ncd(x, r, w, b, eps, rms):
    if r is None:
        if rms:
            return ops.rms_norm(x, w, eps=eps, backend="triton")
        return ops.layer_norm(x, w, b, eps=eps, backend="triton")
    if rms:
        return ops.add_rms_norm(x, r, w, eps=eps, backend="triton")
    return ops.add_layer_norm(x, r, w, b, eps=eps, backend="triton")


def _expected(x, r, w, b, eps, rms):
    """The separate ops on float32 copies: the sum rounded to x's dtype first (the value the
    fused op normalises), then the norm in float32."""
    if r is None:
        return _torch_norm(x.float(), w, b, eps, rms)
    s = (x.float() + r.float()).to(x.dtype).float()
    # the rounding of the sum is not differentiated: its gradient is that of x + r
    s = s.detach() + (x.float() + r.float() - (x.float() + r.float()).detach())
    return _torch_norm(s, w, b, eps, rms), s


def _check(got, want, dtype, scale=1.0):
    tol = TOL[dtype] * scale
    for a, e in zip(got, want):
        assert (a is None) == (e is None)
        if a is None:
            continue
        err = (a.float() - e.float()).abs().max().item()
        ref = max(1.0, e.float().abs().max().item())
        assert err <= tol * ref, f"max error {err:.3g} against {tol * ref:.3g}"


def _compare(M, N, dtype, residual, rms, eps=1e-5, **kw):
    x, r, w, b, dy, ds = _case(M, N, dtype, residual, rms, **kw)
    y, s, grads = _run(_ncd, x, r, w, b, dy, ds, eps, rms)
    ye, se, grads_e = _run(_expected, x, r, w, b, dy, ds, eps, rms)
    assert y.dtype == dtype and y.shape == x.shape
    _check([y, s], [ye, se], dtype)
    # weight and bias gradients sum over every row: a looser bound in float16
    _check(grads, grads_e, dtype, scale=1.0 if dtype == torch.float32 else 4.0)


CASES = [  # (M, N): rows stacked per program, one row per program, N not a power of two
    (1, 8), (37, 24), (5, 1000), (3, 4096),
]  # fmt: skip


@pytest.mark.interpret
@pytest.mark.parametrize("residual", [False, True], ids=["norm", "add"])
@pytest.mark.parametrize("rms", [False, True], ids=["layer", "rms"])
@pytest.mark.parametrize("shape", CASES, ids=str)
def test_float32_against_torch(shape, rms, residual, nan_alloc):
    _compare(*shape, torch.float32, residual, rms)


@pytest.mark.interpret
@pytest.mark.parametrize("residual", [False, True], ids=["norm", "add"])
@pytest.mark.parametrize("rms", [False, True], ids=["layer", "rms"])
def test_float16_against_torch(rms, residual, nan_alloc):
    _compare(19, 300, torch.float16, residual, rms)


@pytest.mark.interpret
@pytest.mark.parametrize("residual", [False, True], ids=["norm", "add"])
@pytest.mark.parametrize("rms", [False, True], ids=["layer", "rms"])
def test_wide_rows_are_streamed(rms, residual, monkeypatch, nan_alloc):
    """Rows wider than the tile (the tile lowered to 32 features): three passes forward,
    partial sums updated in place backward."""
    monkeypatch.setattr(rowwise, "MAX_TILE", 32)
    assert rowwise._tiles(100) == (1, 32, False)
    _compare(9, 100, torch.float32, residual, rms)


@pytest.mark.interpret
@pytest.mark.parametrize(
    "affine,bias", [(False, False), (True, False)], ids=["no_weight", "weight_only"]
)
def test_without_weight_or_bias(affine, bias, nan_alloc):
    _compare(6, 48, torch.float32, True, False, affine=affine, bias=bias)
    _compare(6, 48, torch.float32, False, True, affine=affine)


@pytest.mark.interpret
def test_leading_axes_and_eps(nan_alloc):
    _compare(0, 40, torch.float32, True, False, lead=(2, 3, 5), eps=1e-2)
    _compare(0, 40, torch.float32, False, True, lead=(4, 1), eps=0.5)


@pytest.mark.interpret
def test_strided_rows_are_read_in_place(nan_alloc):
    """Rows of a wider tensor (a column slice): the kernel reads them through the row stride."""
    big = torch.randn(7, 80)
    x = big[:, 10:50]
    assert x.stride() == (80, 1) and rowwise._rows(x).data_ptr() == x.data_ptr()
    w, b = torch.randn(40), torch.randn(40)
    y = ops.layer_norm(x, w, b, backend="triton")
    torch.testing.assert_close(y, F.layer_norm(x, (40,), w, b), atol=2e-5, rtol=2e-5)


@pytest.mark.interpret
def test_half_weights_with_float32_rows(nan_alloc):
    """A weight in another dtype than x (as mixed-precision training keeps it): read in
    float32, its gradient returned in its own dtype."""
    x = torch.randn(8, 64)
    w = torch.randn(64).half().requires_grad_()
    y = ops.rms_norm(x, w, eps=1e-6, backend="triton")
    y.sum().backward()
    want = F.rms_norm(x, (64,), w.float(), 1e-6)
    torch.testing.assert_close(y, want, atol=1e-5, rtol=1e-5)
    assert w.grad.dtype == torch.float16
    expected = (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)).sum(0)
    torch.testing.assert_close(w.grad.float(), expected, atol=2e-2, rtol=2e-3)


def test_cpu_runs_the_same_calls_as_the_separate_ops():
    """On CPU tensors the functions are F.layer_norm / F.rms_norm after the add, bit for bit
    (what lets the compiler fuse the pair without changing a CPU result)."""
    x, r = torch.randn(4, 6, 32), torch.randn(4, 6, 32)
    w, b = torch.randn(32), torch.randn(32)
    y, s = ops.add_layer_norm(x, r, w, b)
    assert torch.equal(s, x + r) and torch.equal(y, F.layer_norm(x + r, (32,), w, b))
    y, s = ops.add_rms_norm(x, r, w, eps=1e-5)
    assert torch.equal(y, F.rms_norm(x + r, (32,), w, 1e-5))
    assert torch.equal(ops.layer_norm(x, w, b), F.layer_norm(x, (32,), w, b))


def test_add_norms_promote_mixed_float_dtypes():
    """A bfloat16 sublayer output on a float32 residual stream (autocast's usual pair): the
    sum and its norm in float32, as ``x + residual`` and torch's norm give them; both summands
    get their gradient in their own dtype."""
    x = torch.randn(3, 32, dtype=torch.bfloat16, requires_grad=True)
    r = torch.randn(3, 32, requires_grad=True)
    w, b = torch.rand(32) + 0.5, torch.randn(32)
    y, s = ops.add_layer_norm(x, r, w, b)
    assert y.dtype == s.dtype == torch.float32
    assert torch.equal(s, x + r) and torch.equal(y, F.layer_norm(x + r, (32,), w, b))
    y, s = ops.add_rms_norm(r, x, w)
    assert torch.equal(y, F.rms_norm(r + x, (32,), w, 1e-6))
    (y.sum() + s.sum()).backward()
    assert x.grad.dtype == torch.bfloat16 and r.grad.dtype == torch.float32


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda x: ops.layer_norm(x, torch.ones(5)), "weight.shape: expected (8,)"),
        (lambda x: ops.layer_norm(x, None, torch.ones(8, 1)), "bias.shape: expected (8,)"),
        (lambda x: ops.add_rms_norm(x, x[:2]), "residual.shape: expected (3, 8) as x"),
        (lambda x: ops.add_layer_norm(x, x.long()), "residual.dtype: expected torch.float32"),
        (lambda x: ops.rms_norm(x.long()), "x.dtype: expected float16"),
        (lambda x: ops.rms_norm(x, eps=0), "eps: expected a positive number"),
        (lambda x: ops.layer_norm(x, backend="cuda"), "backend must be one of"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(torch.randn(3, 8))


# ---------------------------------------------------------------- L2 normalisation
def _l2_compare(shape, dtype, eps=1e-6, norms=None, seed=1):
    """ops.l2_norm against F.normalize on float64 copies: outputs and dx for sum(y dy).
    `norms`: each row scaled to that L2 norm (0, under eps: the clamp and its gradient)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    if norms is not None:
        x = x / x.norm(dim=-1, keepdim=True) * norms
    x, dy = x.to(dtype), torch.randn(shape, generator=g).to(dtype)
    xs = x.clone().requires_grad_()
    y = ops.l2_norm(xs, eps=eps, backend="triton")
    (y.float() * dy.float()).sum().backward()
    xr = x.double().requires_grad_()
    yr = F.normalize(xr, p=2.0, dim=-1, eps=eps)
    (yr * dy.double()).sum().backward()
    assert y.dtype == dtype and y.shape == x.shape
    for got, want in ((y, yr), (xs.grad, xr.grad)):
        err = (got.double() - want).abs() / want.abs().amax(-1, keepdim=True).clamp_min(1e-300)
        assert err.max().item() <= TOL[dtype], f"max error {err.max().item():.3g}"


@pytest.mark.interpret
@pytest.mark.parametrize("shape", CASES, ids=str)
def test_l2_norm_float32_against_f_normalize(shape, nan_alloc):
    _l2_compare(shape, torch.float32)


@pytest.mark.interpret
def test_l2_norm_float16_leading_axes_and_wide_rows(monkeypatch, nan_alloc):
    _l2_compare((2, 7, 128), torch.float16)
    monkeypatch.setattr(rowwise, "MAX_TILE", 32)  # rows streamed in chunks of 32
    _l2_compare((9, 100), torch.float32)


@pytest.mark.interpret
@pytest.mark.parametrize("tile", [None, 32], ids=["one_tile", "streamed"])
def test_l2_norm_clamps_small_rows_as_f_normalize(tile, monkeypatch, nan_alloc):
    """Rows of 0 and rows whose norm is under eps: y = x / eps and dx = dy / eps (no
    gradient through the clamped norm), beside rows above it."""
    if tile:
        monkeypatch.setattr(rowwise, "MAX_TILE", tile)
    norms = torch.tensor([0.0, 1e-9, 5e-7, 9e-7, 1.2e-6, 1.0, 50.0], dtype=torch.float64)
    _l2_compare((7, 70), torch.float32, eps=1e-6, norms=norms[:, None])


@pytest.mark.interpret
@pytest.mark.parametrize("layout,order", [("B T K", ""), ("K B T", ""), ("B T K", "T B K")])
def test_l2_norm_keeps_what_the_cost_model_prices(layout, order, monkeypatch, nan_alloc):
    """A `normalize` box lowered to the kernel (as CUDA runs it where the choice table picks
    ncd; here on CPU tensors through the interpreter) keeps what the cost model prices for
    CUDA: the rows (x itself, kept by `sin` too, or a copy with the box's axis made last:
    x's axis K not innermost, or x a permuted view whose rows are not laid out as the box's
    axes read) and float32 1/norm a row, counted by autograd's saved-tensor hooks."""
    monkeypatch.setitem(choices.FASTEST, "l2_norm", {"cuda": "ncd"})
    monkeypatch.setattr(lowerings, "runs_norm_kernels", lambda L, kind="norm": kind == "l2_norm")
    sizes = {"B": 3, "T": 5, "K": 40}
    b = Builder("l2", sizes=sizes)
    x = b.input("x", layout)
    h = b.scale(x, 2, name="twice")
    if order:
        h = b.permute(h, order, name="view")
    b.output("y", b.normalize(h, "K", name="l2"))
    b.output("z", b.unary(h, "sin", name="sin"))
    circuit = b.build()
    m = ncd.compile(circuit, dtype=torch.float16)
    for n in m.graph.nodes:
        if n.target is ops.l2_norm:
            n.kwargs = {**n.kwargs, "backend": "triton"}
    m.recompile()
    xt = torch.randn([sizes[a] for a in layout.split()]).half().requires_grad_()
    out, kept = saved_storages(lambda: m(xt), exclude=[xt])
    y = out["y"]
    want = F.normalize(2 * xt.float(), dim=layout.split().index("K"))
    if order:
        want = want.permute(*(layout.split().index(a) for a in order.split()))
    assert torch.allclose(y.float(), want, atol=2e-3)
    report = ncd.analyse(circuit, dtype="float16")
    (box,) = [bx for bx in report.boxes if bx.name == "l2"]
    assert box.kernel == "ncd.ops.l2_norm"
    assert sum(kept.values()) == report.numbers["activation_bytes"]


def test_l2_norm_on_the_cpu_is_f_normalize():
    x = torch.randn(4, 9, dtype=torch.float64)
    assert torch.equal(ops.l2_norm(x), F.normalize(x, dim=-1))
    with pytest.raises(ValueError, match="eps: expected a positive number"):
        ops.l2_norm(x, eps=0)


def test_cost_formulas():
    """The fused residual step moves 4 row-sized tensors where the add and the norm move 5;
    symbols work as numbers."""
    M, N = 16384, 4096
    fused = cost.io_forward(M, N, 2, rms=True, residual=True)
    assert cost.io_unfused_forward(M, N, 2, rms=True) - fused == M * N * 2
    assert cost.io_forward(M, N, 2) == 2 * M * N * 2 + 2 * N * 2 + 8 * M
    assert cost.activation_bytes(M, N, 2, rms=True) == M * N * 2 + 4 * M
    assert cost.flops_forward(M, N, rms=True) == 4 * M * N
    sympy = pytest.importorskip("sympy")
    m, n = sympy.symbols("M N", positive=True)
    assert sympy.expand(cost.io_backward(m, n, 2, residual=True) - cost.io_backward(m, n, 2)) == (
        2 * m * n
    )


def test_benchmark_dry_run(tmp_path):
    """bench/ops_norm.py --dry-run: every (op, impl, shape) row measured without error, in
    the results layout, errors against float32 at rounding level, ncd rows with ratios."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "ops_norm.py"
    spec = importlib.util.spec_from_file_location("ops_norm_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "ops_norm.json"
    bench.main(["--dry-run", "--rounds", "2", "--out", str(out)])
    data = json.loads(out.read_text())
    assert set(data["meta"]) >= {"device", "date", "commit", "torch", "triton"}
    assert data["meta"]["rounds"] == 2
    rows = data["rows"]
    assert len(rows) == len(bench.OPS) * len(bench.IMPLS) * len(bench.DRY_SHAPES)
    for r in rows:
        assert "error" not in r, r
        assert r["fwd_ms"] > 0 and r["fwdbwd_ms"] > 0 and r["rel_err"] < 1e-5
        assert list(r["rel_err_parts"]) == bench.PARTS[r["op"]]
        if r["impl"] == "ncd":
            assert r["vs_torch"] > 0 and r["vs_compile"] > 0


def test_benchmark_timings_interleave_the_implementations():
    """The benchmarks' timings (bench/profiling.interleaved) take the implementations in turn,
    round after round, and their ratio is the median of each round's (paired_ratio): a host
    that turns slow half-way through a run (3x from the sixth call on) leaves the ratio of
    two calls that take 1 and 2 units at 2, where the median of each one's own times would
    give 6 (one mostly fast, the other mostly slow)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "profiling.py"
    spec = importlib.util.spec_from_file_location("bench_profiling", path)
    profiling = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(profiling)
    order, clock = [], iter(range(100))

    def timer(name, base):
        def run():
            order.append(name)
            return base * (3 if next(clock) >= 5 else 1)

        return run

    got = profiling.interleaved({"ncd": timer("ncd", 1.0), "torch": timer("torch", 2.0)}, 5)
    assert order == ["ncd", "torch"] * 5
    assert got == {"ncd": [1.0, 1.0, 1.0, 3.0, 3.0], "torch": [2.0, 2.0, 6.0, 6.0, 6.0]}
    assert profiling.median(got["torch"]) / profiling.median(got["ncd"]) == 6.0
    assert profiling.paired_ratio(got["torch"], got["ncd"]) == 2.0

    def fails():
        order.append("broken")
        raise RuntimeError("out of memory")

    order.clear()
    timers = {"broken": fails, "torch": timer("torch", 2.0)}
    with pytest.raises(RuntimeError):
        profiling.interleaved(timers, 3)
    order.clear()
    errors = {}
    got = profiling.interleaved(timers, 3, errors)
    assert order == ["broken", "torch", "torch", "torch"]  # dropped after its failure
    assert list(got) == ["torch"] and str(errors["broken"]) == "out of memory"


@pytest.mark.interpret
@pytest.mark.parametrize("op", ["layer_norm", "add_rms_norm"])
def test_repeated_calls_reuse_one_launch_plan(op, monkeypatch, nan_alloc):
    """Calls of one shape build their constants once and launch with the same plan key
    (`_backend.launch`'s: kernel, argument key, constexprs), which is what lets the GPU take
    the direct launch from the third call on; the gradient reduction runs only for parameters
    that want a gradient, and its result matches torch's."""
    seen = []

    def spy(kernel, configs, grid, args, meta, *rest, **kw):
        seen.append((kernel, configs, _backend._key(args), meta))
        return launch(kernel, configs, grid, args, meta, *rest, **kw)

    launch = rowwise.launch
    monkeypatch.setattr(rowwise, "launch", spy)
    x, r, w, b, dy, ds = _case(6, 40, torch.float32, op != "layer_norm", op != "layer_norm")
    for _ in range(3):
        _, _, grads = _run(_ncd, x, r, w, b, dy, ds, 1e-5, op != "layer_norm")
    names = [k.fn.__name__ if hasattr(k, "fn") else k.__name__ for k, *_ in seen[:3]]
    assert names == ["_fwd_kernel", "_bwd_kernel", "_sum_kernel"] and len(seen) == 9
    for i in range(3):
        first, *later = seen[i::3]
        for k, configs, key, meta in later:
            assert k is first[0] and configs is first[1] and meta is first[3] and key == first[2]
    _, _, want = _run(_expected, x, r, w, b, dy, ds, 1e-5, op != "layer_norm")
    _check(grads, want, torch.float32)
    # a frozen weight: no reduction launched, no weight gradient
    seen.clear()
    x2 = x.clone().requires_grad_()
    ops.layer_norm(x2, w, None, backend="triton").sum().backward()
    assert len(seen) == 2 and x2.grad is not None


def test_launch_plans_follow_the_tile_limits(monkeypatch):
    """The cached per-shape constants are keyed on the tile limits too (tests lower them)."""
    wide = rowwise._plan("fwd", 100, False, True, True, False)
    assert wide[2]["ONE_TILE"] and rowwise._plan("fwd", 100, False, True, True, False) is wide
    monkeypatch.setattr(rowwise, "MAX_TILE", 32)
    assert not rowwise._plan("fwd", 100, False, True, True, False)[2]["ONE_TILE"]


# The PyTorch allocations of one training step: the output and the statistics; dx, the
# parameters' gradients and their partial sums.
STEP_ALLOCATIONS = {"layer_norm": 6, "rms_norm": 5, "add_rms_norm": 6}


@pytest.mark.interpret
@pytest.mark.parametrize("op", list(STEP_ALLOCATIONS))
def test_host_work_per_step(op):
    """What one training step asks of the host, as PyTorch's dispatcher and Triton's
    interpreter count it (bench/profiling.host_counts): its allocations (STEP_ALLOCATIONS,
    `torch.empty` each) and its three launches, and no other ATen operator (no view, copy,
    cast or reduction) but autograd's own `detach` of the gradients it accumulates."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "profiling.py"
    spec = importlib.util.spec_from_file_location("ncd_bench_profiling", path)
    profiling = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(profiling)
    x, r, w, b, dy, ds = _case(64, 32, torch.float32, op == "add_rms_norm", op != "layer_norm")
    x, w = x.requires_grad_(), w.requires_grad_()  # r: no gradient, so no copy of dx for it
    b = b if b is None else b.requires_grad_()
    fn = getattr(ops, op)

    def step():
        if r is not None:
            out = fn(x, r, w, backend="triton")
        else:
            out = fn(x, w, backend="triton") if b is None else fn(x, w, b, backend="triton")
        torch.autograd.backward(out, dy if r is None else (dy, ds))
        x.grad = w.grad = None
        if b is not None:
            b.grad = None

    step()
    c = profiling.host_counts(step)
    others = {k: v for k, v in c["ops"].items() if k not in ("aten.empty", "aten.detach")}
    assert c["ops"].get("aten.empty") == c["allocations"] == STEP_ALLOCATIONS[op], c
    assert not others, c
    assert c["launches"] == {"_fwd_kernel": 1, "_bwd_kernel": 1, "_sum_kernel": 1}, c


@pytest.mark.interpret
def test_outputs_of_leading_axes_may_be_changed_in_place(nan_alloc):
    """Rows with leading axes ([2, 3, 8]): the outputs are not views autograd refuses to let
    the caller change (`layer_norm(x).mul_(2)` raised "Output 0 of NormFunction is a view"),
    the gradient of such a change is torch's own, and changing the sum `s` that the add-norm's
    backward reads is caught by autograd, as for any tensor a backward keeps."""
    g = torch.Generator().manual_seed(3)
    x, r = (torch.randn(2, 3, 8, generator=g) for _ in "xr")
    w = torch.randn(8, generator=g)
    ours, ref = (x.clone().requires_grad_() for _ in "ab")
    y = ops.layer_norm(ours, w, backend="triton").mul_(2)
    want = F.layer_norm(ref, (8,), w).mul_(2)
    dy = torch.randn(2, 3, 8, generator=g)
    torch.testing.assert_close(y, want)
    (got_dx,), (want_dx,) = (torch.autograd.grad(o, i, dy) for o, i in ((y, ours), (want, ref)))
    torch.testing.assert_close(got_dx, want_dx)
    y, s = ops.add_rms_norm(x.clone().requires_grad_(), r, w, backend="triton")
    y.add_(1)
    s.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (y.sum() + s.sum()).backward()
