"""Checkpoint files: written so that a kill or a full disk never tears them, read without running code.

Writing goes through atomic_files: at any moment the target is either the previous complete file or
the new complete one. Reading uses torch.load(weights_only=True): tensors, containers, plain
numbers and the numpy scalars in SAFE_GLOBALS only, so a file carrying a pickled callable is refused
before anything in it runs.
"""

import os
import pickle
import pickletools
import re
import zipfile

import numpy as np
import torch

from lavis_gated.atomic_files import atomic_file, remove_interrupted_writes

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
    """What the safe loader refused: the pickled globals (callables or classes) that loading would call."""
    names = _unsafe_globals(path, err)
    if names:
        return f"it holds a pickled callable or class ({', '.join(names[:5])}) that loading would call"
    return "it is not a torch.save file that the safe loader can read (e.g. a bare pickle of other data)"


def _unsafe_globals(path, err):
    """module.name of the globals the safe loader refuses, found without executing anything.

    A zip-format torch.save file (torch's default since 1.6): every one, by torch's own static scan with
    SAFE_GLOBALS allowed. Other files, which that scan does not read: the global torch's unpickler stopped
    at, as its message names it (a legacy torch.save file); else, for a bare pickle (its protocol-4 frames
    stop torch's unpickler before any global), each global pickletools finds in it.
    """
    if zipfile.is_zipfile(path):
        try:
            with torch.serialization.safe_globals(SAFE_GLOBALS):
                return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        except (ValueError, RuntimeError, KeyError):  # a zip, but not torch.save's (e.g. TorchScript)
            return []
    found = re.search(r"GLOBAL (\S+)", str(err))
    if found:
        return [found.group(1)]
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS} | {"collections.OrderedDict"}
    names, strings = [], []
    try:
        with open(path, "rb") as handle:
            for opcode, arg, _ in pickletools.genops(handle):
                strings += [arg] if isinstance(arg, str) else []
                if opcode.name == "GLOBAL":
                    names.append(arg.replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(".".join(strings[-2:]))
    except Exception:  # not a pickle (or a damaged one): nothing more to name
        pass
    return [n for n in dict.fromkeys(names) if n not in allowed]


def local_checkpoint_path(url_or_filename):
    """A local file for a checkpoint path or URL (URLs go through LAVIS's download cache)."""
    # Imported here so that this module loads without LAVIS (a test runs it alone in a subprocess).
    from lavis.common.dist_utils import download_cached_file
    from lavis.common.utils import is_url

    if is_url(url_or_filename):
        return download_cached_file(url_or_filename, check_hash=False, progress=True)
    return url_or_filename
