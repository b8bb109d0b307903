"""Triton for the kernels, or a stand-in where they cannot run.

The kernel modules take `triton`, `tl` (triton.language) and `TensorDescriptor` from here.
Where Triton is missing (it has no wheels for macOS or Windows) or older than the kernels are
written for, `MISSING` says so and the names are stand-ins: every kernel is still defined
(decorators, `tl.constexpr` annotations and configuration lists evaluate) but none is ever
launched, because `_backend.use_triton` then sends every call to the family's PyTorch form.
So `ncd.ops`, and with it the compiler and everything that draws or prices circuits, imports
anywhere PyTorch does.
"""

from __future__ import annotations

MIN_VERSION = (3, 4)  # triton.knobs and triton.tools.tensor_descriptor


class Absent:
    """A stand-in for a Triton module or object: any attribute is another stand-in; called
    with one function it returns that function (a decorator such as `@triton.jit`), called
    otherwise it returns a stand-in (`triton.Config(...)`, `tl.constexpr(1.0)`)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Absent:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return Absent(f"{self._name}.{attr}")

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and not kwargs and callable(args[0]):
            return args[0]
        return Absent(f"{self._name}(...)")

    def __repr__(self) -> str:
        return f"<{self._name}: Triton is not available>"


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


try:
    import triton as _real
except ImportError:  # no wheel for this platform, or not installed
    _real = None

if _real is None:
    MISSING: str | None = "Triton is not installed (it has no wheels for this platform)"
elif _version(_real.__version__) < MIN_VERSION:
    MISSING = (
        f"the kernels need Triton {MIN_VERSION[0]}.{MIN_VERSION[1]} or newer, found "
        f"{_real.__version__}"
    )
else:
    MISSING = None

if MISSING is None:
    import triton
    import triton.language as tl
    from triton import knobs
    from triton.runtime import JITFunction, driver
    from triton.runtime.errors import OutOfResources
    from triton.tools.tensor_descriptor import TensorDescriptor
else:
    triton, tl = Absent("triton"), Absent("triton.language")
    knobs, driver = Absent("triton.knobs"), Absent("triton.runtime.driver")
    TensorDescriptor = JITFunction = Absent  # types no value of ops is an instance of

    class OutOfResources(Exception):
        """Stands in for Triton's error; never raised without Triton."""


__all__ = [
    "MISSING", "MIN_VERSION", "JITFunction", "OutOfResources", "TensorDescriptor", "driver",
    "knobs", "tl", "triton",
]  # fmt: skip
