"""The backward peak where a tensor is read by several boxes, against the CPU allocator.

Autograd gives a tensor read twice one gradient buffer, made by the backward of its last
reader (the first to run); each earlier reader's backward makes a gradient of its own,
which is added into the buffer and freed. An add hands its operands the output's gradient
itself (no buffer of their own); a view's gradient is a view of its output's. The caller
holds the outputs and their gradients until the backward returns (`measure.peak_bytes`
counts the gradients it passes in its baseline; the model holds them from the start of the
backward). The CPU's unary backward kernels (tanh, sigmoid, silu, gelu, exp) allocate only
their result.

Each circuit: h = x W (an activation of 16 KiB, against 256 bytes of weight), read by the
boxes under test; the peak of one forward + backward from the profiler's allocation events
(`measure.peak_bytes`) against the model's, exactly: the CPU allocator's events are
deterministic and every tensor here is one allocation. Without the earlier readers'
transient gradients the model was one tensor (16 KiB) short through adds and on the residual.
"""

from __future__ import annotations

import pytest

import ncd
from ncd.circuits.builder import Builder

from . import measure


def circuit(case):
    b = Builder(case, sizes={"B": 512, "D": 8, "H": 2, "K": 4})
    h = b.linear(b.input("x", "B D"), "D", "D", bias=False, name="l0")

    def u(x, fn, name):
        return b.unary(x, fn, name=name)

    if case == "read twice":
        y = b.mul(u(h, "tanh", "t"), u(h, "sigmoid", "s"))
    elif case == "read three times":
        y = b.add(b.add(u(h, "tanh", "t"), u(h, "sigmoid", "s")), u(h, "exp", "e"))
    elif case == "read through views":
        hk = b.split_axis(h, "D", "H K", name="split")
        y = b.mul(u(hk, "tanh", "t"), b.split_axis(u(h, "silu", "s"), "D", "H K"))
    elif case == "added to itself":
        y = b.mul(b.add(h, h), h)
    elif case == "through adds":
        a = b.add(u(h, "tanh", "t"), h)
        y = b.add(u(a, "sigmoid", "s"), a)
    elif case == "unary chain":
        y = u(u(u(h, "silu", "u1"), "gelu", "u2"), "tanh", "u3")
    elif case == "residual":
        y = b.add(h, b.linear(h, "D", "D", bias=False, name="l1"))
    b.output("y", y)
    return b.build()


CASES = ["read twice", "read three times", "read through views", "added to itself",
         "through adds", "unary chain"]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_backward_peak_is_the_allocators(case):
    c = circuit(case)
    got, _ = measure.peak_bytes(ncd.compile(c), measure.make_inputs(c))
    model = ncd.analyse(c, lowering="unfused", device="cpu").numbers["peak_bytes"]
    assert model == got, (case, model, got)


def test_a_residual_within_one_weight_gradient():
    """h + h W: the add hands h the caller's gradient, which the linear's gradient of h is
    then added to out of place (the buffer is shared). Measured 256 bytes (W's gradient)
    above the model, which the trace of allocations does not place."""
    c = circuit("residual")
    got, _ = measure.peak_bytes(ncd.compile(c), measure.make_inputs(c))
    model = ncd.analyse(c, lowering="unfused", device="cpu").numbers["peak_bytes"]
    assert 0 <= got - model <= 256, (model, got)


def test_read_twice_by_hand():
    """h read by tanh and sigmoid, multiplied: the peak is at the sigmoid's backward (the last
    reader's, the first to run), where h's buffer is made: the kept tanh and sigmoid, the
    output and its gradient, the gradients of tanh and sigmoid and h's, seven tensors of h's
    size beside x and W."""
    r = ncd.analyse(circuit("read twice"), lowering="unfused", device="cpu")
    tensor, weight = 512 * 8 * 4, 8 * 8 * 4
    assert r.numbers["peak_bytes"] == tensor + weight + 7 * tensor
