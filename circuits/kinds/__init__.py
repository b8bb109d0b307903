"""The closed vocabulary of box kinds: `KINDS` (kind name -> class) and `Box`, their union.

Everything a kind needs is filed under its name by a decorator, each in the file where that
view of the vocabulary is written (the idiom: `ncd.circuits.kinds.registry.Registry`).

Adding a box kind, in order:

1. The class, in the module of its family here (`learned.py`, `rearrange.py`, ...; a new
   family module is also added to `FAMILIES` below), decorated `@box_kind`. It holds
   `kind: Literal["name"] = "name"`, typed parameters each with a docstring, the shape rule
   `infer(ins, ctx)`, and where they differ from `BoxBase`: `ports()`, `params()` (learned
   tensors), `acts_on()`, `broadcasts` (False where the operation couples the axes it does not
   name), `family` (drawing colour and editor palette section), `learned`, and `is_learned()`
   where an option decides whether the box learns anything (a norm's `affine`).
   Element types are `ncd.circuits.types.Dtype` / `FloatDtype` (the one list, `DTYPES`).
   A Builder shorthand (`circuits/builder.py`) is optional: `b.box("name", ...)` makes any kind.
2. Its drawing: `@draws("name")` in `circuits/draw/glyphs.py` (the pictogram docs/notation.md
   gives it).
3. Its lowering to PyTorch: `@lowers("name")` in `compiler/lowerings.py`.
4. Its interpreter rule (plain PyTorch by axis names, sharing no code with the lowering):
   `@interprets("name")` in `compiler/interpret.py`.
5. Its cost rule: `@costs("name")` in the module of its family in `compiler/cost/rules/`; an
   elementwise kind is also listed in `POINTWISE` (`rules/common.py`), a kind whose output is a
   view of its input in `ALIAS_KINDS` there.
6. Its importer mapping, where a PyTorch layer or function maps to it: the mapping in
   `compiler/importer/` (the module of its family of ops), and the kind named in the
   `@imports(...)` of the method that makes it; where none does, an entry with the reason in
   the `exempt` of `IMPORTS` (`compiler/importer/tables.py`).
7. Its editor form: nothing to write; `widgets/forms.py` builds it from the class's fields
   and docstrings (a new `family` goes into `FAMILY_ORDER` there).
8. Its test case: one entry in `tests/vocabulary.py` (`CASES`: inputs, the builder call, the
   output axes by hand, the text its drawing shows, and form values where the gallery has no
   such box); kinds with options also get circuits in `tests/compiler/kinds_table.py`.

`tests/test_vocabulary.py` then asks every registry (`REGISTRIES`) for every kind and the
vocabulary tests run the case through every view: a step left out fails by name.
"""

from importlib import import_module
from typing import Annotated, Union

from pydantic import Field

from .base import BoxBase, Context
from .elementwise import BINARY, UNARY
from .registry import REGISTRIES, Registry, box_kind, kind_classes

# The family modules, in the order their kinds are listed in KINDS (and in the JSON schema);
# within a module, kinds are listed in the order they are written.
FAMILIES = (
    "learned",
    "contraction",
    "elementwise",
    "normalise",
    "reduce",
    "rearrange",
    "spatial",
    "fused",
    "structure",
    "routing",
)
for _family in FAMILIES:
    import_module(f".{_family}", __name__)  # runs the @box_kind decorators
_CLASSES = kind_classes(FAMILIES, __name__)

KINDS: dict[str, type[BoxBase]] = {c.model_fields["kind"].default: c for c in _CLASSES}

Box = Annotated[Union[tuple(_CLASSES)], Field(discriminator="kind")]  # noqa: UP007

# The classes by name too (`from ncd.circuits.kinds import Linear`).
globals().update({c.__name__: c for c in _CLASSES})

__all__ = [
    "BINARY",
    "FAMILIES",
    "KINDS",
    "REGISTRIES",
    "UNARY",
    "Box",
    "BoxBase",
    "Context",
    "Registry",
    "box_kind",
    *[c.__name__ for c in _CLASSES],
]
