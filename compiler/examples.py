"""Random example inputs of a circuit at its bound sizes, for whatever runs a compiled module
without data of its own: `ncd demo`'s check of the generated files, the tests, the cost
measurements."""

from __future__ import annotations

import torch


def example_inputs(checked, seed: int = 0, dtype=torch.float32, device="cpu",
                   requires_grad: bool = False) -> list[torch.Tensor]:  # fmt: skip
    """One tensor per input of a checked circuit, from a generator seeded with `seed`: floats
    standard normal in `dtype` (drawn in float32, or float64 for float64), optionally needing
    gradients; integers (int64) a packing's valid offsets where the input is one, else indices
    below the smallest leading axis of any parameter (an embedding's rows), or below 5 where
    there is none; booleans (a keep-mask) True three times in four."""
    g = torch.Generator().manual_seed(seed)
    vocab = min(
        (int(checked.number(p.axes[0].size)) for ps in checked.params.values()
         for p in ps.values() if p.axes),
        default=5,
    )  # fmt: skip
    xs = []
    for inp in checked.circuit.inputs:
        t = checked.inputs[inp.name]
        shape = [int(checked.number(a.size)) for a in t.axes]
        if t.dtype.startswith("int"):
            off = example_offsets(checked, inp.name, g)
            x = torch.randint(0, vocab, shape, generator=g) if off is None else off
            xs.append(x.to(device))
        elif t.dtype == "bool":
            xs.append((torch.rand(shape, generator=g) < 0.75).to(device))
        else:
            draw = torch.float64 if dtype == torch.float64 else torch.float32
            x = torch.randn(shape, generator=g, dtype=draw).to(device, dtype)
            xs.append(x.requires_grad_(requires_grad))
    return xs


def example_offsets(checked, name, generator=None):
    """Valid example offsets for input `name` where it is the `offsets` port of a packed
    `linear_attention`, `short_conv`, `rotary` or `positions` box (sorted, from 0 to the
    packed length, windows of random nonzero lengths), else None: for the makers of random
    example inputs."""
    axes = {"short_conv": ("x", "axis"), "rotary": ("x", "seq"), "linear_attention": ("q", "query"),
            "positions": ("", "axis")}  # fmt: skip
    for box in checked.circuit.boxes:
        if not (getattr(box, "packed", False) and box.inputs.get("offsets") == name):
            continue
        if box.kind in axes:
            port, axis = axes[box.kind][0], getattr(box, axes[box.kind][1])
            # the packed axis of the port that holds it (a positions box's own output)
            t = checked.ins[box.name][port] if port else checked.outs[box.name]["out"]
            total = int(checked.number(t.axis(axis).size))
            n = int(checked.number(checked.inputs[name].axes[0].size))
            if n < 2 or total < n - 1:
                return None
            cuts = torch.randperm(total - 1, generator=generator)[: n - 2] + 1
            ends = torch.tensor([0, total])
            dtype = getattr(torch, checked.inputs[name].dtype)
            return torch.cat([ends[:1], cuts.sort().values, ends[1:]]).to(dtype)
    return None
