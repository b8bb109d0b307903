"""The `long_conv` box (a causal convolution with a filter input, by FFT) against references
written here from its definition, y[.., t, c] = Σ_{s ≤ t} h[t − s, c] x[.., s, c] (Hyena's
long convolution, S4's convolution mode): an explicit sum over the filter's taps, and
PyTorch's conv1d with the filter flipped and the sequence padded on the left. Outputs and
gradients of x and of the filter in float64 (tight) and float32/bfloat16 (bounded), odd T,
filters shorter than T, layouts of the axes, a filter per head broadcast over its features;
the FFT length; the standalone file; errors; drawing and help; cost against measurement."""

from __future__ import annotations

import sys

import pytest
import sympy
import torch
import torch.nn.functional as F

import ncd
from ncd.circuits.builder import Builder
from ncd.circuits.errors import BuildError
from ncd.compiler import compile as ncd_compile
from ncd.compiler import interpret, runtime, to_source
from ncd.compiler.cost.symbolic import fft_length
from ncd.compiler.names import class_name
from tests.cost import measure

from .helpers import load_source


# -- references
def causal_sum(x, h):
    """y[.., t, c] = Σ_{j < L, j ≤ t} h[j, c] x[.., t − j, c]: x [.., T, C…], h [L, C…] (the
    channel axes C… last on both, h's broadcasting against x's): the filter's taps, one
    shifted copy of x each."""
    t_dim = x.dim() - h.dim()
    T, L = x.shape[t_dim], h.shape[0]
    y = torch.zeros_like(x)
    for j in range(L):
        y.narrow(t_dim, j, T - j).add_(h[j] * x.narrow(t_dim, 0, T - j))  # x[t − j], t ≥ j
    return y


def conv1d_flipped(x, h):
    """The same as PyTorch's (cross-correlating) conv1d: x [N, T, C], h [L, C]; one group per
    channel, the filter flipped, L − 1 zeros before the first position."""
    L, C = h.shape
    w = h.flip(0).t().unsqueeze(1)  # [C, 1, L]
    y = F.conv1d(F.pad(x.transpose(1, 2), (L - 1, 0)), w, groups=C)
    return y.transpose(1, 2)


def _circuit(x_axes, h_axes, sizes, dtype="float32"):
    b = Builder("long", sizes=sizes)
    x, h = b.input("x", x_axes, dtype=dtype), b.input("h", h_axes, dtype=dtype)
    b.output("y", b.long_conv(x, h, seq="T", name="conv"))
    return b.build()


def _rand(*shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_()


def _grads(y, w, *xs):
    return torch.autograd.grad((y * w).sum(), xs)


def test_the_two_references_agree():
    x, h = _rand(3, 63, 5), _rand(40, 5, seed=1)
    torch.testing.assert_close(causal_sum(x, h), conv1d_flipped(x, h), rtol=1e-12, atol=1e-12)


# -- float64: tight
LAYOUTS = [
    # x's axes, the filter's, sizes, how to put x in [B, T, C] order and back
    ("B T D", "L D", {"B": 2, "T": 63, "D": 5, "L": 40}, "btd"),  # shorter filter
    ("B T D", "T D", {"B": 2, "T": 63, "D": 5}, "btd"),  # as long as x: taps along T
    ("D T B", "D L", {"B": 3, "T": 63, "D": 4, "L": 1}, "dtb"),  # one tap, axes reordered
    ("T D", "L D", {"T": 63, "D": 3, "L": 63}, "td"),  # no batch axis
]


def _to_btd(x, how):
    return x if how == "btd" else x.permute(2, 1, 0) if how == "dtb" else x[None]


def _from_btd(y, how):
    return y if how == "btd" else y.permute(2, 1, 0) if how == "dtb" else y[0]


def _equal_in_float64(c, x, h, want):
    """The compiled module and the interpreter give `want`, and the same x, h gradients."""
    got = ncd_compile(c, dtype=torch.float64)(x, h)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(interpret(c, [x, h], {}), want, rtol=1e-12, atol=1e-12)
    w = _rand(*want.shape, seed=2).detach()
    for g_got, g_want in zip(_grads(got, w, x, h), _grads(want, w, x, h), strict=True):
        torch.testing.assert_close(g_got, g_want, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("x_axes, h_axes, sizes, how", LAYOUTS)
def test_float64_outputs_and_gradients_equal_the_causal_sum(x_axes, h_axes, sizes, how):
    c = _circuit(x_axes, h_axes, sizes)
    shape = [sizes[a] for a in x_axes.split()]
    x, h = _rand(*shape), _rand(*[sizes.get(a, 63) for a in h_axes.split()], seed=1)
    h_ld = h if h_axes.split()[0] != "D" else h.t()  # the reference takes [L, C]
    want = _from_btd(causal_sum(_to_btd(x, how), h_ld), how)
    _equal_in_float64(c, x, h, want)


def test_a_filter_per_head_is_broadcast_over_the_head_features():
    """x [B T H K], filter [L H]: head h's K features all convolved with h's filter."""
    sizes = {"B": 2, "T": 63, "H": 3, "K": 4, "L": 20}
    c = _circuit("B T H K", "L H", sizes)
    x, h = _rand(2, 63, 3, 4), _rand(20, 3, seed=1)
    want = causal_sum(x, h[:, :, None].expand(20, 3, 4))
    _equal_in_float64(c, x, h, want)


def test_a_filter_per_batch_row_and_axes_in_any_order():
    """x [K T B], filter [B T]: each row of B has its own filter, broadcast over K."""
    c = _circuit("K T B", "B T", {"B": 2, "T": 63, "K": 3})
    x, h = _rand(3, 63, 2), _rand(2, 63, seed=1)
    want = torch.stack([causal_sum(x[:, :, i].t(), h[i][:, None]).t() for i in range(2)], 2)
    torch.testing.assert_close(ncd_compile(c, dtype=torch.float64)(x, h), want)
    torch.testing.assert_close(interpret(c, [x, h], {}), want)


# -- float32 and bfloat16: bounded
@pytest.mark.parametrize("dtype, bound", [(torch.float32, 1e-5), (torch.bfloat16, 2.0**-7)])
def test_lower_precision_is_within_its_rounding(dtype, bound):
    """The FFTs run in float32 for bfloat16 wires, so the error is the float32 transform's
    (about 1e-6 of the output's scale) plus the output's own rounding (2^-8 relative in
    bfloat16); gradients likewise. Against the float64 sum of the same (rounded) inputs; a
    sum of bfloat16 products in bfloat16 misses by 20 times more."""
    sizes = {"B": 2, "T": 63, "H": 3, "K": 4, "L": 50}
    c = _circuit("B T H K", "L H", sizes, dtype=str(dtype).removeprefix("torch."))
    x, h = _rand(2, 63, 3, 4, dtype=dtype), _rand(50, 3, dtype=dtype, seed=1)
    got = ncd_compile(c, dtype=dtype)(x, h)
    assert got.dtype == dtype
    x64, h64 = x.detach().double().requires_grad_(), h.detach().double().requires_grad_()
    want = causal_sum(x64, h64[:, :, None].expand(50, 3, 4))
    scale = want.abs().max()
    assert ((got.double() - want).abs() <= bound * (want.abs() + 0.05 * scale)).all()
    if dtype == torch.bfloat16:  # the same sum taken in bfloat16 is well outside the bound
        naive = causal_sum(x.detach(), h.detach()[:, :, None].expand(50, 3, 4)).double()
        assert ((naive - want).abs() > 4 * bound * (want.abs() + 0.05 * scale)).any()
    w = _rand(*want.shape, seed=2).detach()
    for g_got, g_want in zip(
        _grads(got, w.to(dtype), x, h), _grads(want, w, x64, h64), strict=True
    ):
        err = (g_got.double() - g_want).abs().max() / g_want.abs().max()
        assert err <= 2 * bound, err


def test_the_fft_length_is_the_next_5_smooth_number():
    """runtime.fft_length and the cost model's fft_length are the smallest integer ≥ n with
    no prime factor but 2, 3 and 5 (found here by factorisation)."""
    for n in [*range(1, 1500), 2**20 + 1, 3 * 10**6 + 7]:
        want = next(m for m in range(n, 2 * n + 1)
                    if set(sympy.factorint(m)) <= {2, 3, 5})  # fmt: skip
        assert runtime.fft_length(n) == want == fft_length(n), n


def test_the_written_file_runs_with_torch_alone(monkeypatch):
    c = _circuit("B T H K", "L H", {"B": 2, "T": 63, "H": 3, "K": 4, "L": 20})
    text = to_source(c)
    assert "import ncd" not in text and "from ncd" not in text
    assert "def long_conv(" in text and "def fft_length(" in text
    assert "long_conv(x, " in text and "dim=1)" in text
    model = ncd_compile(c)
    monkeypatch.setitem(sys.modules, "ncd", None)  # the file must stand alone
    src = load_source(text, class_name(c.name))
    x, h = _rand(2, 63, 3, 4, dtype=torch.float32).detach(), torch.randn(20, 3)
    assert torch.equal(src(x, h), model(x, h))


# -- errors
@pytest.mark.parametrize(
    "x_axes, h_axes, sizes, message",
    [
        ("B T D", "L D", {"L": 70},
         "port 'filter': the filter is no longer than the sequence (expected at most T=63 taps "
         "along L, found L=70)"),
        ("B T D", "L M D", {},
         "port 'filter': the filter's taps lie along one axis: seq or the one axis x lacks "
         "(expected T or one axis not on x, then channel axes among x's (B D), found "
         "[L=40 M=2 D=5] (2 axes not on x))"),
        ("B T D", "D", {},
         "(expected T or one axis not on x, then channel axes among x's (B D), found [D=5] "
         "(0 axes not on x))"),
        ("B T D", "T M", {},
         "port 'filter': filter axis M is not on x: a filter's channels are x's (expected T "
         "and axes among x's, found [T=63 M=2])"),
        ("B S D", "L D", {},
         "port 'x': axis T (the sequence) not on the input (expected axes including T, "
         "found [B=2 S=63 D=5])"),
    ],
)  # fmt: skip
def test_errors_say_where_what_and_found(x_axes, h_axes, sizes, message):
    sizes = {"B": 2, "T": 63, "S": 63, "D": 5, "L": 40, "M": 2, **sizes}
    with pytest.raises(BuildError) as e:
        _circuit(x_axes, h_axes, sizes)
    assert "box 'conv' (long_conv)" in str(e.value) and message in str(e.value)


def test_channels_of_other_sizes_are_refused():
    b = Builder("long", sizes={"B": 2, "T": 63, "D": 5, "L": 40})
    x = b.slice(b.input("x", "B T D"), "D", 0, 3)  # x's D: 3 channels, the filter's 5
    with pytest.raises(BuildError) as e:
        b.long_conv(x, b.input("h", "L D"), seq="T", name="conv")
    assert "box 'conv' (long_conv) port 'filter': size of channel axis D disagrees " in str(e.value)


def test_an_integer_input_is_refused():
    b = Builder("long", sizes={"T": 7, "D": 2})
    x, h = b.input("x", "T D", dtype="int64"), b.input("h", "T D")
    with pytest.raises(BuildError, match=r"port 'x': convolves floating point \(expected a "
                       r"float dtype, found int64\)"):  # fmt: skip
        b.long_conv(x, h, seq="T")


def test_a_filter_longer_than_the_sequence_at_run_time_is_refused():
    """The module's sizes are free (T and L may differ from the circuit's): the runtime
    says what it expected and found."""
    model = ncd_compile(_circuit("B T D", "L D", {"B": 2, "T": 8, "D": 3, "L": 8}))
    with pytest.raises(ValueError, match=r"long_conv: filter: expected at most T=8 taps, "
                       r"found 9"):  # fmt: skip
        model(torch.randn(2, 8, 3), torch.randn(9, 3))


def test_drawing_and_builder_help():
    c = _circuit("B T H K", "L H", {"B": 2, "T": 63, "H": 3, "K": 4, "L": 20})
    svg = ncd.render(c)
    for text in ("★", "causal", ">filter<", ">x<"):
        assert text in svg, text
    doc = Builder.long_conv.__doc__
    assert "The `long_conv` box" in doc and "ncd schema long_conv" in doc
    assert "seq" in doc and "filter" in doc


# -- cost against measurement
COSTED = [
    ("B T D", "L D", {"B": 3, "T": 63, "D": 5, "L": 40}),
    ("B H T K", "L H", {"B": 2, "H": 4, "T": 100, "K": 8, "L": 100}),
    ("B D T", "T D", {"B": 2, "T": 64, "D": 16}),
]


def test_flops_by_hand():
    """T = 63, L = 40: n = 108 (the first of 102 … 108 with no prime factor above 5),
    m = 55 complex bins; 15 rows of x (B D), 5 of the filter. Forward: 35 real FFTs (x's
    rows twice: forward and inverse; the filter's once) of 5/2·108·⌈log2 108⌉ = 1890 FLOPs,
    and 15·55 complex products of 6. None of it is matrix work."""
    c = _circuit(*COSTED[0][:2], COSTED[0][2])
    n = ncd.analyse(c, lowering="unfused", device="cpu").numbers
    assert n["flops"] == 35 * 1890 + 15 * 55 * 6
    assert n["mm_flops"] == 0
    # backward: the output gradient's FFT (15), the halves doubled (15·(108 − 55)), the
    # products for x and the filter (2·15·55·6) and the filter's summed over B (2·10·55),
    # full complex inverse FFTs of x's rows and the filter's (20·2·1890)
    assert n["flops_backward"] == (15 * 1890 + 15 * 53 + 2 * 15 * 55 * 6 + 2 * 10 * 55
                                   + 20 * 2 * 1890)  # fmt: skip


@pytest.mark.parametrize("x_axes, h_axes, sizes", COSTED)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kept_and_peak_bytes_against_the_cpu(x_axes, h_axes, sizes, dtype):
    """Kept bytes against saved-tensor hooks, peak bytes against the CPU allocator's events
    (forward and backward), with the inputs' gradients."""
    c = _circuit(x_axes, h_axes, sizes)
    name = str(dtype).removeprefix("torch.")
    n = ncd.analyse(c, lowering="unfused", device="cpu", dtype=name).numbers
    module = ncd_compile(c, dtype=dtype)
    kept, _ = measure.saved_bytes(module, measure.make_inputs(c, sizes, dtype=dtype))
    assert kept == n["activation_bytes"]
    peak, _ = measure.peak_bytes(module, measure.make_inputs(c, sizes, dtype=dtype))
    assert abs(peak - n["peak_bytes"]) <= 0.03 * peak, (peak, n["peak_bytes"])


@pytest.mark.parametrize("learned", ["x", "filter"])
def test_kept_and_peak_bytes_with_one_gradient(learned):
    """Only x needs a gradient (the filter is data), or only the filter (x is data): what is
    kept and the peak change accordingly."""
    sizes = {"B": 3, "T": 63, "D": 5, "L": 40}
    b = Builder("long", sizes=sizes)
    if learned == "x":
        x, h = b.param("B T D", name="xp"), b.input("h", "L D")
    else:
        x, h = b.input("x", "B T D"), b.param("L D", name="hp")
    b.output("y", b.long_conv(x, h, seq="T", name="conv"))
    c = b.build()
    n = ncd.analyse(c, lowering="unfused", device="cpu", grad_inputs=False).numbers
    module = ncd_compile(c)
    xs = [t.detach() for t in measure.make_inputs(c, sizes)]
    kept, _ = measure.saved_bytes(module, xs)
    # x padded to 108 and the filter's spectrum, or the filter padded and x's spectrum
    want = 15 * 108 * 4 + 5 * 55 * 8 if learned == "x" else 5 * 108 * 4 + 15 * 55 * 8
    assert kept == n["activation_bytes"] == want
    peak, _ = measure.peak_bytes(module, xs)
    assert abs(peak - n["peak_bytes"]) <= 0.03 * peak, (peak, n["peak_bytes"])
