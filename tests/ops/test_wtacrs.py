"""WTA-CRS linear map (ops/wtacrs): exact forward, unbiased weight-gradient estimate with
less variance than plain column-row sampling, and less memory kept for the backward; the
Triton kernels (interpreted on the CPU) against PyTorch indexing and products.

Independent checks: the exact gradient dYᵀ X, reference.py's CRS estimator (the baseline
the paper compares against), saved-tensor hooks for the kept bytes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ncd.ops.wtacrs import cost, selection
from ncd.ops.wtacrs.kernels import gather_scale, sampled_weight_grad
from ncd.ops.wtacrs.reference import (
    crs_estimate,
    exact_weight_grad,
    wtacrs_estimate,
)
from ncd.ops.wtacrs.sampled import kept_rows, wtacrs_linear, wtacrs_select

from ..cpu_memory import saved_storages


def _data(n=63, D=12, J=7, seed=0, skew=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, D, generator=g, dtype=torch.float64)
    if skew:  # a few heavy rows, as activations of language models have (the paper's Fig. 3)
        x = x * torch.exp(torch.randn(n, 1, generator=g, dtype=torch.float64))
    w = torch.randn(J, D, generator=g, dtype=torch.float64)
    dy = torch.randn(n, J, generator=g, dtype=torch.float64)
    return x, w, dy


def _estimate(x, w, dy, budget, gen, grad_norms=True, backend="auto"):
    w = w.clone().requires_grad_()
    norms = torch.linalg.vector_norm(dy, dim=1) if grad_norms else None
    y = wtacrs_linear(x, w, None, budget, grad_norms=norms, generator=gen, backend=backend)
    (y * dy).sum().backward()
    return w.grad


def test_forward_is_exact_and_input_grads_too():
    x, w, dy = _data()
    x = x.reshape(7, 9, 12).requires_grad_()
    b = torch.randn(7, dtype=torch.float64, requires_grad=True)
    y = wtacrs_linear(x, w, b, budget=0.2)
    assert torch.equal(y, F.linear(x, w, b))
    (y * dy.reshape(7, 9, 7)).sum().backward()
    torch.testing.assert_close(x.grad, dy.reshape(7, 9, 7) @ w)
    torch.testing.assert_close(b.grad, dy.sum(0))


def test_full_budget_gives_the_exact_gradient():
    x, w, dy = _data()
    got = _estimate(x, w, dy, 1.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(got, exact_weight_grad(x, dy))


def test_mean_of_many_estimates_converges_to_the_exact_gradient():
    x, w, dy = _data()
    exact = exact_weight_grad(x, dy)
    gen = torch.Generator().manual_seed(1)
    ests = torch.stack([_estimate(x, w, dy, 0.25, gen) for _ in range(4000)])
    errs = {}
    for N in (250, 1000, 4000):
        errs[N] = float((ests[:N].mean(0) - exact).norm() / exact.norm())
    # unbiased: the error of the mean falls like 1/sqrt(N) (4x the samples: about half)
    assert errs[4000] < 0.03, errs
    assert errs[4000] < 0.75 * errs[250], errs
    one = float((ests[0] - exact).norm() / exact.norm())
    assert errs[4000] < one / 10, (errs, one)


def test_same_distribution_as_the_reference_estimator():
    """The vectorised op and reference.py's loop (from the paper's eq. 5) have the same mean
    and about the same spread."""
    x, w, dy = _data(n=31)
    p = torch.linalg.vector_norm(x, dim=1) * torch.linalg.vector_norm(dy, dim=1)
    p = p / p.sum()
    g1, g2 = torch.Generator().manual_seed(2), torch.Generator().manual_seed(3)
    a = torch.stack([_estimate(x, w, dy, 0.3, g1) for _ in range(1500)])
    b = torch.stack([wtacrs_estimate(x, dy, p, kept_rows(31, 0.3), g2) for _ in range(1500)])
    exact = exact_weight_grad(x, dy)
    assert float((a.mean(0) - b.mean(0)).norm() / exact.norm()) < 0.04
    va, vb = float(a.var(0).sum()), float(b.var(0).sum())
    assert 0.8 < va / vb < 1.25, (va, vb)


@pytest.mark.parametrize("budget", [0.1, 0.25, 0.5])
def test_variance_below_plain_column_row_sampling(budget):
    """At budget 0.1 (k = 7 of 63) no pair is probable enough to win (|C| = 0): WTA-CRS is
    CRS, and no worse; at 0.25 and 0.5 it keeps 2 and 13 winners and is well below."""
    x, w, dy = _data()
    n = x.shape[0]
    k = kept_rows(n, budget)
    p = torch.linalg.vector_norm(x, dim=1) * torch.linalg.vector_norm(dy, dim=1)
    p = p / p.sum()
    exact = exact_weight_grad(x, dy)
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(5)
    wta = torch.stack([_estimate(x, w, dy, budget, g1) for _ in range(800)])
    crs = torch.stack([crs_estimate(x, dy, p, k, g2) for _ in range(800)])
    mse_wta = float(((wta - exact) ** 2).sum(dim=(1, 2)).mean())
    mse_crs = float(((crs - exact) ** 2).sum(dim=(1, 2)).mean())
    _, weight = wtacrs_select(p, k)
    winners = int((weight == 1).sum())
    print(f"budget {budget}: k {k}, |C| {winners}, MSE WTA-CRS / CRS {mse_wta / mse_crs:.3f}")
    assert mse_wta < (0.8 if winners else 1.1) * mse_crs, (budget, mse_wta, mse_crs)


def test_unbiased_without_gradient_norms():
    """The compiled box samples by ‖x_i‖ alone (dy is unknown at forward time): still
    unbiased."""
    x, w, dy = _data()
    exact = exact_weight_grad(x, dy)
    gen = torch.Generator().manual_seed(6)
    est = torch.stack([_estimate(x, w, dy, 0.25, gen, grad_norms=False) for _ in range(3000)])
    assert float((est.mean(0) - exact).norm() / exact.norm()) < 0.04


def _saved_bytes(fn):
    """(bytes of the storages autograd keeps for the backward of fn's result, the result)."""
    out, kept = saved_storages(fn)
    return sum(kept.values()), out


@pytest.mark.parametrize(
    "backend", ["reference", pytest.param("triton", marks=pytest.mark.interpret)]
)
def test_saved_tensor_bytes_are_the_sampled_rows(backend):
    torch.manual_seed(0)
    n, D, J = 512, 64, 32
    x = torch.randn(n, D, requires_grad=True)
    w = torch.randn(J, D, requires_grad=True)
    full, _ = _saved_bytes(lambda: F.linear(x, w))
    w_bytes = J * D * 4
    assert full - w_bytes == n * D * 4  # F.linear keeps x (and the weight)
    for budget in (0.1, 0.3):
        got, y = _saved_bytes(lambda b=budget: wtacrs_linear(x, w, budget=b, backend=backend))
        k = kept_rows(n, budget)
        assert got - w_bytes == cost.kept_bytes(k, D, 4) == k * (D * 4 + 8)
        assert got - w_bytes < (budget + 0.05) * n * D * 4
        y.sum().backward()  # the kept rows suffice for the backward


def test_sixteen_bit_rows_are_kept_in_their_dtype():
    """bfloat16 x: the kept rows stay bfloat16 (k (D · 2 + 8) bytes), the weights of the draws
    are made from float32 norms, and the mean of 500 estimates is near the exact dW."""
    x, w, dy = (t.to(torch.bfloat16) for t in _data(n=64, D=16, J=8))
    w = w.requires_grad_()
    got, y = _saved_bytes(lambda: wtacrs_linear(x, w, budget=0.25))
    assert got - w.numel() * 2 == cost.kept_bytes(kept_rows(64, 0.25), 16, 2)
    gen = torch.Generator().manual_seed(12)
    est = []
    for _ in range(500):
        w.grad = None
        (wtacrs_linear(x, w, budget=0.25, generator=gen).float() * dy.float()).sum().backward()
        est.append(w.grad.float())
    exact = exact_weight_grad(x.float(), dy.float())
    one = float((est[0] - exact).norm() / exact.norm())
    mean = float((torch.stack(est).mean(0) - exact).norm() / exact.norm())
    assert mean < one / 8, (mean, one)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_allocations_between_forward_and_backward():
    """The input of the linear map is made inside the measured step (an activation, not a
    leaf): the exact layer keeps all of it, the sampled one only its k rows."""
    n, D, J = 8192, 1024, 1024
    x0 = torch.randn(n, D, device="cuda", requires_grad=True)
    w = torch.randn(J, D, device="cuda", requires_grad=True)
    held = {}
    for name, fn in (
        ("exact", lambda: F.linear(x0 * 2.0, w)),
        ("wtacrs", lambda: wtacrs_linear(x0 * 2.0, w)),
    ):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        y = fn()
        torch.cuda.synchronize()
        held[name] = torch.cuda.memory_allocated() - before - y.numel() * 4
        y.sum().backward()
        del y
    assert held["exact"] >= n * D * 4 - 4096, held
    assert held["wtacrs"] <= cost.kept_bytes(kept_rows(n, 0.3), D, 4) + 65536, held


# ------------------------------------------------------------------ selection and kernels
def test_selection_never_reads_the_device():
    """Every step of the selection is a tensor operation of fixed shape (no .item(), no
    branch on a value): it runs on the meta device, where reading a value fails."""
    idx, weight = wtacrs_select(torch.empty(1000, device="meta"), 300)
    assert idx.shape == weight.shape == (300,) and idx.dtype == torch.int64


def test_selection_edges():
    """Scores all zero: weight 0 everywhere. All mass in fewer than k rows: those are the
    winners, taken exactly, and the draws weigh 0. A generator gives reproducible draws."""
    idx, weight = wtacrs_select(torch.zeros(10), 4)
    assert idx.shape == (4,) and torch.equal(weight, torch.zeros(4))
    idx, weight = wtacrs_select(torch.tensor([0.0, 5.0, 0.0, 3.0, 0.0, 0.0]), 3)
    assert idx[:2].tolist() == [1, 3] and weight.tolist() == [1.0, 1.0, 0.0]
    s = torch.rand(50, generator=torch.Generator().manual_seed(0))
    a = wtacrs_select(s, 12, torch.Generator().manual_seed(1))
    b = wtacrs_select(s, 12, torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    one = torch.zeros(7, dtype=torch.float64)
    one[[2, 5]] = 1.0  # two equal winners of all the mass, one draw weight 0
    idx, weight = wtacrs_select(one, 3)
    assert sorted(idx[:2].tolist()) == [2, 5] and weight.tolist() == [1.0, 1.0, 0.0]


def test_winners_are_the_papers_argmin():
    """|C| (the weights of 1 at the front) is the first minimiser over c = 0 .. k-1 of
    (1 − Σ_{c largest} p) / (k − c), computed here in float64 from the paper's formula; the
    winners are the |C| largest scores, largest first."""
    g = torch.Generator().manual_seed(13)
    sizes = set()
    for _ in range(200):
        n = int(torch.randint(2, 120, (1,), generator=g))
        k = int(torch.randint(1, n, (1,), generator=g))
        s = torch.exp(2 * torch.randn(n, generator=g, dtype=torch.float64))
        idx, weight = wtacrs_select(s, k, g)
        p = (s / s.sum()).sort(descending=True).values.tolist()
        factor = [(1 - sum(p[:c])) / (k - c) for c in range(k)]
        c = min(range(k), key=lambda t: (factor[t], t))
        assert torch.equal(weight[:c], torch.ones(c, dtype=s.dtype)), (n, k, c)
        assert not (weight[c:] == 1).any(), (n, k, c)
        assert idx[:c].tolist() == s.argsort(descending=True)[:c].tolist()
        sizes.add(c)
    assert len(sizes) > 10  # many sizes of C seen, 0 among them
    assert 0 in sizes


def test_selection_order_ties_lower_index_first():
    """Equal scores are taken in index order: winners 1, 2, 4 (score 9), then 0; no mass is
    left outside them, so the draw weighs 0."""
    s = torch.tensor([1.0, 9.0, 9.0, 0.0, 9.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    idx, weight = wtacrs_select(s, 5)
    assert idx[:4].tolist() == [1, 2, 4, 0] and weight.tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]


def _selection_case(n, kind, g):
    """Scores of one kind (the rows' norms, and gradient norms for "grad")."""
    norms = torch.exp(torch.randn(n, generator=g))
    grad = None
    if kind == "zeros":
        norms = torch.zeros(n)
    elif kind == "huge":  # three rows with nearly all the mass: the winners
        norms[[3, n // 2, n - 1]] = 1e30
    elif kind == "ties":  # few distinct values, zeros among them
        norms = torch.randint(0, 4, (n,), generator=g).float()
    elif kind == "grad":
        grad = torch.rand(n, generator=g).half()
    return norms, grad


SELECTION_CASES = [
    *[(37, 12, kind) for kind in ("lognormal", "zeros", "huge", "ties", "grad")],
    (37, 36, "ties"),
    (50, 1, "lognormal"),
    *[(200, 60, kind) for kind in ("lognormal", "ties", "grad")],
    (1000, 300, "lognormal"),
    (1000, 300, "ties"),
]


# The selection's two ways to rank the rows: every pair compared in one kernel (up to
# selection.ALL_PAIRS_ROWS rows), or sorted blocks and binary searches in two.
RANKINGS = {"all_pairs": selection.MAX_ROWS, "blocks": 0}


@pytest.mark.interpret
@pytest.mark.parametrize("ranking", list(RANKINGS))
@pytest.mark.parametrize("n, k, kind", SELECTION_CASES)
def test_kernel_selection_is_the_pytorch_form(n, k, kind, ranking, nan_alloc, monkeypatch):
    """selection.select (three kernels, or two) gives wtacrs_select's (idx, weight) bit for bit
    from the same uniforms, the gradient norms multiplied in inside the kernels."""
    monkeypatch.setattr(selection, "ALL_PAIRS_ROWS", RANKINGS[ranking])
    g = torch.Generator().manual_seed(n + k)
    norms, grad = _selection_case(n, kind, g)
    u = torch.rand(k, generator=g, dtype=torch.float64)
    idx, weight = selection.select(norms, k, u, grad)
    scores = norms if grad is None else norms * grad.float()
    want_idx, want_weight = wtacrs_select(scores, k, uniforms=u)
    assert torch.equal(idx, want_idx) and torch.equal(weight, want_weight), kind
    winners = int((weight == 1).sum())
    if kind == "huge":
        assert winners == 3 and sorted(idx[:3].tolist()) == [3, n // 2, n - 1]
    if kind == "zeros":
        assert not weight.any()


@pytest.mark.interpret
@pytest.mark.parametrize("ranking", list(RANKINGS))
@pytest.mark.parametrize("n, k, kind", [(37, 12, "huge"), (200, 60, "ties"), (1000, 300, "grad")])
def test_kernel_selection_with_the_gather(n, k, kind, ranking, nan_alloc, monkeypatch):
    """select(..., x=x), as the layer runs it (the gather of the kept rows in the last kernel):
    the same (idx, weight) as wtacrs_select, and kept = x[idx] · weight by PyTorch indexing, bit
    for bit, from a strided x whose D is not a multiple of the column tiles."""
    monkeypatch.setattr(selection, "ALL_PAIRS_ROWS", RANKINGS[ranking])
    g = torch.Generator().manual_seed(n + k + 1)
    norms, grad = _selection_case(n, kind, g)
    u = torch.rand(k, generator=g, dtype=torch.float64)
    x = torch.randn(45, n, generator=g).half().t()  # [n, 45], strides (1, n)
    idx, weight, kept = selection.select(norms, k, u, grad, x=x)
    scores = norms if grad is None else norms * grad.float()
    want_idx, want_weight = wtacrs_select(scores, k, uniforms=u)
    assert torch.equal(idx, want_idx) and torch.equal(weight, want_weight), kind
    assert kept.dtype == x.dtype and kept.is_contiguous()
    assert torch.equal(kept, (x[want_idx].float() * want_weight[:, None]).half())


@pytest.mark.interpret
def test_kernel_selection_keeps_every_row_when_k_reaches_n():
    norms = torch.rand(9)
    idx, weight = selection.select(norms, 9, torch.rand(9, dtype=torch.float64))
    assert torch.equal(idx, torch.arange(9)) and torch.equal(weight, torch.ones(9))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("n", [4096, 16384])
def test_cuda_selection_is_the_pytorch_form(n):
    """On the GPU too (its float64 arithmetic IEEE-rounded like the CPU's): the kernels and
    wtacrs_select on the same CUDA scores and uniforms agree bit for bit."""
    g = torch.Generator(device="cuda").manual_seed(n)
    norms = torch.exp(torch.randn(n, device="cuda", generator=g))
    k = kept_rows(n, 0.3)
    u = torch.rand(k, device="cuda", generator=g, dtype=torch.float64)
    idx, weight = selection.select(norms, k, u)
    want_idx, want_weight = wtacrs_select(norms, k, uniforms=u)
    assert torch.equal(idx, want_idx) and torch.equal(weight, want_weight)


@pytest.mark.interpret
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_kernel_gather_and_weight_gradient(dtype, nan_alloc):
    """Rows drawn more than once, k not a multiple of the tiles, a strided x: the gathered
    rows times their weights bit for bit; dW = dy[idx]ᵀ kept against the float64 product."""
    g = torch.Generator().manual_seed(7)
    n, D, J, k = 70, 37, 23, 21
    x = torch.randn(D, n, generator=g).to(dtype).t()  # strides (1, n)
    dy = torch.randn(n, J, generator=g).to(dtype)
    idx = torch.randint(0, n, (k,), generator=g)
    idx[3] = idx[4]
    weight = torch.rand(k, generator=g).to(dtype) + 0.5
    kept = gather_scale(x, idx, weight)
    assert kept.dtype == dtype and kept.is_contiguous()
    assert torch.equal(kept, (x[idx].float() * weight[:, None].float()).to(dtype))
    for out in (torch.float32, dtype):
        dw = sampled_weight_grad(dy, idx, kept, out)
        want = dy[idx].double().t() @ kept.double()
        assert dw.dtype == out
        tol = 1e-5 if out == torch.float32 else 2e-3
        torch.testing.assert_close(dw.double(), want, rtol=tol, atol=tol * float(want.abs().max()))


@pytest.mark.interpret
@pytest.mark.parametrize("max_rows", [selection.MAX_ROWS, 64])
def test_kernel_path_draws_as_the_pytorch_path(max_rows, monkeypatch):
    """With the same generator seed both paths sample the same rows: same output, input and
    bias gradients, and dW equal up to float32 rounding; also above selection.MAX_ROWS rows
    (64 here), where the kernel path selects in PyTorch."""
    monkeypatch.setattr(selection, "MAX_ROWS", max_rows)
    x, w, dy = (t.float() for t in _data(n=90, D=20, J=33))
    b = torch.randn(33)
    grads = {}
    for backend in ("triton", "reference"):
        xs, ws, bs = (t.clone().requires_grad_() for t in (x, w, b))
        gen = torch.Generator().manual_seed(11)
        y = wtacrs_linear(xs.reshape(9, 10, 20), ws, bs, 0.3, generator=gen, backend=backend)
        (y.reshape(90, 33) * dy).sum().backward()
        grads[backend] = (y, xs.grad, ws.grad, bs.grad)
    for a, r in zip(grads["triton"], grads["reference"], strict=True):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)


@pytest.mark.interpret
def test_kernel_path_statistics():
    """On the kernel path too, measured here: the mean of 120 estimates near the exact dW and
    their spread below plain CRS's at the same budget (0.5: 13 winners of k = 32)."""
    x, w, dy = _data()
    exact = exact_weight_grad(x, dy).float()
    x, w, dy = x.float(), w.float(), dy.float()
    n, budget = x.shape[0], 0.5
    p = torch.linalg.vector_norm(x, dim=1) * torch.linalg.vector_norm(dy, dim=1)
    g1, g2 = torch.Generator().manual_seed(8), torch.Generator().manual_seed(9)
    wta = torch.stack([_estimate(x, w, dy, budget, g1, backend="triton") for _ in range(120)])
    crs = torch.stack([crs_estimate(x, dy, p / p.sum(), kept_rows(n, budget), g2)
                       for _ in range(120)])  # fmt: skip
    mse_wta = float(((wta - exact) ** 2).sum(dim=(1, 2)).mean())
    mse_crs = float(((crs - exact) ** 2).sum(dim=(1, 2)).mean())
    print(f"MSE WTA-CRS / CRS {mse_wta / mse_crs:.3f}")
    assert mse_wta < 0.6 * mse_crs, (mse_wta, mse_crs)
    one = float((wta[0] - exact).norm() / exact.norm())
    assert float((wta.mean(0) - exact).norm() / exact.norm()) < one / 5, one


def _bench_module(name):
    """bench/NAME.py, loaded from its path."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"ncd_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _graph_nodes(y):
    seen, todo = set(), [y.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.add(node)
            todo.extend(f for f, _ in node.next_functions)
    return seen


@pytest.mark.interpret
@pytest.mark.parametrize("lead", [(64,), (4, 16)])
def test_host_work_per_step(lead):
    """What one training step on the kernel path asks of the host, as PyTorch's dispatcher and
    Triton's interpreter count it (bench/profiling.host_counts), against F.linear's step on
    the same tensors: at most 2 ATen operators and 6 allocations more (the row norms, the
    uniforms, the selection's scratch, idx and kept rows; dy's sampled rows), the selection's
    two launches, and one autograd node, the Function's, where F.linear's step has two or
    more (no view nodes around it for a 3-D x)."""
    counts = _bench_module("profiling").host_counts
    x = torch.randn(*lead, 16, requires_grad=True)
    w, b = torch.randn(16, 16, requires_grad=True), torch.randn(16, requires_grad=True)
    dy = torch.randn(*lead, 16)
    got, nodes = {}, {}
    for name, fn in (
        ("ncd", lambda: wtacrs_linear(x, w, b, 0.3, backend="triton")),
        ("exact", lambda: F.linear(x, w, b)),
    ):

        def step(fn=fn, name=name):
            y = fn()
            nodes[name] = len(_graph_nodes(y)) - 3  # less the leaves' AccumulateGrad
            y.backward(dy)
            x.grad = w.grad = b.grad = None

        step()
        c = counts(step)
        got[name] = (sum(c["ops"].values()), c["allocations"], c["launches"])
    (ops, allocs, launches), (exact_ops, exact_allocs, _) = got["ncd"], got["exact"]
    assert ops <= exact_ops + 2 and allocs <= exact_allocs + 6, got
    assert launches == {"_rank_all_kernel": 1, "_draw_kernel": 1}, got
    assert nodes["ncd"] == 1 and nodes["exact"] >= 2, nodes


def test_backend_is_checked():
    with pytest.raises(ValueError, match="backend must be one of"):
        wtacrs_linear(torch.ones(4, 3), torch.ones(2, 3, requires_grad=True), backend="gpu")


@pytest.mark.interpret
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_benchmark_dry_run(tmp_path):
    """bench/ops_effops.py --dry-run (the kernels interpreted): every row measured without
    error in the results layout; the sampled layer keeps less than half the exact one's
    activation bytes; L-Mul's kernel agrees with the PyTorch form."""
    import json

    bench = _bench_module("ops_effops")
    out = tmp_path / "ops_effops.json"
    bench.main(["--dry-run", "--shapes", "24x16", "--estimates", "2", "--out", str(out)])
    data = json.loads(out.read_text())
    assert set(data["meta"]) >= {"device", "date", "commit", "torch", "triton"}
    rows = {(r["op"], r["impl"], r.get("mantissa_bits")): r for r in data["rows"]}
    assert len(rows) == len(data["rows"]) == 5
    for r in rows.values():
        assert "error" not in r, r
        assert r["fwd_ms"] > 0 and r["fwdbwd_ms"] > 0 and (r["rows"], r["features"]) == (24, 16)
    ncd, exact = rows["wtacrs_linear", "ncd", None], rows["wtacrs_linear", "torch", None]
    assert ncd["rel_err"] < 1e-6 and ncd["relative_variance"] > 0
    assert ncd["saved_mib"] < exact["saved_mib"] / 2
    for m in (3, 4):
        r = rows["lmul_matmul", "ncd", m]
        assert r["max_rel_diff_pytorch_form"] < 1e-5 and 0.01 < r["rel_err"] < 0.1
