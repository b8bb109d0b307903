"""Import of torch calls a new user's models reached for, each against the model it came from
(outputs and gradients of the compiled import, float64): `torch.arange` of sizes as positions
boxes, which then follow the axis at other lengths."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from ncd.compiler import compile as ncd_compile
from ncd.compiler import from_torch
from ncd.compiler.errors import TorchImportError

from .helpers import check_import as check
from .helpers import rand64 as _x
from .helpers import same_import as same


def kinds(circuit) -> list[str]:
    return [b.kind for b in circuit.boxes]


# -- torch.arange of sizes
class Sinusoidal(nn.Module):
    """x + PE (Vaswani et al. 2017, section 3.5), written as the usual code writes it: the
    positions `arange(T)`, the frequencies from `arange(0, D, 2)`, sines and cosines
    interleaved; then times `arange(1, T + 1)` (counting from one)."""

    def forward(self, x):
        T, D = x.shape[1], x.shape[2]
        pos = torch.arange(T, dtype=x.dtype)[:, None]
        freq = torch.exp(torch.arange(0, D, 2, dtype=x.dtype) * (-math.log(10000.0) / D))
        pe = torch.stack((torch.sin(pos * freq), torch.cos(pos * freq)), -1).flatten(-2)
        return (x + pe) * torch.arange(1, T + 1)[:, None]


class FromACache(nn.Module):
    """Positions of a decoding step after `past` tokens: `arange(past, past + T)`."""

    def forward(self, x, past):
        return x * torch.arange(past, past + x.shape[1])[:, None]


class Rounded(nn.Module):
    """A 16-bit arange (its values as float16 rounds them) and one of a number no axis has."""

    def forward(self, x):
        return x + torch.arange(x.shape[1], dtype=torch.float16)[:, None] + torch.arange(8)


def test_arange_of_sizes_is_positions_that_follow_the_axis():
    x, other = _x(2, 7, 8), _x(3, 4, 6, seed=1)
    c, _ = same(Sinusoidal(), x)
    boxes = {b.name: b for b in c.boxes}
    assert kinds(c).count("positions") == 3 and "constant" in kinds(c)  # (the 1 added)
    assert "opaque" not in kinds(c)
    assert (boxes["arange"].axis, boxes["arange"].dtype) == ("T", "float64")
    assert boxes["arange_1"].axis != "T" and c.axes[boxes["arange_1"].axis] == "D/2"
    assert boxes["arange_1_step"].factor == "2" and boxes["arange_2"].dtype == "int64"
    # the positions follow T and D: the import runs at other sizes as the model does
    half = boxes["arange_1"].axis  # (the circuit's sizes hold the example's D/2 too)
    compiled = ncd_compile(c, dtype=torch.float64, sizes={"B": 3, "T": 4, "D": 6, half: 3})
    check(Sinusoidal().double(), compiled, (other,))
    c, _ = same(FromACache(), x, torch.tensor(5))
    assert kinds(c) == ["positions", "binary"] and c.boxes[0].start
    compiled = ncd_compile(c, dtype=torch.float64, sizes={"B": 3, "T": 4, "D": 6})
    check(FromACache().double(), compiled, (other, torch.tensor(11)))


def test_an_arange_that_is_no_axis_positions_stays_a_constant():
    c, _ = same(Rounded(), _x(2, 8, 8))
    assert kinds(c).count("constant") == 2 and "positions" not in kinds(c)


# -- gather and scatter
class DenseTop2(nn.Module):
    """A dense top-2 mixture of experts: the gate's top two logits softmaxed and scattered
    into a weight per expert (zeros elsewhere), every expert's ReLU MLP on every token, the
    outputs weighed; the chosen logits gathered and the experts' load counted by scatter_add
    (an auxiliary scale of the output)."""

    def __init__(self, d=8, experts=4, f=16):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.gate = nn.Linear(d, experts, bias=False)
        self.w1 = nn.Parameter(torch.randn(experts, d, f, generator=g) * 0.3)
        self.w2 = nn.Parameter(torch.randn(experts, f, d, generator=g) * 0.3)

    def forward(self, x):
        logits = self.gate(x)  # (B, T, E)
        top, idx = logits.topk(2, dim=-1)  # (B, T, 2)
        weights = torch.zeros_like(logits).scatter(-1, idx, torch.softmax(top, dim=-1))
        h = torch.einsum("btd,edf->btef", x, self.w1).relu()
        y = torch.einsum("bte,btef,efd->btd", weights, h, self.w2)
        chosen = logits.gather(-1, idx)
        load = torch.zeros_like(logits).scatter_add(-1, idx, torch.ones_like(top))
        return y * chosen.sum(-1, keepdim=True) + load.mean(-1, keepdim=True)


class ByPositions(nn.Module):
    """Rows of x taken along T by an index of its own length (S), a permutation of the
    features gathered back, and src added into x along T (a scatter_add onto x)."""

    def forward(self, x, rows, src):
        taken = x.gather(1, rows)  # (B, S, D)
        order = x.topk(x.shape[-1], dim=-1).indices  # a permutation of the features
        back = torch.gather(x, -1, order)  # sorted: an index as long as x's axis
        return taken.sum(1, keepdim=True) + back + x.scatter_add(1, rows, src).sum(1, True)


class Overwrites(nn.Module):
    """`scatter` with positions that may repeat, and onto a tensor that is not zeros: no sum
    of the scattered entries."""

    def forward(self, x, rows, src):
        return torch.zeros_like(x).scatter(1, rows, src) + x.scatter(1, rows, src)


def test_gather_and_scatter_are_their_boxes():
    torch.manual_seed(0)
    c, _ = same(DenseTop2(), _x(2, 5, 8))
    got = kinds(c)
    # gate, topk, softmax, scatter, w1, einsum, relu, w2, einsum, gather, ones, scatter_add,
    # sum, mul, mean, add (the zeros scattered into are the scatter boxes' own)
    assert "opaque" not in got and len(got) == 16
    assert got.count("gather") == 1 and got.count("scatter") == 2
    g = torch.Generator().manual_seed(3)
    x, src = _x(2, 7, 8), _x(2, 3, 8, seed=1)
    rows = torch.randint(0, 7, (2, 3, 8), generator=g)  # (repeated positions add up)
    c, _ = same(ByPositions(), x, rows, src)
    got = kinds(c)
    assert "opaque" not in got and got.count("gather") == 2 and got.count("scatter") == 1
    c, _ = same(Overwrites(), x, rows, src)
    assert kinds(c).count("opaque") == 2 and "scatter" not in kinds(c)


# -- in-place changes
class CopiesInto(nn.Module):
    """Rows of y copied in place into zeros of x's shape (an opaque box)."""

    def forward(self, x, idx, y):
        out = torch.zeros_like(x)
        out.index_copy_(0, idx, y)
        return out * 2


def test_a_tensor_changed_in_place_later_keeps_the_value_it_was_made_with():
    """The zeros an in-place op changes are held as zeros (the example run recorded them
    after the change, and the compiled module's copy then held y's rows: y added twice)."""
    x, y, idx = _x(5, 3), _x(4, 3, seed=1), torch.tensor([0, 2, 1, 4])
    c, _ = same(CopiesInto(), x, idx, y)
    (zeros,) = [b for b in c.boxes if b.kind == "constant"]
    assert zeros.value == "0"


class ViewedAfter(nn.Module):
    """An in-place op on a fresh tensor that is only viewed afterwards (a view read before
    the change is fine too)."""

    def forward(self, x, idx, y):
        out = torch.zeros_like(x)
        early = out[0] + 1  # a view, read before the change
        out.index_add_(0, idx, y)
        return out.view(-1) * early.sum()


class ChangesAViewsBase(nn.Module):
    """An in-place op on a view whose base is read afterwards."""

    def forward(self, x):
        base = x * 2
        base.view(-1).add_(1)
        return base


class Expert(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.w1, self.w3 = nn.Linear(d, f, bias=False), nn.Linear(d, f, bias=False)
        self.w2 = nn.Linear(f, d, bias=False)

    def forward(self, h):
        return self.w2(torch.nn.functional.silu(self.w1(h)) * self.w3(h))


class MixtralMoE(nn.Module):
    """Hugging Face's Mixtral sparse mixture of experts, its loop over the experts: the rows
    each expert was chosen for (torch.where of a one-hot mask), its output weighed and added
    into the output rows in place (`index_add_`), the output then viewed as [B, T, D]."""

    def __init__(self, d=8, f=16, experts=4):
        super().__init__()
        self.gate = nn.Linear(d, experts, bias=False)
        self.experts = nn.ModuleList(Expert(d, f) for _ in range(experts))

    def forward(self, hidden):
        B, T, D = hidden.shape
        h = hidden.view(-1, D)
        weights, chosen = torch.topk(torch.softmax(self.gate(h), dim=1), 2, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        out = torch.zeros((B * T, D), dtype=h.dtype, device=h.device)
        mask = torch.nn.functional.one_hot(chosen, num_classes=len(self.experts)).permute(2, 1, 0)
        for e, expert in enumerate(self.experts):
            idx, rows = torch.where(mask[e])
            y = expert(h[None, rows].reshape(-1, D)) * weights[rows, idx, None]
            out.index_add_(0, rows, y)
        return out.reshape(B, T, D)


def test_an_in_place_op_with_no_live_view_imports():
    x, y, idx = _x(5, 3), _x(4, 3, seed=1), torch.tensor([0, 2, 2, 4])
    c, _ = same(ViewedAfter(), x, idx, y)
    assert "opaque" not in kinds(c) and "scatter" in kinds(c)  # (index_add_: repeats add up)
    torch.manual_seed(0)
    same(MixtralMoE(), _x(2, 5, 8))
    with pytest.raises(TorchImportError, match=r"`add_` changes a tensor in place while the "
                       r"tensor it is a view of \(node mul\) is read after the change "
                       r"\(by node output\)"):  # fmt: skip
        from_torch(ChangesAViewsBase(), (_x(2, 3),))


# -- tensors made from sizes
class Fresh(nn.Module):
    """A scan's state begun as `x.new_zeros(b, 16, d)` (Mamba's), and the other makers of
    sizes the code reads: new_ones, new_full, new_empty then zero_, torch.zeros of sizes and
    of `x.shape`, fill_."""

    def forward(self, x):
        b, t, d = x.shape
        state = x.new_zeros(b, 16, d)
        state = state + x.sum(1, keepdim=True)
        ones = x.new_ones((b, t, d)) * x.new_full((b, d), 3.0)[:, None]
        empty = x.new_empty(b, t, d).zero_() + torch.zeros(b, t, d, dtype=x.dtype)
        full = torch.zeros(x.shape, dtype=x.dtype).fill_(0.5)
        return x * ones + empty + full + state.mean(1, keepdim=True)


def test_tensors_made_from_sizes_are_constants_over_the_axes_read():
    """No opaque box, each constant over the axes whose sizes the code read, no size fixed:
    the import runs at other sizes as the model does."""
    x, other = _x(2, 5, 8), _x(3, 4, 6, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (a size fixed at the example's is warned)
        c, _ = same(Fresh(), x)
    consts = {b.name: (tuple(b.axes), b.value) for b in c.boxes if b.kind == "constant"}
    assert "opaque" not in kinds(c)
    assert consts["new_zeros"][0] == ("B", consts["new_zeros"][0][1], "D")
    assert {consts[k][0] for k in ("new_ones", "zero_", "zeros", "fill_")} == {("B", "T", "D")}
    assert consts["new_full"] == (("B", "D"), "3.0") and consts["fill_"][1] == "0.5"
    compiled = ncd_compile(c, dtype=torch.float64, sizes={"B": 3, "T": 4, "D": 6})
    check(Fresh().double(), compiled, (other,))


# -- reductions
class Standardise(nn.Module):
    """A norm written with torch.var_mean (keepdim, biased), and std_mean over two dims
    (unbiased, without keepdim)."""

    def forward(self, x):
        var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
        std, mid = torch.std_mean(x, dim=(0, 1))
        return (x - mean) * torch.rsqrt(var + 1e-5) + std * mid


def test_var_mean_and_std_mean_are_boxes():
    c, _ = same(Standardise(), _x(2, 5, 8))
    assert "opaque" not in kinds(c) and kinds(c).count("reduce") == 4
