"""The op library's switches, in one place.

Each switch has a default, read once from an environment variable when `ncd.ops` is first
imported (the table in ops/README.md lists them), and can be changed for a block of code:

    from ncd.ops import config

    with config.override(gluon_forward=False):  # the Triton forward on Hopper too
        o = softmax_attention(q, k, v, causal=True)

`config.settings` is the one live object the library reads on every call; `override` changes
it in place and puts it back on leaving the block.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Mapping


@dataclasses.dataclass
class Settings:
    """Every switch of ncd.ops (names as `override` takes them)."""

    # Launch a kernel's compiled form directly once it has been compiled for a call's
    # arguments, instead of going through Triton's JIT on every call (_backend.launch).
    fast_launch: bool = True
    # Linear attention reads permuted q, k, v ([B, H, T, K] seen through a transpose) through
    # their strides instead of copying them to [B, T, H, K] (linear_attention/chunk.py).
    linear_in_place: bool = True
    # Softmax attention on Hopper: the forward in the Gluon kernel where it applies.
    gluon_forward: bool = True
    # ... and dK/dV in the Gluon kernel where it applies.
    gluon_dkdv: bool = True
    # ... grouped key/value heads included (that kernel's grouped form).
    gluon_dkdv_grouped: bool = False
    # Under Triton's interpreter (the GPU autotunes these): the dK/dV pass's score layout
    # ((query, key) tiles when True, (key, query) otherwise) and whether its causal mask is
    # applied only on key blocks that cross the diagonal.
    interpret_kv_smem: bool = True
    interpret_diag: bool = False
    # The delta rules in training: the forward's scan also writes the state entering each chunk
    # and V' for the backward, which then skips its own scan of them. Off: every layer would
    # keep those states until its backward, for a small gain in a block's step
    # (delta_rule/README.md).
    delta_keep_states: bool = False
    # The delta rule in training: the forward's scan also writes V' (V per token and head),
    # kept for the backward in place of -W (K per token and head): the backward's scan of the
    # states reads it and updates the state with one product a chunk instead of forming V'
    # again, and its reverse scan forms W^T dV' from T. The peak is lower and the step a
    # little faster; dK's rounding error is larger, within the bf16 target since the ungated
    # kernels' rounding order changed, so on (delta_rule/README.md).
    delta_keep_values: bool = True
    # ... the same for the gated delta rule: off (no faster, dK's error 10 % larger).
    gated_delta_keep_values: bool = False
    # The gated delta rule's scans: where every chunk's log decays sum to more than a bound
    # (per dtype), the decay matrix exp(G_i - G_j) is carried by scalings of rows (of V' or dO
    # and of the products), with no C x C exponentials in the sequential loops; off, every
    # chunk forms the matrix (delta_rule/README.md).
    gated_delta_factored: bool = True
    # The delta rules' forward: the prepare kernel also forms each chunk's Q K^T (decayed,
    # masked) and the decayed keys, which the scan then reads instead of forming them in its
    # sequential loop (delta_rule/README.md). Measured: a little faster for the gated rule
    # from 8k, slower at 2k and for the ungated rule: off.
    delta_prepared_qk: bool = False
    # The delta rules' training forward keeps the state entering every 16th chunk (float32:
    # 64 bytes a token and head at K = V = 128, an eighth of what delta_keep_states keeps),
    # and the backward recomputes the chunk states from them, the 16-chunk segments in
    # parallel; off: one sequential scan per sequence and head (delta_rule/README.md).
    delta_checkpoint_states: bool = True
    # The delta rule's backward on Hopper: its chunk pass in the warp-specialized Gluon kernel
    # (a producer warp copies the next chunk's tiles in while the products run) where it
    # applies (delta_rule/gluon.py); off: the Triton kernel.
    delta_gluon: bool = True
    # The gated delta rule's backward on Hopper: its chunk pass in the Gluon kernel whose two
    # consumer warpgroups split the chunk's work (delta_rule/gluon_gated.py) where it applies;
    # off: the Triton kernel.
    gated_delta_gluon: bool = True
    # On the GPU: every autotuned launch takes configuration number `pin_config` of its list
    # (the last one where the list is shorter) instead of tuning; -1 tunes. For checking each
    # configuration of a kernel on its own (bench/gpu_check.py --pin).
    pin_config: int = -1


# switch name: (environment variable, what the variable's values mean); switches without
# one (the interpreter's) are set by `override` only.
ENVIRONMENT = {
    "fast_launch": ("NCD_FAST_LAUNCH", "0: every launch through Triton's JIT"),
    "linear_in_place": ("NCD_LINEAR_IN_PLACE", "0: copy permuted q, k, v to [B, T, H, K]"),
    "gluon_forward": ("NCD_GLUON_FORWARD", "0: softmax forward in Triton on Hopper too"),
    "gluon_dkdv": ("NCD_GLUON_DKDV", "0: softmax dK/dV in Triton on Hopper too"),
    "gluon_dkdv_grouped": ("NCD_GLUON_DKDV_GROUPED", "1: grouped heads to the Gluon dK/dV"),
    "delta_keep_states": ("NCD_DELTA_KEEP_STATES", "1: the delta rules' forward keeps states"),
    "delta_keep_values": ("NCD_DELTA_KEEP_VALUES", "0: the delta rule's forward keeps -W"),
    "gated_delta_keep_values": (
        "NCD_GATED_DELTA_KEEP_VALUES",
        "1: the gated delta rule's forward keeps V'",
    ),
    "delta_prepared_qk": ("NCD_DELTA_PREPARED_QK", "1: the delta rules' scan reads Q K^T"),
    "gated_delta_factored": (
        "NCD_GATED_DELTA_FACTORED",
        "0: the gated delta rule's scans form the decay matrix",
    ),
    "delta_checkpoint_states": (
        "NCD_DELTA_CHECKPOINT_STATES",
        "0: the delta rules' backward rescans the states whole, no checkpoints",
    ),
    "delta_gluon": ("NCD_DELTA_GLUON", "0: the delta rule's chunk pass in Triton on Hopper too"),
    "gated_delta_gluon": (
        "NCD_GATED_DELTA_GLUON",
        "0: the gated delta rule's chunk pass in Triton on Hopper too",
    ),
}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_switch(raw: str, where: str) -> bool:
    """A switch's value written as text (1, true, yes, on or 0, false, no, off, any case);
    anything else is an error naming `where`."""
    value = raw.strip().lower()
    if value not in _TRUE + _FALSE:
        raise ValueError(
            f"ncd.ops.config: {where}: expected one of {', '.join(_TRUE + _FALSE)}, found {raw!r}"
        )
    return value in _TRUE


def from_environment(env: Mapping[str, str] | None = None) -> Settings:
    """The defaults, each replaced by its environment variable where that is set."""
    env = os.environ if env is None else env
    changes = {}
    for name, (var, _) in ENVIRONMENT.items():
        raw = env.get(var)
        if raw is None or raw.strip() == "":
            continue
        changes[name] = parse_switch(raw, f"environment variable {var}")
    return Settings(**changes)


settings = from_environment()
_FIELDS = {f.name: f.type for f in dataclasses.fields(Settings)}


@contextlib.contextmanager
def override(**changes: bool | int) -> Iterator[Settings]:
    """Change switches of `settings` for the block, and put the old values back after it."""
    for name, value in changes.items():
        if name not in _FIELDS:
            raise ValueError(
                f"ncd.ops.config.override: switch {name!r}: expected one of "
                f"{', '.join(_FIELDS)}, found {name!r}"
            )
        if _FIELDS[name] == "int":
            if isinstance(value, bool) or not isinstance(value, int) or value < -1:
                raise ValueError(
                    f"ncd.ops.config.override: switch {name}: expected an integer >= -1, "
                    f"found {value!r}"
                )
        elif not isinstance(value, bool):
            raise ValueError(
                f"ncd.ops.config.override: switch {name}: expected True or False, found {value!r}"
            )
    saved = {name: getattr(settings, name) for name in changes}
    for name, value in changes.items():
        setattr(settings, name, value)
    try:
        yield settings
    finally:
        for name, value in saved.items():
            setattr(settings, name, value)


def describe() -> dict:
    """{switch: value} of the live settings (for benchmark records)."""
    return dataclasses.asdict(settings)
