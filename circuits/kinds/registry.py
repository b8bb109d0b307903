"""The one registration idiom of the vocabulary: a decorator that files a rule under kind names.

Every view of a box (its drawing, lowering, interpreter rule, cost rule, importer mapping) is a
`Registry`: a dict kind name -> rule, filled by decorating the rule where it is written:

    DRAWINGS = Registry("drawing", "circuits/draw/glyphs.py", "@draws")
    draws = DRAWINGS.register

    @draws("linear")
    def _linear(b): ...

The kind classes themselves are filed by `@box_kind`. `REGISTRIES` lists every registry that
has been made, so that the vocabulary test can ask each one for every kind in `KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

REGISTRIES: list[Registry] = []
_KIND_CLASSES: list[type] = []


class Registry(dict[str, Any]):
    """Kind name -> the rule one view of the vocabulary has for it.

    `aspect` says what the rule is ("lowering"), `where` the file the rules are written in, and
    `decorator` the decorator that files them. Kinds in `exempt` (kind -> reason) need no rule.
    """

    def __init__(
        self, aspect: str, where: str, decorator: str, exempt: dict[str, str] | None = None
    ):
        super().__init__()
        self.aspect, self.where, self.decorator = aspect, where, decorator
        self.exempt = dict(exempt or {})
        REGISTRIES.append(self)

    def register(self, *kinds: str) -> Callable:
        """Decorator: file the decorated rule under each of `kinds`."""
        if not kinds:
            raise TypeError(f"{self.decorator}(...) needs at least one kind name")

        def add(rule):
            for k in kinds:
                if k in self:
                    raise ValueError(
                        f"{self.where}: kind {k!r} already has a {self.aspect} "
                        f"({self[k].__qualname__}), found a second ({rule.__qualname__})"
                    )
            self.update(dict.fromkeys(kinds, rule))
            return rule

        return add

    def missing(self, kinds) -> list[str]:
        """Kinds of `kinds` that have no rule here and are not exempt."""
        return [k for k in kinds if k not in self and k not in self.exempt]

    def __repr__(self) -> str:
        return f"Registry({self.aspect!r}, {len(self)} kinds)"


def box_kind(cls: type) -> type:
    """Class decorator: a kind of the vocabulary (a `BoxBase` subclass with a literal `kind`).
    `ncd.circuits.kinds.KINDS` is built from every class so decorated."""
    field = getattr(cls, "model_fields", {}).get("kind")
    if field is None or not isinstance(field.default, str):
        raise TypeError(f"{cls.__name__}: a box kind needs a field `kind: Literal[...] = name`")
    _KIND_CLASSES.append(cls)
    return cls


def kind_classes(families: tuple[str, ...], package: str) -> list[type]:
    """The classes filed by `@box_kind`, ordered by family module (as `families` lists them)
    and, within a module, in the order they are written. The order is the order of the
    discriminated union `Box`, so of the JSON schema."""
    rank = {f"{package}.{f}": i for i, f in enumerate(families)}
    stray = sorted({c.__module__ for c in _KIND_CLASSES} - set(rank))
    if stray:
        raise RuntimeError(
            f"box kinds are defined in {', '.join(stray)}, which the family list of "
            f"{package} does not name; expected one of {', '.join(rank)}"
        )
    order = sorted(range(len(_KIND_CLASSES)), key=lambda i: (rank[_KIND_CLASSES[i].__module__], i))
    return [_KIND_CLASSES[i] for i in order]


__all__ = ["REGISTRIES", "Registry", "box_kind", "kind_classes"]
