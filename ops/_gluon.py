"""What the Gluon kernels (attention/gluon/, ivit/matmul_gluon.py) share: whether Gluon can
run here, the Hopper device check and the 16-bit dtypes they take.

The kernels are written against Triton 3.6's Gluon (the H200 host's version). On other
Triton versions, under Triton's interpreter (Gluon has none) or without a GPU the import
still succeeds and `available()` says False.
"""

from __future__ import annotations

import functools
import warnings

import torch

from ._backend import interpreting

try:  # Gluon's Hopper API as of Triton 3.6, imported here for every Gluon kernel
    import triton
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import (
        fence_async_shared,
        mbarrier,
        tma,
        warpgroup_mma,
        warpgroup_mma_wait,
    )
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    GLUON = triton.__version__.startswith("3.6")
except Exception:  # pragma: no cover - other Triton versions, or none
    GLUON = False
    gluon = gl = fence_async_shared = mbarrier = tma = warpgroup_mma = warpgroup_mma_wait = None
    TensorDescriptor = None

# The 16-bit dtypes the kernels take, by their names in Gluon.
GL_DTYPES = {torch.bfloat16: "bfloat16", torch.float16: "float16"}


@functools.cache
def tile_layout(rows: int, cols: int, dtype: torch.dtype):
    """Gluon's default shared-memory layout of a rows x cols tile of `dtype` (bf16, fp16 or
    int8), asked once per shape: building it costs the host more than a descriptor."""
    gdt = gl.int8 if dtype == torch.int8 else getattr(gl, GL_DTYPES[dtype])
    return gl.NVMMASharedLayout.get_default_for([rows, cols], gdt)


def available() -> bool:
    """Gluon of Triton 3.6 is importable and kernels compile (not Triton's interpreter)."""
    return GLUON and not interpreting()


def on_hopper(x: torch.Tensor) -> bool:
    """x is on a Hopper GPU (sm_90)."""
    return x.is_cuda and _major(x.device.index) == 9


@functools.cache
def _major(index) -> int:  # asked once per device: the dispatch runs on every call
    return torch.cuda.get_device_capability(index)[0]


# Gluon kernels ("softmax_attention forward", "int8_matmul", ...) that failed to build or
# launch in this process: they warn once and leave their work to the Triton kernels from then on.
FAILED: set = set()


def attempt(name: str, fn, *args):
    """fn(*args), or None (and a warning, once: `name` joins FAILED) if the Gluon kernel
    cannot run here; out-of-memory errors are raised, as from any kernel."""
    try:
        return fn(*args)
    except torch.OutOfMemoryError:
        raise
    except Exception as e:
        FAILED.add(name)
        warnings.warn(
            f"ncd.ops: the Gluon kernel of {name} failed here "
            f"({type(e).__name__}: {str(e)[:300]}); using the Triton kernel from now on",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
