"""The compiler's errors: one class per phase, all NcdError (the CLI prints them, exit 1)."""

from __future__ import annotations

from ncd.circuits.errors import NcdError


class CompileError(NcdError):
    """A circuit cannot be lowered: says where (box), what was expected and what was found."""

    def __init__(self, where: str, message: str, expected: str = "", found: str = ""):
        text = f"{where}: {message}"
        if expected or found:
            text += f" (expected {expected or '?'}, found {found or '?'})"
        super().__init__(text)
        self.where, self.expected, self.found = where, expected, found


class TorchImportError(NcdError):
    """A PyTorch model cannot be traced or mapped to a circuit."""


class InputError(NcdError, ValueError):
    """A compiled module was called with an input whose shape or dtype does not match the
    circuit: says which input, which axis, what the circuit expects and what was passed."""
