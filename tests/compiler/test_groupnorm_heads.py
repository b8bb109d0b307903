"""Group norm over heads with its groups a size (`groups="H"`): a circuit whose heads are
merged into the channels (`H V -> E`) keeps the group norm per head at every binding of H.
`groups` took a whole number only, so such a circuit compiled at another H normalised over
the wrong channels, silently."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import ncd
from ncd.circuits.builder import Builder
from ncd.circuits.errors import BuildError
from ncd.circuits.script import from_script, to_script
from ncd.compiler import to_source
from ncd.compiler.interpret import interpret
from tests.compiler.helpers import randomise


def heads_norm():
    b = Builder("heads_norm", sizes={"B": 2, "T": 3, "H": 2, "V": 4}, axes={"E": "H*V"})
    x = b.input("x", "B T H V")
    b.output("y", b.groupnorm(b.merge_axes(x, "H V", "E"), "E", "H", name="gn"))
    return b.build()


@pytest.mark.parametrize("heads", [2, 4])
def test_groups_follow_the_heads(heads):
    c = heads_norm()
    model = randomise(ncd.compile(c, sizes={"H": heads}, dtype=torch.float64))
    x = torch.randn(2, 3, heads, 4, dtype=torch.float64)
    p = dict(model.named_parameters())
    want = F.group_norm(x.reshape(6, heads * 4), heads, p["gn.weight"], p["gn.bias"], 1e-5)
    torch.testing.assert_close(model(x), want.view(2, 3, heads * 4), rtol=1e-12, atol=1e-12)
    got = interpret(c, [x], {k: v.detach() for k, v in p.items()}, sizes={"H": heads})
    torch.testing.assert_close(got, want.view(2, 3, heads * 4), rtol=1e-12, atol=1e-12)


def test_a_size_of_groups_is_drawn_priced_and_written_back():
    c = heads_norm()
    assert from_script(to_script(c)) == c
    assert ncd.Circuit.model_validate_json(c.to_json()) == c
    assert "g=H" in ncd.render(c)
    assert "nn.GroupNorm(c.H, c.H * c.V" in to_source(c)  # the standalone file follows H too
    # a mean and a 1/std in float32 per group: B T H of them, 2 * 2 * 3 * 8 * 4 bytes at H = 8
    assert "per-group mean and 1/std 384 B" in str(ncd.analyse(c, sizes={"H": 8}))


def test_groups_that_do_not_divide_or_are_no_whole_number_are_refused():
    b = Builder("bad", sizes={"B": 2, "C": 6, "G": 4})
    x = b.input("x", "B C")
    with pytest.raises(BuildError, match="groups must divide the channels"):
        b.groupnorm(x, "C", "G")
    with pytest.raises(BuildError, match="whole number"):
        b.groupnorm(x, "C", "C/4")
