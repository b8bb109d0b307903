"""Grouped key/value heads in the `attention` box (GQA; MQA with one key/value head): the
compiled box (ncd.ops and PyTorch's SDPA) against a hand-written reference, where query head
h reads key/value head h // (H/G); shape rule errors; cost; drawing."""

from __future__ import annotations

import math

import pytest
import torch

import ncd
from ncd.circuits.builder import Builder
from ncd.circuits.errors import BuildError
from ncd.compiler import compile as ncd_compile
from ncd.compiler import interpret, to_source
from ncd.compiler.names import class_name

from .helpers import load_source

SIZES = {"B": 2, "H": 6, "G": 2, "T": 7, "S": 9, "K": 5, "V": 3}


def _circuit(causal=False, kv="G", sizes=None):
    b = Builder("gqa", sizes={**SIZES, "T": 9, **(sizes or {})} if causal else {**SIZES,
                **(sizes or {})})  # fmt: skip
    q = b.input("q", "B H T K")
    k, v = b.input("k", f"B {kv} S K"), b.input("v", f"B {kv} S V")
    b.output("y", b.attention(q, k, v, heads="H", kv_heads=kv, causal=causal, name="gqa"))
    return b.build()


def reference(q, k, v, causal):
    """softmax(q_h k_g^T / sqrt(K) [causal]) v_g per query head h, g = h // (H / G), with
    a loop over the heads ([B, H, T, K] queries; [B, G, S, K] keys, [B, G, S, V] values)."""
    H, G = q.shape[1], k.shape[1]
    outs = []
    for h in range(H):
        g = h // (H // G)
        s = q[:, h] @ k[:, g].transpose(-1, -2) / math.sqrt(q.shape[-1])  # B T S
        if causal:
            T, S = s.shape[-2:]
            s = s.masked_fill(torch.ones(T, S, dtype=torch.bool).triu(1), float("-inf"))
        outs.append(torch.softmax(s, -1) @ v[:, g])
    return torch.stack(outs, 1)


def _inputs(c, seed=0):
    checked = c.check()
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn([checked.number(a.size) for a in checked.inputs[n].axes], generator=g,
                    dtype=torch.float64, requires_grad=True)
        for n in ("q", "k", "v")
    ]  # fmt: skip


@pytest.mark.parametrize("fused", ["ncd", "torch"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kv", ["G", "U"])  # U: one key/value head (multi-query)
def test_grouped_heads_match_the_reference(fused, causal, kv):
    c = _circuit(causal, kv, {"U": 1})
    xs = _inputs(c)
    model = ncd_compile(c, dtype=torch.float64, fused=fused)
    got = model(*xs)
    want = reference(*xs, causal)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(interpret(c, xs, {}), want, rtol=1e-10, atol=1e-10)
    w = torch.randn(want.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    g1 = torch.autograd.grad((got * w).sum(), xs)
    g2 = torch.autograd.grad((want * w).sum(), xs)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("fused", ["ncd", "torch"])
def test_generated_source_runs_grouped_heads(fused):
    c = _circuit()
    src = to_source(c, fused=fused)
    assert ("enable_gqa=True" in src) == (fused == "torch")
    m = load_source(src, class_name(c.name)).to(torch.float64)
    xs = _inputs(c)
    torch.testing.assert_close(m(*xs), reference(*xs, False), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("shapes", "fields", "message"),
    [
        (("B H T K", "B G S K", "B G S V"), {"heads": "H", "kv_heads": "G"}, None),
        (("B H T K", "B E S K", "B E S V"), {"heads": "H", "kv_heads": "E"}, "dividing H = 6"),
        (("B H T K", "B G S K", "B G S V"), {"kv_heads": "G"}, "grouped heads name two axes"),
        (("B H T K", "B G S K", "B G S V"), {"heads": "H", "kv_heads": "H"}, "two axes"),
        (("B H T K", "B H S K", "B H S V"), {"heads": "H", "kv_heads": "G"}, "axis G"),
        (("B T K", "B G S K", "B G S V"), {"heads": "H", "kv_heads": "G"}, "axis H"),
        (("B H T K", "B G S K", "B H S V"), {"heads": "H", "kv_heads": "G"}, "port 'v'"),
    ],
)
def test_the_shape_rule_checks_the_grouping(shapes, fields, message):
    b = Builder("gqa", sizes={**SIZES, "E": 4})
    q, k, v = (b.input(n, s) for n, s in zip("qkv", shapes, strict=True))
    if message is None:
        b.output("y", b.attention(q, k, v, **fields))
        assert b.build().check().outputs["y"].names == ("B", "H", "T", "V")
        return
    with pytest.raises(BuildError, match=message):
        b.attention(q, k, v, **fields)


def _dense():
    b = Builder("mha", sizes=SIZES)
    q, k, v = b.input("q", "B H T K"), b.input("k", "B H S K"), b.input("v", "B H S V")
    b.output("y", b.attention(q, k, v, name="mha"))
    return b.build()


def test_cost_counts_query_heads_for_flops_and_key_value_heads_for_their_bytes():
    from ncd.ops import attention_cost as ac

    n = ncd.analyse(_circuit(), sizes=SIZES).numbers
    dense = ncd.analyse(_dense(), sizes=SIZES).numbers  # as many key/value heads as queries
    B, H, G, T, S, K, V = (SIZES[a] for a in "BHGTSKV")
    assert n["flops"] == ac.flops_forward(B, T, H, K, V, S, causal=False) == dense["flops"]
    # kept: q, k and v (k and v of G heads), the output and the log-sum-exp, float32
    kept = 4 * (B * H * T * K + B * G * S * (K + V) + B * H * T * V) + 4 * B * H * T
    assert n["activation_bytes"] == kept
    assert dense["activation_bytes"] - kept == 4 * B * (H - G) * S * (K + V)


def test_the_drawing_shows_the_grouping():
    from tests.test_vocabulary_drawing import node_texts

    text = node_texts(ncd.render(_circuit()), "box:gqa")
    assert "◗◁◗" in text and "H:G" in text


class _GQA(torch.nn.Module):
    """SDPA with 4 query heads reading 2 key/value heads (`enable_gqa=True`)."""

    def __init__(self):
        super().__init__()
        self.q, self.kv = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)

    def forward(self, x):
        B, T, _ = x.shape
        q = self.q(x).view(B, T, 4, 2).transpose(1, 2)
        k, v = self.kv(x).view(B, T, 2, 2, 2).permute(2, 0, 3, 1, 4).unbind(0)
        o = torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        return o.transpose(1, 2).reshape(B, T, 8)


def test_imported_grouped_sdpa_is_one_grouped_attention_box():
    """`enable_gqa=True` maps to the box's heads/kv_heads; the import repeated the keys and
    values to every query head (a split, a concat and a merge each), priced and run as such."""
    torch.manual_seed(0)
    model, x = _GQA().eval(), torch.randn(2, 5, 8)
    circuit = ncd.from_torch(model, x)
    [att] = [b for b in circuit.boxes if b.kind == "attention"]
    assert att.heads is not None and att.kv_heads is not None
    assert not [b for b in circuit.boxes if b.kind == "concat"]
    with torch.no_grad():
        torch.testing.assert_close(ncd_compile(circuit).eval()(x), model(x))
