"""One error family for the whole of ncd, in layers: schema, building, validation.

Every error says where (circuit, box, port), what was expected and what was found. The root
class lives here because `circuits` imports nothing else of ours; `ncd.NcdError` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass


class NcdError(Exception):
    """Base of every error ncd raises on purpose. The CLI prints these without a traceback."""


class SchemaError(NcdError):
    """A spec (JSON or dict) does not match the circuit schema."""


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
        if self.expected or self.found:
            text += f" (expected {self.expected or '?'}, found {self.found or '?'})"
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

    def __init__(self, message: str, port: str = "", expected: str = "", found: str = ""):
        super().__init__(message)
        self.message = message
        self.port = port
        self.expected = expected
        self.found = found


class ScriptError(NcdError):
    """Builder code read as text (`ncd.circuits.script.from_script`) that cannot be read or
    built: `line` and `col` (both from 1) say where, the message what was expected and found."""

    def __init__(self, message: str, line: int, col: int = 1):
        self.message = message
        self.line = line
        self.col = col
        super().__init__(f"line {line}, column {col}: {message}")
