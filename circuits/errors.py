"""One error family for the whole of ncd, in layers: schema, building, validation.

Every error says where (circuit, box, port), what was expected and what was found. The root
class lives here because `circuits` imports nothing else of ours; `ncd.NcdError` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


class NcdError(Exception):
    """Base of every error ncd raises on purpose. The CLI prints these without a traceback."""


class SchemaError(NcdError):
    """A spec (JSON or dict) does not match the circuit schema. `problems`: the located
    problems it holds, when it was made from pydantic's errors (`schema_error`)."""

    problems: tuple[Problem, ...] | list[Problem] = ()


class SizeError(NcdError):
    """A size expression cannot be parsed, or sizes are missing, unbound or out of range."""


class BuildError(NcdError):
    """The Python builder was asked for something that cannot be built; raised at that line."""


@dataclass(frozen=True)
class Problem:
    """One located problem found by validation."""

    where: str  # "box 'scores', port 'b'" or "circuit" or "output 'y'"
    message: str
    expected: str = ""
    found: str = ""
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}"
        said = [f"expected {self.expected}" if self.expected else "",
                f"found {self.found}" if self.found else ""]  # fmt: skip
        if self.expected or self.found:
            text += f" ({', '.join(x for x in said if x)})"
        if self.hint:
            text += f"; {self.hint}"
        return text


class ValidationError(NcdError):
    """A circuit is ill-formed. Holds every problem found, not only the first."""

    def __init__(self, circuit: str, problems: list[Problem]):
        self.circuit = circuit
        self.problems = list(problems)
        from .limits import MAX_PROBLEMS_SHOWN

        n = len(self.problems)
        lines = [f"circuit '{circuit}' has {n:,} problem{'s' if n != 1 else ''}:"]
        lines += [f"  - {p}" for p in self.problems[:MAX_PROBLEMS_SHOWN]]
        if n > MAX_PROBLEMS_SHOWN:
            lines.append(f"  - … and {n - MAX_PROBLEMS_SHOWN:,} more")
        super().__init__("\n".join(lines))


class ShapeProblem(Exception):
    """Raised inside a shape rule; the validator adds the box name and collects it."""

    def __init__(
        self, message: str, port: str = "", expected: str = "", found: str = "", hint: str = ""
    ):
        super().__init__(message)
        self.message = message
        self.port = port
        self.expected = expected
        self.found = found
        self.hint = hint
        """What to do about it, where the rule can tell (`Problem.hint`)."""


class ScriptError(NcdError):
    """Builder code read as text (`ncd.circuits.script.from_script`) that cannot be read or
    built: `line` and `col` (both from 1) say where, the message what was expected and found."""

    def __init__(self, message: str, line: int, col: int = 1):
        self.message = message
        self.line = line
        self.col = col
        super().__init__(f"line {line}, column {col}: {message}")


# ---- pydantic's errors in the user's terms ---------------------------------------------------
# What a field of each type takes, by the prefix of pydantic's error type (`int_parsing`).
_TAKES = {
    "int": "a whole number", "float": "a number", "bool": "true or false", "string": "text",
    "list": "a list", "tuple": "a list", "dict": "a mapping (key=value)",
}  # fmt: skip
FOUND_SHOWN = 60  # characters of a value found that a message quotes


def schema_problems(err, where: str = "") -> list[Problem]:
    """A pydantic ValidationError raised while making one part of a circuit (`where`: `input
    'x'`, `box 'q_proj' (linear)`; empty: the circuit) as located problems in the user's
    terms: the field and item (`field 'axes', item 3`, not pydantic's `axes.2`), what the
    field takes as expected (not `Value error, ...` or `Input should be ...`), the value
    found. The one translation of pydantic's errors for messages a person reads."""
    out = []
    for e in err.errors(include_url=False):
        place = ", ".join(x for x in (where, field_words(e["loc"])) if x) or "circuit"
        out.append(pydantic_problem(e, place))
    return out


def schema_error(err, where: str = "", hint: str = "") -> SchemaError:
    """`schema_problems(err, where)`, each with `hint` (how to fix it), as one SchemaError
    holding them (`.problems`)."""
    problems = [replace(p, hint=hint) for p in schema_problems(err, where)]
    error = SchemaError("\n".join(str(p) for p in problems))
    error.problems = problems
    return error


def field_words(loc) -> str:
    """A pydantic location as a person names it: `('axes', 2)` -> `field 'axes', item 3`,
    `('mapping', 'T', '[key]')` -> `field 'mapping', key 'T'` (the key is wrong),
    `('mapping', 'T')` -> `field 'mapping', entry 'T'` (its value is)."""
    parts: list[str] = []
    for k, item in enumerate(loc):
        if item == "[key]":
            continue
        if isinstance(item, int):
            parts.append(f"item {item + 1}")
        elif k == 0:
            parts.append(f"field '{item}'")
        else:
            key = k + 1 < len(loc) and loc[k + 1] == "[key]"
            parts.append(f"{'key' if key else 'entry'} '{item}'")
    return ", ".join(parts)


def pydantic_problem(error: dict, where: str, found: str | None = None) -> Problem:
    """One of pydantic's errors (an item of `ValidationError.errors()`) at `where`: what was
    wrong, what the field takes, and the value found (`found`: as the caller shows values,
    e.g. as JSON; by default Python's repr, shortened)."""
    kind, ctx = error["type"], error.get("ctx") or {}
    value = error.get("input")
    if found is None:
        found = repr(value)
        if len(found) > FOUND_SHOWN:
            found = found[: FOUND_SHOWN - 1] + "…"
    if kind == "missing":
        return Problem(where, "required", "a value", "none")
    if kind == "extra_forbidden":
        return Problem(where, "no such field", found=found)
    if kind in ("value_error", "assertion_error"):  # the rule our validator states
        rule = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        return Problem(where, rule, found="" if "found " in rule else found)
    if kind == "literal_error":
        return Problem(where, "not one of the choices", ctx.get("expected", ""), found)
    if kind == "union_tag_invalid":
        tag = ctx.get("tag", "")
        return Problem(where, "unknown kind", ctx.get("expected_tags", ""), repr(tag))
    unit = "characters" if kind.startswith("string") else "items"
    size = len(value) if hasattr(value, "__len__") else ctx.get("actual_length", "?")
    if kind in ("string_too_long", "too_long"):
        return Problem(where, "too long", f"at most {ctx.get('max_length')} {unit}",
                       f"{size} {unit}")  # fmt: skip
    if kind in ("string_too_short", "too_short"):
        return Problem(where, "too short", f"at least {ctx.get('min_length')} {unit}",
                       f"{size} {unit}")  # fmt: skip
    takes = _TAKES.get(kind.split("_")[0])
    if takes and kind.endswith(("_type", "_parsing")):
        return Problem(where, "wrong type", takes, found)
    return Problem(where, error["msg"], found=found)
