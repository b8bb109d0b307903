"""ncd: neural circuit diagrams. Draw an architecture, read what it costs, compile it.

The root API is small: `Circuit`, `Builder`, `render`, `analyse`, `compile`, `from_torch`,
the JupyterLab editor `Studio`, and one base error `NcdError`. Everything else lives in its
subpackage.

Every name is imported on first use, so `import ncd` loads nothing and `import ncd.ops`
loads the op library alone (docs/design.md, "Layers").
"""

from __future__ import annotations

import importlib
from pathlib import Path

# In a source checkout the subpackages are the repository's top-level folders (circuits/,
# compiler/, ops/, ...), which an install maps to ncd.circuits, ncd.compiler, ... (setup.py).
# Adding the checkout's root to the package path gives the same names without an install,
# so `PYTHONPATH=<checkout> python -c "import ncd.ops"` works on a machine where ncd is not
# installed (the GPU machine of bench/).
_ROOT = Path(__file__).resolve().parent.parent
if (_ROOT / "setup.py").is_file() and (_ROOT / "ops" / "__init__.py").is_file():
    __path__.append(str(_ROOT))  # noqa: F821 - a package's own __path__

_LAZY = {
    "Builder": "ncd.circuits.builder:Builder",
    "Circuit": "ncd.circuits.circuit:Circuit",
    "NcdError": "ncd.circuits.errors:NcdError",
    "render": "ncd.circuits.draw:render",
    "analyse": "ncd.compiler.cost:analyse",
    "compile": "ncd.compiler:compile",
    "from_torch": "ncd.compiler.importer:from_torch",
    "Studio": "ncd.spec:studio",
}

__all__ = list(_LAZY)
__version__ = "0.1.0"


# The subpackages, also imported on first use (`ncd.gallery.get(...)` after `import ncd`).
_SUBPACKAGES = ("circuits", "compiler", "ops", "widgets", "gallery")


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"ncd.{name}")
    if name in _LAZY:
        module, attr = _LAZY[name].split(":")
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ncd' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY, *_SUBPACKAGES])
