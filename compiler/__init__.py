"""The compiler: circuits → PyTorch modules and readable source, and back (import).

    >>> import ncd
    >>> model = ncd.compile(ncd.gallery.get("transformer_block"))   # an nn.Module
    >>> y = model(torch.randn(2, 16, 32))

`compile` returns a `torch.fx.GraphModule`; `to_source` writes the same module as one
standalone Python file; `interpret` runs a circuit box by box (the reference both are checked
against); `from_torch` imports a PyTorch model as a circuit; `collapse` folds chains of linear
maps into one (with their weights) for inference.
"""

from .build import compile, to_source
from .collapse import collapse
from .errors import CompileError
from .interpret import interpret

__all__ = ["CompileError", "collapse", "compile", "from_torch", "interpret", "to_source"]


def __getattr__(name):
    if name == "from_torch":
        from .importer import from_torch

        return from_torch
    raise AttributeError(name)
