"""Themes: `paper` (black on white, serif, print-safe) and `notebook` (colour by family)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Theme:
    name: str
    font: str
    ink: str
    """Lines and text."""
    wire: str
    """Wires."""
    wire_label: str
    background: str
    box_fill: dict[str, str] = field(default_factory=dict)
    """Operation family -> fill of the box body ('' for none)."""
    cluster_fill: tuple[str, ...] = ()
    """Fills of blocks, by nesting depth (cycled)."""
    cluster_line: str = "#999999"
    repeat_line: str = "#555555"


PAPER = Theme(
    name="paper",
    font="Times",  # Liberation Serif or Times where installed; "Times-Roman" fell back to DejaVu
    ink="#000000",
    wire="#000000",
    wire_label="#000000",
    background="white",
    box_fill={},
    # Greys that survive a black-and-white printer and stay distinct from the white boxes.
    cluster_fill=("#f0f0f0", "#e2e2e2"),
    cluster_line="#b0b0b0",
    repeat_line="#404040",
)

NOTEBOOK = Theme(
    name="notebook",
    font="Helvetica",
    ink="#1f2933",
    wire="#52606d",
    wire_label="#3e4c59",
    background="white",
    box_fill={
        "learned": "#cfe2f3",
        "contraction": "#fde2c4",
        "elementwise": "#d9ead3",
        "normalisation": "#ead1dc",
        "reduction": "#fff2cc",
        "rearrangement": "#eeeeee",
        "convolution": "#d0e0e3",
        "attention": "#f4cccc",
        "structure": "#ffffff",
        "opaque": "#d9d9d9",
        "other": "#ffffff",
        "block": "#e8eaf6",
    },
    cluster_fill=("#f5f7fb", "#e9edf5"),
    cluster_line="#9aa5b1",
    repeat_line="#3e4c59",
)

THEMES: dict[str, Theme] = {"paper": PAPER, "notebook": NOTEBOOK}

# A sequential white → red scale (ColorBrewer OrRd) for cost overlays; print-safe in grey too.
OVERLAY = ("#fff7ec", "#fdd49e", "#fc8d59", "#d7301f", "#7f0000")


def overlay_colour(share: float) -> str:
    """Fill for a box carrying `share` (0 … 1) of the cost: linear interpolation along OVERLAY."""
    s = min(max(float(share), 0.0), 1.0) * (len(OVERLAY) - 1)
    i = min(int(s), len(OVERLAY) - 2)
    t = s - i
    a, b = OVERLAY[i], OVERLAY[i + 1]
    rgb = [round(int(a[k : k + 2], 16) * (1 - t) + int(b[k : k + 2], 16) * t) for k in (1, 3, 5)]
    return "#" + "".join(f"{c:02x}" for c in rgb)
