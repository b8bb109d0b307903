"""The importer on five models a new user wrote (tests/compiler/trial_models.py), each against
the module (outputs and gradients, float64): what each imports as, and how it reads when
drawn (axis names, boxes a reader would not expect)."""

from __future__ import annotations

import warnings

import pytest
import torch
from einops import rearrange, repeat
from torch import nn

from ncd.compiler import compile as ncd_compile
from ncd.compiler import from_torch
from ncd.compiler.errors import TorchImportError

from . import trial_models as tm
from .helpers import check_import, rand64, randomise, same_import


def kinds(circuit) -> list[str]:
    return [b.kind for b in circuit.boxes]


def _mask(b, s, pad=3):
    mask = torch.ones(b, s, dtype=torch.bool)
    mask[0, s - pad :] = False
    return mask


def test_perceiver_cross_attention_imports_whole_and_keeps_the_batch_free():
    """The latents repeated over the batch (`repeat(latents, "n d -> b n d", b=b)`), the key
    padding mask repeated over the heads into `(b h)` and filled in place with -finfo.max:
    no opaque box, and the batch (read as `data.shape[0]`) is not fixed to the example's."""
    model = randomise(tm.PerceiverCrossAttention())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        circuit, _ = same_import(model, rand64(2, 10, 24), _mask(2, 10))
    assert "opaque" not in kinds(circuit)
    assert [b.fill for b in circuit.boxes if b.kind == "where"] == ["-inf"]
    other = ncd_compile(circuit, dtype=torch.float64, sizes={"B": 3, "T": 7}).eval()
    check_import(model, other, (rand64(3, 7, 24, seed=2), _mask(3, 7, pad=2)))


class Repeats(nn.Module):
    """einops' repeat adding letters: over a new leading axis of a size read off the input,
    into a merged group beside another letter, with a unit group."""

    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.randn(5, 3))

    def forward(self, x):  # x: [B, N=5, D=3]
        t = repeat(self.table, "n d -> b n d", b=x.shape[0])
        wide = repeat(x, "b n d -> b n (r d)", r=2)  # [B, N, 2D]
        unit = repeat(x.sum(-1), "b n -> (b h) () n", h=4)  # [4B, 1, N]
        y = rearrange(unit, "(b h) o n -> b n (h o)", h=4).sum(-1, keepdim=True)
        return (t + x) * y + wide[..., :3] * wide[..., 3:]


def test_einops_repeat_with_new_letters_is_boxes():
    model = Repeats()
    circuit, _ = same_import(model, rand64(2, 5, 3))
    assert "opaque" not in kinds(circuit)
    ones = [b for b in circuit.boxes if b.kind == "constant" and b.value == "1"]
    assert sorted(len(b.axes) for b in ones) == [1, 1, 1] and tuple(ones[0].axes) == ("B",)
    compiled = ncd_compile(circuit, dtype=torch.float64, sizes={"B": 3}).eval()
    check_import(model, compiled, (rand64(3, 5, 3, seed=1),))


def test_dit_block_with_ada_ln_zero_imports_whole():
    """The six modulations of one linear map's output chunked, each broadcast over tokens by
    `unsqueeze(1)`; the zero-initialised modulation randomised so the block is not the
    identity."""
    circuit, _ = same_import(randomise(tm.DiTBlock()), rand64(2, 16, 32), rand64(2, 32, seed=1))
    assert "opaque" not in kinds(circuit) and "attention" in kinds(circuit)
    assert [b.kind for b in circuit.boxes if b.name == "chunk"] == ["split"]
    # the model's own permute and transpose only: a gate times the block's output
    # (`gate.unsqueeze(1) * attn(...)`) is a product of the output by the gate, in its order
    assert [b.name for b in circuit.boxes if b.kind == "permute"] == [
        "permute_permute", "transpose_transpose"]  # fmt: skip


def test_retention_in_parallel_form_imports_whole():
    """The decay gamma^(n-m) from `torch.arange` masked by `~tril(ones)`: positions, a power
    and a causal mask box; the group norm over the heads' features."""
    model = randomise(tm.MultiScaleRetention())
    circuit, _ = same_import(model, rand64(2, 12, 32))
    got = kinds(circuit)
    assert "opaque" not in got and {"positions", "mask", "groupnorm"} <= set(got)
    compiled = ncd_compile(circuit, dtype=torch.float64, sizes={"T": 7}).eval()
    check_import(model, compiled, (rand64(2, 7, 32),))


def _axes(circuit) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The input's axes and the output's."""
    checked = circuit.check()
    return tuple(circuit.inputs[0].axes), tuple(a.name for a in checked.outputs["y"].axes)


def test_a_convnext_block_keeps_the_channels_name_through_the_block():
    """The depthwise conv (as many channels out as in) and the pointwise map back to the
    width, read channels-last, give the residual's C: the block's output is its input's
    axes, with no rename before the residual add (it drew O, then F, then `F ↦ C`)."""
    circuit, _ = same_import(randomise(tm.ConvNeXtBlock()), rand64(2, 32, 14, 14))
    assert _axes(circuit) == (("B", "C", "Y", "X"), ("B", "C", "Y", "X"))
    assert "rename" not in kinds(circuit)


def test_window_attention_merges_its_windows_back_into_the_image_axes():
    """A channels-last image `[B, H, W, C]` (two equal spatial sizes) is named so; the
    window partition splits Y and X into their parts, Y_1 Y_2 and X_1 X_2 (they were named
    as heads, H2 K2 and H3 K3), and the merge putting the windows back gives Y and X again
    (it gave new names); the heads are H, their features K; the heads merged back are the
    image's C, as is the projection's output (it was a new axis Q)."""
    circuit, _ = same_import(randomise(tm.WindowAttention()), rand64(2, 8, 8, 32))
    x, y = _axes(circuit)
    assert x == ("B", "Y", "X", "C") and y == ("B", "Y", "X", "C")
    splits = {b.axis: b.into for b in circuit.boxes if b.kind == "split_axis"}
    assert splits["Y"] == ("Y_1", "Y_2") and splits["X"] == ("X_1", "X_2")
    named = {a for into in splits.values() for a in into}
    assert sorted(a for a in named if a[0] in "HK") == ["H", "K"]


@pytest.mark.parametrize("model", [tm.ConvNeXtBlock, tm.WindowAttention])
def test_channels_last_blocks_import_whole(model):
    x = rand64(2, 32, 14, 14) if model is tm.ConvNeXtBlock else rand64(2, 8, 8, 32)
    circuit, _ = same_import(randomise(model()), x)
    assert "opaque" not in kinds(circuit)
    if model is tm.ConvNeXtBlock:  # the two permutes of the code, none after `gamma * x`
        assert kinds(circuit).count("permute") == 2


def test_a_forward_taking_star_args_is_refused_with_what_to_write():
    """`forward(self, *xs)`, as a quick wrapper is written: one clear error (it said the code
    "takes the length of a tensor" at node `_xs`, "torch.op")."""

    class Wrapper(nn.Module):
        def forward(self, *xs):
            return xs[0] * xs[1]

    with pytest.raises(TorchImportError, match=r"Wrapper.forward takes its inputs as \*xs: "
                       r"ncd names each input after its parameter \(expected forward\(self, "
                       r"x, y, ...\), found forward\(..., \*xs\)"):  # fmt: skip
        from_torch(Wrapper(), (torch.randn(2, 3), torch.randn(2, 3)))

    class Extra(nn.Module):  # (extra arguments no example input reaches: as before)
        def forward(self, x, *rest):
            return x * 2

    assert kinds(from_torch(Extra(), (torch.randn(2, 3),))) == ["scale"]
