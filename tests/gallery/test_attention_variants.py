"""The attention variants (gallery/attention_variants.py): compiled circuit against the
hand-written references of ref_variants.py (outputs and every gradient, float64) and a short
training run (drawing, cost and the interpreter run over every entry in tests/draw, tests/cost
and tests/compiler)."""

from __future__ import annotations

import pytest

from . import ref_variants as ref

NAMES = [
    "hedgehog_attention",
    "softplus_attention",
    "ecoformer_attention",
    "soft_attention",
    "mom_block",
    "sea_attention",
    "scatterformer_attention",
]


@pytest.mark.parametrize("name", NAMES)
def test_matches_reference(name):
    ref.check_equivalence(name, ref.REFERENCES[name], ref.INPUTS.get(name))


@pytest.mark.parametrize("name", NAMES)
def test_training_lowers_the_loss(name):
    ref.check_training(name, ref.INPUTS.get(name))
