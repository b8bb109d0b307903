"""bench/ops_gated.py's `--variants` on the CPU, its measurement replaced by a recorder: ncd is
measured under each set of ops switches at every T (turned on only during its own
measurement), in an order that rotates from one T to the next; an unknown switch is recorded
as that variant's error row, the others still measured."""

from __future__ import annotations

import importlib.util
import json
from argparse import Namespace
from pathlib import Path

import pytest

from ncd.ops import config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("_ops_gated", ROOT / "bench" / "ops_gated.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    seen = []

    def one(op, impl, B, T, *rest):
        s = config.settings
        seen.append((T, s.delta_prepared_qk, s.delta_keep_states))
        return {"op": op, "impl": impl, "T": T}

    monkeypatch.setattr(mod, "one", one)
    return mod, seen


def run(mod, capsys, variants, impl="ncd", T=(1024, 2048, 4096)):
    args = Namespace(op="delta_rule", impl=impl, T=list(T), B=1, H=1, K=16, dtype="float32",
                     check_max_t=0, fla_lift_guard=False, variants=variants)  # fmt: skip
    mod.child(args)
    out = capsys.readouterr().out
    return [json.loads(line[4:]) for line in out.splitlines() if line.startswith("ROW ")]


def test_each_variant_at_every_length_in_rotating_order(bench, capsys):
    mod, seen = bench
    variants = ["default", "delta_prepared_qk", "delta_prepared_qk+delta_keep_states"]
    rows = run(mod, capsys, variants)
    assert [(r["T"], r["variant"]) for r in rows] == [
        (1024, variants[0]), (1024, variants[1]), (1024, variants[2]),
        (2048, variants[1]), (2048, variants[2]), (2048, variants[0]),
        (4096, variants[2]), (4096, variants[0]), (4096, variants[1]),
    ]  # fmt: skip
    switches = {"default": (False, False), variants[1]: (True, False), variants[2]: (True, True)}
    assert [s[1:] for s in seen] == [switches[r["variant"]] for r in rows]
    assert not config.settings.delta_prepared_qk  # each override ends with its measurement


def test_unknown_switch_is_an_error_row(bench, capsys):
    mod, seen = bench
    rows = run(mod, capsys, ["default", "no_such_switch"], T=(1024,))
    assert rows[0] == {"op": "delta_rule", "impl": "ncd", "T": 1024, "variant": "default"}
    assert "no_such_switch" in rows[1]["error"] and rows[1]["variant"] == "no_such_switch"


def test_anchors_ignore_the_variants(bench, capsys):
    mod, _ = bench
    rows = run(mod, capsys, ["default", "delta_prepared_qk"], impl="fla", T=(1024,))
    assert rows == [{"op": "delta_rule", "impl": "fla", "T": 1024}]


def test_a_variant_turns_a_switch_off(bench, capsys, monkeypatch):
    """`name=0` turns a switch off for its variant (the others keep the defaults)."""
    mod, _ = bench
    seen = []

    def one(op, impl, B, T, *rest):
        seen.append((config.settings.delta_keep_values, config.settings.delta_keep_states))
        return {"op": op, "impl": impl, "T": T}

    monkeypatch.setattr(mod, "one", one)
    monkeypatch.setattr(config.settings, "delta_keep_values", True)
    rows = run(mod, capsys, ["default", "delta_keep_values=0+delta_keep_states"], T=(1024,))
    assert [r["variant"] for r in rows] == ["default", "delta_keep_values=0+delta_keep_states"]
    assert seen == [(True, False), (False, True)]
    assert config.settings.delta_keep_values


def test_a_variant_value_is_read_as_the_environment_reads_it(bench, capsys, monkeypatch):
    """`name=no` is off as NCD_...=no is; a value that is neither on nor off is that
    variant's error row, naming it, and the other variants are still measured."""
    mod, _ = bench
    seen = []

    def one(op, impl, B, T, *rest):
        seen.append(config.settings.delta_keep_values)
        return {"op": op, "impl": impl, "T": T}

    monkeypatch.setattr(mod, "one", one)
    monkeypatch.setattr(config.settings, "delta_keep_values", True)
    rows = run(mod, capsys, ["delta_keep_values=no", "delta_keep_values=maybe"], T=(1024,))
    assert seen == [False]
    assert "maybe" in rows[1]["error"] and rows[1]["variant"] == "delta_keep_values=maybe"
