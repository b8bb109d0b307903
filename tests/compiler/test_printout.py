"""A compiled module prints like a hand-written one: each layer as PyTorch's own class prints
it (`Linear(in_features=32, ...)`, never fx's bare `Module()`) with its box in the circuit's
axes, the circuit's inputs, outputs and sizes, and the parameters' count, dtype and device as
they are now; deep copies and pickles keep it. TorchScript is refused by one clear error, by
ncd.compile's module and by the generated file alike."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import fx, nn

from ncd import gallery
from ncd.compiler import CompileError, to_source
from ncd.compiler import compile as ncd_compile

from .helpers import load_source, positions_circuit


def _graph_modules(m):
    return [s for s in m.modules() if isinstance(s, fx.GraphModule)]


@pytest.mark.parametrize("name", gallery.names())
def test_no_layer_prints_as_a_bare_module(name):
    m = ncd_compile(gallery.get(name))
    for gm in _graph_modules(m):
        for key, sub in gm.named_children():
            assert type(sub) is not nn.Module, f"{type(gm).__name__}.{key}"
    assert "Module()" not in repr(m)


def test_layers_print_as_pytorch_prints_them_with_their_axes():
    m = ncd_compile(gallery.get("transformer_block"))
    text = repr(m)
    assert str(m) == text  # as nn.Module prints: the graph's code is m.code
    lines = text.splitlines()
    assert lines[0] == "TransformerBlock("
    assert lines[1].startswith("  # circuit 'transformer_block' (") and "H=4" in lines[1]
    assert lines[1].endswith("x [B T D] -> y [B T D]")
    n = sum(p.numel() for p in m.parameters())
    assert lines[2] == f"  # {n:,} parameters; float32 on cpu"
    q = repr(nn.Linear(32, 32))  # PyTorch's own print of the holder
    assert f"  (q_proj): {q}  # linear D -> H K" in lines
    assert f"  (ff_up): {repr(nn.Linear(32, 64))}  # linear D -> F" in lines
    ln = repr(nn.LayerNorm(32))
    assert f"  (ln1): {ln}  # layernorm over D" in lines
    assert isinstance(m.q_proj, nn.Linear) and m.q_proj.weight is m.get_parameter("q_proj.weight")
    assert "float64 on cpu" in repr(m.double())


def test_free_parameters_print_their_shape():
    m = ncd_compile(positions_circuit())
    assert "(pos): Param(16, 32)  # param" in repr(m)


def test_repeated_blocks_print_once_with_their_count():
    m = ncd_compile(gallery.get("transformer"))
    text = repr(m)
    assert "(0-1): 2 x TransformerBlock(" in text
    assert "      # circuit 'transformer_block': x [B T D] -> y [B T D]" in text.splitlines()
    assert text.count("# ") == text.count("  # ")  # notes only, never a bare '#'


def test_copies_and_pickles_keep_the_layers_and_the_printout():
    m = ncd_compile(gallery.get("transformer"))
    for other in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert repr(other) == repr(m)
        assert list(other.state_dict()) == list(m.state_dict())
        assert isinstance(other.blocks[1].q_proj, nn.Linear)
    c = copy.deepcopy(m)
    assert c.blocks[0].q_proj.weight is c.get_parameter("blocks.0.q_proj.weight")
    assert c.blocks[0].q_proj.weight is not m.blocks[0].q_proj.weight


def test_torchscript_is_refused_by_name():
    m = ncd_compile(gallery.get("transformer_block"))
    with pytest.raises(CompileError, match=r"torch\.jit\.script: .*torch\.export\.export"):
        torch.jit.script(m)


def test_the_generated_file_prints_its_sizes_and_refuses_torchscript():
    c = gallery.get("transformer_block")
    m = load_source(to_source(c), "TransformerBlock")
    lines = repr(m).splitlines()
    assert lines[1] == "  TransformerBlockConfig(H=4, K=8, V=8, F=64)"
    assert f"  (q_proj): {repr(nn.Linear(32, 32))}" in lines
    with pytest.raises(NotImplementedError, match=r"TorchScript .*torch\.export\.export"):
        torch.jit.script(m)
