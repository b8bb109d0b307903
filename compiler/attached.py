"""What an imported circuit carries beside its JSON: the callables of its opaque boxes, the
original weights, which of those are buffers (not trained) and which of the buffers are
constants (no part of the model's own state_dict: a non-persistent buffer, a tensor literal, a
table its code makes; loading may leave them out, runtime.Held). In memory keyed by the circuit
object; the weights (and the names) also go to a safetensors file beside the spec
(`save_weights` / `load_weights`), which is read as plain tensors, never as code."""

from __future__ import annotations

import json
import weakref
from pathlib import Path
from typing import Any

from ncd.circuits.errors import NcdError

_STORE: dict[int, dict[str, Any]] = {}
_BUFFERS_KEY = "ncd.buffers"  # safetensors metadata: JSON list of the state keys that are buffers
_CONSTANTS_KEY = "ncd.constants"  # ... and of those buffers that are constants


class WeightsError(NcdError):
    """A weights file is missing, unreadable, or does not fit the compiled circuit."""


def attach(
    circuit,
    callables: dict | None = None,
    weights: dict | None = None,
    buffers: set[str] | None = None,
    constants: set[str] | None = None,
) -> None:
    key = id(circuit)
    if key not in _STORE:
        weakref.finalize(circuit, _STORE.pop, key, None)
    _STORE[key] = {
        "callables": dict(callables or {}),
        "weights": dict(weights or {}),
        "buffers": set(buffers or ()),
        "constants": set(constants or ()),
    }


def callables(circuit) -> dict:
    return _STORE.get(id(circuit), {}).get("callables", {})


def weights(circuit) -> dict:
    return _STORE.get(id(circuit), {}).get("weights", {})


def buffers(circuit) -> set[str]:
    return _STORE.get(id(circuit), {}).get("buffers", set())


def constants(circuit) -> set[str]:
    return _STORE.get(id(circuit), {}).get("constants", set())


def weights_path(spec_path) -> Path:
    """The weights file beside a spec: `spec.json` -> `spec.safetensors`."""
    return Path(spec_path).with_suffix(".safetensors")


def save_weights(circuit, path) -> Path:
    """Write the circuit's attached weights (and the names of its buffers and constants) to
    `path`."""
    return save_state(weights(circuit), path, buffers(circuit), constants(circuit))


def save_state(state: dict, path, buffer_names=(), constant_names=()) -> Path:
    """Write `state` (and which of its entries are buffers, and constants) as safetensors,
    atomically."""
    from safetensors.torch import save

    from ncd.circuits.atomic import write_atomic

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    meta = {
        "format": "pt",
        _BUFFERS_KEY: json.dumps(sorted(set(buffer_names) & set(tensors))),
        _CONSTANTS_KEY: json.dumps(sorted(set(constant_names) & set(tensors))),
    }
    try:
        return write_atomic(path, save(tensors, metadata=meta))
    except OSError as e:
        raise WeightsError(f"cannot write {str(path)!r}: {e.strerror or e}") from None


def load_weights(path) -> tuple[dict, set[str]]:
    """(state dict, buffer names) from a safetensors file; tensors only, no code runs."""
    state, buffer_names, _ = load_held(path)
    return state, buffer_names


def load_held(path) -> tuple[dict, set[str], set[str]]:
    """(state dict, buffer names, constant names) from a safetensors file (no constants where
    it was written before they were recorded: every buffer is then state)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path}: not found (expected a .safetensors file)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
    except Exception as e:  # safetensors raises its own error type for a bad header
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise WeightsError(
            f"weights file {path}: not a readable safetensors file ({type(e).__name__}: {first})"
        ) from None
    found = []
    for key in (_BUFFERS_KEY, _CONSTANTS_KEY):
        try:
            names = json.loads(meta.get(key, "[]"))
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError
        except ValueError:
            raise WeightsError(
                f"weights file {path}: metadata {key!r} is not a JSON list of names"
            ) from None
        found.append(set(names) & set(state))
    return state, found[0], found[1] & found[0]
