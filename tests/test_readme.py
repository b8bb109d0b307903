"""The README's Python examples run as written (a newcomer copies them)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    for code in blocks:
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})  # noqa: S102 - our own docs
    assert (tmp_path / "block.pdf").stat().st_size > 1000


def test_readme_figure_is_current():
    """The README's figure is what the renderer draws today (regenerate with
    `ncd render transformer_block -o docs/figures/transformer_block.svg`)."""
    from ncd import gallery, render

    figure = README.parent / "docs" / "figures" / "transformer_block.svg"
    assert figure.name in README.read_text()

    def content(svg: str) -> list[str]:
        # what is drawn, not where: coordinates depend on the fonts of the machine
        return re.findall(r"<(?:title|text)[^>]*>([^<]*)<", svg)

    assert content(render(gallery.get("transformer_block"))) == content(figure.read_text())


def test_the_language_section_names_every_kind():
    """The README's list of box kinds (section "The language") names each kind there is."""
    from ncd.circuits.kinds import KINDS

    section = README.read_text().split("## The language", 1)[1].split("\n#", 1)[0]
    named = set(re.findall(r"`([a-z_]+)`", section))
    assert not set(KINDS) - named, sorted(set(KINDS) - named)
