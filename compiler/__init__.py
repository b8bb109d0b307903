"""The compiler: circuits → PyTorch modules and readable source, and back (import).

    >>> import ncd
    >>> model = ncd.compile(ncd.gallery.get("transformer_block"))   # an nn.Module
    >>> y = model(torch.randn(2, 16, 32))

`compile` returns a `torch.fx.GraphModule`; `to_source` writes the same module as one
standalone Python file; `interpret` runs a circuit box by box (the reference both are checked
against); `from_torch` imports a PyTorch model as a circuit; `collapse` folds chains of linear
maps into one (with their weights) for inference.
"""

import importlib
import sys
import types

__all__ = ["CompileError", "collapse", "compile", "from_torch", "interpret", "to_source"]

# Each name is imported on first use, so that the cost model (ncd.compiler.cost) loads
# without torch.
_LAZY = {
    "CompileError": ".errors",
    "collapse": ".collapse",
    "compile": ".build",
    "from_torch": ".importer",
    "interpret": ".interpret",
    "to_source": ".build",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])


class _Package(types.ModuleType):
    """The package, whose functions `interpret` and `collapse` keep their names when their
    submodules (compiler/interpret.py, compiler/collapse.py) are imported: importing a
    submodule binds it on its package, which would hide the function."""

    def __setattr__(self, name, value):
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
