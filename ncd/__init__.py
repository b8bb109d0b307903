"""ncd: neural circuit diagrams. Draw an architecture, read what it costs, compile it.

The root API is small: `Circuit`, `Builder`, `render`, `analyse`, `compile`, `from_torch`,
the JupyterLab editor `Studio`, and one base error `NcdError`. Everything else lives in its
subpackage.
"""

from __future__ import annotations

import importlib

from ncd.circuits.builder import Builder
from ncd.circuits.circuit import Circuit
from ncd.circuits.errors import NcdError

# Views are imported on first use so that `import ncd` stays light (no torch, no graphviz).
_LAZY = {
    "render": "ncd.circuits.draw:render",
    "analyse": "ncd.compiler.cost:analyse",
    "compile": "ncd.compiler:compile",
    "from_torch": "ncd.compiler.importer:from_torch",
    "Studio": "ncd.widgets:Studio",
}

__all__ = ["Builder", "Circuit", "NcdError", *_LAZY]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name].split(":")
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'ncd' has no attribute {name!r}")
