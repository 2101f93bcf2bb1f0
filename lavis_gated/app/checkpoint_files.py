"""The files the demo reads around a checkpoint: the checkpoint (the newest by default, refused unless the
safe loader reads it and it carries its run config) and its run's test images (to pick from, and the
reference of the demo's deviation heatmap).
"""

import glob
import math
import os

from lavis_gated.common.checkpoints import load_checkpoint

DEFAULT_PATTERN = os.path.join("output", "*", "*", "checkpoint_best.pth")
HOW_TO_MAKE_ONE = (
    "make one with `bash run_scripts/demo.sh` (trains the tiny model on CPU), or pass --checkpoint PATH"
)
# the demo data's own location, for a checkpoint whose run config names images that are not here
FALLBACK_IMAGES = ("data/synthetic_artquest/artquest_test.csv", "data/synthetic_artquest/images")


class CheckpointChoiceError(RuntimeError):
    """No usable checkpoint; str(error) says why and how to get one."""


def newest_checkpoint(pattern=DEFAULT_PATTERN):
    """The most recently written file matching pattern (as run_scripts/eval.sh picks), or None."""
    found = glob.glob(pattern)
    return max(found, key=os.path.getmtime) if found else None


def choose_checkpoint(path=None):
    """(path, run config dict) of the checkpoint to serve: `path`, else the newest
    output/*/*/checkpoint_best.pth.

    Raises CheckpointChoiceError when there is none or it holds no run config, and common/checkpoints.py's
    UnsafeCheckpointError (nothing from the file run) when it carries pickled code."""
    if path is None:
        path = newest_checkpoint()
        if path is None:
            raise CheckpointChoiceError(f"No checkpoint found at {DEFAULT_PATTERN}: {HOW_TO_MAKE_ONE}.")
    if not os.path.isfile(path):
        raise CheckpointChoiceError(f"No checkpoint file at {path}: {HOW_TO_MAKE_ONE}.")
    config = load_checkpoint(path, mmap=True).get("config") or {}
    if not config.get("model"):
        raise CheckpointChoiceError(
            f"{path} holds no run config, so the model it was trained as is unknown: the demo serves "
            f"checkpoints written by lavis-gated's runner; {HOW_TO_MAKE_ONE}."
        )
    return path, config


def demo_images(config, limit=120):
    """Up to `limit` existing image paths of the run's test split (else val), from its run config, else the
    synthetic demo data's test images, spread evenly over the list (which is often grouped by style); []
    when none is on this machine."""
    candidates = []
    for dataset in (config.get("datasets") or {}).values():
        info = dataset.get("build_info") or {}
        images = (info.get("images") or {}).get("storage")
        column = (dataset.get("fields") or {}).get("image", "image")
        for split in ("test", "val"):
            annotation = ((info.get("annotations") or {}).get(split) or {}).get("storage")
            if isinstance(annotation, str) and isinstance(images, str):
                candidates.append((annotation, images, column))
    candidates.append((*FALLBACK_IMAGES, "image"))
    for annotation, root, column in candidates:
        found = _images_listed(annotation, root, column)
        if found:
            return found[:: math.ceil(len(found) / limit)]
    return []


def _images_listed(annotation, root, column):
    if not (os.path.isfile(annotation) and os.path.isdir(root)):
        return []
    from lavis_gated.datasets.annotation_files import read_table

    try:
        names = read_table(annotation)[column]
    except (ValueError, KeyError, OSError):
        return []  # not this file's layout: the next candidate
    paths = dict.fromkeys(os.path.join(root, name) for name in names)
    return [p for p in paths if os.path.isfile(p)]
