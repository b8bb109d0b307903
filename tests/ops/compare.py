"""Comparing an op's outputs and gradients with a reference's, shared by the op tests."""

import torch


def rel_rms(x, ref) -> float:
    """||x - ref|| / ||ref|| in float64; NaN becomes inf (a NaN error would pass every `<`
    and be dropped by `max`)."""
    x, ref = x.double(), ref.double()
    err = ((x - ref).norm() / ref.norm()).item()
    return err if err == err else float("inf")


def output_and_gradient_errors(outs, refs, inputs, ref_in, gen) -> list[float]:
    """rel_rms of each output against its reference, then of each input's gradient against
    the reference's, under one random cotangent per output (drawn from `gen`, in the output's
    dtype; the same values in float64 for the reference). Every gradient has its input's
    shape and dtype."""
    cot = [torch.randn(x.shape, generator=gen).to(x.dtype) for x in outs]
    grads = torch.autograd.grad(outs, inputs, cot)
    ref_grads = torch.autograd.grad(refs, ref_in, [c.double() for c in cot])
    assert all(a.shape == x.shape and a.dtype == x.dtype for a, x in zip(grads, inputs))
    return [rel_rms(a, b) for a, b in zip([*outs, *grads], [*refs, *ref_grads])]
