"""One rule for checking a state dict against what loads it, used by the runner (resume, best-checkpoint
reload), the model (BLIP-2 and lavis-gated checkpoints), the style encoder and the WikiArt commands (timm
weights); and one reading of the layouts that trainers wrap a state dict in.

Every mismatch is reported in one format that names the file and the keys: unexpected keys, missing keys
(minus those the loader may miss, e.g. the frozen parameters LAVIS's checkpoints leave out) and tensors of
the wrong shape.
"""

from dataclasses import dataclass, field
from typing import Callable

SHOWN = 10  # keys listed per kind in an error


class CheckpointMismatchError(ValueError):
    """A state dict does not fit the module that loads it."""


@dataclass
class KeyReport:
    """What checking a state dict found; `missing` excludes the keys the loader may miss."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    allowed_missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_shape: list[str] = field(default_factory=list)

    @property
    def missing_keys(self):  # the names of torch's load_state_dict result, for callers that read those
        return self.missing + self.allowed_missing

    @property
    def unexpected_keys(self):
        return self.unexpected

    def problems(self):
        return [
            (f"{len(keys)} {what}", keys)
            for what, keys in (
                ("unexpected keys", self.unexpected),
                ("missing keys", self.missing),
                ("wrong shapes", self.wrong_shape),
            )
            if keys
        ]


def _listed(keys):
    return f"{keys[:SHOWN]}{' ...' if len(keys) > SHOWN else ''}"


def check_state_dict(
    state_dict: dict,
    expected: dict,
    source: str,
    target: str,
    may_miss: Callable[[str], bool] = lambda key: False,
    hint: str = "",
) -> KeyReport:
    """Compare `state_dict` with `expected` (the loader's own state dict); raise CheckpointMismatchError
    naming `source` (the file) and `target` (what loads it) unless only allowed keys are missing; `hint`
    (how to fix it) ends the message."""
    report = KeyReport(source)
    for key, value in state_dict.items():
        if key not in expected:
            report.unexpected.append(key)
        elif (
            hasattr(value, "shape") and hasattr(expected[key], "shape") and value.shape != expected[key].shape
        ):
            report.wrong_shape.append(f"{key} {tuple(value.shape)} != {tuple(expected[key].shape)}")
        else:
            report.loaded.append(key)
    for key in expected:
        if key not in state_dict:
            (report.allowed_missing if may_miss(key) else report.missing).append(key)
    if report.problems():
        details = "; ".join(f"{what} {_listed(keys)}" for what, keys in report.problems())
        raise CheckpointMismatchError(f"{source} does not fit {target}: {details}{hint}")
    return report


def unwrapped_state_dict(state, source):
    """The parameter name -> tensor dict of a weights file's contents, in the layouts trainers write: a plain
    state dict, or one under `state_dict` or `model`; DDP's `module.` prefixes stripped. ValueError naming
    `source` for anything else."""
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        found = "an empty dict" if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{source}: expected a state dict (parameter name -> tensor), got {found}")
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}


def count_by_module(keys):
    """{"style_encoder": 122, ...}: a readable summary of a long key list."""
    counts = {}
    for key in keys:
        counts[key.split(".")[0]] = counts.get(key.split(".")[0], 0) + 1
    return counts
