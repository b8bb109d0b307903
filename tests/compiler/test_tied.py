"""Tied parameters (`Circuit.tied`): one tensor read by two boxes, as a language model's output
map reads its token embedding. Checked against a PyTorch model written with the tie, and
against the circuit without it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ncd
from ncd.circuits.builder import Builder
from ncd.circuits.errors import ValidationError
from ncd.compiler import compile as ncd_compile
from ncd.compiler import from_torch, to_source
from ncd.compiler.names import class_name

from .helpers import load_source


def _lm(tie=True):
    """Tokens -> embedding -> norm -> output map back to the vocabulary."""
    b = Builder("tiny_lm", sizes={"B": 2, "T": 5, "W": 11, "D": 6})
    ids = b.input("ids", "B T", dtype="int64")
    h = b.embedding(ids, "W", "D", name="wte")
    h = b.layernorm(h, "D", name="ln")
    b.output("logits", b.linear(h, "D", "W", bias=False, name="lm_head"))
    if tie:
        b.tie("lm_head.weight", "wte.weight")
    return b.build()


class TinyLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.ln = nn.Embedding(11, 6), nn.LayerNorm(6)
        self.lm_head = nn.Linear(6, 11, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, ids):
        return self.lm_head(self.ln(self.wte(ids)))


def test_a_tied_weight_is_one_parameter_trained_once():
    model = ncd_compile(_lm())
    assert model.lm_head.weight is model.wte.weight
    assert sum(p.numel() for p in model.parameters()) == 11 * 6 + 2 * 6
    ref = TinyLM()
    model.load_state_dict(ref.state_dict())
    ids = torch.randint(0, 11, (2, 5))
    torch.testing.assert_close(model(ids), ref(ids))
    # one SGD step on each: the shared table gets both gradients, in both
    for m in (model, ref):
        m(ids).square().mean().backward()
        with torch.no_grad():
            for p in m.parameters():
                p -= 0.1 * p.grad
    torch.testing.assert_close(model.wte.weight, ref.wte.weight)
    torch.testing.assert_close(model(ids), ref(ids))


def test_the_written_file_ties_too():
    circuit = _lm()
    src = to_source(circuit)
    assert "# tied" in src
    module = load_source(src, class_name(circuit.name))
    assert module.lm_head.weight is module.wte.weight


def test_the_cost_report_counts_a_tied_weight_once():
    tied, untied = ncd.analyse(_lm()), ncd.analyse(_lm(tie=False))
    assert untied.numbers["params"] - tied.numbers["params"] == 11 * 6
    assert tied.numbers["params"] == sum(p.numel() for p in TinyLM().parameters())
    row = next(r for r in tied.box_rows() if r["name"] == "lm_head")
    assert row["params"] == 0 and any("tied to wte.weight" in n for n in row["notes"])


def test_import_finds_the_tie():
    circuit = from_torch(TinyLM(), torch.randint(0, 11, (2, 5)))
    assert circuit.tied == {"lm_head.weight": "wte.weight"}
    compiled = ncd_compile(circuit)
    assert sum(p.numel() for p in compiled.parameters()) == sum(
        p.numel() for p in TinyLM().parameters()
    )


@pytest.mark.parametrize(
    "param,to,message",
    [
        ("lm_head.bias", "wte.weight", "no parameter 'lm_head.bias'"),
        ("lm_head.weight", "ln.weight", "shapes differ"),
        ("lm_head.weight", "lm_head.weight", "not tied itself"),
    ],
)
def test_a_wrong_tie_is_refused_where_it_is(param, to, message):
    b = Builder("bad", sizes={"B": 2, "T": 5, "W": 11, "D": 6})
    ids = b.input("ids", "B T", dtype="int64")
    h = b.layernorm(b.embedding(ids, "W", "D", name="wte"), "D", name="ln")
    b.output("y", b.linear(h, "D", "W", bias=False, name="lm_head"))
    b.tie(param, to)
    with pytest.raises(ValidationError, match=message):
        b.build()


def test_the_builder_code_of_a_tied_circuit_ties():
    from ncd.circuits.script import from_script, to_script

    text = to_script(_lm())
    assert 'b.tie("lm_head.weight", "wte.weight")' in text
    assert from_script(text) == _lm()
