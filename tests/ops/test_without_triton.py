"""ncd without a usable Triton: Triton has no wheels for macOS or Windows, and a PyTorch older
than 2.8 brings a Triton older than the kernels are written for. Each case runs in a fresh
interpreter where `import triton` fails, or finds a Triton 3.2: ncd imports, draws, prices and
compiles circuits, the ops run their PyTorch forms (checked against the formulas written out
here), and asking for the kernels says why they cannot run."""

import subprocess
import sys
import textwrap

import pytest

PRELUDE = {
    "missing": """
        import sys

        class NoTriton:  # an import system without Triton
            def find_spec(self, name, path=None, target=None):
                if name == "triton" or name.startswith("triton."):
                    raise ModuleNotFoundError(f"No module named {name!r}")

        sys.meta_path.insert(0, NoTriton())
    """,
    "old": """
        import sys
        import types

        old = types.ModuleType("triton")  # a Triton 3.2: none of what the kernels need
        old.__version__ = "3.2.0"
        sys.modules["triton"] = old
    """,
}

BODY = """
    import warnings

    import torch

    import ncd
    from ncd import gallery
    from ncd.ops import _triton, linear_attention, simple_gla, softmax_attention

    assert _triton.MISSING and WHY in _triton.MISSING, _triton.MISSING
    torch.manual_seed(0)
    B, T, H, K = 2, 40, 3, 8
    q, k, v = (torch.randn(B, T, H, K) / 3 for _ in range(3))
    # causal linear attention, o_t = sum_{s <= t} (q_t . k_s) v_s, written out
    scores = torch.einsum("bthk,bshk->bhts", q, k).tril()
    want = torch.einsum("bhts,bshv->bthv", scores, v)
    o, _ = linear_attention(q, k, v)
    assert torch.allclose(o, want, atol=1e-5), (o - want).abs().max()
    # scalar decay: o_t = sum_{s <= t} exp(G_t - G_s) (q_t . k_s) v_s, G the cumulative gate
    g = -torch.rand(B, T, H) / 4
    G = g.cumsum(1).permute(0, 2, 1)  # [B, H, T]
    decay = torch.exp(G[..., :, None] - G[..., None, :]).tril()
    want = torch.einsum("bhts,bshv->bthv", scores * decay, v) * K**-0.5
    o, _ = simple_gla(q, k, v, g)
    assert torch.allclose(o, want, atol=1e-5), (o - want).abs().max()
    o = softmax_attention(q, k, v, causal=True)
    assert o.shape == (B, T, H, K)
    try:
        linear_attention(q, k, v, backend="triton")
    except RuntimeError as e:
        assert WHY in str(e), e
    else:
        raise AssertionError("backend='triton' ran without Triton")
    # the language, the cost model and the compiler
    circuit = gallery.get("deltanet_block")  # B 2, T 32, D = H K = 16
    ncd.analyse(circuit, sizes={"T": 64})
    assert ncd.render(circuit).lstrip().startswith("<")  # the SVG
    y = ncd.compile(circuit)(torch.randn(2, 32, 16))
    assert y.shape == (2, 32, 16) and torch.isfinite(y).all()
    print("ok")
"""


@pytest.mark.parametrize(
    "case, why",
    [("missing", "Triton is not installed"), ("old", "need Triton 3.4 or newer, found 3.2.0")],
)
def test_ncd_works_without_a_usable_triton(case, why):
    code = textwrap.dedent(PRELUDE[case]) + f"WHY = {why!r}\n" + textwrap.dedent(BODY)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]
