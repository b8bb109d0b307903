"""JSON in and out, and the JSON Schema. Hostile input gets a SchemaError, never a crash.

Nothing from a spec is ever evaluated, unpickled or imported: JSON is parsed by the standard
library after a size and nesting check, then validated by the pydantic schema.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pydantic

from .circuit import Circuit
from .errors import SchemaError, pydantic_problem
from .limits import MAX_INT_DIGITS, MAX_JSON_NESTING, MAX_PROBLEMS_SHOWN, MAX_SPEC_BYTES

MAX_BYTES = MAX_SPEC_BYTES
MAX_NESTING = MAX_JSON_NESTING


def loads(text: str | bytes) -> Circuit:
    """Parse a circuit from JSON text; every schema problem is reported in one SchemaError."""
    data = parse_json(text)
    return from_dict(data)


def load(path: str | Path) -> Circuit:
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise SchemaError(
                f"{path}: file is {size:,} bytes, more than the {MAX_BYTES:,} allowed "
                "(limit MAX_SPEC_BYTES)"
            )
        # at most one byte past the limit: a device or a pipe (size 0 above) may not end
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise SchemaError(
                f"{path}: spec is more than the {MAX_BYTES:,} bytes allowed (limit MAX_SPEC_BYTES)"
            )
    except OSError as e:
        raise SchemaError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return loads(raw)
    except SchemaError as e:
        raise SchemaError(f"{path}: {e}") from None


def parse_json(text: str | bytes) -> Any:
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise SchemaError(
                f"spec is {len(text):,} bytes, more than the {MAX_BYTES:,} allowed "
                "(limit MAX_SPEC_BYTES)"
            )
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SchemaError(f"spec is not UTF-8 text (byte {e.start})") from None
    if len(text) > MAX_BYTES:
        raise SchemaError(
            f"spec is {len(text):,} characters, more than the {MAX_BYTES:,} allowed "
            "(limit MAX_SPEC_BYTES)"
        )
    text = text.removeprefix("\ufeff")  # a UTF-8 byte order mark, as some editors write
    _check_nesting(text)
    try:
        data = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
            parse_int=_int,
            parse_float=_float,
        )
    except json.JSONDecodeError as e:
        msg = e.msg.removesuffix(" at")  # "Invalid control character at": the place follows
        raise SchemaError(f"not valid JSON: {msg} at line {e.lineno}, column {e.colno}") from None
    except RecursionError:
        raise SchemaError(
            f"JSON nested deeper than {MAX_NESTING} (limit MAX_JSON_NESTING)"
        ) from None
    _check_text(data, "spec")
    return data


def _int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise SchemaError(
            f"a number of {digits:,} digits ({text[:12]}…), more than the {MAX_INT_DIGITS} "
            "allowed (limit MAX_INT_DIGITS)"
        )
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise SchemaError(f"the number {text[:24]} is too large for a spec (not finite)")
    return value


def _check_text(data: Any, where: str) -> None:
    """Refuses strings holding lone surrogates (JSON can write them; no file or terminal can
    show them), naming where one is."""
    stack = [(data, where)]
    while stack:
        node, at = stack.pop()
        if isinstance(node, str):
            items = [(node, at)]
        elif isinstance(node, dict):
            items = [(k, f"{at}: a key") for k in node]
            stack += [(v, f"{at}.{k}"[:200]) for k, v in node.items()]
        elif isinstance(node, list):
            stack += [(v, f"{at}[{i}]") for i, v in enumerate(node)]
            items = []
        else:
            items = []
        for s, at_s in items:
            try:
                s.encode("utf-8")
            except UnicodeEncodeError as e:
                raise SchemaError(
                    f"{_safe(at_s)}: text with a lone surrogate ({ascii(s[e.start])}) at "
                    f"character {e.start + 1}"
                ) from None


def _safe(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _printable(text: str) -> str:
    """`text` with every character a terminal would not show as itself escaped (`\\u202e`)."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _check_nesting(text: str) -> None:
    depth, in_str, esc = 0, False, False
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_NESTING:
                raise SchemaError(
                    f"JSON nested deeper than {MAX_NESTING} (at character {i:,}; "
                    "limit MAX_JSON_NESTING)"
                )
        elif ch in "]}":
            depth -= 1


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise SchemaError(f"key {_safe(k[:40])!r} appears twice in one object")
        out[k] = v
    return out


def _no_constant(name):
    raise SchemaError(f"{name} is not allowed in a spec")


def from_dict(data: Any) -> Circuit:
    if not isinstance(data, dict):
        raise SchemaError(f"a circuit spec is a JSON object, found {type(data).__name__}")
    try:
        return Circuit.model_validate(data)
    except pydantic.ValidationError as e:
        raise SchemaError(_explain(e, data)) from None
    except RecursionError:
        raise SchemaError("spec nested too deeply") from None


# The limit behind each field whose length the schema bounds (circuits/limits.py).
_LIMITS = {
    "boxes": "MAX_BOXES", "inputs": "MAX_PORTS", "outputs": "MAX_PORTS",
    "subcircuits": "MAX_SUBCIRCUITS", "axes": "MAX_TABLE", "sizes": "MAX_TABLE",
    "title": "MAX_TEXT", "paper": "MAX_TEXT", "doc": "MAX_DOC", "layout": "MAX_LAYOUT",
}  # fmt: skip


def _limit(e) -> str | None:
    """The limit a too-long field of a circuit (the spec's or a subcircuit's) ran into."""
    loc = e["loc"]
    on_circuit = len(loc) == 1 or (len(loc) >= 3 and loc[-3] == "subcircuits")
    if e["type"] in ("too_long", "string_too_long") and on_circuit:
        return _LIMITS.get(str(loc[-1]))
    return None


def _explain(err: pydantic.ValidationError, data: dict) -> str:
    lines = []
    seen = set()
    for e in err.errors(include_url=False):
        loc = _where(e["loc"], data)
        # a discriminated union reports under the tag; keep one line per place and message
        key = (loc, e["msg"])
        if key in seen:
            continue
        seen.add(key)
        found = e.get("input")
        said = pydantic_problem(e, loc, "" if isinstance(found, dict | list) else _short(found))
        limit = _limit(e)
        lines.append(f"  - {said}" + (f" (limit {limit})" if limit else ""))
        if len(lines) >= MAX_PROBLEMS_SHOWN:
            lines.append(f"  - … and {err.error_count() - len(lines):,} more")
            break
    n = err.error_count()
    return f"spec does not match the circuit schema ({n} problem{'s' * (n != 1)}):\n" + "\n".join(
        lines
    )


def _short(found: Any) -> str:
    """A JSON value as the spec wrote it (true, 5, null), a string quoted; shortened."""
    if isinstance(found, int) and not isinstance(found, bool) and found.bit_length() > 64:
        return f"an integer of {len(str(found)):,} digits"
    if isinstance(found, bool | int | float) or found is None:
        return json.dumps(found)
    return repr(_safe(str(found)[:60]))


def _where(loc, data) -> str:
    """`boxes[3].over` becomes `box 'scores' (boxes[3]), field 'over'`."""
    parts, node = [], data
    out = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            node = node[item] if isinstance(node, list) and item < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                out.append(f"'{_printable(node['name'][:40])}'")
        else:
            if isinstance(node, dict) and node.get("kind") == item:
                continue  # pydantic's step into the union member the box's kind picks
            if isinstance(node, dict):
                node = node.get(item)
            else:
                node = None
            parts.append(("." if parts else "") + str(item))
    where = "".join(parts) or "spec"
    return where + (f" ({', '.join(out)})" if out else "")


def to_dict(circuit: Circuit) -> dict:
    """A compact dict: defaults left out, but every box keeps its `kind` (the union's tag)."""
    data = circuit.model_dump(mode="json", exclude_defaults=True)
    _restore_kinds(circuit, data)
    return data


def _restore_kinds(circuit: Circuit, data: dict) -> None:
    for box, d in zip(circuit.boxes, data.get("boxes", []), strict=True):
        d.pop("kind", None)
        data_box = {"name": d.pop("name"), "kind": box.kind}
        data_box.update(d)
        d.clear()
        d.update(data_box)
    for name, sub in circuit.subcircuits.items():
        _restore_kinds(sub, data["subcircuits"][name])


def dumps(circuit: Circuit, indent: int | None = 2) -> str:
    return json.dumps(to_dict(circuit), indent=indent, ensure_ascii=False)


def save(circuit: Circuit, path: str | Path) -> None:
    """Write atomically, so an error never leaves a half-written spec behind."""
    from .atomic import write_atomic

    write_atomic(path, dumps(circuit) + "\n")


def json_schema() -> dict:
    """JSON Schema of a circuit spec (every box kind is a member of the `boxes` union)."""
    from .fielddocs import attach

    attach()
    return Circuit.model_json_schema()
