"""The GPU launch path of ncd.ops._backend.launch, with Triton's kernel, autotuner and compiled
kernel replaced by recording fakes (no GPU here): which configuration runs, which tuner is
asked, and what the direct launches pass to the compiled kernel's launcher."""

import warnings

import pytest
import torch
import triton
from triton.runtime.errors import OutOfResources
from triton.tools.tensor_descriptor import TensorDescriptor

from ncd.ops import _backend, config


class FakeCompiled:
    function, packed_metadata = "fn", "meta"

    def __init__(self, log):
        self.log = log

    def run(self, g0, g1, g2, stream, function, packed, lm, enter, leave, *args):
        self.log.append(("direct", (g0, g1, g2), args))
        self.hooks = (lm, enter, leave)

    def launch_metadata(self, grid, stream, *args):
        # as Triton's CompiledKernel.launch_metadata: None without a launch-enter hook
        self.metadata = (grid, args)
        return None if triton.knobs.runtime.launch_enter_hook is None else {"grid": grid}


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

    def __init__(self, configs, key, reset_to_zero, restore_value=None):
        self.configs, self.restore = configs, restore_value
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


def test_arguments_written_over_in_place_are_restored_between_trials(fake_gpu):
    """A kernel that reads a buffer and writes its result over it (GLA's grouped dq and dk
    over their float32 parts) asks the tuner to put the buffer back after each trial
    (`restore`): a tuner without it would run each trial on the one before's output. The
    same kernel without `restore` is another tuner."""
    k, x = FakeKernel(), torch.zeros(8)
    _backend.launch(k, CONFIGS, lambda m: (1,), (x, 64, 0.5), {}, {}, restore=("X",))
    _backend.launch(k, CONFIGS, lambda m: (1,), (x, 64, 0.5), {}, {})
    assert [t.restore for t in FakeTuner.made] == [["X"], None]


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


def test_launch_compiled_with_the_callers_key(fake_gpu, monkeypatch):
    """A caller that passes its own key (the WTA-CRS selection's plan) gets the compiled
    kernel of that key, with this call's arguments, whatever `_key` of them would say; a new
    key compiles again."""
    monkeypatch.setattr(_backend, "_compiled", {})
    k, x, y = FakeKernel(), torch.zeros(8), torch.zeros(9)
    meta = {"WIDE": True, "BLOCK": 16}
    for a, key in ((x, "plan"), (y, "plan"), (x, "other")):
        _backend.launch_compiled(k, (2,), (a, 64, 0.5), meta, key=key)
    assert [e[0] for e in k.log] == ["jit", "direct", "jit"]
    assert k.log[1][2][0] is y


def test_launch_metadata_only_for_a_launch_hook(fake_gpu, monkeypatch):
    """A direct launch hands the launcher Triton's launch hooks and metadata as Triton's JIT
    launch does where a hook is set; Triton's empty hook chains (its default) go as None,
    which calls nothing, and then no metadata is made."""
    from triton.knobs import HookChain

    monkeypatch.setattr(_backend, "_compiled", {})
    k, x = FakeKernel(), torch.zeros(8)

    def call():
        _backend.launch_compiled(k, (2,), (x, 64, 0.5), {"WIDE": True, "BLOCK": 16})
        return getattr(k.compiled, "hooks", None)

    for chain in (HookChain(), HookChain(reversed=True)):
        monkeypatch.setattr(triton.knobs.runtime, "launch_enter_hook", chain)
        monkeypatch.setattr(triton.knobs.runtime, "launch_exit_hook", HookChain(reversed=True))
        call()
    assert [e[0] for e in k.log] == ["jit", "direct"] and k.compiled.hooks == (None, None, None)
    assert not hasattr(k.compiled, "metadata")
    seen = []
    enter = HookChain()
    enter.add(seen.append)
    monkeypatch.setattr(triton.knobs.runtime, "launch_enter_hook", enter)
    lm, got_enter, got_leave = call()
    assert k.compiled.metadata == ((2, 1, 1), (x, 64, 0.5, True, 16, 3))
    assert lm == {"grid": (2, 1, 1)} and got_enter is enter and got_leave is None


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


class SmallGpuTuner(FakeTuner):
    """A tuner on a GPU with less shared memory: a list with a pipelined configuration in it
    fails as Triton's does when none of its configurations fits (`limit` bytes, each stage
    taking 48 KiB)."""

    limit = 64 * 1024

    def __getitem__(self, grid):
        def run(*args, **meta):
            need = min(c.num_stages for c in self.configs) * 48 * 1024
            if need > self.limit:
                raise OutOfResources(need, self.limit, "shared memory")
            self.kernel.log.append(("tune", [c.num_stages for c in self.configs]))

        return run


def test_a_list_none_of_which_fits_the_gpu_is_tuned_again_at_one_stage(fake_gpu, monkeypatch):
    """On a GPU with less shared memory than the lists are written for (an RTX 4090's 99 KiB
    against the H200's 227), the launch retries the same configurations at one stage, keeps
    their other options, and the next calls use that plan without tuning again."""
    monkeypatch.setattr(triton, "autotune", SmallGpuTuner)
    k, x = FakeKernel(), torch.zeros(8)
    configs = [
        triton.Config({"BLOCK": 32}, num_warps=4, num_stages=3),
        triton.Config({"BLOCK": 32}, num_warps=4, num_stages=2, maxnreg=168),
        triton.Config({"BLOCK": 32}, num_warps=4, num_stages=4),  # the first at one stage
    ]
    for _ in range(3):
        _backend.launch(k, configs, lambda m: (1,), (x, 64, 0.5), {"WIDE": True}, {"BLOCK": 16})
    retry = FakeTuner.made[-1]
    assert [(c.num_stages, c.maxnreg) for c in retry.configs] == [(1, None), (1, 168)]
    assert [e[0] for e in k.log] == ["tune", "jit", "direct"]
    (plan,) = _backend._plans.values()
    assert (plan.cfg.num_stages, plan.cfg.maxnreg) == (1, None)
    assert len(FakeTuner.made) == 2  # the first tuner, then its one-stage list


def test_a_kernel_too_big_even_at_one_stage_raises_tritons_error(fake_gpu, monkeypatch):
    monkeypatch.setattr(triton, "autotune", SmallGpuTuner)
    monkeypatch.setattr(SmallGpuTuner, "limit", 16 * 1024)
    with pytest.raises(OutOfResources, match="shared memory"):
        call(FakeKernel(), torch.zeros(8))


class FakeCudaTensor:
    is_cuda = True

    def __init__(self, index):
        self.device = torch.device("cuda", index)


@pytest.fixture
def gpus(monkeypatch):
    """Two fake CUDA devices: 0 an RTX 4090 (8.9), 1 a Tesla T4 (7.5)."""
    caps, names = {0: (8, 9), 1: (7, 5)}, {0: "NVIDIA GeForce RTX 4090", 1: "Tesla T4"}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i: caps[i])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: names[i])
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(_backend, "_unfit", {})


def test_kernels_run_on_ampere_and_newer_and_older_gpus_take_the_reference(gpus):
    assert _backend.use_triton(FakeCudaTensor(0), "auto", "linear_attention")
    assert _backend.use_triton(FakeCudaTensor(None), "auto", "linear_attention")
    with pytest.warns(UserWarning, match=r"capability 8\.0 or newer, found 7\.5 \(Tesla T4\)"):
        assert not _backend.use_triton(FakeCudaTensor(1), "auto", "linear_attention")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per device, not on every call
        assert not _backend.use_triton(FakeCudaTensor(1), "auto", "gla")
    with pytest.raises(RuntimeError, match=r"gla: backend='triton' on cuda:1: .*found 7\.5"):
        _backend.use_triton(FakeCudaTensor(1), "triton", "gla")


def test_a_rocm_build_takes_the_reference(gpus, monkeypatch):
    monkeypatch.setattr(torch.version, "hip", "6.2")
    with pytest.warns(UserWarning, match="for ROCm"):
        assert not _backend.use_triton(FakeCudaTensor(0), "auto", "delta_rule")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_a_list_too_big_for_the_gpu_runs_at_one_stage(monkeypatch):
    """On the GPU: linear attention's forward (with a decay) given only a configuration of
    more pipeline stages than any GPU's shared memory holds runs at one stage, right."""
    from ncd.ops import linear_attention
    from ncd.ops.linear_attention import chunk

    (cfg,) = chunk.FWD_CONFIGS
    deep = triton.Config(cfg.kwargs, num_warps=4, num_stages=16)
    monkeypatch.setattr(chunk, "FWD_CONFIGS", [deep])
    monkeypatch.setattr(_backend, "_plans", {})
    monkeypatch.setattr(_backend, "_tuners", {})
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(2, 256, 4, 64, device="cuda", generator=g) / 8 for _ in range(3))
    decay = torch.tensor([0.9, 0.95, 0.99, 1.0], device="cuda")
    o, _ = linear_attention(*(x.bfloat16() for x in (q, k, v)), decay=decay)  # float32 caps stages
    ref, _ = linear_attention(q, k, v, decay=decay, backend="reference")
    assert ((o.float() - ref).norm() / ref.norm()).item() < 1e-2
    stages = [p.cfg.num_stages for key, p in _backend._plans.items() if key[0] is chunk._fwd_kernel]
    assert stages == [1]
