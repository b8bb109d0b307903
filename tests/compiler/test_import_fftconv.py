"""Import of a causal convolution by FFT written out (safari's `fftconv_ref`, as Hyena, H3 and
S4's convolution mode write it) as one `long_conv` box, against the model it came from
(outputs and the gradients of the input, the filter and the skip weight, float64); variants of
the FFT length and normalisation, a filter shorter than the sequence or an input of its own;
uses that are not the causal convolution (no slice, a slice past the first T) stay opaque."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ncd.compiler.errors import InputError

from .test_import_ops import _x, check, same


def fftconv_ref(u, k, D):
    """safari's reference (H3, Hyena): u [B, H, T], k [H, L], D [H]."""
    seqlen = u.shape[-1]
    fft_size = 2 * seqlen
    k_f = torch.fft.rfft(k, n=fft_size) / fft_size
    u_f = torch.fft.rfft(u.to(dtype=k.dtype), n=fft_size)
    y = torch.fft.irfft(u_f * k_f, n=fft_size, norm="forward")[..., :seqlen]
    out = y + u * D.unsqueeze(-1)
    return out.to(dtype=u.dtype)


def plain(u, k, D):
    """The default norm, no scaling, the shortest FFT length (T + L - 1)."""
    T, L = u.shape[-1], k.shape[-1]
    n = T + L - 1
    y = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(k, n=n), n=n)
    return y[:, :, :T] + u * D[:, None]


def longer(u, k, D):
    """A longer FFT length than needed, the filter's transform first, `0:T`."""
    n = 4 * u.shape[-1]
    k_f = torch.fft.rfft(k, n=n)
    y = torch.fft.irfft(torch.fft.rfft(u, n=n) * k_f, n=n)[..., 0 : u.shape[-1]]
    return y + u * D.unsqueeze(-1)


class Conv(nn.Module):
    """A long convolution layer: the filter k [H, L] and skip D [H] held, u [B, H, T]."""

    def __init__(self, fn=fftconv_ref, H=3, L=13):
        super().__init__()
        self.fn = fn
        self.k = nn.Parameter(_x(H, L, seed=1))
        self.D = nn.Parameter(_x(H, seed=2))

    def forward(self, u):
        return self.fn(u, self.k, self.D)


def kinds(circuit) -> list[str]:
    return [b.kind for b in circuit.boxes]


@pytest.mark.filterwarnings("error::UserWarning")  # (no size fixed to the example's)
@pytest.mark.parametrize("fn", [fftconv_ref, plain, longer])
@pytest.mark.parametrize("L", [13, 5])
def test_fftconv_imports_as_one_long_conv_box(fn, L):
    """u [B, H, T] and k [H, T] (safari's test sizes, T odd) or a filter shorter than T."""
    circuit, _ = same(Conv(fn, L=L), _x(2, 3, 13))
    assert "opaque" not in kinds(circuit), kinds(circuit)
    assert kinds(circuit).count("long_conv") == 1
    (box,) = [b for b in circuit.boxes if b.kind == "long_conv"]
    assert box.seq == circuit.inputs[0].axes[-1]  # the last dim's name


@pytest.mark.filterwarnings("error::UserWarning")  # (no size fixed to the example's)
def test_a_shorter_filter_follows_the_sequence_length():
    """The FFT length and the slice's stop computed from `u.shape[-1]`: the compiled import
    convolves at another length as the model does."""
    model = Conv(fftconv_ref, L=5).double()
    circuit, compiled = same(model, _x(2, 3, 12))
    check(model, compiled, [_x(4, 3, 29, seed=3)])


def test_fft_length_fixed_in_the_code_fixes_the_sequence_length():
    """`n=32` written as a number convolves causally only while T + L - 1 <= 32: the import
    is the long_conv box at the example's length, and refuses others."""

    def fixed(u, k, D):
        y = torch.fft.irfft(torch.fft.rfft(u, n=32) * torch.fft.rfft(k, n=32), n=32)
        return y[..., : u.shape[-1]] + u * D[:, None]

    model = Conv(fixed, L=5).double()
    with pytest.warns(UserWarning, match="fixes D = 12"):
        circuit, compiled = same(model, _x(2, 3, 12))
    assert "long_conv" in kinds(circuit) and "opaque" not in kinds(circuit)
    with pytest.raises(InputError, match="axis D has size 12"):
        compiled(_x(2, 3, 29))


class Filtered(nn.Module):
    """The filter an input of its own (Hyena's implicit filter), rfft'd once for the batch."""

    def forward(self, u, k):
        T = u.shape[-1]
        k_f = torch.fft.rfft(k, n=2 * T) / (2 * T)
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * T) * k_f, n=2 * T, norm="forward")
        return y[..., :T]


@pytest.mark.filterwarnings("error::UserWarning")  # (no size fixed to the example's)
def test_a_filter_input_is_the_box_filter_port():
    circuit, _ = same(Filtered(), _x(2, 4, 9), _x(4, 7, seed=5))
    # (k's axes, named as an input's, renamed to u's channel axis and its own taps axis)
    assert sorted(kinds(circuit)) == ["long_conv", "rename"], kinds(circuit)


def circular(u, k, D):
    """A circular convolution: no padding, no slice."""
    y = torch.fft.irfft(torch.fft.rfft(u) * torch.fft.rfft(k, n=u.shape[-1]), n=u.shape[-1])
    return y + u * D[:, None]


def anticausal(u, k, D):
    """The last T outputs of the full convolution (not the first)."""
    T, L = u.shape[-1], k.shape[-1]
    y = torch.fft.irfft(torch.fft.rfft(u, n=2 * T) * torch.fft.rfft(k, n=2 * T), n=2 * T)
    return y[..., L - 1 : L - 1 + T] + u * D[:, None]


def whole(u, k, D):
    """All 2T outputs of the padded product (no slice)."""
    n = 2 * u.shape[-1]
    return torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(k, n=n), n=n) * D[:, None]


@pytest.mark.parametrize("fn", [circular, anticausal, whole])
def test_other_fft_products_stay_opaque(fn):
    circuit, _ = same(Conv(fn, L=5), _x(2, 3, 12))
    assert "long_conv" not in kinds(circuit)
    assert "opaque" in kinds(circuit)
