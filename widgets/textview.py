"""The Studio's text view: the circuit as Builder code (circuits/script.py), editable.

The text follows every edit. Text typed there is taken when the field is left (Tab) if it
reads and validates; otherwise it is not taken, and it stays, with its error under it, until
it is fixed or discarded: meanwhile every edit of the circuit is refused (`_text_waits`),
since the edit would rewrite the text and lose the user's draft.
"""

from __future__ import annotations

import html

from ncd.circuits import io
from ncd.circuits.errors import NcdError

from . import panels
from .notes import _guarded


def _script():
    """circuits/script.py's (to_script, from_script), or None where it is not there."""
    try:
        from ncd.circuits import script
    except ImportError:
        return None
    return script


class TextView:
    """The text view's behaviour (a part of `Studio`, widgets/studio.py)."""

    def _text_pending(self) -> bool:
        """The text view holds text the user typed that is not the circuit's: it was not
        taken (it does not read or validate), and nothing may overwrite it."""
        return _script() is not None and self.text.value != self._text_shown

    def _text_waits(self, attempt: str) -> bool:
        """Refuse an edit of the circuit (`attempt`) while the text view holds text that was not
        taken: the edit would rewrite the text, and the user's draft would be lost. True when
        it was refused (said, with the way out: fix the text, or discard it)."""
        if not self._text_pending():
            return False
        why = self._text_error or "it was not read yet"
        self._show([], f"could not {attempt}: the text view has changes that were not taken "
                   f"({why}); fix them and press Tab to apply them, or press 'discard text "
                   "changes': the circuit is unchanged", ok=False)  # fmt: skip
        self.discard_text_button.layout.display = ""
        return True

    def _refresh_text(self) -> None:
        """The text view shows the circuit, unless it holds text the user typed that was not
        taken: that stays, with its error, until it is fixed or discarded (edits of the
        circuit are refused meanwhile, so the circuit's text is still `_text_shown`)."""
        script = _script()
        if script is None or self._text_pending():
            return
        try:
            text = script.to_script(self.circuit)
        except Exception as e:  # noqa: BLE001 - a view that fails says why
            self.text_status.value = panels.messages_html(panels.problems_of(e), ok=False)
            return
        self._text_shown = text
        self._text_error = ""
        self.discard_text_button.layout.display = "none"
        self.text_status.value = ""  # before the text: its observer sees no error to clear
        self.text.value = text

    @_guarded
    def _discard_text(self) -> None:
        """Drop the text typed in the text view that was not taken: it shows the circuit."""
        if not self._text_pending():
            self.discard_text_button.layout.display = "none"
            return
        self.text.value = self._text_shown  # its observer finds nothing to apply
        self._text_error = ""
        self.discard_text_button.layout.display = "none"
        self.text_status.value = ""
        self.canvas.marks = {}
        self._show([], f"discarded the text changes: the text view shows {self._here()}")

    @_guarded
    def _apply_text(self) -> None:
        script = _script()
        text = self.text.value
        if script is None:
            return
        if text == self._text_shown:  # put back as the circuit is: nothing left to refuse
            self._text_unchanged()
            return
        try:
            new = panels.read_script(text)  # a draft's boxes with open ports too
        except NcdError as e:  # ScriptError says its line and column
            self._text_error = str(e)
            self.text_status.value = (
                f'<div class="ncd-text-error" style="color:#c62828">{html.escape(str(e))} '
                "(the diagram keeps the last valid circuit; your text stays here until you "
                "fix it or discard it)</div>"
            )
            self.discard_text_button.layout.display = ""
            self._show([], f"text not taken: {e}", ok=False)
            return
        if io.to_dict(new) == io.to_dict(self.circuit):  # the same circuit written otherwise
            self.text.value = self._text_shown  # no longer pending: it may be rewritten
            self._refresh_text()
            self._text_unchanged()
            return
        if self._guarded_edit(lambda _: new, "edited the text", text=True) is not None:
            self._text_shown = self.text.value  # taken: the view shows the circuit's text
            self._refresh_text()
        else:
            first = self.canvas.status.split("\n")
            self._text_error = "; ".join(first[1:2]) or first[0]
            self.text_status.value = self.messages.value
            self.discard_text_button.layout.display = ""

    def _text_unchanged(self) -> None:
        """The text view shows the current circuit again: an error left from a text that was
        not taken is cleared."""
        self._text_error = ""
        self.discard_text_button.layout.display = "none"
        if self.text_status.value:
            self.text_status.value = ""
            self.canvas.marks = {}
            self._show([], f"the text is the circuit's: nothing to change, {self._here()}")
