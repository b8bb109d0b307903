"""Every gallery entry's builder docstring names the paper equations it implements.

The check is on the text, read here independently of `ncd.page`: the docstring has exactly
one paragraph starting `Implements:`; that paragraph names the entry's paper (one of the
papers of `Entry.paper`: its first author's surname, or its short title where the citation
names no author) and at least one equation, by its number in the paper (`eq. 3`,
`eqs. 7 to 13`) or written out (an `=`).
"""

from __future__ import annotations

import inspect
import re

import pytest

from ncd import gallery

EQUATION_NUMBER = re.compile(r"\beqs?\.\s*\d", re.IGNORECASE)


def paragraphs(doc: str) -> list[str]:
    """The docstring's paragraphs (separated by blank lines), each on one line."""
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", doc) if p.strip()]


def paper_names(citation: str) -> list[str]:
    """How a docstring names each paper of an `Entry.paper` string such as
    "Qin et al., The Devil in Linear Transformer (2022); TransNormerLLM: A Faster … (2023)":
    "Author et al., Title" gives the first author's surname ("Qin"), a title alone gives the
    title up to its first ':' or ' (' ("TransNormerLLM")."""
    names = []
    for cite in (c.strip() for c in citation.split(";")):
        if ", " in cite:
            names.append(cite.split(", ")[0].split()[0])
        else:
            names.append(re.split(r":| \(", cite)[0].strip())
    return names


def problems(doc: str, citation: str) -> list[str]:
    """What the docstring `doc` of an entry citing `citation` lacks; empty when complete."""
    found = [p for p in paragraphs(doc) if p.startswith("Implements:")]
    if len(found) != 1:
        return [f"expected one paragraph starting 'Implements:', found {len(found)}"]
    text, out = found[0], []
    names = paper_names(citation)
    if not any(re.search(rf"(?<!\w){re.escape(n)}(?!\w)", text) for n in names):
        out.append(f"the Implements paragraph names none of the entry's papers {names}")
    if not (EQUATION_NUMBER.search(text) or "=" in text):
        out.append("the Implements paragraph names no equation (no 'eq. N', no '=')")
    return out


@pytest.mark.parametrize("name", gallery.names())
def test_docstring_names_the_equations_it_implements(name):
    entry = gallery.ENTRIES[name]
    doc = inspect.getdoc(entry.build) or ""
    assert doc, f"gallery entry {name}: the builder {entry.build.__qualname__} has no docstring"
    found = problems(doc, entry.paper)
    where = f"gallery entry {name} ({entry.build.__module__}.{entry.build.__qualname__})"
    assert not found, f"{where}: " + "; ".join(found)


def test_the_check_rejects_incomplete_docstrings():
    paper = "Katharopoulos et al., Transformers are RNNs (2020); Lightning Attention-2 (2024)"
    good = "Summary.\n\nImplements: Katharopoulos et al., o_t = φ(q_t) S_t / φ(q_t)·z_t.\n"
    assert problems(good, paper) == []
    assert problems("Implements: Lightning Attention-2 eq. 4.", paper) == []
    assert problems("o_t = φ(q_t) S_t, from Katharopoulos et al.", paper) == [
        "expected one paragraph starting 'Implements:', found 0"
    ]
    assert problems("Implements: the causal form, o_t = q_t S_t.", paper) == [
        "the Implements paragraph names none of the entry's papers "
        "['Katharopoulos', 'Lightning Attention-2']"
    ]
    assert problems("Implements: Katharopoulos et al., causal masking.", paper) == [
        "the Implements paragraph names no equation (no 'eq. N', no '=')"
    ]
    # a surname is matched as a word: "Li" is not found in "Linear"
    assert problems("Implements: Linear attention, y = Ax.", "Li & Gu, I-ViT (2023)") == [
        "the Implements paragraph names none of the entry's papers ['Li']"
    ]


def test_the_page_shows_the_implements_paragraph_as_the_equations():
    from ncd.page import make_card, render_card

    def build():
        """A summary line.

        Implements: Katharopoulos et al., o_t = φ(q_t) S_t / φ(q_t)·z_t with
        S_t = Σ_{s<=t} φ(k_s)ᵀ v_s.

        How it is drawn."""
        raise ValueError("not built: the docstring is what is read")

    entry = gallery.Entry("doc_only", "Docstring only", "Katharopoulos et al., T (2020)", build)
    page = render_card(make_card(entry))
    equations = re.search(r"<div class=equations>(.*?)</div>", page, re.S).group(1)
    assert (
        equations
        == "Katharopoulos et al., o_t = φ(q_t) S_t / φ(q_t)·z_t with S_t = Σ_{s&lt;=t} φ(k_s)ᵀ v_s."
    )
    description = re.search(r"<div class=description>(.*?)</div>", page, re.S).group(1)
    assert description == "A summary line.\n\nHow it is drawn."
