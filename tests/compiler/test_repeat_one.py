"""A call repeated N times is an nn.ModuleList for every N, N=1 included: the parameter
names (`blocks.0.ln1.weight`) do not depend on N, in ncd.compile's module and in the file
`ncd compile` writes, so a checkpoint moves between them and `for block in model.blocks`
(README's FSDP2 recipe) works."""

from __future__ import annotations

import torch

from ncd import gallery
from ncd.compiler import compile as ncd_compile
from ncd.compiler import to_source


def _file(text: str) -> dict:
    ns: dict = {"__name__": "ncd_generated"}
    exec(compile(text, "<generated>", "exec", dont_inherit=True), ns)  # our generated code
    return ns


def test_n1_is_a_module_list_of_one_with_the_keys_of_n2():
    c = gallery.get("transformer")
    one, two = ncd_compile(c, sizes={"N": 1}), ncd_compile(c, sizes={"N": 2})
    assert isinstance(one.blocks, torch.nn.ModuleList) and len(one.blocks) == 1
    assert [type(b).__name__ for b in one.blocks] == [type(two.blocks[0]).__name__]
    keys_two = {k for k in two.state_dict() if not k.startswith("blocks.1.")}
    assert set(one.state_dict()) == keys_two
    # the first block of an N=2 checkpoint loads into N=1, strictly
    one.load_state_dict({k: v for k, v in two.state_dict().items() if k in keys_two})
    torch.testing.assert_close(one.blocks[0].ln1.weight, two.blocks[0].ln1.weight)


def test_n1_checkpoint_loads_into_the_written_file_with_config_n1():
    c = gallery.get("transformer")
    model = ncd_compile(c, sizes={"N": 1}).eval()
    for sizes in ({"N": 1}, None):  # the file written at N=1, and the default one at N=1
        ns = _file(to_source(c, sizes))
        cfg = ns["TransformerConfig"](N=1)
        assert cfg.N == 1
        standalone = ns["Transformer"](cfg).eval()
        assert isinstance(standalone.blocks, torch.nn.ModuleList)
        standalone.load_state_dict(model.state_dict(), strict=True)
        x = torch.randint(0, 8, (2, 16))
        torch.testing.assert_close(standalone(x), model(x), rtol=0, atol=0)
    assert [b for b in model.blocks]  # the FSDP2 recipe iterates the blocks


def test_the_file_written_at_n1_makes_more_blocks_from_its_config():
    c = gallery.get("transformer")
    ns = _file(to_source(c, {"N": 1}))
    assert ns["TransformerConfig"]().N == 1
    three = ns["Transformer"](ns["TransformerConfig"](N=3))
    assert len(three.blocks) == 3
    assert set(three.state_dict()) == set(ncd_compile(c, sizes={"N": 3}).state_dict())
