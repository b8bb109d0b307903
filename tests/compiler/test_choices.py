"""compiler/choices.py: the one table of per-device defaults for fused boxes, and the lowering
reading it."""

import pytest

from ncd import gallery
from ncd.compiler import choices
from ncd.compiler.build import to_source


def test_the_table_on_cuda_and_elsewhere():
    assert choices.choose("attention", "cuda") == "torch"
    assert choices.choose("linear_attention", "cuda") == "ncd"
    assert choices.choose("norm", "cuda:0") == "torch"
    assert choices.choose("attention", "cpu") == "ncd"  # not in the table: ncd.ops
    assert choices.choose("conv", "cuda") == "ncd"


def test_an_explicit_choice_wins():
    assert choices.choose("attention", "cuda", "ncd") == "ncd"
    assert choices.choose("linear_attention", "cpu", "torch") == "torch"


def test_an_unknown_choice_is_refused():
    with pytest.raises(ValueError, match="fused: expected one of auto, ncd, torch, found 'x'"):
        choices.choose("attention", "cuda", "x")


def test_the_lowering_reads_the_table(monkeypatch):
    """The generated file is written from a lowering on the meta device: with the table
    saying "torch" for attention there, the attention box becomes SDPA; with "ncd", ncd.ops."""
    c = gallery.get("multihead_attention")
    monkeypatch.setitem(choices.FASTEST, "attention", {"meta": "torch"})
    assert "softmax_attention" not in to_source(c, rewrites=True)
    monkeypatch.setitem(choices.FASTEST, "attention", {"meta": "ncd"})
    assert "softmax_attention" in to_source(c, rewrites=True)
