"""What an imported circuit carries in memory beside its JSON: the callables of its opaque
boxes and the original weights. Never serialised; keyed by the circuit object."""

from __future__ import annotations

import weakref
from typing import Any

_STORE: dict[int, dict[str, Any]] = {}


def attach(circuit, callables: dict | None = None, weights: dict | None = None) -> None:
    key = id(circuit)
    if key not in _STORE:
        weakref.finalize(circuit, _STORE.pop, key, None)
    _STORE[key] = {"callables": dict(callables or {}), "weights": dict(weights or {})}


def callables(circuit) -> dict:
    return _STORE.get(id(circuit), {}).get("callables", {})


def weights(circuit) -> dict:
    return _STORE.get(id(circuit), {}).get("weights", {})
