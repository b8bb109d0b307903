"""Field descriptions of the spec's models, read from the docstring under each field.

The models do not ask pydantic for them at class creation (`use_attribute_docstrings`), which
reads every class's source through the call stack and costs each command a fifth of a second;
`attach()` reads each module's source once, when the JSON schema or the editor needs them, and
gives pydantic's result: a field's description is the docstring of the class that declares it.
"""

from __future__ import annotations

import ast
import inspect
import sys
from functools import cache


@cache
def _module_docs(module: str) -> dict[str, dict[str, str]]:
    """Class name -> field -> docstring, for the top-level classes of a module."""
    mod = sys.modules.get(module)
    try:
        tree = ast.parse(inspect.getsource(mod))
    except (OSError, TypeError, SyntaxError):
        return {}
    out: dict[str, dict[str, str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        docs, prev = {}, None
        for stmt in node.body:
            if (
                isinstance(stmt, ast.Expr)
                and isinstance(stmt.value, ast.Constant)
                and isinstance(stmt.value.value, str)
                and isinstance(prev, ast.AnnAssign)
                and isinstance(prev.target, ast.Name)
            ):
                docs[prev.target.id] = inspect.cleandoc(stmt.value.value)
            prev = stmt
        out[node.name] = docs
    return out


def _declared_by(cls: type, field: str) -> type | None:
    for base in cls.__mro__:
        if field in getattr(base, "__annotations__", {}):
            return base
    return None


_attached = False


def attach() -> None:
    """Fill in every spec model's field descriptions (once; later calls return at once)."""
    global _attached
    if _attached:
        return
    from .circuit import Circuit, Input, Output
    from .draw.glyphs import LABELS
    from .kinds import KINDS
    from .kinds.base import BoxBase

    for cls in [BoxBase, *KINDS.values(), Input, Output, Circuit]:
        changed = False
        for name, info in cls.model_fields.items():
            owner = _declared_by(cls, name)
            if info.description is not None or owner is None or "." in owner.__qualname__:
                continue
            doc = _module_docs(owner.__module__).get(owner.__qualname__, {}).get(name)
            if doc is not None:
                info.description = doc
                changed = True
        # Each kind's drawing makes its own use of a label: said after what all kinds share.
        label = cls.model_fields.get("label")
        if cls is not BoxBase and label is not None and cls.model_fields["kind"].default in LABELS:
            shared = label.description.split("; what the drawing makes")[0]
            label.description = f"{shared}. {LABELS[cls.model_fields['kind'].default]}"
            changed = True
        if changed and cls is not BoxBase:
            cls.model_rebuild(force=True)
    _attached = True
