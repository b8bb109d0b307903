"""Short causal depthwise convolution (ops/short_conv): the Triton kernels (interpreted on the
CPU) against PyTorch's own F.conv1d (padded W - 1 on both sides, the first T outputs kept, as
nn.Conv1d-based blocks write it) run in float64, outputs and every gradient, fresh buffers
filled with NaN (an element a kernel forgets to write shows); packed sequences
against each sequence run alone; the reference and the decode step against the same.

float32 and float16 only: the interpreter's bfloat16 is not trusted (conftest.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ncd import ops
from ncd.ops.short_conv import cost
from ncd.ops.short_conv.reference import short_conv_reference, short_conv_step

from ..cpu_memory import saved_tensors

TOL = {torch.float32: 1e-5, torch.float16: 2e-3}


def rel(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def conv1d_silu(x, w, b, act):
    """PyTorch's depthwise conv1d on [B, C, T] (float64), causal by padding and slicing."""
    C, W = w.shape[0], w.shape[-1]
    wd = w.double().reshape(C, 1, W)
    y = F.conv1d(x.double().transpose(1, 2), wd, None if b is None else b.double(),
                 padding=W - 1, groups=C)[..., : x.shape[1]].transpose(1, 2)  # fmt: skip
    return F.silu(y) if act == "silu" else y


def _case(B, T, C, W, dtype, bias, seed=0, conv_weight=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, C, generator=g).to(dtype)
    w = torch.randn(C, 1, W, generator=g) if conv_weight else torch.randn(C, W, generator=g)
    b = torch.randn(C, generator=g) if bias else None
    dy = torch.randn(B, T, C, generator=g).to(dtype)
    return x, w, b, dy


def _grads(fn, x, w, b, dy):
    leaves = [t.clone().requires_grad_() if t is not None else None for t in (x, w, b)]
    y = fn(*leaves)
    (y.double() * dy.double()).sum().backward()
    return y, [None if t is None else t.grad for t in leaves]


@pytest.mark.interpret
@pytest.mark.parametrize("act", [None, "silu"])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["f32", "f16"])
@pytest.mark.parametrize("shape", [(2, 37, 40, 4), (1, 5, 7, 3), (3, 70, 33, 1), (1, 20, 16, 8)],
                         ids=str)  # fmt: skip
def test_kernels_match_conv1d(shape, dtype, bias, act, nan_alloc):
    B, T, C, W = shape
    x, w, b, dy = _case(B, T, C, W, dtype, bias)
    y, g = _grads(lambda *a: ops.short_conv(*a, activation=act, backend="triton"), x, w, b, dy)
    yr, gr = _grads(lambda *a: conv1d_silu(*a, act), x, w, b, dy)
    assert y.dtype == dtype and y.shape == x.shape
    tol = TOL[dtype]
    assert rel(y, yr) < tol
    assert g[0].dtype == dtype and rel(g[0], gr[0]) < tol  # dx
    assert g[1].shape == w.shape and rel(g[1], gr[1]) < tol  # dw (summed in float32)
    if bias:
        assert rel(g[2], gr[2]) < tol


@pytest.mark.interpret
def test_the_conv1d_weight_layout_and_a_strided_input():
    """nn.Conv1d's depthwise weight [C, 1, W] is taken as it is, its gradient has its shape; a
    non-contiguous x (a slice along C), a transposed [C, W] weight and a strided bias give the
    same result."""
    x, w, b, dy = _case(2, 19, 24, 4, torch.float32, True, conv_weight=True)
    wide = torch.randn(2, 19, 48)
    wide[..., ::2] = x
    y, g = _grads(lambda *a: ops.short_conv(*a, activation="silu", backend="triton"),
                  wide[..., ::2], w, b, dy)  # fmt: skip
    yr, gr = _grads(lambda *a: conv1d_silu(*a, "silu"), x, w, b, dy)
    assert rel(y, yr) < 1e-5 and rel(g[1], gr[1]) < 1e-5 and g[1].shape == (24, 1, 4)
    wt = w[:, 0].t().contiguous().t()  # [C, W] with the channels contiguous

    def strided(x_, w_, b_):  # the bias read through a view with stride 2
        bias = torch.stack([b_, torch.zeros_like(b_)], 1)[:, 0]
        return ops.short_conv(x_, w_, bias, activation="silu", backend="triton")

    y, g = _grads(strided, x, wt, b, dy)
    yr, gr = _grads(lambda *a: conv1d_silu(*a, "silu"), x, wt, b, dy)
    assert rel(y, yr) < 1e-5 and rel(g[1], gr[1]) < 1e-5 and rel(g[2], gr[2]) < 1e-5


@pytest.mark.interpret
def test_an_input_broadcast_over_the_batch():
    """x expanded along B (stride 0): the output and the gradients of the one row it came
    from (summed over the batch) are those of the three copies materialised."""
    _, w, b, dy = _case(3, 11, 8, 4, torch.float32, True)
    row = torch.randn(1, 11, 8)
    y, g = _grads(lambda r, w_, b_: ops.short_conv(r.expand(3, 11, 8), w_, b_, activation="silu",
                                                   backend="triton"), row, w, b, dy)  # fmt: skip
    yr, gr = _grads(lambda r, w_, b_: conv1d_silu(r.expand(3, 11, 8).contiguous(), w_, b_,
                                                  "silu"), row, w, b, dy)  # fmt: skip
    assert rel(y, yr) < 1e-5 and rel(g[0], gr[0]) < 1e-5 and rel(g[1], gr[1]) < 1e-5


@pytest.mark.interpret
@pytest.mark.parametrize("act", [None, "silu"])
def test_packed_sequences_do_not_see_each_other(act, nan_alloc):
    """Sequences packed along T with cu_seqlens (lengths 5, 1, 19, 2, 10: shorter and longer
    than the kernel and than a block) give each sequence's own result, gradients included."""
    C, W = 24, 4
    lens = [5, 1, 19, 2, 10]
    g = torch.Generator().manual_seed(1)
    parts = [torch.randn(1, n, C, generator=g) for n in lens]
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()])
    x, w, b = torch.cat(parts, 1), torch.randn(C, W, generator=g), torch.randn(C, generator=g)
    dy = torch.randn_like(x)
    y, gk = _grads(lambda *a: ops.short_conv(*a, activation=act, cu_seqlens=cu,
                                             backend="triton"), x, w, b, dy)  # fmt: skip
    each = lambda *a: torch.cat(  # noqa: E731
        [conv1d_silu(s, a[1], a[2], act) for s in a[0].split(lens, dim=1)], 1
    )
    yr, gr = _grads(each, x, w, b, dy)
    assert rel(y, yr) < 1e-5
    for a, r in zip(gk, gr):
        assert rel(a, r) < 1e-5
    assert rel(short_conv_reference(x, w, b, act, cu), yr) < 1e-6


@pytest.mark.parametrize("act", [None, "silu"])
def test_reference_and_decode_step_match_conv1d(act):
    x, w, b, _ = _case(3, 23, 10, 4, torch.float64, True)
    want = conv1d_silu(x, w, b, act)
    assert rel(short_conv_reference(x, w, b, act), want) < 1e-12
    assert rel(ops.short_conv(x, w, b, activation=act), want) < 1e-12  # CPU: the reference
    cache, steps = None, []
    for t in range(x.shape[1]):
        y, cache = short_conv_step(x[:, t], cache, w, b, act)
        steps.append(y)
    assert cache.shape == (3, 3, 10)
    assert rel(torch.stack(steps, 1), want) < 1e-12


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda x, w: ops.short_conv(x[0], w), "x.shape: expected [B, T, C]"),
        (lambda x, w: ops.short_conv(x, w[:3]), "weight.shape: expected [C, W] or [C, 1, W]"),
        (lambda x, w: ops.short_conv(x, w, torch.zeros(3)), "bias.shape"),
        (lambda x, w: ops.short_conv(x, w, activation="gelu"), "activation: expected None"),
        (lambda x, w: ops.short_conv(x.int(), w), "x.dtype"),
        (lambda x, w: ops.short_conv(x[:1], w, cu_seqlens=torch.tensor([0, 4])), "cu_seqlens"),
        (lambda x, w: ops.short_conv(x, w, cu_seqlens=torch.tensor([0, 9])), "batch size with"),
        (lambda x, w: ops.short_conv(x, torch.randn(6, 9), backend="triton"), "backend='triton'"),
        (lambda x, w: ops.short_conv(x, w, backend="gpu"), "backend must be one of"),
    ],
)
def test_bad_arguments_say_what_and_where(call, message):
    x, w = torch.randn(2, 9, 6), torch.randn(6, 4)
    with pytest.raises(ValueError, match="short_conv: " + message.replace("[", r"\[")):
        call(x, w)


@pytest.mark.interpret
@pytest.mark.parametrize("act", [None, "silu"])
def test_the_forward_keeps_x_alone(act):
    """What autograd holds for the backward (its saved-tensor hooks), parameters aside, is x
    itself: `cost.kept_bytes` (the SiLU's input is recomputed, not kept)."""
    x, w, b, _ = _case(2, 37, 24, 4, torch.float32, True)
    x, w, b = (t.requires_grad_() for t in (x, w, b))
    _, saved = saved_tensors(lambda: ops.short_conv(x, w, b, activation=act, backend="triton"))
    params = {w.data_ptr(), b.data_ptr()}
    kept = [t for t in saved if t.data_ptr() not in params]
    assert [t.data_ptr() for t in kept] == [x.data_ptr()]
    M, C = 2 * 37, 24
    assert sum(t.numel() * t.element_size() for t in kept) == cost.kept_bytes(M, C, 4)


def test_cost_formulas_count_the_kernels_work():
    """Forward FLOPs: W multiply-adds, bias and SiLU per element; traffic: x read and y
    written in the I/O dtype; the backward reads x and dout, with SiLU writes dy and reads it
    back, else reads dout again, and writes dx."""
    M, C, W = 4096, 2048, 4
    assert cost.flops_forward(M, C, W) == 2 * W * M * C
    assert cost.flops_forward(M, C, W, silu=True, bias=True) == (2 * W + 1 + 4) * M * C
    assert cost.io_forward(M, C, W, bytes_per=2) == 2 * M * C * 2 + C * W * 2
    parts = (M // cost.SPAN) * (W + 1) * C * 4
    assert cost.io_backward(M, C, W, bytes_per=2) == 4 * M * C * 2 + 2 * parts + 2 * C * W * 2
    with_dy = 5 * M * C * 2 + 2 * parts + 2 * C * W * 2  # dy written and read back
    assert cost.io_backward(M, C, W, bytes_per=2, silu=True) == with_dy
    assert cost.workspace_backward(M, C, W, 2, silu=True) == parts + M * C * 2
    assert cost.kept_bytes(M, C, 2) == M * C * 2
