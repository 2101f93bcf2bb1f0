"""Checkpoint files: written so that a kill or a full disk never tears them, read without running code.

Writing goes through atomic_files: at any moment the target is either the previous complete file or
the new complete one. Reading uses torch.load(weights_only=True): tensors, containers, plain
numbers and the numpy scalars in SAFE_GLOBALS only, so a file carrying a pickled callable is refused
before anything in it runs.

One rule for checking a state dict against what loads it, used by the runner (resume, best-checkpoint
reload), the model (BLIP-2 and lavis-gated checkpoints) and the style encoder (timm weights).

Every mismatch is reported in one format that names the file and the keys: unexpected keys, missing keys
(minus those the loader may miss, e.g. the frozen parameters LAVIS's checkpoints leave out) and tensors of
the wrong shape.
"""

import os
import pickle
import pickletools
import re
import zipfile
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from lavis_gated.common.atomic_files import atomic_file, remove_interrupted_writes

# Metrics computed with numpy (e.g. pycocoevalcap's scores) pickle as numpy scalars: harmless data that
# weights_only refuses unless its constructor and dtype classes are allow-listed.
SAFE_GLOBALS = [np.core.multiarray.scalar, np.dtype] + [
    type(np.dtype(t))
    for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.float16, np.float32, np.float64)
]


class UnsafeCheckpointError(RuntimeError):
    """The checkpoint holds pickled objects other than tensors, containers and numbers."""


def save_checkpoint(obj, path):
    """torch.save `obj` to `path` atomically; on failure the previous file is left as it was.

    Raises RuntimeError naming `path` when the write fails (e.g. no space left on the device).
    """
    remove_interrupted_writes(path)
    try:
        with atomic_file(path) as handle:
            torch.save(obj, handle)
    except Exception as err:
        # torch reports a failed write as "[enforce fail at inline_container.cc] unexpected pos": the
        # cause (e.g. no space left on the device) is an OSError further down the exception chain.
        raise RuntimeError(
            f"Could not write checkpoint {path} (the previous file, if any, is unchanged): {_root_cause(err)}"
        ) from err


def _root_cause(err):
    """The first OSError in `err`'s chain (the real reason a write failed), else `err` itself."""
    seen, current = set(), err
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return err


def load_checkpoint(path, mmap=False):
    """The checkpoint dict at local `path`, on the CPU, loaded without executing pickled code.

    mmap=True maps the file instead of reading it, so that a lookup of its config or style vocabulary
    reads only those bytes, not the weights and optimizer state (GBs at full size).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint file at {path}")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            # only torch.save's zip format (its default since torch 1.6) can be memory-mapped
            return torch.load(
                path, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path)
            )
    except pickle.UnpicklingError as err:
        # `from None`: torch's own message above ours advises loading with weights_only=False, the one
        # thing not to do with a file that carries code.
        raise UnsafeCheckpointError(
            f"Refusing to load checkpoint {path}: {_refused_content(path, err)}. Nothing from it was run; "
            "if you trust the file, re-save its tensors as a plain state dict with torch.save."
        ) from None
    except (RuntimeError, EOFError) as err:
        raise RuntimeError(
            f"Could not read checkpoint {path} (truncated or not a torch file): {err}"
        ) from err


def _refused_content(path, err):
    """What the safe loader refused: the pickled global (a callable or class that loading would call)."""
    found = re.search(r"GLOBAL (\S+)", str(err))
    names = [found.group(1)] if found else _unsafe_globals(path)
    if names:
        return f"it holds a pickled callable or class ({', '.join(names[:5])}) that loading would call"
    return "it is not a torch.save file that the safe loader can read (e.g. a bare pickle of other data)"


def _unsafe_globals(path):
    """module.name of each global a pickle refers to, outside torch's and SAFE_GLOBALS' safe set, found by
    reading its opcodes (nothing is executed); the data.pkl of a zip-format file, else the file itself."""
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS} | {"collections.OrderedDict"}
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
        else:
            with open(path, "rb") as f:
                data = f.read()
        names, strings = [], []
        for opcode, arg, _ in pickletools.genops(data):
            if isinstance(arg, str):
                strings.append(arg)
            if opcode.name == "GLOBAL":
                names.append(arg.replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # unreadable or not a pickle: there is nothing more to name
        return []
    return [n for n in dict.fromkeys(names) if n not in allowed and not n.startswith("torch.")]


def local_checkpoint_path(url_or_filename):
    """A local file for a checkpoint path or URL (URLs go through LAVIS's download cache)."""
    # Imported here so that this module loads without LAVIS (a test runs it alone in a subprocess).
    from lavis.common.dist_utils import download_cached_file
    from lavis.common.utils import is_url

    if is_url(url_or_filename):
        return download_cached_file(url_or_filename, check_hash=False, progress=True)
    return url_or_filename


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


def count_by_module(keys):
    """{"style_encoder": 122, ...}: a readable summary of a long key list."""
    counts = {}
    for key in keys:
        counts[key.split(".")[0]] = counts.get(key.split(".")[0], 0) + 1
    return counts
