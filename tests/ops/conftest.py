"""Runs the op library's Triton kernels on the CPU through Triton's interpreter.

Triton decides between compiled and interpreted kernels when a function is decorated: its
own library functions (tl.zeros, ...) when triton is first imported, ours when ncd.ops is.
So TRITON_INTERPRET=1 has to be set before either import. When this folder's tests are the
first to import triton, that is done here (ncd.ops is imported afresh if something imported
it earlier), the variable is put back for the rest of the session, and set again around each
test of this folder (Triton reads it at run time too). When another test imported triton
first, the tests marked `interpret` are skipped here and run instead in a fresh Python
process by test_interpreter.py, started in the background once the session is collected
(interpret_runs.py). Every load and store of an interpreted kernel is checked
against the buffers of its launch (memcheck.py).

Interpreted bf16 dots were seen to give garbage with Triton 3.9 on the CPU, so these tests use
float32 and float16; bf16 is checked on the GPU by bench/gpu_check.py.
"""

import importlib
import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch


def _triton_compiled_already() -> bool:
    if "triton.language" not in sys.modules:
        return False
    import triton

    return isinstance(triton.language.standard.zeros, triton.runtime.JITFunction)


# On a CUDA machine the kernels compile for the GPU (the CUDA tests need them); the tests
# marked `interpret` then run in a fresh process by test_interpreter.py.
IN_PROCESS = not _triton_compiled_already() and not torch.cuda.is_available()
HERE = Path(__file__).parent

if IN_PROCESS:
    _saved = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    for _name in [m for m in sys.modules if m == "ncd.ops" or m.startswith("ncd.ops.")]:
        del sys.modules[_name]
    import pkgutil

    import triton.experimental.gluon  # noqa: F401  (Triton imports it lazily; same rule)

    import ncd.ops

    # Every module of the op library, which ncd.ops otherwise imports on first use: the
    # families' kernels are decorated here, interpreted, so no test file needs to.
    for _info in pkgutil.walk_packages(ncd.ops.__path__, "ncd.ops."):
        importlib.import_module(_info.name)

    if _saved is None:
        del os.environ["TRITON_INTERPRET"]
    else:
        os.environ["TRITON_INTERPRET"] = _saved


def pytest_collection_modifyitems(config, items):
    if IN_PROCESS:
        return
    skip = pytest.mark.skip(reason="triton was imported compiled; run by test_interpreter.py")
    for item in items:
        if HERE in Path(item.fspath).parents and item.get_closest_marker("interpret"):
            item.add_marker(skip)


def pytest_collection_finish(session):
    """The interpret tests' fresh processes start now, beside the rest of the session."""
    if not IN_PROCESS and not session.config.option.collectonly:
        _interpret_runs_module().start(session.items)


def pytest_unconfigure(config):
    if "ncd_tests_interpret_runs" in sys.modules:
        sys.modules["ncd_tests_interpret_runs"].stop()


@pytest.fixture
def interpret_in_process():
    return IN_PROCESS


@pytest.fixture
def interpret_runs():
    """The background runs of the interpret tests (interpret_runs.py), None if not started."""
    return _interpret_runs_module().RUNS


@pytest.fixture(autouse=True)
def _interpret(monkeypatch):
    if IN_PROCESS:
        monkeypatch.setenv("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _memcheck():
    """Every load and store of an interpreted kernel inside the buffers of its launch
    (memcheck.py): the GPU would report an illegal memory access."""
    if not IN_PROCESS:
        yield
        return
    with _memcheck_module().checking():
        yield


def _memcheck_module():
    return _helper("memcheck")


def _interpret_runs_module():
    return _helper("interpret_runs")


def _helper(name: str):
    """This folder's helper module NAME.py, loaded once (the tests import in importlib mode)."""
    key = f"ncd_tests_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, HERE / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def _nan(t):
    if t.is_floating_point():
        return t.fill_(float("nan"))
    if t.dtype == torch.uint8:
        return t.fill_(255)
    return t.fill_(-1) if t.dtype.is_signed else t


@pytest.fixture
def nan_alloc(monkeypatch):
    """Fresh tensors from torch.empty / empty_like come filled with NaN (float) or all bits
    set (integers: -1, 255 for uint8, so that a float view of a byte or word buffer reads NaN),
    so an output element that a kernel forgets to write shows up."""
    empty, empty_like = torch.empty, torch.empty_like
    monkeypatch.setattr(torch, "empty", lambda *a, **k: _nan(empty(*a, **k)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: _nan(empty_like(*a, **k)))


@pytest.fixture
def nan_strided(nan_alloc, monkeypatch):
    """nan_alloc, and torch.empty_strided's tensors too (the buffers the ops lay out as
    another tensor: outputs and gradients in their inputs' layouts, the per-head gradients of
    grouped q and k)."""
    empty_strided = torch.empty_strided
    monkeypatch.setattr(torch, "empty_strided", lambda *a, **k: _nan(empty_strided(*a, **k)))


@pytest.fixture
def dot_macs(monkeypatch):
    """A list that collects the multiply-adds of every product (tl.dot) the interpreter runs
    during the test: the work the kernels do, to check the cost formulas against."""
    from triton.runtime import interpreter

    macs = []
    dot = interpreter.InterpreterBuilder.create_dot

    def counting(self, a, b, d, *args):
        macs.append(a.data.shape[-2] * a.data.shape[-1] * b.data.shape[-1])
        return dot(self, a, b, d, *args)

    monkeypatch.setattr(interpreter.InterpreterBuilder, "create_dot", counting)
    return macs
