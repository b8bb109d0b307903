"""Import of in-place operators and of boolean masks combined by logical ops, each against the
model it came from (outputs and gradients of the compiled import, float64): an in-place form
imports to the circuit of its out-of-place form, and the import stops, naming the op and the
tensor, only where memory shared with the changed tensor is read after the change."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ncd.compiler import compile as ncd_compile
from ncd.compiler import from_torch
from ncd.compiler.errors import TorchImportError

from .helpers import rand64, same_import


class Two(nn.Module):
    """`fn(self, x, y)` as a model of two inputs; `relu` an nn.ReLU(inplace=True)."""

    def __init__(self, fn):
        super().__init__()
        self.fn, self.relu = fn, nn.ReLU(inplace=True)

    def forward(self, x, y):
        return self.fn(self, x, y)


def kinds(circuit) -> list[str]:
    return sorted(b.kind for b in circuit.boxes)


def _iadd(s, x, y):
    z = x * 2
    z += y
    z *= 3.0
    z -= x
    z /= 2.0
    return z


def _relu_fn(s, x, y):
    z = x * 2
    torch.relu_(z)  # the result is not used: z itself changed
    return z + y


def _relu_method(s, x, y):
    z = x * 2
    z.relu_()
    return z + y


def _relu_module(s, x, y):
    z = x * 2
    s.relu(z)
    return z + y


def _relu_inplace_arg(s, x, y):
    z = x * 2
    F.relu(z, inplace=True)
    return z + y


def _add_mul(s, x, y):
    z = x * 2
    z.add_(y).mul_(y)
    return z


def _masked_fill(s, x, y):
    z = x * 2
    z.masked_fill_(y > 0, -1.0)
    return z


def _clamp(s, x, y):
    z = x * 2
    z.clamp_(min=-0.5, max=0.5)
    return z + y


def _leaky(s, x, y):
    z = x * 2
    F.leaky_relu_(z, 0.2)
    return z + y


def _hardtanh(s, x, y):
    z = x * 2
    F.hardtanh(z, -1.0, 1.0, True)
    return z + y


def _held_result(s, x, y):
    z = x * 2
    w = z  # one tensor, two names: w read after the change reads it changed
    z += y
    return w * z


_OUT_OF_PLACE = {
    _iadd: lambda s, x, y: ((x * 2 + y) * 3.0 - x) / 2.0,
    _relu_fn: lambda s, x, y: torch.relu(x * 2) + y,
    _relu_method: lambda s, x, y: torch.relu(x * 2) + y,
    _relu_module: lambda s, x, y: torch.relu(x * 2) + y,
    _relu_inplace_arg: lambda s, x, y: torch.relu(x * 2) + y,
    _add_mul: lambda s, x, y: (x * 2 + y) * y,
    _masked_fill: lambda s, x, y: (x * 2).masked_fill(y > 0, -1.0),
    _clamp: lambda s, x, y: (x * 2).clamp(min=-0.5, max=0.5) + y,
    _leaky: lambda s, x, y: F.leaky_relu(x * 2, 0.2) + y,
    _hardtanh: lambda s, x, y: F.hardtanh(x * 2, -1.0, 1.0) + y,
    _held_result: lambda s, x, y: (lambda z: z * z)(x * 2 + y),
}


@pytest.mark.parametrize("fn", list(_OUT_OF_PLACE), ids=lambda f: f.__name__.strip("_"))
def test_an_in_place_form_imports_as_its_out_of_place_form(fn):
    """The compiled import gives the model's outputs and gradients, and the circuit has the
    boxes of the same code written out of place."""
    x, y = rand64(2, 5, 3), rand64(2, 5, 3, seed=1)
    circuit, _ = same_import(Two(fn), x, y)
    plain, _ = same_import(Two(_OUT_OF_PLACE[fn]), x, y)
    assert "opaque" not in kinds(circuit) and kinds(circuit) == kinds(plain)


def test_an_input_changed_by_an_operator_is_read_changed_after():
    """`x += y` on an input: the circuit's x is the sum from there on (the caller's x is left
    as it was)."""

    def fn(s, x, y):
        x += y
        return x * 2

    x, y = rand64(2, 5, 3), rand64(2, 5, 3, seed=1)
    circuit = from_torch(Two(fn).double(), (x.clone(), y))
    got = ncd_compile(circuit, dtype=torch.float64)(x, y)
    torch.testing.assert_close(got, (x + y) * 2)
    assert kinds(circuit) == ["binary", "scale"]


class PaddedScores(nn.Module):
    """Scores masked in place with a very negative number where the keys are padding, then
    softmaxed by the name they had (lucidrains' `sim.masked_fill_(~mask, -finfo.max)`)."""

    def __init__(self, in_place=True):
        super().__init__()
        self.in_place = in_place

    def forward(self, q, k, mask):
        sim = q @ k.transpose(-1, -2)
        fill = -torch.finfo(sim.dtype).max
        if self.in_place:
            sim.masked_fill_(~mask[:, None, :], fill)
        else:
            sim = sim.masked_fill(~mask[:, None, :], fill)
        return sim.softmax(dim=-1) @ k


def test_a_very_negative_fill_in_place_read_by_a_softmax_is_minus_infinity():
    """As out of place: a where box filling -inf (the number itself is past the language's
    limit), since only the softmax reads the changed scores."""
    q, k = rand64(2, 4, 8), rand64(2, 6, 8, seed=1)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, 4:] = False
    circuit, _ = same_import(PaddedScores(), q, k, mask)
    plain, _ = same_import(PaddedScores(in_place=False), q, k, mask)
    assert kinds(circuit) == kinds(plain) and "opaque" not in kinds(circuit)
    assert [b.fill for b in circuit.boxes if b.kind == "where"] == ["-inf"]


def _view_then_iadd(s, x, y):
    z = x * 2
    first = z[:, 0]  # a view of z, read after z changes
    z += y
    return first + z.sum(1)


def _module_under_a_view(s, x, y):
    z = x * 2
    flat = z.view(-1)
    s.relu(z)
    return flat.sum() + y


def _base_of_a_reshaped_view(s, x, y):
    z = x * 2
    torch.relu_(z.view(-1))  # changes the view, and z with it
    return z + y


def _view_overlapping_a_changed_slice(s, x, y):
    z = x * 2
    head = z[:, :3]  # shares the positions 1 and 2 with the slice changed
    torch.relu_(z[:, 1:])
    return head.sum(1) + y.sum(1)


@pytest.mark.parametrize(
    "fn, what, other, reader",
    [
        (_view_then_iadd, r"`\+=`", r"a view of it made before \(node getitem\)", "add"),
        (_module_under_a_view, r"`relu` \(ReLU\(inplace=True\)\)",
         r"a view of it made before \(node view\)", "sum_1"),
        (_base_of_a_reshaped_view, "`torch.relu_`", r"the tensor it is a view of \(node mul\)",
         "add"),
        (_view_overlapping_a_changed_slice, "`torch.relu_`",
         r"a tensor sharing its memory \(node getitem\)", "sum_1"),
    ],
)  # fmt: skip
def test_a_tensor_changed_in_place_under_a_view_read_after_stops_the_import(
    fn, what, other, reader
):
    x, y = rand64(2, 5, 3), rand64(2, 5, 3, seed=1)
    with pytest.raises(TorchImportError, match=rf"{what} changes a tensor in place while "
                       rf"{other} is read after the change \(by node {reader}\)"):  # fmt: skip
        from_torch(Two(fn).double(), (x, y))


def _disjoint_slices(s, x, y):
    z = x * 2
    head, tail = z[:, :2], z[:, 2:]  # head shares none of the elements tail's change writes
    tail.relu_()
    return head.sum(1) + tail.sum(1)


def _advanced_index(s, x, y):
    z = x * 2
    picked = z[:, [0, 2]]  # a copy, not a view
    z += y
    return picked.sum(1) + z.sum(1)


def _eval_dropout(s, x, y):
    z = x * 2
    flat = z.view(-1)
    F.dropout(z, 0.5, training=False, inplace=True)  # changes nothing
    return flat.sum() + y


@pytest.mark.parametrize("fn", [_disjoint_slices, _advanced_index, _eval_dropout],
                         ids=lambda f: f.__name__.strip("_"))  # fmt: skip
def test_memory_shared_but_not_changed_imports(fn):
    """A tensor sharing memory with the changed one, read after, where the change writes none
    of its elements: the circuit's value is the model's."""
    same_import(Two(fn), rand64(2, 5, 3), rand64(2, 5, 3, seed=1))


# -- item assignment, and changes to a slice written back to the tensor it is taken from
def _slice_changed_then_whole_read(s, x, y):
    z = x * 2
    torch.relu_(z[:, 1:])
    return z + y


def _augmented_slice(s, x, y):
    z = x * 2
    z[..., :2] += y[..., :2]
    return z.relu()


def _pieces_into_zeros(s, x, y):
    z = torch.zeros_like(x)
    z[:, 0] = x[:, 1]
    z[:, 2:] = y[:, 2:] * 3
    return z


def _number_then_scaled_slice(s, x, y):
    z = x.clone()
    z[..., 1] = 5.0
    z[:, :, :2] *= 2
    return z + y


def _size_one_broadcast(s, x, y):
    z = x * 1
    z[:, 1:3] = y[:, :1]  # one position repeated along the slice
    return z


def _method_on_a_slice(s, x, y):
    z = x * 1
    v = z[:, 1:3]
    v.mul_(3)
    return z + v.sum(1, keepdim=True)


def _mask_to_number(s, x, y):
    z = x * 2
    z[y > 0.5] = -1.5
    z[z < 0] = 0
    return z


@pytest.mark.parametrize(
    "fn",
    [_slice_changed_then_whole_read, _augmented_slice, _pieces_into_zeros,
     _number_then_scaled_slice, _size_one_broadcast, _method_on_a_slice, _mask_to_number],
    ids=lambda f: f.__name__.strip("_"),
)  # fmt: skip
def test_item_assignment_and_changed_slices_import(fn):
    """`z[i] = v`, `z[i] += v`, a change to a slice of z read as z after, and `z[mask] = c`:
    the compiled import gives the model's outputs and gradients, with no opaque box (a slice
    replaced is a concat of z's other positions and the new values; a mask, a where box)."""
    circuit, _ = same_import(Two(fn), rand64(2, 5, 3), rand64(2, 5, 3, seed=1))
    assert "opaque" not in kinds(circuit)


def test_an_assigned_slice_joins_along_its_own_axis():
    """`z[..., :2] += v`: the new values (an axis of 2) join z's last position along z's
    axis of 3 (`along`: a name is a size, so the two pieces cannot share one)."""
    circuit, _ = same_import(Two(_augmented_slice), rand64(2, 5, 3), rand64(2, 5, 3, seed=1))
    (cat,) = [b for b in circuit.boxes if b.kind == "concat"]
    assert cat.axis == "D" and list(cat.along) == ["x0"] and cat.along["x0"] != "D"


def test_an_assignment_no_box_makes_stops_the_import_saying_so():
    def fn(s, x, y):
        z = x * 2
        z[:, [0, 2]] = y[:, :2]
        return z

    with pytest.raises(TorchImportError, match=r"the item assignment `\[:, \[0, 2\]\] = …` \(to "
                       r"node mul\) has no box.*expected such an index and value"):  # fmt: skip
        from_torch(Two(fn).double(), (rand64(2, 5, 3), rand64(2, 5, 3, seed=1)))


def test_pieces_of_other_sizes_concatenate():
    """torch.cat of pieces whose joined dims differ (4 and 6 features; 1, 8 and 5): one
    concat box, each piece along its own axis, against the model."""

    def fn(s, x, y):
        a = torch.cat([x[..., :4], x[..., 2:8].exp()], -1)
        return a.sum(-1, keepdim=True) + torch.cat([x[..., :1] * 2, y, x[..., 3:]], -1)[..., :8]

    circuit, _ = same_import(Two(fn), rand64(2, 5, 8), rand64(2, 5, 8, seed=1))
    assert "opaque" not in kinds(circuit) and kinds(circuit).count("concat") == 2


def test_an_in_place_op_that_stays_opaque_leaves_the_tensor_it_reads_alone():
    """An in-place form with no box (elu of another alpha) runs as an opaque box on a copy:
    another box reading the same wire reads it unchanged."""

    def fn(s, x, y):
        z = x * 2
        F.elu(z, alpha=0.5, inplace=True)
        return z + y

    x, y = rand64(2, 5, 3), rand64(2, 5, 3, seed=1)
    model = Two(fn).double()
    circuit = from_torch(model, (x, y))
    assert kinds(circuit).count("opaque") == 1
    torch.testing.assert_close(ncd_compile(circuit, dtype=torch.float64)(x, y), model(x, y))


# -- boolean masks combined by logical ops
def _and(s, x, y):
    return torch.where((x > 0) & (y > 0), x, y)


def _or_not(s, x, y):
    return x.masked_fill(~((x > 0) | (y < 0)), 0.0)


def _logical(s, x, y):
    keep = torch.logical_and(x > 0, torch.logical_not(y > 0.5))
    either = torch.logical_or(keep, torch.logical_xor(x < -1, y < -1))
    return torch.where(either, x, y)


def _as_float(s, x, y):
    return ((x > 0) & (y > 0)).float() * x + (x > 1).logical_or(y > 1) * y


def _in_place_mask(s, x, y):
    m = x > 0
    m &= y > 0
    m |= x < -1
    return torch.where(m, x, y)


@pytest.mark.parametrize("fn", [_and, _or_not, _logical, _as_float, _in_place_mask],
                         ids=lambda f: f.__name__.strip("_"))  # fmt: skip
def test_boolean_masks_combined_by_logical_ops_are_boxes(fn):
    x, y = rand64(2, 5, 3), rand64(2, 5, 3, seed=1)
    circuit, _ = same_import(Two(fn), x, y)
    assert "opaque" not in kinds(circuit)


def test_and_or_of_masks_are_drawn_so():
    x, y = rand64(2, 5, 3), rand64(2, 5, 3, seed=1)
    circuit, _ = same_import(Two(_logical), x, y)
    labels = sorted(b.label for b in circuit.boxes if b.kind == "binary")
    assert labels == ["and", "or"]


def test_bitwise_ops_of_integers_stay_opaque():
    """`&` of integer tensors is bitwise, no minimum: an opaque box."""

    class Bits(nn.Module):
        def forward(self, x, i):
            return x * (i & 6)

    x, i = rand64(2, 5), torch.arange(10).view(2, 5)
    circuit = from_torch(Bits().double(), (x, i))
    assert "opaque" in kinds(circuit)
    torch.testing.assert_close(ncd_compile(circuit, dtype=torch.float64)(x, i), x * (i & 6))
