"""The GPU launch path of ncd.ops._backend.launch, with Triton's kernel, autotuner and compiled
kernel replaced by recording fakes (no GPU here): which configuration runs, which tuner is
asked, and what the direct launches pass to the compiled kernel's launcher."""

import pytest
import torch
import triton
from triton.tools.tensor_descriptor import TensorDescriptor

from ncd.ops import _backend, config


class FakeCompiled:
    function, packed_metadata = "fn", "meta"

    def __init__(self, log):
        self.log = log

    def run(self, g0, g1, g2, stream, function, packed, lm, enter, leave, *args):
        self.log.append(("direct", (g0, g1, g2), args))

    def launch_metadata(self, grid, stream, *args):
        return None


class FakeParam:
    def __init__(self, name, default=None):
        self.name, self.default, self.has_default = name, default, default is not None


class FakeKernel:
    arg_names = ["X", "T", "scale", "WIDE", "BLOCK", "EXTRA"]
    # EXTRA keeps its default (as a constexpr option the library does not pass, e.g. DIAG).
    params = [FakeParam(n) for n in arg_names[:-1]] + [FakeParam("EXTRA", default=3)]

    def __init__(self):
        self.log = []
        self.compiled = FakeCompiled(self.log)

    def __getitem__(self, grid):
        def jit(*args, num_warps=None, num_stages=None, **kw):
            self.log.append(("jit", tuple(grid), args, kw))
            return self.compiled

        return jit


class FakeTuner:
    made = []

    def __init__(self, configs, key, reset_to_zero):
        self.configs = configs
        self.best_config = configs[0]
        FakeTuner.made.append(self)

    def __call__(self, kernel):
        self.kernel = kernel
        return self

    def __getitem__(self, grid):
        def run(*args, **meta):
            self.kernel.log.append(("tune", args))

        return run


@pytest.fixture
def fake_gpu(monkeypatch):
    monkeypatch.setattr(_backend, "interpreting", lambda: False)
    monkeypatch.setattr(triton, "autotune", FakeTuner)
    monkeypatch.setattr(_backend, "_plans", {})
    monkeypatch.setattr(_backend, "_tuners", {})
    monkeypatch.setattr(_backend, "_stream", lambda: 7)
    FakeTuner.made = []


CONFIGS = [triton.Config({"BLOCK": 32}, num_warps=4, num_stages=2)]


def call(kernel, x, T=64, rows=4):
    _backend.launch(kernel, CONFIGS, lambda m: (rows, T // m["BLOCK"]), (x, T, 0.5),
                    {"WIDE": True}, {"BLOCK": 16})  # fmt: skip


def test_tune_then_compile_then_launch_directly(fake_gpu):
    k, x = FakeKernel(), torch.zeros(8)
    for rows in (4, 4, 4, 5):
        call(k, x, rows=rows)
    kinds = [e[0] for e in k.log]
    assert kinds == ["tune", "jit", "direct", "direct"]
    # The direct launch passes every argument in the kernel's order, the constexprs last
    # (defaults included: the compiled kernel's launcher has no defaults), and the grid of
    # this call (the last call has another row count, same key).
    assert k.log[2] == ("direct", (4, 2, 1), (x, 64, 0.5, True, 32, 3))
    assert k.log[3][1] == (5, 2, 1)


def test_new_integer_or_alignment_means_a_new_plan(fake_gpu):
    k, x = FakeKernel(), torch.zeros(8)
    for _ in range(3):
        call(k, x)
    call(k, x, T=128)  # integers are keyed exactly (Triton specialises on them)
    call(k, torch.zeros(9)[1:])  # a pointer 4 bytes off 16-byte alignment
    assert [e[0] for e in k.log] == ["tune", "jit", "direct", "tune", "tune"]


def test_fast_launch_off(fake_gpu):
    k, x = FakeKernel(), torch.zeros(8)
    with config.override(fast_launch=False):
        for _ in range(3):
            call(k, x)
    assert [e[0] for e in k.log] == ["tune", "jit", "jit"]


def test_fast_launch_turned_off_later(fake_gpu):
    """Switching fast_launch off after a kernel was cached goes back to the JIT path."""
    k, x = FakeKernel(), torch.zeros(8)
    for _ in range(3):
        call(k, x)
    with config.override(fast_launch=False):
        call(k, x)
    assert [e[0] for e in k.log] == ["tune", "jit", "direct", "jit"]


def test_one_tuner_per_descriptor_dtype(fake_gpu):
    """Descriptor dtypes are not in Triton's autotuning key: float32 must not reuse the
    configuration tuned for bfloat16."""
    k = FakeKernel()
    for dt in (torch.bfloat16, torch.float32, torch.bfloat16):
        d = TensorDescriptor(torch.zeros(64, 64, dtype=dt), [64, 64], [64, 1], [16, 16])
        _backend.launch(k, CONFIGS, lambda m: (1,), (d, 64, 0.5), {"WIDE": True}, {})
    assert len(FakeTuner.made) == 2


def test_one_tuner_per_variant(fake_gpu):
    """Constexpr options are not in Triton's autotuning key either: each variant of a kernel
    (here WIDE on and off) is tuned on its own, and a variant seen again reuses its tuner."""
    k, x = FakeKernel(), torch.zeros(8)
    for wide in (True, False, True):
        _backend.launch(k, CONFIGS, lambda m: (1,), (x, 64, 0.5), {"WIDE": wide}, {})
    assert len(FakeTuner.made) == 2
    assert [e[0] for e in k.log] == ["tune", "tune", "jit"]


def test_launch_compiled_for_gluon_kernels(fake_gpu, monkeypatch):
    """Kernels with nothing to tune (the Gluon ones): JIT once per key, then direct launches
    with the constexprs (defaults included) after the arguments and no launch options; a
    Gluon tensor descriptor (block shape and layout) is part of the key."""
    from dataclasses import dataclass

    @dataclass  # Gluon's TensorDescriptor: a dataclass with a layout (unhashable itself)
    class GluonDesc:
        base: torch.Tensor
        shape: list
        strides: list
        block_shape: list
        layout: str
        padding: str = "zero"

    monkeypatch.setattr(_backend, "_compiled", {})
    k, x = FakeKernel(), torch.zeros(64, 64)

    def call(block=16, T=64):
        d = GluonDesc(x, [64, 64], [64, 1], [block, 64], f"nvmma{block}")
        meta = {"WIDE": True, "BLOCK": block, "num_warps": 4}
        _backend.launch_compiled(k, (2, 3), (d, T, 0.5), meta)
        return d

    call()
    d = call()
    call(block=32)
    call(T=128)
    kinds = [e[0] for e in k.log]
    assert kinds == ["jit", "direct", "jit", "jit"]
    assert k.log[0][3] == {"WIDE": True, "BLOCK": 16}  # num_warps went to the JIT too
    assert k.log[1][1] == (2, 3, 1) and k.log[1][2][1:] == (64, 0.5, True, 16, 3)
    assert k.log[1][2][0] is d  # the call's own descriptor, not the first call's
    with config.override(fast_launch=False):
        call()
    assert k.log[-1][0] == "jit"


def test_pinned_configuration_is_launched_untuned(fake_gpu):
    """config pin_config = i: every autotuned launch gets configuration i of its list (the
    last where the list is shorter) as the one configuration its tuner sees, and a plan of
    its own (the tuned plan of the same arguments is not reused)."""
    k, x = FakeKernel(), torch.zeros(8)
    three = [triton.Config({"BLOCK": b}, num_warps=4, num_stages=2) for b in (8, 16, 32)]

    def go():
        _backend.launch(k, three, lambda m: (1, 64 // m["BLOCK"]), (x, 64, 0.5), {"WIDE": True},
                        {"BLOCK": 16})  # fmt: skip

    go()  # tuned: the fake tuner picks its first configuration
    for pin, block in ((1, 16), (5, 32)):
        with config.override(pin_config=pin):
            go()
        assert [c.kwargs["BLOCK"] for c in FakeTuner.made[-1].configs] == [block]
    assert len(FakeTuner.made) == 3


def test_next_pow2_is_tritons():
    for n in range(1, 3000):
        assert _backend.next_pow2(n) == triton.next_power_of_2(n)


def test_the_tuned_configuration_compiles_with_all_its_options(fake_gpu):
    """The launch after tuning compiles the winning configuration with every option it
    carries (a register cap, maxnreg, included), not a kernel the tuner never timed."""
    k, x = FakeKernel(), torch.zeros(8)
    capped = [triton.Config({"BLOCK": 32}, num_warps=4, num_stages=1, maxnreg=168)]
    for _ in range(2):
        _backend.launch(k, capped, lambda m: (1,), (x, 64, 0.5), {"WIDE": True}, {"BLOCK": 16})
    assert k.log[1][0] == "jit"
    assert k.log[1][3]["maxnreg"] == 168 and k.log[1][3]["BLOCK"] == 32
