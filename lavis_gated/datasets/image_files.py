"""Image files of a split: where each one lives, whether it stays under the image root, and whether it
decodes, checked once at build time.

A missing or broken image found here is reported with its name and a count, instead of killing a
data-loader worker hours into training. A relative name that climbs out of the image root ("../x.jpg")
is refused unless allowed: it usually means the wrong root, or a file list from another machine.
Absolute names are used as given.
"""

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PIL import Image, ImageFile

IMAGE_CHECKS = ("decode", "exists")
BAD_IMAGE_POLICIES = ("error", "skip")


@dataclass(frozen=True)
class ImageCheck:
    """How a split's images are found and checked (datasets.<name>: build_info.images.storage,
    bad_image, image_check, allow_outside_root)."""

    root: str
    bad_image: str = "error"
    check: str = "decode"
    allow_outside_root: bool = False


def resolve_image_paths(names, root, split=""):
    """Absolute path per image name: absolute names as given; else root/<split>/name where that file
    exists (split sub-folders are optional), else root/name, with "." and ".." resolved."""
    split_root = os.path.join(root, split) if split else None
    if split_root is not None and not os.path.isdir(split_root):
        split_root = None
    resolved = {}
    for name in set(names):
        if os.path.isabs(name):
            resolved[name] = name
            continue
        candidate = os.path.normpath(os.path.join(split_root, name)) if split_root else None
        resolved[name] = (
            candidate
            if candidate and os.path.isfile(candidate)
            else os.path.normpath(os.path.join(root, name))
        )
    return [resolved[name] for name in names]


def outside_root(name, path, root):
    """Whether relative image name `name`, resolved to `path`, leads out of `root` ("../x.jpg");
    absolute names never do (they are used as given)."""
    if os.path.isabs(name):
        return False
    root = os.path.normpath(os.path.abspath(root))
    return os.path.commonpath([root, os.path.abspath(path)]) != root


@contextlib.contextmanager
def _truncated_images_fail():
    """LAVIS sets PIL's LOAD_TRUNCATED_IMAGES = True for every user at import
    (lavis/datasets/datasets/coco_caption_datasets.py:14), which would let a cut-off file pass."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def image_problem(path, check="decode"):
    """None if the image is usable, else "missing" or "unreadable (<reason>)"."""
    if not os.path.isfile(path):
        return "missing"
    if check == "exists":
        return None
    try:
        with Image.open(path) as image:
            image.draft("RGB", (32, 32))  # JPEG: decode at reduced scale; every byte is still read
            image.load()
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... for broken files
        return f"unreadable ({type(err).__name__}: {err})"
    return None


def find_bad_images(paths, check="decode", threads=8):
    """{path: problem} for the distinct paths that are missing or do not decode."""
    if check not in IMAGE_CHECKS:
        raise ValueError(f"image_check {check!r} is not one of {IMAGE_CHECKS}")
    distinct = sorted(set(paths))
    with (
        _truncated_images_fail(),
        ThreadPoolExecutor(max_workers=threads) as pool,
    ):  # PIL decodes without the GIL
        problems = pool.map(lambda p: image_problem(p, check), distinct)
        return {path: problem for path, problem in zip(distinct, problems) if problem}
