"""bench/autotune_cache.py: Triton's autotuning results saved from one cache and loaded into
another, laid out as Triton reads them (<hash>/<kernel>.autotune.json), results merged across
runs, other cache files left out, and a file that is not such an archive refused with one
line and exit 1."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "autotune_cache.py"


@pytest.fixture
def ac():
    spec = importlib.util.spec_from_file_location("_autotune_cache", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def result(cache, rel, text):
    p = cache / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_results_travel_from_one_cache_to_another(ac, tmp_path):
    a, b, saved = tmp_path / "a", tmp_path / "b", tmp_path / "saved" / "gpu.json"
    result(a, "h1/chunk_fwd.autotune.json", '{"key": [1]}')
    result(a, "h1/chunk_fwd.cubin", "binary")  # compiled code stays with its machine
    assert ac.save(a, saved, {"device": "NVIDIA H200"}) == 1
    result(a, "h2/chunk_bwd.autotune.json", '{"key": [2]}')
    result(a, "h1/chunk_fwd.autotune.json", '{"key": [3]}')
    assert ac.save(a, saved) == 2  # the file keeps the first run's results, newer ones win
    result(b, "h2/chunk_bwd.autotune.json", "already here")
    assert ac.load(b, saved) == 1
    assert (b / "h1" / "chunk_fwd.autotune.json").read_text() == '{"key": [3]}'
    assert (b / "h2" / "chunk_bwd.autotune.json").read_text() == "already here"
    assert not (b / "h1" / "chunk_fwd.cubin").exists()
    assert ac.load(b, tmp_path / "absent.json") == 0


def test_cache_dir_and_names(ac, tmp_path):
    assert ac.cache_dir({"TRITON_CACHE_DIR": str(tmp_path)}) == tmp_path
    assert ac.cache_dir({}) == Path.home() / ".triton" / "cache"
    assert ac.slug("NVIDIA H200") == "nvidia_h200"
    assert ac.slug("NVIDIA H100 80GB HBM3") == "nvidia_h100_80gb_hbm3"


@pytest.mark.parametrize(
    "text, says",
    [
        ('{"files": {"../../etc/x.autotune.json": "x"}}', "not a path inside the cache"),
        ('{"files": {"h/k.cubin": "x"}}', "not a path inside the cache"),
        ("not json", "autotune_cache:"),
        ("[1, 2]", "expected"),
        ('{"files": {"h/k.autotune.json": 3}}', "expected"),
    ],
)
def test_a_bad_file_is_refused_without_a_traceback(tmp_path, text, says):
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    cache = tmp_path / "cache"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "load", str(bad)],
        capture_output=True, text=True, env={"TRITON_CACHE_DIR": str(cache)}, timeout=60,
    )  # fmt: skip
    assert run.returncode == 1
    assert says in run.stderr and "Traceback" not in run.stderr
    assert not cache.exists()
