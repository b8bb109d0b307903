"""Names in generated code: identifiers from user text, einsum letters from axis names.

Box, input and circuit names are free text (anything without '.' or control characters), so
every name that reaches code goes through `Namer.ident` (a legal, unique, harmless identifier)
and every piece of text that reaches a comment through `comment` (printable, one line).
"""

from __future__ import annotations

import keyword
import re
import string

_RESERVED = {
    "self", "torch", "nn", "F", "math", "super", "None", "True", "False", "forward",
    "layer", "outputs", "ncd_ops",
}  # fmt: skip


def _taken_by_modules(name: str) -> bool:
    # A parameter holder named like a Module attribute (`training`, `to`, `graph`) would
    # shadow it, so such names get a trailing underscore.
    import torch  # here, so that the cost model's einsum letters load without torch

    return hasattr(torch.fx.GraphModule, name) or hasattr(torch.nn.Module, name)


def identifier(text: str, default: str = "v") -> str:
    """A legal, non-keyword Python identifier that reads like `text` (`'my box!'` -> `my_box`)."""
    s = re.sub(r"[^0-9A-Za-z_]+", "_", text).strip("_")
    if not s:
        s = default
    if s[0].isdigit():
        s = f"{default}_{s}"
    if keyword.iskeyword(s) or keyword.issoftkeyword(s) or s in _RESERVED or s.startswith("__"):
        s = f"{s}_"
    if _taken_by_modules(s):
        s = f"{s}_"
    return s[:60]


def class_name(text: str) -> str:
    """A CamelCase class name (`transformer_block` -> `TransformerBlock`)."""
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", text) if p]
    s = "".join(p[:1].upper() + p[1:] for p in parts) or "Circuit"
    if s[0].isdigit():
        s = f"C{s}"
    if keyword.iskeyword(s) or s in _RESERVED or s in globals_of_generated():
        s = f"{s}Circuit"
    return s[:60]


class Namer:
    """Hands out unique identifiers within one scope."""

    def __init__(self, taken=()):
        self.taken = set(taken)

    def ident(self, text: str, default: str = "v") -> str:
        base = identifier(text, default)
        name, i = base, 2
        while name in self.taken:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name


def port_ident(box: str, port: str) -> str:
    """The text a result of a box of several results is named from: the box's name and its
    port (`top2_values`, `top2_indices`; `halves_0` for a port numbered 0), for `identifier`."""
    return f"{box}_{port}"


def comment(text: str, limit: int = 80) -> str:
    """Text safe inside a `#` comment: one line, printable characters only (others escaped)."""
    out = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return out[:limit]


def letters(axis_names) -> dict[str, str]:
    """Einsum letters for axis names, read from the names (`B` -> b, `T` -> t, `heads` -> h).

    Falls back to a capital, then to any free letter; torch.einsum has 52 letters in all.
    """
    pool = string.ascii_lowercase + string.ascii_uppercase
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in axis_names:
        if name in out:
            continue
        cands = [name[0].lower(), name[0].upper()]
        cands += [c.lower() for c in name[1:] if c.isalpha()] + list(pool)
        pick = next((c for c in cands if c in pool and c not in used), None)
        if pick is None:
            raise ValueError(f"more than {len(pool)} distinct axes in one circuit")
        out[name] = pick
        used.add(pick)
    return out


def globals_of_generated() -> set[str]:
    """Names a generated file defines at module level (helpers, imports): locals of
    `forward` must not shadow them."""
    from . import runtime

    return {n for n in vars(runtime) if not n.startswith("_")} | {"torch", "F", "nn", "math"}


def scope_names(circuit, order) -> tuple[dict[str, str], dict[str, str]]:
    """Identifiers of a circuit's inputs and boxes (box names name parameter holders, so the
    compiler, the interpreter and the source emitter all take them from here). Inputs are
    locals of `forward`, so they avoid the generated file's global names."""
    namer = Namer(globals_of_generated())
    inputs = {i.name: namer.ident(i.name, "x") for i in circuit.inputs}
    namer.taken -= globals_of_generated()
    return inputs, {b: namer.ident(b, "box") for b in order}
