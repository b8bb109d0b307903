"""The Studio notebook is valid nbformat, has no outputs, and its cells run headless."""

from __future__ import annotations

import json
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[2] / "gallery" / "notebooks" / "studio.ipynb"


def test_studio_notebook_runs():
    nb = json.loads(NOTEBOOK.read_text())
    assert nb["nbformat"] == 4
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(not c["outputs"] and c["execution_count"] is None for c in code)
    ns: dict = {}
    boxes = []
    for cell in code:
        exec("".join(cell["source"]), ns)  # noqa: S102 - our own notebook
        boxes.append(len(ns["studio"].circuit.boxes))
    assert boxes == [17, 18, 17]  # open the block, add a GELU, undo it
    assert "ncd-problems" not in ns["studio"].messages.value
