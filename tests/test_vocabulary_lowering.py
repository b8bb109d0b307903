"""The compiler's view of the vocabulary: every kind has a lowering, an interpreter rule, and
an entry in the per-kind equivalence table (tests/compiler/test_kinds.py)."""

from __future__ import annotations

import pytest

from ncd.circuits.kinds import KINDS
from ncd.compiler.interpret import _Run
from ncd.compiler.lower import LOWERINGS

from .compiler.kinds_table import TABLE, kinds_of


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_kind_lowers(kind):
    assert kind in LOWERINGS, f"kind {kind!r} has no lowering (compiler/lower.py)"
    assert hasattr(_Run, f"k_{kind}"), f"kind {kind!r} has no interpreter rule"


def test_every_kind_is_exercised_by_the_table():
    covered = set().union(*(kinds_of(f()) for f in TABLE.values()))
    missing = sorted(set(KINDS) - covered)
    assert not missing, f"no circuit in tests/compiler/kinds_table.py uses: {missing}"
