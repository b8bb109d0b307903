"""The `normalize` box (p = 2) lowered to ncd.ops.l2_norm, the lowering CUDA takes where the
compiler's choices pick ncd's row kernels (`fused="ncd"`): run on CPU tensors, where
ncd.ops.l2_norm is F.normalize over the last axis, it gives the default lowering's outputs and
gradients, the box's axis moved last and back wherever it stands. The kernel itself is
tested against F.normalize in tests/ops/test_norm.py."""

from __future__ import annotations

import pytest

from ncd import ops
from ncd.circuits.builder import Builder
from ncd.compiler import lowerings
from ncd.gallery.linear_family import deltanet_block

from .helpers import same_with_rewrites


def _l2_kernels(monkeypatch):
    def runs(L, kind="norm"):
        return kind == "l2_norm"

    return lambda: monkeypatch.setattr(lowerings, "runs_norm_kernels", runs)


def _targets(module):
    return {n.target for n in module.graph.nodes}


def test_deltanet_block_normalises_queries_and_keys_with_the_kernel(monkeypatch):
    fused = same_with_rewrites(deltanet_block(), True, patch=_l2_kernels(monkeypatch))
    nodes = [n for n in fused.graph.nodes if n.target is ops.l2_norm]
    assert len(nodes) == 2 and all(n.kwargs["eps"] == 1e-6 for n in nodes)


@pytest.mark.parametrize("layout", ["B K T", "K B T", "B T K"])
def test_the_axis_is_moved_last_and_back(layout, monkeypatch):
    b = Builder("l2", sizes={"B": 2, "T": 3, "K": 5})
    x = b.input("x", layout)
    b.output("y", b.normalize(b.scale(x, 2), "K", name="l2"))
    b.output("z", b.normalize(x, "K", p=1, name="l1"))  # p = 1 keeps F.normalize
    fused = same_with_rewrites(b.build(), True, patch=_l2_kernels(monkeypatch), exact=False)
    assert ops.l2_norm in _targets(fused)
    l1 = [n for n in fused.graph.nodes if n.kwargs.get("p") == 1.0]
    assert len(l1) == 1
