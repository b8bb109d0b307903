"""bench/gated_blocks_gpu.py on the CPU (--dry: tiny sizes, float32, ncd's chunked PyTorch mixers
in place of fla's): the hand-written GLA and DeltaNet blocks take the compiled gallery blocks'
weights by box name and agree with them and with the token-by-token recurrence; a warm-up that
runs out of time is recorded as an fla row with an error, the ncd row still measured."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "_gated_blocks", ROOT / "bench" / "gated_blocks_gpu.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(out: Path) -> list[dict]:
    (path,) = out.glob("gated_blocks_gpu_dry_*.json")
    return json.loads(path.read_text())["rows"]


def test_dry_run_rows_agree(bench, tmp_path):
    assert bench.main(["--dry", "--out", str(tmp_path)]) == 0
    rows = _rows(tmp_path)
    assert [(r["op"], r["impl"]) for r in rows] == [
        (op, impl) for op in bench.BLOCKS for impl in ("ncd", "fla")
    ]
    for r in rows:
        assert "error" not in r, r
        assert r["step_ms"] > 0 and r["fwd_ms"] > 0
        assert r["rel_err"] < 1e-5, r  # against the recurrence, float32
        if r["impl"] == "ncd":
            assert r["rel_err_vs_fla"] < 1e-5 and r["grad_rel_err"] < 1e-4, r
            assert r["step_ratio_fla_over_ncd"] > 0


def test_warm_up_out_of_time(bench, tmp_path):
    args = ["--dry", "--dry-warmup", "--fla-warmup-s", "0.5", "--blocks", "deltanet_block"]
    assert bench.main([*args, "--out", str(tmp_path)]) == 0
    ncd, fla = _rows(tmp_path)
    assert ncd["impl"] == "ncd" and "error" not in ncd and ncd["rel_err"] < 1e-5
    assert fla["impl"] == "fla" and fla["error"].startswith("fla warm-up did not finish within")


def test_each_block_measured_in_a_process_of_its_own(bench, tmp_path):
    assert bench.main(["--dry", "--isolate", "--out", str(tmp_path)]) == 0
    rows = _rows(tmp_path)
    assert [(r["op"], r["impl"]) for r in rows] == [
        (op, impl) for op in bench.BLOCKS for impl in ("ncd", "fla")
    ]
    assert all("error" not in r and r["rel_err"] < 1e-5 for r in rows), rows


def test_a_measuring_process_that_dies_gives_error_rows(bench, tmp_path, monkeypatch):
    import subprocess

    def died(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, -11, stdout="", stderr="illegal memory access\n")

    monkeypatch.setattr(bench.subprocess, "run", died)
    args = ["--dry", "--isolate", "--blocks", "deltanet_block", "--out", str(tmp_path)]
    assert bench.main(args) == 1
    ncd, fla = _rows(tmp_path)
    for r in (ncd, fla):
        assert r["error"].startswith("the measuring process ended with rc=-11 and no rows")
        assert "illegal memory access" in r["error"]


def test_a_variant_is_compiled_with_its_table_entries_and_timed_beside(bench, tmp_path,
                                                                       monkeypatch):  # fmt: skip
    """`--variant l2_norm=ncd`: one more ncd row, the block compiled while the choice table
    held that entry (restored after), with the run's weights, timed in the same interleaving."""
    from ncd.compiler import choices

    seen, compile_ = [], bench.ncd_compile

    def recording(*args, **kwargs):
        seen.append(dict(choices.FASTEST.get("l2_norm", {})))
        return compile_(*args, **kwargs)

    monkeypatch.setattr(bench, "ncd_compile", recording)
    before = {k: dict(v) for k, v in choices.FASTEST.items()}
    args = ["--dry", "--blocks", "deltanet_block", "--variant", "l2_norm=ncd"]
    assert bench.main([*args, "--out", str(tmp_path)]) == 0
    assert before == choices.FASTEST
    assert seen[0] == before["l2_norm"] and seen[-1] == {"cuda": "ncd"}
    ncd, fla, other = _rows(tmp_path)
    assert (ncd["impl"], fla["impl"], other["impl"]) == ("ncd", "fla", "ncd")
    assert other["variant"] == "l2_norm=ncd" and "variant" not in ncd
    assert other["rel_err"] < 1e-5 and other["step_ms"] > 0
    assert other["step_ratio_over_ncd"] == pytest.approx(other["step_ms"] / ncd["step_ms"], 1e-3)
