"""Drawing circuits as neural circuit diagrams with Graphviz (docs/notation.md).

`render(circuit, path=None, theme="paper", collapse=(), depth=None, sizes=None, overlay=None)`
returns SVG text and writes SVG, PDF, PNG or DOT by the path's suffix; `layout_svg(circuit,
theme, collapse, loose=(), quick=True)` is the same drawing laid out in one pass (the
Studio's). The pipeline: checked circuit → scene (scene.py: nodes with one lane per axis,
wires, blocks) → DOT text (dot.py) → Graphviz `dot` (a layout) → the layout written into the
DOT (placed.py; long wires' labels moved near their start, labels.py; a figure too wide for
a page wrapped into rows, fit.py) → drawn by Graphviz `nop2`.
"""

from .api import FORMATS, layout_svg, render
from .errors import RenderError
from .glyphs import GLYPHS, Drawing, drawing
from .themes import THEMES

__all__ = [
    "FORMATS",
    "GLYPHS",
    "THEMES",
    "Drawing",
    "RenderError",
    "drawing",
    "layout_svg",
    "render",
]
