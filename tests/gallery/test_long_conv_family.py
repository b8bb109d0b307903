"""The Hyena operator (gallery/long_conv_family.py) against references.hyena_block, written as
safari's HyenaOperator computes it, at sizes other than the entry's (test_gallery_references
checks its own): odd lengths, whose FFT is not a power of two's, and few channels; and a short
training run."""

from __future__ import annotations

import pytest
import torch

from . import ref_variants as ref
from .references import hyena_block


@pytest.mark.parametrize(
    "sizes", [{"B": 3, "T": 37, "D": 5, "O": 7}, {"B": 1, "T": 100, "D": 2, "O": 4}]
)
def test_matches_safari_at_other_sizes(sizes):
    def inputs(checked, gen):
        u = torch.randn(sizes["B"], sizes["T"], sizes["D"], generator=gen, dtype=torch.float64)
        return {"u": u.requires_grad_()}

    ref.check_equivalence("hyena_block", hyena_block, inputs, sizes=sizes)


def test_training_lowers_the_loss():
    ref.check_training("hyena_block")
