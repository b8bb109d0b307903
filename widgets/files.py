"""The Studio's files: a circuit loaded (a Circuit, a JSON spec, a gallery name), saved as
JSON, exported as a drawing (.svg, .pdf, .png) or PyTorch source (.py), or taken from the
JSON tab.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ncd.circuits import io
from ncd.circuits.circuit import Circuit
from ncd.circuits.errors import NcdError, SchemaError

from . import panels
from .notes import _guarded


class Files:
    """Loading, saving, exporting (a part of `Studio`, widgets/studio.py)."""

    def load(self, circuit: Circuit | str | Path | None) -> bool:
        """Replace the circuit (undoable). Returns whether it was accepted; a circuit that
        cannot be read or is invalid is reported in the messages panel and not taken. The
        sizes typed for the previous circuit are cleared: sizes belong to a circuit."""
        ok = self._guarded_edit(lambda _: self._resolve(circuit), "loaded", loading=True)
        return ok is not None

    def _resolve(self, source) -> Circuit:
        if source is None:
            return Circuit(name="untitled")
        if isinstance(source, Circuit):
            return source
        text = str(source)
        if text.endswith(".json") or Path(text).is_file():
            return io.load(text)
        if self._lookup is not None:
            return self._lookup(text)
        raise SchemaError(f"{text!r} is not a JSON file (ncd.Studio also takes gallery names)")

    @_guarded
    def _apply_json(self) -> None:
        kept = self._json_shown
        self._json_shown = self.json_text.value  # taken: the redraw shows the circuit's JSON
        if self.edit(lambda _: io.loads(self.json_text.value), "applied JSON"):
            self._json_cleared()
        else:
            self._json_shown = kept  # not taken: the text stays, as typed

    @_guarded
    def _discard_json(self) -> None:
        """Drop JSON typed in the JSON tab that was not applied: it shows the circuit's."""
        self._json_shown = self.json_text.value = io.dumps(self.circuit)
        self._json_cleared()
        self._show([], f"discarded the JSON changes: the JSON tab shows {self._here()}")

    def _json_cleared(self) -> None:
        self.json_status.value = ""
        self.discard_json_button.layout.display = "none"

    def _reset_confirm(self) -> None:
        self._confirm_save = ""
        self.save_button.description = "save"

    @_guarded
    def _save(self) -> None:
        path = self.path.value.strip()
        if not path:
            raise SchemaError("save: no file given (expected a path such as circuit.json)")
        if Path(path).exists() and self._confirm_save != path:
            self._confirm_save = path
            self.save_button.description = "overwrite"
            self._show([], f"{path} exists: press overwrite to replace it (or change the name)")
            return
        try:
            io.save(self.circuit, path)  # atomic: a temporary file, then renamed
        except OSError as e:
            raise SchemaError(f"{path}: cannot write ({e.strerror or e})") from None
        self._reset_confirm()
        self._show([], f"saved {path}")

    @_guarded
    def _export(self) -> None:
        from ncd.circuits.atomic import write_atomic
        from ncd.circuits.draw import render

        path = self.export_path.value.strip()
        if not path:
            raise SchemaError("export: no file given (expected diagram.svg, .pdf, .png or .py)")
        if Path(path).suffix not in {".svg", ".pdf", ".png", ".py"}:
            raise SchemaError(
                f"export: {path}: unknown kind of file (expected .svg, .pdf, .png or .py)"
            )
        if path.endswith(".py"):
            from ncd.compiler import to_source

            sizes = panels.parse_sizes(self.sizes.value)
            try:
                source = to_source(self.circuit, sizes or None)
            except NcdError as e:  # the CLI's hint (`--sizes`) said as the Studio has it
                problems = [
                    dataclasses.replace(p, hint=p.hint.replace(
                        "pass e.g. --sizes ", "type them in the Cost tab's sizes field, e.g. "
                    ))
                    for p in panels.problems_of(e)
                ]  # fmt: skip
                self._refuse(problems, f"export {path}")
                return
            try:
                write_atomic(path, source)
            except OSError as e:
                raise SchemaError(f"{path}: cannot write ({e.strerror or e})") from None
        else:
            render(self.circuit, path, theme=self.theme.value)
        self._show([], f"exported {path}")
