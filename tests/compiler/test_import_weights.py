"""Import keeps the model: what factories may return, weights in safetensors beside the spec
(reloaded into a fresh circuit object they give the original model's outputs), buffers stay
buffers, class names in snake case, and what the import drops is warned about."""

from __future__ import annotations

import importlib.util
import pickle
import sys
import warnings

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import ncd
from ncd.circuits.errors import NcdError
from ncd.cli import main
from ncd.commands.importer import model_and_inputs
from ncd.compiler import attached, from_torch
from ncd.compiler import compile as ncd_compile
from ncd.compiler.attached import WeightsError
from ncd.compiler.importer import _snake


class Scaled(nn.Module):
    """A linear map, a layer norm, and a fixed per-feature scale held as a buffer, times a
    learned gain held as a parameter (both read through `get_attr`)."""

    def __init__(self, d=6):
        super().__init__()
        self.lin = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.register_buffer("scale", torch.linspace(0.5, 2.0, d))
        self.gain = nn.Parameter(torch.rand(d) + 0.5)

    def forward(self, x):
        return self.norm(self.lin(x)) * self.scale * self.gain


def _model():
    torch.manual_seed(0)
    m = Scaled().double().eval()
    with torch.no_grad():
        m.norm.weight.uniform_(0.5, 1.5)
        m.norm.bias.uniform_(-0.5, 0.5)
    return m


# -- 1. what a factory may return


def test_factory_returns_model_inputs_and_more():
    m, x = nn.Linear(4, 4), torch.randn(2, 4)
    assert model_and_inputs((m, x), [], "f")[1] is x
    assert model_and_inputs((m, (x, x)), [], "f")[1] == (x, x)
    assert model_and_inputs([m, [x]], [], "f")[1] == (x,)
    assert model_and_inputs((m, x, {"config": 1}, "more"), [], "f")[0] is m
    got = model_and_inputs(m, [(3, 4)], "f")[1]
    assert [tuple(t.shape) for t in got] == [(3, 4)]
    with pytest.raises(NcdError, match="without example inputs.*--shape"):
        model_and_inputs(m, [], "f")
    with pytest.raises(NcdError, match=r"returned int, not an nn.Module"):
        model_and_inputs(3, [], "f")
    with pytest.raises(NcdError, match=r"returned tuple of 2 \(str, Linear\), not"):
        model_and_inputs(("x", m), [], "f")
    with pytest.raises(NcdError, match="then str where the example inputs go"):
        model_and_inputs((m, "x"), [], "f")


def test_cli_factory_with_more_writes_spec_and_weights(tmp_path, monkeypatch):
    (tmp_path / "facts.py").write_text(
        "import torch\nfrom torch import nn\n"
        "def made():\n"
        "    torch.manual_seed(1)\n"
        "    m = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))\n"
        "    return m, torch.randn(3, 8), {'note': 'ignored'}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    spec = tmp_path / "spec.json"
    assert main(["import", "facts:made", "-o", str(spec)]) == 0
    assert (tmp_path / "spec.safetensors").is_file()
    import facts  # the same factory, for the reference outputs

    model, x, _ = facts.made()
    circuit = ncd.Circuit.from_json(spec.read_text())  # a fresh object: nothing attached
    assert not attached.weights(circuit)
    module = ncd_compile(circuit, weights=tmp_path / "spec.safetensors").eval()
    with torch.no_grad():
        torch.testing.assert_close(module(x), model.eval()(x), rtol=1e-6, atol=1e-6)

    # ncd compile finds spec.safetensors beside the spec and writes block.safetensors for
    # the generated file, whose class then computes the original model
    out = tmp_path / "block.py"
    assert main(["compile", str(spec), "-o", str(out)]) == 0
    state = load_file(str(tmp_path / "block.safetensors"))
    torch.testing.assert_close(state["box_0.weight"], model[0].weight.detach())
    mod_spec = importlib.util.spec_from_file_location("ncd_test_block", out)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    from ncd.compiler.names import class_name

    generated = getattr(mod, class_name(circuit.name))().eval()
    generated.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(generated(x), model(x), rtol=1e-6, atol=1e-6)


# -- 2. weights beside the spec


def test_weights_round_trip_through_json_and_safetensors(tmp_path):
    model = _model()
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    circuit = from_torch(model, x)
    path = attached.save_weights(circuit, tmp_path / "scaled.safetensors")
    fresh = ncd.Circuit.from_json(circuit.to_json())
    with torch.no_grad():
        want = model(x)
        for weights in (path, str(path), attached.load_weights(path)[0]):
            module = ncd_compile(fresh, dtype=torch.float64, weights=weights).eval()
            torch.testing.assert_close(module(x), want, rtol=1e-12, atol=1e-12)
        # without the weights the reloaded spec has fresh ones: the file is what carries them
        assert not torch.allclose(ncd_compile(fresh, dtype=torch.float64)(x), want)


def test_loading_never_runs_code(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "evil.safetensors"
    bad.write_bytes(pickle.dumps({"lin.weight": Payload()}))
    circuit = ncd.Circuit.from_json(from_torch(_model(), torch.randn(2, 5, 6).double()).to_json())
    with pytest.raises(WeightsError, match=r"evil\.safetensors: not a readable safetensors"):
        ncd_compile(circuit, weights=bad)
    assert not marker.exists()


def test_weights_errors_are_located(tmp_path, capsys):
    model = _model()
    circuit = from_torch(model, torch.randn(2, 5, 6, dtype=torch.float64))
    fresh = ncd.Circuit.from_json(circuit.to_json())
    with pytest.raises(WeightsError, match=r"nope\.safetensors: not found"):
        ncd_compile(fresh, weights=tmp_path / "nope.safetensors")
    good = attached.save_weights(circuit, tmp_path / "w.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:40])
    with pytest.raises(WeightsError, match=r"cut\.safetensors: not a readable"):
        ncd_compile(fresh, weights=cut)
    with pytest.raises(WeightsError, match=r"'lin\.weight' has shape \(3, 6\).*\(6, 6\)"):
        ncd_compile(fresh, weights={"lin.weight": torch.zeros(3, 6)})
    with pytest.raises(WeightsError, match="entries the compiled circuit does not have.*extra"):
        ncd_compile(fresh, weights={"extra.weight": torch.zeros(6)})
    spec = tmp_path / "spec.json"
    spec.write_text(circuit.to_json())
    capsys.readouterr()
    assert main(["compile", str(spec), "--weights", str(cut)]) == 1
    assert "cut.safetensors: not a readable safetensors file" in capsys.readouterr().err


# -- 3. buffers stay buffers


def test_buffers_stay_buffers(tmp_path):
    model = _model()
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    circuit = from_torch(model, x)
    boxes = {b.name: b.kind for b in circuit.boxes}
    assert boxes["scale"] == "param" and boxes["gain"] == "param"
    for module in (
        ncd_compile(circuit, dtype=torch.float64),
        ncd_compile(
            ncd.Circuit.from_json(circuit.to_json()),
            dtype=torch.float64,
            weights=attached.save_weights(circuit, tmp_path / "w.safetensors"),
        ),
    ):
        params, bufs = dict(module.named_parameters()), dict(module.named_buffers())
        assert "scale.weight" in bufs and "scale.weight" not in params
        assert "gain.weight" in params and "lin.weight" in params
        torch.testing.assert_close(bufs["scale.weight"], model.scale)
        with torch.no_grad():
            torch.testing.assert_close(module(x), model(x), rtol=1e-12, atol=1e-12)
        restored = pickle.loads(pickle.dumps(module))
        assert "scale.weight" in dict(restored.named_buffers())
    # the circuit says so itself (`trained` False): a buffer without the weights file, and no
    # parameter in the cost model's count (it counted the buffer: 66 for 60)
    assert not circuit.box("scale").trained
    bare = ncd_compile(ncd.Circuit.from_json(circuit.to_json()))
    assert "scale.weight" in dict(bare.named_buffers())
    params = sum(p.numel() for p in bare.parameters())
    assert ncd.analyse(circuit).numbers["params"] == params == 60


class WithConstants(nn.Module):
    """A linear map, a persistent buffer (the model's state), and three constants that are no
    part of its state_dict: a non-persistent buffer, a tensor literal, a tensor made from
    sizes."""

    def __init__(self, d=6):
        super().__init__()
        self.lin = nn.Linear(d, d)
        self.register_buffer("table", torch.linspace(-1.0, 1.0, d), persistent=False)
        self.register_buffer("running", torch.linspace(0.5, 2.0, d))

    def forward(self, x):  # [B, T, D]
        y = self.lin(x) * self.table + self.running
        return y + torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) + torch.ones(x.shape[1], 6)


def test_the_models_own_state_dict_loads_strictly(tmp_path):
    """The model's state_dict, renamed to the compiled names, loads with strict=True: the
    constants it does not hold (the non-persistent buffer, the literal, the ones) stay in the
    compiled module's state_dict, for the generated file and the interpreter, but loading may
    leave them out (they were reported missing) and they keep their values; a parameter or
    the persistent buffer may not be left out. The same in a module compiled from the spec and
    its weights file, in an unpickled one and in the generated file."""
    from ncd.compiler.names import class_name

    torch.manual_seed(0)
    model = WithConstants().double().eval()
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    circuit = from_torch(model, x)
    renamed = {"lin.weight": "lin.weight", "lin.bias": "lin.bias", "running": "running.weight"}
    assert set(model.state_dict()) == set(renamed)
    mapped = {renamed[k]: v.clone() for k, v in model.state_dict().items()}
    compiled = ncd_compile(circuit, dtype=torch.float64)
    assert {"table.weight", "tensor_constant0.weight", "ones.value"} <= set(compiled.state_dict())
    path = attached.save_weights(circuit, tmp_path / "w.safetensors")
    fresh = ncd.Circuit.from_json(circuit.to_json())
    namespace: dict = {}
    exec(ncd.compiler.to_source(circuit), namespace)  # noqa: S102 - the file ncd wrote
    generated = namespace[class_name(circuit.name)]().double().eval()
    generated.load_state_dict(compiled.state_dict())  # its constants' values
    modules = {
        "compiled": compiled,
        "from the weights file": ncd_compile(fresh, dtype=torch.float64, weights=path),
        "unpickled": pickle.loads(pickle.dumps(compiled)),
        "generated": generated,
    }
    for how, module in modules.items():
        with torch.no_grad():
            for k, t in module.state_dict().items():  # what loading must put back
                if k in mapped:
                    t.zero_()
            module.load_state_dict(mapped, strict=True)
            torch.testing.assert_close(module(x), model(x), rtol=1e-12, atol=1e-12, msg=how)
        for required in ("lin.bias", "running.weight"):
            less = {k: v for k, v in mapped.items() if k != required}
            with pytest.raises(RuntimeError, match=f"Missing key.*{required}"):
                module.load_state_dict(less, strict=True)


# -- 4. class names


@pytest.mark.parametrize(
    "cls, snake",
    [
        ("SwiGLU", "swiglu"),
        ("GQAttention", "gq_attention"),
        ("RMSNorm", "rms_norm"),
        ("MLP", "mlp"),
        ("MLP2", "mlp2"),
        ("Conv2d", "conv2d"),
        ("ViT", "vit"),
        ("ConvNeXtBlock", "conv_next_block"),
        ("GPTBlock", "gpt_block"),
        ("TransformerEncoderLayer", "transformer_encoder_layer"),
        ("LlamaDecoderLayer", "llama_decoder_layer"),
        ("MultiheadAttention", "multihead_attention"),
        ("Sequential", "sequential"),
    ],
)
def test_class_names_in_snake_case(cls, snake):
    assert _snake(cls) == snake


def test_circuit_named_after_the_class():
    SwiGLU = type("SwiGLU", (nn.Sequential,), {})
    c = from_torch(SwiGLU(nn.Linear(4, 4)), torch.randn(2, 4))
    assert c.name == "swiglu"


# -- 5. what is dropped is warned about


def test_attention_dropout_dropped_is_warned_with_its_path():
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True).eval()
    with pytest.warns(UserWarning, match=r"self_attn: the attention dropout .*p=0\.1"):
        from_torch(layer, torch.randn(2, 5, 16))
    quiet = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_torch(quiet, torch.randn(2, 5, 16))


@pytest.mark.parametrize("momentum", [None, 0.0])
def test_batchnorm_momentum_dropped_is_warned_with_its_path(momentum):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=momentum)).eval()
    with pytest.warns(UserWarning, match=rf"^1: batch norm momentum={momentum} .* dropped"):
        from_torch(net, torch.randn(2, 3, 6, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_torch(
            nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval(), torch.randn(2, 3, 6, 6)
        )
