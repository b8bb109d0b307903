"""bench/studio_trial.py's keystroke-level model against operator sums counted by hand
(Card, Moran & Newell: K 0.28, P 1.1, B 0.1, H 0.4, M 1.35 s), on a small trial and a small
text; and the real trial read from the browser test without a browser."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "studio_trial.py"


@pytest.fixture(scope="module")
def klm():
    spec = importlib.util.spec_from_file_location("studio_trial", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_click_a_drag_and_a_field(klm):
    source = f"""
def {klm.TRIAL}(step):
    t = Trial(step, 2)
    t.click(".ncd-add-input")
    t.drag("x", "binary")
    t.field("out", "H K")
    t.type(".ncd-output-name", "y")
"""
    row = klm.studio_row(source)
    # click M P B B; drag M P B P B; field M P B B H, 3 K + Enter K, H; type: the same, 1 K
    want = (1.35 + 1.1 + 0.2) + (1.35 + 2.2 + 0.2) + (1.35 + 1.1 + 0.2 + 0.8 + 4 * 0.28)
    want += 1.35 + 1.1 + 0.2 + 0.8 + 0.28
    assert row["klm_s"] == pytest.approx(want, abs=0.01)
    assert (row["clicks"], row["drags"], row["keys"], row["actions"]) == (1, 1, 2, 4)


def test_a_shift_click_is_a_click_and_the_shift(klm):
    source = f"""
def {klm.TRIAL}(step):
    t.add("linear", "linear2", beside=True)
    t.add("linear", "linear3")
    t.click(".ncd-kind", shift=True)
"""
    row = klm.studio_row(source)
    assert row["klm_s"] == pytest.approx(3 * (1.35 + 1.1 + 0.2) + 2 * 0.28, abs=0.01)
    assert (row["clicks"], row["actions"], row["operators"]["K"]) == (3, 3, 2)


def test_an_unknown_action_is_refused(klm):
    source = f"def {klm.TRIAL}(step):\n    t.hover('x')\n"
    with pytest.raises(SystemExit, match="t.hover"):
        klm.studio_row(source)


def test_code_typed_line_by_line(klm):
    counts, lines, keys = klm.code_ops("a = 1\n\n    b(c)\n")
    # "a = 1" and Enter: 6 K; the blank line: 1 K; "b(c)" (indentation not typed): 5 K; 2 M
    assert (lines, keys) == (2, 12) and counts["M"] == 2 and counts["K"] == 12
    assert klm.seconds(counts) == pytest.approx(2 * 1.35 + 12 * 0.28)


def test_the_acceptance_trial_is_read_from_the_browser_test(klm):
    row = klm.studio_row(klm.TEST.read_text(encoding="utf-8"))
    assert row["actions"] == row["clicks"] + row["drags"] + row["keys"] > 0
