"""A compiled circuit with packed sequences refuses offsets that do not describe a packing of
its T positions (unsorted, not from 0, not ending at T) with one ValueError naming them,
instead of a wrong result or an error from deep inside PyTorch; an empty sequence is part of
a packing and adds nothing."""

from __future__ import annotations

import pytest
import torch

from ncd import gallery
from ncd.compiler import compile as ncd_compile

BAD = {
    "unsorted": [0, 30, 20, 48],
    "not_from_0": [3, 16, 30, 48],
    "past_T": [0, 16, 30, 60],
    "short_of_T": [0, 16, 30, 40],
}
ENTRIES = ["deltanet_packed", "scatterformer_attention"]  # x [T, D] with D = H K = 16


@pytest.fixture(scope="module")
def modules():
    torch.manual_seed(0)
    return {n: ncd_compile(gallery.get(n), sizes={"T": 48}) for n in ENTRIES}


@pytest.mark.parametrize("name", ENTRIES)
@pytest.mark.parametrize("case", list(BAD))
def test_bad_offsets_are_refused_by_name(modules, name, case):
    with pytest.raises(ValueError, match=r"offsets: expected non-decreasing from 0 to T=48"):
        modules[name](torch.randn(48, 16), torch.tensor(BAD[case]))


@pytest.mark.parametrize("name", ENTRIES)
def test_an_empty_sequence_adds_nothing(modules, name):
    x = torch.randn(48, 16)
    with torch.no_grad():
        torch.testing.assert_close(
            modules[name](x, torch.tensor([0, 16, 16, 48])),
            modules[name](x, torch.tensor([0, 16, 48])),
        )
