"""The gated / linear-recurrence entries of the gallery against hand-written references from
their papers (tests/gallery/ref_recurrent.py), and the decoder-only transformer's causality."""

from __future__ import annotations

import torch

from ncd import gallery
from ncd.compiler import compile as ncd_compile


def test_transformer_logits_at_a_position_ignore_later_tokens():
    """Decoder-only: changing the last token moves no logit before the last position."""
    model = ncd_compile(gallery.get("transformer"), dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 50, (2, 16), generator=gen)
    later = tokens.clone()
    later[:, -1] = (tokens[:, -1] + 1) % 50
    a, b = model(tokens), model(later)
    torch.testing.assert_close(a[:, :-1], b[:, :-1], rtol=0, atol=1e-12)
    assert (a[:, -1] - b[:, -1]).abs().max() > 1e-3  # the last position does see it
