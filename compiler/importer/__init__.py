"""Import: a PyTorch model → a circuit, its weights named after the circuit's boxes.

The model is traced with torch.fx (compiler/tracing.py: standard layers stay whole, a
`nn.Linear` is one node, a `nn.MultiheadAttention` one node, and so does any submodule named
in `keep`), and run once on the example inputs to learn every tensor's shape. Each node is
then mapped to boxes of the vocabulary through the Builder, so every box is checked as it is
made. A chain of elementwise ops of one tensor that computes a function of the vocabulary
(GELU written out) is recognised by its values and is that one box. Axes get readable names
by role and size (B, T, D, F, H, K, C, Y, X …; one name per size and role). Torch tensors are
positional and circuits are not, so the importer keeps one invariant: a wire's axes are
listed in the torch tensor's order (a `permute` box is added where a box's natural order
differs).

The model's structure is kept as blocks: the boxes a submodule's forward made are drawn in
a block titled by its path in the model (`layers.0.attn`, inside `layers.0`), so a figure of a
deep model folds with `--collapse layers.0`.

Anything it cannot map becomes an `opaque` box with its output axes stated (computations on
complex tensors, which have no type in a circuit, one box from the first complex value to the
real result); its callable (the
original module or function, with its constant arguments) is kept in memory beside the
circuit (`attached`), never in the JSON, so the imported circuit still compiles and runs.
The weights are attached too, with the names of those that are buffers; `ncd import -o` also
writes them to a safetensors file beside the spec, which `ncd.compile(weights=...)` loads.
What the circuit cannot express (an attention dropout, a batch norm's cumulative average) is
dropped with a warning that names the module.

The stages, one module each: `api` (the entry point: arguments, trace, rounds of import),
`core` (`_Importer`: the walk over the graph, names, wires, the finished circuit), and the
mixins `_Importer` is made of, one per family of ops: `modules` (torch.nn layers), `calls`
(functions and methods), `elementwise`, `reductions`, `reshape`, `slicing`, `routing` (gather
and scatter), `held` (tensors the model holds, constants), `sizes` (sizes the code reads),
`contractions`, `attention`, `masks`, `norms`, `by_value` (chains recognised by their values:
unary functions, rotary embeddings), `fftconv` (a causal convolution by FFT written out, one
long_conv box), `opaque`. `tables` holds what maps to which kind (the
`IMPORTS` registry and the tables of layers, functions and methods); `common` what every stage
shares.
"""

from .api import _snake as _snake  # (the import tests check class names' snake case)
from .api import from_torch, to_spec
from .tables import IMPORTS as IMPORTS  # (the vocabulary test asks it for every kind)

__all__ = ["from_torch", "to_spec"]
