"""Every limit ncd puts on what a spec may ask for, in one place.

A spec is data from anywhere, so each quantity that could make ncd work without bound (a
size expression's depth and magnitude, repeat counts, axes per wire, boxes, nesting) has a
limit here; the error that enforces one names it (`limit MAX_AXES = 32`), and README.md's
"Limits" section lists them all. Every limit is far above what a real architecture needs.
"""

from __future__ import annotations

# A spec as text
MAX_SPEC_BYTES = 32 * 2**20
"""Bytes of a spec file or JSON text."""
MAX_JSON_NESTING = 64
"""Depth of nested JSON arrays and objects."""
MAX_INT_DIGITS = 20
"""Digits of an integer written in a spec, in JSON or in a size expression."""

# Names and the circuit's extent
MAX_NAME = 64
"""Characters of a name: circuit, input, box, output, axis, label, group."""
MAX_BOXES = 20_000
"""Boxes in one circuit (its own, not counting those of its subcircuits); the cost model's
symbolic sums grow with it, so it bounds `analyse` too."""
MAX_UNROLLED_BOXES = 50_000
"""Boxes of a circuit with every call expanded, repeats counted (what `compile` builds, a
module per repetition)."""
MAX_SUBCIRCUITS = 256
"""Subcircuits one circuit defines."""
MAX_CALL_DEPTH = 16
"""Subcircuits calling subcircuits: how deep calls may nest."""
MAX_REPEAT = 4096
"""Repetitions of one `call` box."""
MAX_AXES = 32
"""Axes on one wire (PyTorch itself stops at 64)."""
MAX_BOX_AXES = 52
"""Distinct axes on the wires of one box (einsum names each by one of 52 letters)."""
MAX_PORTS = 1024
"""Inputs, and outputs, of one circuit."""
MAX_TABLE = 1024
"""Entries of a circuit's size tables (`axes`, `sizes`)."""
MAX_TEXT = 300
"""Characters of a circuit's title, and of its paper."""
MAX_DOC = 4000
"""Characters of a circuit's description (`doc`)."""
MAX_LAYOUT = 4096
"""Entries of a circuit's view hints (`layout`: editor positions, colours)."""

# Sizes
MAX_EXPR_CHARS = 200
"""Characters of a size expression."""
MAX_EXPR_DEPTH = 32
"""Nesting of a size expression (parentheses, unary minus, powers, functions)."""
MAX_EXPONENT = 64
"""Largest |exponent| in a size expression; exponents are numbers, never sizes."""
MAX_NUMBER = 2**64
"""Largest |number| a size expression may write or reach by arithmetic on numbers."""
MAX_EXPR_TERMS = 256
"""Terms a size expression (or a wire's element count) may expand to."""
MAX_SIZE = 2**40
"""Largest value a size may be bound to."""
MAX_ELEMENTS = 2**40
"""Elements of one tensor: a larger one is a mistake, not a model."""

MAX_EXAMPLE_ELEMENTS = 2**26
"""Elements of one example input that `ncd import --shape` makes (256 MiB of float32)."""

MAX_DRAWN_BOXES = 1_200
"""Boxes a figure draws one by one; a larger circuit is drawn with its blocks collapsed, or
as segments of consecutive boxes (Graphviz's layout time grows faster than the boxes)."""
MAX_FITTED_BOXES = 200
"""Boxes of a figure that `render` fits to a page (wrapped into rows, parts collapsed): each
try lays the figure out again, so a larger one is drawn as wide as it comes."""

# Reports
MAX_PROBLEMS_SHOWN = 50
"""Problems an error lists in full; the rest are counted ("and 4,950 more")."""


def exceeded(what: str, limit: str, value) -> str:
    """`"5000 axes on one wire, more than the 32 allowed (limit MAX_AXES)"`."""
    allowed = globals()[limit]
    shown = f"2**{allowed.bit_length() - 1}" if allowed >= 2**32 else f"{allowed:,}"
    return f"{value:,} {what}, more than the {shown} allowed (limit {limit})"


# Builder code read as text (circuits/script.py)
MAX_SCRIPT_CHARS = 2**20
"""Characters of Builder code that `from_script` reads (about 15,000 lines; parsing a
mebibyte takes about 150 MiB of memory)."""
MAX_SCRIPT_NESTING = 64
"""Depth of nested statements and expressions in Builder code read as text."""

# Wiring of one box
MAX_BOX_INPUTS = 256
"""Input ports of one box: its `inputs`, an opaque box's `in_ports`, the inputs of the
subcircuit a `call` box calls."""
