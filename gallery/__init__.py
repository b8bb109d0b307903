"""The gallery: architectures from the NCD paper and the efficiency papers, one circuit each.

Entries are registered by name; `get(name)` builds the circuit (builder code is the source,
so a gallery circuit is always valid against the current language).

Each builder's docstring has one paragraph starting `Implements:` that names the entry's paper
and the equations the circuit implements: by the paper's equation number where it is known
from the paper, otherwise written out in full with its section where known (no number is
cited that was not read in the paper). The gallery page (`ncd gallery`) shows that paragraph
as the equations the entry implements; tests/gallery/test_docstrings.py checks that every
entry has one.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from ncd.circuits.circuit import Circuit
from ncd.circuits.errors import NcdError


@dataclass(frozen=True)
class Entry:
    name: str
    title: str
    paper: str
    build: Callable[[], Circuit]


ENTRIES: dict[str, Entry] = {}


def entry(name: str, title: str, paper: str):
    """Register a builder function as gallery entry `name`."""

    def register(fn: Callable[[], Circuit]):
        ENTRIES[name] = Entry(name, title, paper, fn)
        return fn

    return register


def names() -> list[str]:
    return list(ENTRIES)


class UnknownEntry(NcdError, KeyError):
    """`get` of a name the gallery does not have (a KeyError too, as the lookup it is)."""

    def __str__(self) -> str:
        return self.args[0]


def get(name: str) -> Circuit:
    """The circuit of gallery entry `name` (`UnknownEntry`, a KeyError, if there is none)."""
    found = ENTRIES.get(name) if isinstance(name, str) else None
    if found is None:
        close = difflib.get_close_matches(str(name), ENTRIES, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownEntry(f"no gallery entry {name!r}{hint} (`ncd list` names all {len(ENTRIES)})")
    return found.build()


from . import ncd_paper, linear_family, vision, attention_family  # noqa: E402,F401,I001
from . import conv_family, attention_variants, efficiency, efficiency_ops  # noqa: E402,F401,I001
from . import integer, long_conv_family  # noqa: E402,F401,I001
