"""WikiArt-format images: ROOT/<style name>/<image files>, one folder per style, as the public dump has them.

Every image is decoded once (at reduced scale) before training starts, so that a broken file is named
and counted up front instead of killing a data-loader worker in the middle of an epoch.
"""

import logging
import os
import random
from dataclasses import dataclass, field
from typing import Optional

import torch
from PIL import Image

from lavis_gated.datasets.checks import find_bad_images

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass
class LabelledImages:
    """Images with a class index each; `classes` are the folder names, sorted (the classifier's rows)."""

    classes: list[str]
    paths: list[str]
    labels: list[int]
    ignored: list[str] = field(default_factory=list)  # files without an image extension
    skipped: dict[str, str] = field(default_factory=dict)  # unreadable image -> why (--skip-bad-images)


def list_images(folder, recursive=False):
    """(image paths, other files) under `folder`, sorted; hidden files and folders are left out."""
    images, others = [], []
    for current, folders, files in os.walk(folder):
        folders[:] = sorted(f for f in folders if not f.startswith(".")) if recursive else []
        for name in sorted(files):
            if not name.startswith("."):
                path = os.path.join(current, name)
                (images if name.lower().endswith(IMAGE_EXTENSIONS) else others).append(path)
    return images, others


def bad_images_message(bad, total, where):
    listed = "; ".join(f"{path}: {problem}" for path, problem in list(bad.items())[:10])
    return (
        f"{len(bad)} of {total} images under {where} cannot be read (rerun with --skip-bad-images to "
        f"leave them out): {listed}{' ...' if len(bad) > 10 else ''}"
    )


def drop_bad_images(paths, skip_bad_images, where, threads=8):
    """(readable paths, {bad path: problem}); bad images are an error unless skip_bad_images."""
    logging.info("decoding %d images under %s once, to find unreadable ones", len(paths), where)
    bad = find_bad_images(paths, threads=threads)
    if bad and not skip_bad_images:
        raise ValueError(bad_images_message(bad, len(paths), where))
    return [p for p in paths if p not in bad], bad


def scan_style_folders(root, limit_per_class: Optional[int] = None, seed=0, skip_bad_images=False, threads=8):
    """The labelled images of a WikiArt-format folder, checked: at least two style folders, none empty, every
    image readable (or, with skip_bad_images, left out and counted). limit_per_class draws a seeded sample."""
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"WikiArt folder not found: {root} (--data ROOT, laid out ROOT/<style>/<images>)"
        )
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if len(classes) < 2:
        raise ValueError(
            f"{root} has {len(classes)} style folder(s) {classes}; a style classifier needs at least "
            "2 (ROOT/<style name>/<image files>)"
        )
    per_class, ignored = [], []
    for name in classes:
        images, others = list_images(os.path.join(root, name))
        ignored += others
        if limit_per_class and len(images) > limit_per_class:
            images = sorted(random.Random(f"{seed}/{name}").sample(images, limit_per_class))
        per_class.append(images)
    check_not_empty(root, classes, per_class)
    paths = [p for images in per_class for p in images]
    readable, skipped = drop_bad_images(paths, skip_bad_images, root, threads)
    readable = set(readable)
    per_class = [[p for p in images if p in readable] for images in per_class]
    check_not_empty(root, classes, per_class, after_skipping=bool(skipped))
    labels = [label for label, images in enumerate(per_class) for _ in images]
    return LabelledImages(classes, [p for images in per_class for p in images], labels, ignored, skipped)


def check_not_empty(root, classes, per_class, after_skipping=False):
    empty = [os.path.join(root, name) for name, images in zip(classes, per_class) if not images]
    if empty:
        why = "readable images left after skipping the unreadable ones" if after_skipping else "images"
        raise ValueError(
            f"{len(empty)} style folder(s) have no {why} ({', '.join(IMAGE_EXTENSIONS)}): "
            f"{', '.join(empty[:10])}"
        )


def split_per_class(labels, val_fraction, seed=0):
    """(train indices, val indices): round(n * val_fraction) of each class's n images, at least one and
    never all, drawn with `seed`; a class of one image stays in train."""
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    train, val = [], []
    rng = random.Random(seed)
    for label in sorted(by_class):
        indices = by_class[label][:]
        rng.shuffle(indices)
        count = min(len(indices) - 1, max(1, round(len(indices) * val_fraction))) if val_fraction > 0 else 0
        val += indices[:count]
        train += indices[count:]
    return sorted(train), sorted(val)


class ImageDataset(torch.utils.data.Dataset):
    """(transform(image), target) for image files checked by scan_style_folders or drop_bad_images."""

    def __init__(self, paths, targets, transform, draft_size=None):
        self.paths, self.targets, self.transform = paths, targets, transform
        self.draft_size = draft_size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        with Image.open(self.paths[index]) as image:
            if self.draft_size:
                # JPEG: decode at 1/2, 1/4 or 1/8 scale when the image stays above draft_size; WikiArt's
                # paintings are often several thousand pixels wide and the network sees a few hundred.
                image.draft("RGB", (self.draft_size, self.draft_size))
            image = image.convert("RGB")
        return self.transform(image), self.targets[index]
