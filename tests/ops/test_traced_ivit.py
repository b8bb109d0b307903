"""The integer ViT ops (ops/ivit) under torch.compile and torch.export: each op on its Triton
path (interpreted on the CPU) traces whole (fullgraph, no graph break) and exports to a graph
that calls its kernels as one opaque `ncd::` operator, and both give the eager call's outputs
bit for bit. I-LayerNorm's integer affine constants, read from the float weight and bias on
the host in eager calls, are made inside the operator when traced."""

import pytest
import torch

from ncd.ops.ivit import reference as R
from ncd.ops.ivit.matmul import int8_matmul
from ncd.ops.ivit.nonlinear import i_layernorm, requantize, shiftgelu, shiftmax

from .test_traced import exported


def _int8(gen, *shape):
    return torch.randint(-128, 128, shape, dtype=torch.int8, generator=gen)


def _cases():
    """name -> (inputs(gen) -> list of tensors, call(*tensors) -> tensor or tuple)."""
    N, K = 24, 32
    mult, shift = R.dyadic(1.0 / 2000)

    def acc(gen):
        return torch.randint(-(2**24), 2**24, (3, 5, N), dtype=torch.int32, generator=gen)

    def per_channel(gen):
        return torch.randint(2**30, 2**31, (N,), generator=gen)

    def bias(gen):
        return torch.randint(-(2**16), 2**16, (N,), dtype=torch.int32, generator=gen)

    return {
        "shiftmax": (
            lambda g: [_int8(g, 2, 3, 37)],
            lambda x: shiftmax(x, 0.05, backend="triton"),
        ),
        "shiftmax_4_bits": (
            lambda g: [_int8(g, 6, 20)],
            lambda x: shiftmax(x, 0.3, bits=4, backend="triton"),
        ),
        "shiftgelu": (
            lambda g: [_int8(g, 3, 5, 19)],
            lambda x: shiftgelu(x, 0.05, 0.04, backend="triton"),
        ),
        "requantize": (
            lambda g: [acc(g)],
            lambda a: requantize(a, mult, shift, backend="triton"),
        ),
        "requantize_per_channel": (
            lambda g: [acc(g), per_channel(g), torch.randint(40, 50, (N,), generator=g)],
            lambda a, m, s: requantize(a, m, s, bits=6, backend="triton"),
        ),
        "i_layernorm": (
            lambda g: [_int8(g, 2, 5, 40)],
            lambda x: i_layernorm(x, backend="triton"),
        ),
        "i_layernorm_affine": (
            lambda g: [
                _int8(g, 2, 5, 40),
                1 + torch.randn(40, generator=g) / 4,
                torch.randn(40, generator=g) / 4,
            ],
            lambda x, w, b: i_layernorm(x, w, b, 0.03, backend="triton"),
        ),
        "int8_matmul": (  # b K-major: the tensor-map kernel
            lambda g: [_int8(g, 2, 5, K), _int8(g, N, K)],
            lambda a, w: int8_matmul(a, w.t(), backend="triton"),
        ),
        "int8_matmul_bias": (  # b row-major: the pointer kernel
            lambda g: [_int8(g, 7, K), _int8(g, K, N), bias(g)],
            lambda a, b, c: int8_matmul(a, b, c, backend="triton"),
        ),
        "int8_matmul_requantized": (
            lambda g: [_int8(g, 2, 5, K), _int8(g, N, K), bias(g)],
            lambda a, w, c: int8_matmul(a, w.t(), c, mult, shift, backend="triton"),
        ),
        "int8_matmul_per_channel": (
            lambda g: [_int8(g, 7, K), _int8(g, K, N), bias(g), per_channel(g)],
            lambda a, b, c, m: int8_matmul(a, b, c, m, 44, bits=6, backend="triton"),
        ),
        "int8_matmul_per_channel_no_bias": (
            lambda g: [_int8(g, 2, 5, K), _int8(g, N, K), per_channel(g)],
            lambda a, w, m: int8_matmul(a, w.t(), None, m, 44, backend="triton"),
        ),
    }


CASES = _cases()


def _outputs(out):
    """The tensors of a result; the scales (floats) of a pair checked against the eager ones
    by the callers."""
    return list(out) if isinstance(out, tuple) else [out]


def _same(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        if isinstance(b, torch.Tensor):
            assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
            assert torch.equal(a, b), (a.long() - b.long()).abs().max()
        else:
            assert a == b and type(a) is type(b), (a, b)


@pytest.mark.interpret
@pytest.mark.parametrize("name", list(CASES))
def test_compiles_whole_with_the_eager_results(name):
    make, call = CASES[name]
    inputs = make(torch.Generator().manual_seed(0))
    want = _outputs(call(*inputs))
    torch._dynamo.reset()
    got = _outputs(torch.compile(call, backend="aot_eager", fullgraph=True)(*inputs))
    _same(got, want)


@pytest.mark.interpret
@pytest.mark.parametrize("name", list(CASES))
def test_exports_as_ncd_operators(name):
    make, call = CASES[name]
    inputs = make(torch.Generator().manual_seed(1))

    program, targets = exported(call, inputs)  # the scale, a float, is not an output
    assert any(t.startswith("ncd.ivit_") for t in targets), targets
    want = _outputs(call(*inputs))[0]
    got = program.module()(*inputs)
    _same([got[0] if isinstance(got, tuple) else got], [want])


@pytest.mark.interpret
def test_traced_i_layernorm_follows_the_weights():
    """Traced, the affine constants are made from the weight and bias of each call: new
    weight values give the eager results without a new trace."""
    g = torch.Generator().manual_seed(2)
    x = _int8(g, 4, 40)
    fn = torch.compile(lambda x, w, b: i_layernorm(x, w, b, 0.03, backend="triton")[0],
                       backend="aot_eager", fullgraph=True)  # fmt: skip
    for _ in range(2):
        w, b = 1 + torch.randn(40, generator=g) / 4, torch.randn(40, generator=g) / 4
        _same([fn(x, w, b)], [i_layernorm(x, w, b, 0.03, backend="triton")[0]])
        _same([fn(x, w, b)], [R.i_layernorm_reference(x, w, b, 0.03)[0]])


@pytest.mark.interpret
def test_traced_checks_still_refuse_bad_arguments():
    """The argument checks run while tracing: shapes, and the ints of a requantisation."""
    g = torch.Generator().manual_seed(3)
    x = _int8(g, 4, 40)
    with pytest.raises(Exception, match="i_layernorm: weight"):
        torch.compile(lambda x, w: i_layernorm(x, w, backend="triton"), backend="aot_eager",
                      fullgraph=True)(x, torch.ones(39))  # fmt: skip
    a, b = _int8(g, 3, 16), _int8(g, 16, 8)
    with pytest.raises(Exception, match="int8_matmul: multiplier, shift"):
        torch.compile(lambda a, b: int8_matmul(a, b, None, 5, 0, backend="triton"),
                      backend="aot_eager", fullgraph=True)(a, b)  # fmt: skip
