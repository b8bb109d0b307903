"""What the Studio says when it refuses, and the guard that keeps its callbacks from raising.

A refused edit is said as what was tried (`could not add x: the circuit is unchanged`), never
as what would have been done (`_tried`); a widget callback shows its error in the messages
panel instead of raising (`_guarded`); the status line says which ports of a box read nothing
yet (`_open_note`). Shared by every part of the Studio (widgets/studio.py lists them).
"""

from __future__ import annotations

import functools

from ncd.circuits.errors import SchemaError

from . import panels

# A refused edit says what was tried, not what would have been done: `added x` -> `add x`.
_TRIED = {
    "added": "add", "changed": "change", "wired": "wire", "deleted": "delete",
    "removed": "remove", "spliced": "splice", "renamed": "rename", "loaded": "load",
    "applied": "apply", "edited": "edit", "set": "set", "opened": "open",
}  # fmt: skip


def _tried(what: str) -> str:
    """`added linear` -> `add linear`; `output y <- h` -> `set output y <- h`."""
    verb, _, rest = what.partition(" ")
    if verb in _TRIED:
        return f"{_TRIED[verb]} {rest}".strip()
    if verb == "output":
        return f"set {what}"
    return f"make the edit ({what})"


def _guarded(method):
    """A callback that shows its error in the messages panel instead of raising."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as e:  # noqa: BLE001 - a widget callback must never raise
            what = method.__name__.strip("_").replace("_", " ")
            self._show(panels.problems_of(e), f"could not {what}: the circuit is unchanged", False)
            return None

    return run


def _need_axes(name: str, axes: str) -> None:
    """An input typed in the editor names its axes: an empty field is a forgotten one more
    often than a scalar (a scalar input is written in the text view: `b.input("s", "")`)."""
    if not axes.strip():
        raise SchemaError(
            f"input '{name or '?'}': no axes given (expected axis names such as B T D, found none)"
        )


def _open_note(opened: dict[str, list[str]]) -> str:
    """What the status line says of boxes whose ports read nothing yet."""
    parts = [f"{b}'s port{'s' if len(p) > 1 else ''} {' '.join(p)}" for b, p in opened.items()]
    many = len(opened) > 1 or len(next(iter(opened.values()))) > 1
    return (
        f"{', '.join(parts)} read{'' if many else 's'} nothing yet: drag a value onto "
        f"{'each' if many else 'it'} (drawn as a loose end; Cost, Code and export wait for it)"
    )
