"""The one error class of drawing."""

from __future__ import annotations

from ..errors import NcdError


class RenderError(NcdError):
    """A drawing cannot be made or written: an unknown theme, format or collapse name, an
    unwritable path, or a missing Graphviz `dot`. Says what was asked and what is possible."""

    def __init__(self, message: str, expected: str = "", found: str = "", hint: str = ""):
        text = message
        if expected or found:
            text += f" (expected {expected or '?'}, found {found or '?'})"
        if hint:
            text += f"; {hint}"
        super().__init__(text)
        self.expected, self.found, self.hint = expected, found, hint
