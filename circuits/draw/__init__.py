"""Drawing circuits as neural circuit diagrams with Graphviz (docs/notation.md).

`render(circuit, path=None, theme="paper", collapse=(), depth=None, sizes=None, overlay=None)`
returns SVG text and writes SVG, PDF, PNG or DOT by the path's suffix. The pipeline:
checked circuit → scene (scene.py: nodes with one lane per axis, wires, blocks) → DOT text
(dot.py) → Graphviz `dot`.
"""

from .api import FORMATS, render
from .errors import RenderError
from .glyphs import GLYPHS, Drawing, drawing
from .themes import THEMES

__all__ = ["FORMATS", "GLYPHS", "THEMES", "Drawing", "RenderError", "drawing", "render"]
