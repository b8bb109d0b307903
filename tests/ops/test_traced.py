"""The kernels under torch.compile and torch.export: each op on its Triton path (interpreted on
the CPU) traces whole (fullgraph, no graph break) and exports to a graph that calls it as one
opaque `ncd::` operator, and both give the eager call's outputs and gradients bit for bit.
Before, tracing reached the launch of a Triton kernel: a graph break at every op under
torch.compile, and torch.export failed reading the data pointer of a fake tensor."""

import pytest
import torch
import torch.nn.functional as F

from ncd import ops


def _randn(gen, *shape, dtype=torch.float32):
    return torch.randn(*shape, generator=gen).to(dtype)


def _cases():
    """name -> (inputs(gen) -> list of tensors, call(*tensors) -> tensor or tuple)."""
    B, T, H, K, V = 1, 40, 2, 16, 16
    cu = torch.tensor([0, 13, 40])

    def qkv(gen):
        return [_randn(gen, B, T, H, K), _randn(gen, B, T, H, K), _randn(gen, B, T, H, V)]

    def log_gates(gen, *shape):
        return F.logsigmoid(_randn(gen, *shape) + 1.0) / 4

    def state(gen, n=B):
        return _randn(gen, n, H, K, V)

    return {
        "simple_gla": (
            lambda g: [*qkv(g), log_gates(g, B, T, H), state(g)],
            lambda q, k, v, g, s0: ops.simple_gla(
                q, k, v, g, initial_state=s0, output_final_state=True, backend="triton"
            ),
        ),
        "simple_gla_packed": (
            lambda g: [*qkv(g), log_gates(g, H)],
            lambda q, k, v, g: ops.simple_gla(q, k, v, g, cu_seqlens=cu, backend="triton")[0],
        ),
        "linear_attention": (
            lambda g: [*qkv(g), state(g)],
            lambda q, k, v, s0: ops.linear_attention(
                q, k, v, initial_state=s0, output_final_state=True, backend="triton"
            ),
        ),
        "linear_attention_decay_normalized": (
            lambda g: [x.abs() for x in qkv(g)],
            lambda q, k, v: ops.linear_attention(
                q, k, v, decay=torch.tensor([0.9, 0.99]), normalize=True, backend="triton"
            ),
        ),
        "gla": (
            lambda g: [*qkv(g), log_gates(g, B, T, H, K), state(g)],
            lambda q, k, v, g, s0: ops.gla(
                q, k, v, g, initial_state=s0, output_final_state=True, backend="triton"
            ),
        ),
        "delta_rule": (
            lambda g: [*qkv(g), torch.sigmoid(_randn(g, B, T, H)), state(g)],
            lambda q, k, v, beta, s0: ops.delta_rule(
                q,
                k,
                v,
                beta,
                initial_state=s0,
                output_final_state=True,
                use_qk_l2norm=True,
                backend="triton",
            ),
        ),
        "gated_delta_rule_packed": (
            lambda g: [*qkv(g), log_gates(g, B, T, H), torch.sigmoid(_randn(g, B, T, H))],
            lambda q, k, v, gg, beta: ops.gated_delta_rule(
                q, k, v, gg, beta, cu_seqlens=cu, use_qk_l2norm=True, backend="triton"
            )[0],
        ),
        "short_conv": (
            lambda g: [_randn(g, 2, 19, 24), _randn(g, 24, 4), _randn(g, 24)],
            lambda x, w, b: ops.short_conv(x, w, b, activation="silu", backend="triton"),
        ),
        "softmax_attention": (
            lambda g: [_randn(g, 1, 2, 33, 16) for _ in range(3)],
            lambda q, k, v: ops.softmax_attention(q, k, v, causal=True, backend="triton"),
        ),
        "layer_norm": (
            lambda g: [_randn(g, 3, 5, 40), 1 + _randn(g, 40) / 4, _randn(g, 40) / 4],
            lambda x, w, b: ops.layer_norm(x, w, b, backend="triton"),
        ),
        "add_rms_norm": (
            lambda g: [_randn(g, 3, 5, 40), _randn(g, 3, 5, 40), 1 + _randn(g, 40) / 4],
            lambda x, r, w: ops.add_rms_norm(x, r, w, backend="triton"),
        ),
        "l2_norm": (
            lambda g: [_randn(g, 3, 5, 40)],
            lambda x: ops.l2_norm(x, eps=1e-6, backend="triton"),
        ),
        "lmul": (
            lambda g: [_randn(g, 5, 7), _randn(g, 1, 7)],
            lambda x, y: ops.lmul(x, y, 3, backend="triton"),
        ),
        "lmul_linear": (
            lambda g: [_randn(g, 2, 5, 24), _randn(g, 12, 24), _randn(g, 12)],
            lambda x, w, b: ops.lmul_linear(x, w, b, mantissa_bits=4, backend="triton"),
        ),
        "wtacrs_linear": (
            lambda g: [_randn(g, 3, 20, 16), _randn(g, 12, 16), _randn(g, 12)],
            lambda x, w, b: ops.wtacrs_linear(x, w, b, budget=0.3, backend="triton"),
        ),
    }


CASES = _cases()


def _outputs(out):
    return [t for t in (out if isinstance(out, tuple) else (out,)) if t is not None]


def _run(fn, inputs):
    """Outputs and every input's gradient of a loss that reads each output."""
    leaves = [x.clone().requires_grad_() for x in inputs]
    torch.manual_seed(0)  # the same draws (WTA-CRS's samples) in every run
    outs = _outputs(fn(*leaves))
    loss = sum((o.float() * torch.linspace(-1, 1, o.numel()).view(o.shape)).sum() for o in outs)
    loss.backward()
    return [o.detach() for o in outs] + [x.grad for x in leaves]


@pytest.mark.interpret
@pytest.mark.parametrize("name", list(CASES))
def test_compiles_whole_with_the_eager_results(name):
    make, call = CASES[name]
    inputs = make(torch.Generator().manual_seed(0))
    want = _run(call, inputs)
    torch._dynamo.reset()
    got = _run(torch.compile(call, backend="aot_eager", fullgraph=True), inputs)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a is not None and b is not None
        assert torch.equal(a, b), (a - b).abs().max()


def exported(call, inputs):
    """torch.export of a module calling `call` on `inputs` (its tensor outputs), and the targets
    of the program's function calls."""

    class Op(torch.nn.Module):
        def forward(self, *xs):
            out = call(*xs)
            return (
                tuple(t for t in out if isinstance(t, torch.Tensor))
                if isinstance(out, tuple)
                else out
            )

    program = torch.export.export(Op(), tuple(inputs))
    return program, [str(n.target) for n in program.graph.nodes if n.op == "call_function"]


@pytest.mark.interpret
@pytest.mark.parametrize("name", list(CASES))
def test_exports_as_ncd_operators(name):
    make, call = CASES[name]
    inputs = make(torch.Generator().manual_seed(1))

    program, targets = exported(call, inputs)
    if name == "wtacrs_linear":  # samples only for a weight gradient: exported, the exact map
        assert targets == ["aten.linear.default"], targets
    else:
        assert any(t.startswith("ncd.") for t in targets), targets
    want = _outputs(call(*inputs))
    got = _outputs(program.module()(*inputs))
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)


@pytest.mark.interpret
@pytest.mark.parametrize("dynamic", [None, True])
def test_one_compiled_function_across_lengths(dynamic):
    """A compiled call sees another sequence length: dynamo recompiles with the length symbolic
    (dynamic=None), or takes every size as symbolic from the first call (dynamic=True); the
    ops' checks and fake implementations run on symbolic sizes, and the results stay the eager
    ones."""

    def block(q, k, v, g, beta):
        o = ops.simple_gla(q, k, v, g, backend="triton")[0]
        o = o + ops.gla(q, k, v, g[..., None].expand_as(q), backend="triton")[0]
        o = o + ops.delta_rule(q, k, v, beta, use_qk_l2norm=True, backend="triton")[0]
        o = o + ops.linear_attention(q, k, v, backend="triton")[0]
        return ops.layer_norm(o, backend="triton")

    torch._dynamo.reset()
    compiled = torch.compile(block, backend="aot_eager", fullgraph=True, dynamic=dynamic)
    for T in (40, 70, 100):
        gen = torch.Generator().manual_seed(T)
        q, k, v = (_randn(gen, 1, T, 2, 16) for _ in range(3))
        g = F.logsigmoid(_randn(gen, 1, T, 2)) / 4
        beta = torch.sigmoid(_randn(gen, 1, T, 2))
        inputs = [q, k, v, g, beta]
        for a, b in zip(_run(compiled, inputs), _run(block, inputs), strict=True):
            assert torch.equal(a, b), (T, (a - b).abs().max())


@pytest.mark.interpret
def test_saved_program_loads_in_a_fresh_process(tmp_path):
    """An exported program that calls ncd's operators, saved and loaded in a new Python process
    after `ncd.ops.load_operators()`, gives the outputs of the process that made it."""
    import subprocess
    import sys

    make, call = CASES["simple_gla"]
    inputs = make(torch.Generator().manual_seed(2))

    path, out = tmp_path / "program.pt2", tmp_path / "outputs.pt"
    torch.export.save(exported(call, inputs)[0], path)
    torch.save(inputs, tmp_path / "inputs.pt")
    code = (
        "import sys, torch\n"
        "import ncd.ops\n"
        "names = ncd.ops.load_operators()\n"
        "assert 'ncd::simple_gla_fwd' in names, names\n"
        f"program = torch.export.load({str(path)!r})\n"
        f"inputs = torch.load({str(tmp_path / 'inputs.pt')!r})\n"
        f"torch.save(list(program.module()(*inputs)), {str(out)!r})\n"
    )
    env = {**__import__("os").environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    for a, b in zip(torch.load(out), _outputs(call(*inputs)), strict=True):
        assert torch.equal(a, b)
