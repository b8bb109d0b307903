"""Runs the op library's Triton kernels on the CPU through Triton's interpreter.

Triton decides between compiled and interpreted kernels when a kernel is decorated, that is
when ncd.ops is imported. So TRITON_INTERPRET=1 is set here before the import (and, if a test
elsewhere imported ncd.ops first, its modules are imported afresh); the variable is then put
back, so that other tests do not see it, and set again around each test of this folder
(Triton reads it at run time too). Interpreted bf16 dots were seen to give
garbage with Triton 3.9 on the CPU, so these tests use float32 and float16; bf16 is checked on
the GPU by bench/ops_gpu.py.
"""

import os
import sys

import pytest
import torch

_saved = os.environ.get("TRITON_INTERPRET")
os.environ["TRITON_INTERPRET"] = "1"
for _name in [m for m in sys.modules if m == "ncd.ops" or m.startswith("ncd.ops.")]:
    del sys.modules[_name]
import triton.experimental.gluon  # noqa: E402, F401  (imported lazily by Triton; same rule)

import ncd.ops  # noqa: E402, F401

if _saved is None:
    del os.environ["TRITON_INTERPRET"]
else:
    os.environ["TRITON_INTERPRET"] = _saved


@pytest.fixture(autouse=True)
def _interpret(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")


@pytest.fixture
def nan_alloc(monkeypatch):
    """Fresh float tensors from torch.empty / empty_like come filled with NaN, so an output
    element that a kernel forgets to write shows up as NaN."""
    empty, empty_like = torch.empty, torch.empty_like

    def nan(t):
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", lambda *a, **k: nan(empty(*a, **k)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: nan(empty_like(*a, **k)))
