"""`ncd gallery -o DIR`: the gallery as one offline HTML page.

The fast tests read the page's HTML for a few entries (one of them broken on purpose); the
browser test builds the page of every entry of `ncd.gallery.ENTRIES`, opens it in headless
Chromium and checks that every entry's card shows a figure of non-zero size, that nothing is
fetched from outside the file, and that no entry failed.
"""

from __future__ import annotations

import re
import shutil
from functools import partial
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ncd import gallery
from ncd.page import build_page

# Two entries whose cost along T is known from their papers: softmax attention is quadratic
# in T (every query against every key), causal linear attention is linear (a running state).
SOFTMAX, LINEAR = "attention", "linear_attention"


class Outline(HTMLParser):
    """What the tests read of the page: per card (data-entry) whether it has an inline SVG
    figure, an error, a code block, and its cost rows (data-figure -> data-value); every
    src/href on the page; the tags that would load something."""

    def __init__(self, text: str):
        super().__init__()
        self.cards: dict[str, dict] = {}
        self.links: list[str] = []
        self.loaders: list[str] = []
        self.families: dict[str, list[str]] = {}
        self._card = None
        self._in_figure = 0
        self._family = None
        self._row = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "section" and "card" in classes:
            self._card = self.cards.setdefault(
                a["data-entry"],
                {"svg": False, "error": False, "code": False, "cost": {}, "failed": False},
            )
            self._card["failed"] = "failed" in classes
        card = self._card
        if tag == "div" and "figure" in classes:
            self._in_figure = 1
        if tag == "svg" and self._in_figure and card is not None:
            card["svg"] = True
        if tag == "pre" and "error" in classes and card is not None:
            card["error"] = True
        if tag == "details" and "code" in classes and card is not None:
            card["code"] = True
        if tag == "tr" and "data-figure" in a and card is not None:
            card["cost"][a["data-figure"]] = None
            self._row = a["data-figure"]
        if tag == "td" and "data-value" in a and card is not None:
            card["cost"][self._row] = a["data-value"]
        if tag == "li" and "data-family" in a:
            self._family = self.families.setdefault(a["data-family"], [])
        if tag == "a" and self._family is not None:
            self._family.append(a["href"].lstrip("#"))
        for key in ("src", "href"):
            if key in a and tag != "svg":
                self.links.append(a[key])
        if tag in ("script", "link", "iframe", "object", "embed"):
            self.loaders.append(tag)

    def handle_endtag(self, tag):
        if tag == "section":
            self._card = None
        if tag == "div":
            self._in_figure = 0
        if tag == "li":
            self._family = None


def _external(links: list[str]) -> list[str]:
    return [u for u in links if not u.startswith(("#", "data:"))]


def _broken():
    raise ValueError("this entry is broken on purpose")


@pytest.fixture(scope="module")
def small_page():
    entries = [
        gallery.ENTRIES[SOFTMAX],
        gallery.Entry("broken_on_purpose", "A broken entry", "no paper", _broken),
        gallery.ENTRIES[LINEAR],
    ]
    return entries, build_page(entries)


def test_every_entry_has_a_card_with_figure_cost_and_code(small_page):
    _, page = small_page
    out = Outline(page.html)
    assert list(out.cards) == [SOFTMAX, "broken_on_purpose", LINEAR]
    for name in (SOFTMAX, LINEAR):
        card = out.cards[name]
        assert card["svg"] and card["code"] and not card["error"] and not card["failed"], name
        assert set(card["cost"]) >= {"flops", "params", "activation_bytes", "io_bytes"}, name
        assert all(v not in (None, "None") for v in card["cost"].values()), card["cost"]
    assert page.html.count("<h3>Equations it implements</h3>") == 3


def test_a_broken_entry_shows_its_error_and_the_page_goes_on(small_page):
    _, page = small_page
    card = Outline(page.html).cards["broken_on_purpose"]
    assert card["failed"] and card["error"] and not card["svg"]
    assert "this entry is broken on purpose" in page.html
    assert page.problems == [
        "broken_on_purpose: build: ValueError: this entry is broken on purpose"
    ]


def test_one_failing_step_keeps_the_others(monkeypatch):
    import ncd.compiler

    def refuse(circuit, *a, **k):
        raise RuntimeError(f"cannot compile {circuit.name}")

    monkeypatch.setattr(ncd.compiler, "to_source", refuse)
    page = build_page([gallery.ENTRIES[SOFTMAX]])
    card = Outline(page.html).cards[SOFTMAX]
    assert card["failed"] and card["error"] and card["svg"] and card["cost"]
    assert not card["code"]
    assert page.problems == [f"{SOFTMAX}: compile: RuntimeError: cannot compile {SOFTMAX}"]


def test_parameters_shown_are_those_of_the_compiled_module(small_page):
    from ncd.compiler import compile

    entries, page = small_page
    cards = Outline(page.html).cards
    for name in (SOFTMAX, LINEAR):
        module = compile(gallery.ENTRIES[name].build())
        assert int(cards[name]["cost"]["params"]) == sum(p.numel() for p in module.parameters())


def test_scaling_plot_puts_softmax_and_linear_attention_in_their_families(small_page):
    _, page = small_page
    out = Outline(page.html)
    assert out.families == {"2": [SOFTMAX], "1": [LINEAR]}
    assert page.plot_png.startswith(b"\x89PNG") and len(page.plot_png) > 10_000


def test_the_page_loads_nothing_from_outside(small_page):
    _, page = small_page
    out = Outline(page.html)
    assert out.loaders == [] and _external(out.links) == []
    # namespace names (xmlns="http://www.w3.org/2000/svg") are names, not fetched
    text = re.sub(r'xmlns(:\w+)?="[^"]*"', "", page.html)
    assert "http://" not in text and "https://" not in text


def test_the_page_is_the_same_bytes_each_time(small_page):
    entries, page = small_page
    assert build_page(entries).html == page.html


def test_cli_writes_the_page_and_fails_on_a_broken_entry(tmp_path, monkeypatch, capsys):
    from ncd.cli import main
    from ncd.commands import MODULES

    assert "gallery" in MODULES  # a step of `ncd demo`
    monkeypatch.setattr(gallery, "ENTRIES", {SOFTMAX: gallery.ENTRIES[SOFTMAX]})
    assert main(["gallery", "-o", str(tmp_path / "ok")]) == 0
    assert Outline((tmp_path / "ok" / "index.html").read_text()).cards[SOFTMAX]["svg"]
    assert (tmp_path / "ok" / "scaling_T.png").stat().st_size > 10_000
    broken = gallery.Entry("broken_on_purpose", "A broken entry", "no paper", _broken)
    monkeypatch.setattr(gallery, "ENTRIES", {SOFTMAX: gallery.ENTRIES[SOFTMAX], "b": broken})
    capsys.readouterr()
    assert main(["gallery", "-o", str(tmp_path / "bad")]) == 1
    assert "broken_on_purpose: build: ValueError" in capsys.readouterr().err
    assert "broken_on_purpose" in (tmp_path / "bad" / "index.html").read_text()


def test_cli_refuses_an_unusable_folder_before_drawing(tmp_path, monkeypatch, capsys):
    """A file, or a place where no folder can be made, is refused before any entry is built
    (a broken entry would otherwise be reported first), and nothing is left behind."""
    from ncd.cli import main

    built = []
    monkeypatch.setattr(gallery, "ENTRIES", {"b": gallery.Entry("b", "t", "p", built.append)})
    (tmp_path / "file").write_text("")
    for target, said in ((tmp_path / "file", "expected a folder, found a file"),
                         (Path("/proc/ncd-test/g"), "cannot write in '/proc'")):  # fmt: skip
        assert main(["gallery", "-o", str(target)]) == 1
        assert said in capsys.readouterr().err
    assert not built and sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.browser
def test_every_entry_shows_a_figure_in_chromium(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="dev dependency")
    from ncd.page import write_page

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:  # the set-up installs it (scripts/system-deps.sh): say so, do not skip
        pytest.fail("Chromium not found: run `make system` (apt-get install chromium) first")
    path, page = write_page(tmp_path)
    names = list(gallery.ENTRIES)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            tab = browser.new_page(viewport={"width": 1300, "height": 1000})
            fetched = []
            tab.on("request", lambda r: fetched.append(r.url))
            tab.goto(path.resolve().as_uri())
            tab.wait_for_load_state("load")
            sizes = tab.evaluate(
                """() => Object.fromEntries([...document.querySelectorAll('section.card')]
                     .map(s => {
                       const f = s.querySelector('.figure svg, .figure img');
                       const r = f ? f.getBoundingClientRect() : {width: 0, height: 0};
                       return [s.dataset.entry, [r.width, r.height]];
                     }))"""
            )
            plot = tab.evaluate(
                "() => { const i = document.getElementById('scaling-plot');"
                " return i ? [i.naturalWidth, i.getBoundingClientRect().height] : null; }"
            )
            shot = Path(tmp_path / "gallery.png")
            tab.screenshot(path=str(shot), full_page=True)
            phone = browser.new_page(viewport={"width": 420, "height": 900})
            phone.goto(path.resolve().as_uri())
            phone.wait_for_load_state("load")
            narrow = phone.evaluate(NARROW_LAYOUT)
        finally:
            browser.close()
    assert page.problems == [], "\n".join(page.problems)
    assert list(sizes) == names
    empty = [n for n, (w, h) in sizes.items() if not (w > 0 and h > 0)]
    assert empty == [], f"cards without a visible figure: {empty}"
    assert plot is not None and plot[0] > 0 and plot[1] > 0
    assert [u for u in fetched if not u.startswith(("file:", "data:"))] == []
    assert shot.stat().st_size > 100_000
    assert narrow["scroll"] <= narrow["width"], "the page scrolls sideways at 420 px"
    assert narrow["overlaps"] == [], f"contents links overlap at 420 px: {narrow['overlaps']}"


# At a phone's width: how wide the page scrolls, and which contents links overlap each other.
NARROW_LAYOUT = """() => {
  const links = [...document.querySelectorAll('nav a')].map(a => [a.textContent,
                                                                   a.getBoundingClientRect()]);
  const overlaps = [];
  links.forEach(([n, a], i) => links.slice(i + 1).forEach(([m, b]) => {
    if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom)
      overlaps.push(n + ' / ' + m);
  }));
  return {width: document.documentElement.clientWidth,
          scroll: document.documentElement.scrollWidth, overlaps};
}"""


def test_a_drawing_too_wide_for_the_page_draws_its_subcircuits_apart():
    """ivit_block expanded is a figure of nested subcircuits many pages wide: the page draws
    its calls as boxes and each subcircuit (nested ones included) on its own; entries that
    fit are drawn whole, with nothing apart."""
    from ncd.circuits.draw import render
    from ncd.page import MAX_FIGURE_PT, _figure

    render = partial(render, max_width=None)  # as the page draws: whole, not fitted

    def width(svg):
        return float(re.search(r'<svg[^>]*\bwidth="([\d.]+)pt"', svg).group(1))

    assert width(render(gallery.get("ivit_block"))) > MAX_FIGURE_PT
    svg, parts = _figure(gallery.get("ivit_block"), render)
    assert width(svg) <= MAX_FIGURE_PT
    assert [n for n, _ in parts] == ["ilayernorm", "shiftmax", "shiftgelu", "isqrt_step"]
    assert all(width(p) <= MAX_FIGURE_PT for _, p in parts)
    assert _figure(gallery.get("transformer"), render)[1] == []
