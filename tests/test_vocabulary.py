"""Every box kind has what the checklist of `ncd.circuits.kinds` asks for: a rule in every
registry (or a stated exemption), a case in the shared table (tests/vocabulary.py), and a
circuit in the lowering table (tests/compiler/kinds_table.py)."""

from __future__ import annotations

import pytest

from ncd.circuits.draw.glyphs import GLYPHS, draws
from ncd.circuits.kinds import KINDS, REGISTRIES
from ncd.compiler.cost.rules import RULES
from ncd.compiler.importer import IMPORTS
from ncd.compiler.interpret import INTERPRETERS
from ncd.compiler.lower import LOWERINGS

from .compiler.kinds_table import TABLE, kinds_of
from .vocabulary import CASES

# The registries of the checklist, steps 2 to 6.
CHECKLIST = {
    "drawing": GLYPHS,
    "lowering": LOWERINGS,
    "interpreter rule": INTERPRETERS,
    "cost rule": RULES,
    "importer mapping": IMPORTS,
}


def test_the_checklist_names_every_registry():
    made = {r.aspect: r for r in REGISTRIES}
    assert set(made) == set(CHECKLIST), (
        "a registry the checklist does not name (add it to circuits/kinds/__init__.py and here)"
    )
    assert all(made[a] is r for a, r in CHECKLIST.items())


# Kinds whose importer mapping waits on compiler/importer.py (being split into a package):
# kind -> what maps to it. Delete an entry when the importer maps the kind or exempts it.
AWAITING_IMPORT: dict[str, str] = {}


def test_kinds_awaiting_an_importer_mapping_have_none_yet():
    done = sorted(k for k in AWAITING_IMPORT if k in IMPORTS or k in IMPORTS.exempt)
    assert not done, f"the importer now maps or exempts {done}: delete them from AWAITING_IMPORT"


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_registry_has_the_kind(kind):
    for r in CHECKLIST.values():
        if r is IMPORTS and kind in AWAITING_IMPORT:
            continue
        assert kind in r or kind in r.exempt, (
            f"kind {kind!r} has no {r.aspect}: add {r.decorator}({kind!r}) in {r.where}"
            + (" or state why none exists in its exemptions" if r is IMPORTS else "")
        )


def test_registries_name_only_kinds():
    for r in CHECKLIST.values():
        unknown = sorted(set(r) - set(KINDS))
        assert not unknown, f"{r.where}: {r.decorator} names kinds that do not exist: {unknown}"
        stale = sorted(set(r.exempt) - set(KINDS))
        assert not stale, f"{r.where}: exemptions of kinds that do not exist: {stale}"
        both = sorted(set(r) & set(r.exempt))
        assert not both, f"{r.where}: kinds both exempt and mapped: {both}"


def test_only_the_importer_has_exemptions():
    assert all(not r.exempt for r in CHECKLIST.values() if r is not IMPORTS)


def test_a_kind_is_filed_once():
    before = dict(GLYPHS)
    with pytest.raises(ValueError, match="'opaque' already has a drawing"):
        draws("a_new_kind", "opaque")(lambda b: None)
    assert before == GLYPHS  # nothing filed when one of the kinds is taken
    with pytest.raises(TypeError):
        draws()


def test_every_kind_has_a_case():
    assert set(CASES) == set(KINDS), "kinds without a case in tests/vocabulary.py: " + " ".join(
        sorted(set(KINDS) - set(CASES))
    )


def test_every_kind_is_exercised_by_the_lowering_table():
    covered = set().union(*(kinds_of(f()) for f in TABLE.values()))
    missing = sorted(set(KINDS) - covered)
    assert not missing, f"no circuit in tests/compiler/kinds_table.py uses: {missing}"
