"""Names a package exports but imports on first use: the kernels load torch and triton, while
the cost formulas are plain Python that the cost model reads without them. Imports nothing."""

import importlib
import sys


def lazy_exports(package: str, table: dict[str, str]):
    """`__getattr__` and `__dir__` for `package` (its `__name__`), whose name `n` is attribute
    `n` of the module `table[n]` (relative to the package), imported when first asked for and
    then kept in the package's namespace."""
    module = sys.modules[package]

    def __getattr__(name):  # noqa: N807 - a module's own hook
        if name in table:
            value = getattr(importlib.import_module(table[name], package), name)
            setattr(module, name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():  # noqa: N807
        return sorted({*vars(module), *table})

    return __getattr__, __dir__
