"""bench/cost_gpu.py runs (on the CPU, tiny sizes) and writes its JSON: the GPU run at the end
of the session is then known to start."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cost_gpu_bench_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("_cost_gpu", ROOT / "bench" / "cost_gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rc = bench.main(["--device", "cpu", "--tiny", "--out", str(tmp_path),
                     "--only", "attention_box,linear_attention,transformer_block"])  # fmt: skip
    assert rc == 0
    data = json.loads((tmp_path / "cost_gpu.json").read_text())
    cases = {r["case"] for r in data["records"]}
    assert cases == {"attention_box", "linear_attention", "transformer_block"}
    for r in data["records"]:
        assert "error" not in r, r
        assert r["measured"]["fwd_s"] > 0 and r["model"]["fused"]["peak_bytes"] > 0
        assert r["expected_lowering"] == ("fused" if r["case"].endswith("_box") else "unfused")
    assert (tmp_path / "cost_gpu.md").read_text().startswith("| case |")
