"""The op families' cost formulas: numbers, sympy symbols, and FLOPs against PyTorch's own
count of the reference."""

import pytest
import sympy
import torch
from torch.utils.flop_counter import FlopCounterMode

from ncd.ops import attention_cost, config, linear_attention, linear_attention_cost
from ncd.ops.attention.reference import softmax_attention_reference

from ..cpu_memory import allocations, saved_storages

FUNCS = [
    attention_cost.flops_forward,
    attention_cost.flops_backward,
    attention_cost.io_forward,
    attention_cost.io_backward,
    attention_cost.activation_bytes,
    linear_attention_cost.flops_forward,
    linear_attention_cost.flops_backward,
    linear_attention_cost.flops_minimal,
    linear_attention_cost.io_forward,
    linear_attention_cost.io_backward,
    linear_attention_cost.activation_bytes,
]


def test_symbols_and_numbers_agree():
    B, T, H, K = sympy.symbols("B T H K", positive=True)
    sizes = {B: 4, T: 1024, H: 16, K: 128}
    for f in FUNCS:
        expr = f(B, T, H, K)
        number = f(4, 1024, 16, 128)
        assert number > 0
        assert abs(float(expr.subs(sizes)) - number) <= 1e-9 * number, f.__name__


def test_attention_flops_match_pytorch_count():
    B, T, S, H, D = 2, 24, 40, 3, 16
    q, k, v = torch.randn(B, T, H, D), torch.randn(B, S, H, D), torch.randn(B, S, H, D)
    with FlopCounterMode(display=False) as count:
        softmax_attention_reference(q, k, v)
    assert count.get_total_flops() == attention_cost.flops_forward(B, T, H, D, S=S, causal=False)


def test_linear_attention_is_linear_in_T():
    f = linear_attention_cost.flops_forward
    assert f(4, 2048, 16, 128) == 2 * f(4, 1024, 16, 128)
    assert linear_attention_cost.io_forward(4, 2048, 16, 128) == 2 * (
        linear_attention_cost.io_forward(4, 1024, 16, 128)
    )


def test_normalised_linear_attention_costs_more():
    la, args = linear_attention_cost, (4, 1024, 16, 128)
    for f in (la.flops_forward, la.flops_backward, la.io_forward, la.io_backward):
        assert f(*args, normalize=True) > f(*args), f.__name__
    B, T, H, K = sympy.symbols("B T H K", positive=True)
    kept = la.activation_bytes(B, T, H, K, normalize=True)
    assert sympy.simplify(kept - la.activation_bytes(B, T, H, K) - 4 * B * T * H * (K + 1)) == 0


def kept_bytes(fn):
    """(fn(), bytes of the unique storages autograd keeps for its backward)."""
    out, kept = saved_storages(fn)
    return out, sum(kept.values())


def backward_peak(out, grad):
    """Peak bytes the backward of `out` allocates (the gradients it returns included)."""
    return allocations(lambda: out.backward(grad))[1]


@pytest.mark.interpret
@pytest.mark.parametrize("normalize", [False, True])
def test_linear_attention_kept_bytes_are_what_autograd_saves(normalize):
    """`activation_bytes` against the storages autograd keeps for the op's backward (the
    kernels run under the interpreter): q, k, v, and when normalised the float32 output and
    denominator."""
    B, T, H, K, V = 2, 40, 3, 16, 32
    g = torch.Generator().manual_seed(0)
    q, k = (torch.rand(B, T, H, K, generator=g).half().requires_grad_() for _ in range(2))
    v = torch.randn(B, T, H, V, generator=g).half().requires_grad_()
    _, kept = kept_bytes(lambda: linear_attention(q, k, v, normalize=normalize, backend="triton"))
    assert kept == linear_attention_cost.activation_bytes(B, T, H, K, V, 2, normalize=normalize)


@pytest.mark.interpret
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("K, V", [(32, 32), (64, 32), (16, 48)])
@pytest.mark.parametrize("normalize", [False, True])
def test_linear_attention_backward_buffers(normalize, K, V, dtype, monkeypatch):
    """`backward_temp_bytes` against the backward's own allocations (torch.profiler's CPU
    allocator events), less the gradients it returns; the kernel launches are stubbed (on
    the GPU they allocate nothing), so only the op's Python-level tensors count."""
    from ncd.ops.linear_attention import chunk

    monkeypatch.setattr(chunk, "launch", lambda *a, **kw: None)
    B, T, H = 1, 48, 2
    g = torch.Generator().manual_seed(0)
    q, k = (torch.rand(B, T, H, K, generator=g).to(dtype).requires_grad_() for _ in range(2))
    v = torch.randn(B, T, H, V, generator=g).to(dtype).requires_grad_()
    o, _ = linear_attention(q, k, v, normalize=normalize, backend="triton")
    peak = backward_peak(o, torch.ones_like(o))
    bp = q.element_size()
    grads = bp * B * T * H * (2 * K + V)
    want = linear_attention_cost.backward_temp_bytes(B, T, H, K, V, bp, normalize=normalize)
    assert peak - grads == want


@pytest.mark.interpret
@pytest.mark.parametrize("K, V", [(32, 32), (64, 32), (16, 48)])
@pytest.mark.parametrize("want_dg", [True, False])
def test_simple_gla_backward_buffers(want_dg, K, V, monkeypatch):
    """simple_gla's `backward_temp_bytes` against the backward's own allocations less the
    gradients it returns (the backward kernel's launch stubbed, as above): with dg, the
    float32 rows of its per-token terms, one per backward program (the interpreter's 16-wide
    blocks)."""
    from ncd.ops.simple_gla import chunk, simple_gla
    from ncd.ops.simple_gla import cost as sg_cost

    monkeypatch.setattr(chunk, "launch", lambda *a, **kw: None)
    B, T, H = 1, 48, 2
    g = torch.Generator().manual_seed(0)
    q, k = (torch.rand(B, T, H, K, generator=g).half().requires_grad_() for _ in range(2))
    v = torch.randn(B, T, H, V, generator=g).half().requires_grad_()
    gates = torch.nn.functional.logsigmoid(torch.randn(B, T, H, generator=g))
    o, _ = simple_gla(q, k, v, gates.requires_grad_(want_dg), backend="triton")
    peak = backward_peak(o, torch.ones_like(o))
    grads = 2 * B * T * H * (2 * K + V) + (4 * B * T * H if want_dg else 0)
    block = chunk.INTERPRET_BWD["BLOCK_KS"]
    assert block == chunk.INTERPRET_BWD["BLOCK_VS"]
    want = sg_cost.backward_temp_bytes(B, T, H, K, V, block, block, want_dg=want_dg)
    assert peak - grads == want


@pytest.mark.interpret
@pytest.mark.parametrize("op", ["linear_attention", "simple_gla", "simple_gla_dg"])
def test_grouped_heads_kept_and_backward_bytes(op, monkeypatch):
    """q and k of G = 1 head read by H = 4 heads of v: autograd keeps what the ungrouped op
    keeps less the H - G heads of q and k it no longer has; the backward (launches stubbed,
    as above) writes dq and dk per value head, temporaries of H heads each beyond the
    kernels' own buffers (what the cost model adds: compiler/cost/rules/linear_attention.py,
    `_grouped`), and returns them summed to q's and k's size."""
    from ncd.ops.linear_attention import chunk as la_chunk
    from ncd.ops.simple_gla import chunk as sg_chunk
    from ncd.ops.simple_gla import cost as sg_cost
    from ncd.ops.simple_gla import simple_gla

    B, T, G, H, K, V = 1, 48, 1, 4, 32, 16
    gen = torch.Generator().manual_seed(0)
    q, k = (torch.rand(B, T, G, K, generator=gen).half().requires_grad_() for _ in range(2))
    v = torch.randn(B, T, H, V, generator=gen).half().requires_grad_()
    dg = op == "simple_gla_dg"
    gates = torch.nn.functional.logsigmoid(torch.randn(B, T, H, generator=gen)).requires_grad_(dg)
    if op == "linear_attention":
        chunk, call = la_chunk, lambda: linear_attention(q, k, v, backend="triton")[0]
        kept_ungrouped = linear_attention_cost.activation_bytes(B, T, H, K, V, 2)
        temps = linear_attention_cost.backward_temp_bytes(B, T, H, K, V, 2)
    else:
        chunk, call = sg_chunk, lambda: simple_gla(q, k, v, gates, backend="triton")[0]
        kept_ungrouped = sg_cost.activation_bytes(B, T, H, K, V, 2)
        block = sg_chunk.INTERPRET_BWD["BLOCK_KS"]
        temps = sg_cost.backward_temp_bytes(B, T, H, K, V, block, block, want_dg=dg)
    o, kept = kept_bytes(call)
    assert kept == kept_ungrouped - 2 * 2 * B * T * (H - G) * K
    monkeypatch.setattr(chunk, "launch", lambda *a, **kw: None)
    o = call()
    peak = backward_peak(o, torch.ones_like(o))
    grads = 2 * B * T * (2 * G * K + H * V) + (4 * B * T * H if dg else 0)
    # dg (float32 [B, T, H]) is made once the per-head buffers are summed and freed
    assert peak - grads == temps + 2 * 2 * B * T * H * K - (4 * B * T * H if dg else 0)


@pytest.mark.interpret
@pytest.mark.parametrize("Hkv", [4, 2])
def test_softmax_attention_kept_and_backward_bytes(Hkv, monkeypatch):
    """`activation_bytes` against what autograd keeps, `backward_temp_bytes` against the
    backward's own allocations less the gradients (kernel launches stubbed, as above)."""
    from ncd.ops import softmax_attention
    from ncd.ops.attention import fused

    monkeypatch.setattr(fused, "launch", lambda *a, **kw: None)
    B, T, S, H, K, V = 2, 40, 24, 4, 32, 16
    g = torch.Generator().manual_seed(0)
    q = torch.randn(B, T, H, K, generator=g).half().requires_grad_()
    k = torch.randn(B, S, Hkv, K, generator=g).half().requires_grad_()
    v = torch.randn(B, S, Hkv, V, generator=g).half().requires_grad_()
    o, kept = kept_bytes(lambda: softmax_attention(q, k, v, causal=False, backend="triton"))
    assert kept == attention_cost.activation_bytes(B, T, H, K, V, S, Hkv)
    peak = backward_peak(o, torch.ones_like(o))
    grads = 2 * (B * T * H * K + B * S * Hkv * (K + V))
    assert peak - grads == attention_cost.backward_temp_bytes(B, T, H, K, V)


def forward_temps(fn):
    """Bytes the call allocates and frees again before it returns (its peak less what is
    still live at its end)."""
    _, peak, live = allocations(fn)
    return peak - live


def delta_rule_call(gated, B, T, H, K, V):
    """A call of the (gated) delta rule's kernels on float16 inputs that need gradients."""
    from ncd.ops.delta_rule import delta_rule, gated_delta_rule

    g = torch.Generator().manual_seed(0)
    q, k = (torch.rand(B, T, H, K, generator=g).half().requires_grad_() for _ in range(2))
    v = torch.randn(B, T, H, V, generator=g).half().requires_grad_()
    beta = torch.rand(B, T, H, generator=g).requires_grad_()
    gates = torch.nn.functional.logsigmoid(torch.randn(B, T, H, generator=g)).requires_grad_()
    if gated:
        return lambda: gated_delta_rule(q, k, v, gates, beta, backend="triton")
    return lambda: delta_rule(q, k, v, beta, backend="triton")


@pytest.mark.interpret
@pytest.mark.parametrize("values", [False, True], ids=["keep_w", "keep_values"])
@pytest.mark.parametrize("prepared", [False, True], ids=["scan_forms_qk", "prepared"])
@pytest.mark.parametrize("gated", [False, True], ids=["ungated", "gated"])
def test_delta_rule_forward_buffers(gated, prepared, values, monkeypatch):
    """The delta rules' `forward_temp_bytes` against the forward's own allocations that it
    frees before returning (U; -W where V' is kept in its place; with config
    delta_prepared_qk, Q K^T and the decayed keys too); launches stubbed."""
    from ncd.ops.delta_rule import chunk
    from ncd.ops.delta_rule import cost as dr_cost

    monkeypatch.setattr(chunk, "launch", lambda *a, **kw: None)
    monkeypatch.setattr(config.settings, "delta_prepared_qk", prepared)
    monkeypatch.setattr(config.settings, "delta_keep_values", values)
    monkeypatch.setattr(config.settings, "gated_delta_keep_values", values)
    B, T, H, K, V = 1, 40, 2, 16, 32
    temps = forward_temps(delta_rule_call(gated, B, T, H, K, V))
    C = chunk.INTERPRET_CHUNK
    want = dr_cost.forward_temp_bytes(
        B, T, H, K, V, 2, C=C, gated=gated, prepared=prepared, keep_values=values
    )
    assert temps == want


@pytest.mark.interpret
@pytest.mark.parametrize("prepared", [False, True], ids=["scans_form_qk", "prepared"])
@pytest.mark.parametrize("keep", ["none", "states", "values"])
@pytest.mark.parametrize("gated", [False, True], ids=["ungated", "gated"])
def test_delta_rule_backward_buffers(gated, keep, prepared, monkeypatch):
    """The delta rules' `backward_temp_bytes` against the backward's own allocations less the
    gradients it returns (launches stubbed): V', dV', the entering states and their
    gradients (V' and the states kept by the forward under config delta_keep_states, V'
    under delta_keep_values); with config delta_prepared_qk the backward's Q K^T and decayed
    keys are freed before the gradients are allocated, so they do not raise the peak."""
    from ncd.ops.delta_rule import chunk
    from ncd.ops.delta_rule import cost as dr_cost

    monkeypatch.setattr(chunk, "launch", lambda *a, **kw: None)
    monkeypatch.setattr(config.settings, "delta_prepared_qk", prepared)
    monkeypatch.setattr(config.settings, "delta_keep_states", keep == "states")
    monkeypatch.setattr(config.settings, "delta_keep_values", keep == "values")
    monkeypatch.setattr(config.settings, "gated_delta_keep_values", keep == "values")
    B, T, H, K, V = 1, 48, 2, 16, 32  # whole chunks: the formulas count T / C states
    o, _ = delta_rule_call(gated, B, T, H, K, V)()
    peak = backward_peak(o, torch.ones_like(o))
    grads = B * T * H * (2 * (2 * K + V) + 4 + (4 if gated else 0))
    C = chunk.INTERPRET_CHUNK
    kept = dict(keep_states=keep == "states", keep_values=keep == "values")
    want = dr_cost.backward_temp_bytes(B, T, H, K, V, 2, C=C, **kept)
    assert peak - grads == want
