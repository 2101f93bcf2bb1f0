"""Rules over the rows of one split, shared by annotation files and shards: required values, exact
duplicates, unique question ids, and the missing-style policy.

Rows come as a DataFrame with ROW_KEYS columns whose index says where each row is (a file's line or
record number, or a position in shard order), so every message names the rows it is about.

Image files of a split: where each one lives, whether it stays under the image root, and whether it
decodes, checked once at build time.

A missing or broken image found here is reported with its name and a count, instead of killing a
data-loader worker hours into training. A relative name that climbs out of the image root ("../x.jpg")
is refused unless allowed: it usually means the wrong root, or a file list from another machine.
Absolute names are used as given.
"""

import contextlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PIL import Image, ImageFile

ROW_KEYS = ("question_id", "image", "question", "answer", "question_type", "style")
REQUIRED_FIELDS = ("image", "question", "answer")
DUPLICATE_KEYS = ("image", "question", "answer")
MISSING_STYLE_POLICIES = ("error", "skip", "keep-unlabelled")
DUPLICATE_ROW_POLICIES = ("error", "skip")


def choose(policy, allowed, key):
    """`policy` if it is one of `allowed`, else a ValueError naming the key."""
    if policy not in allowed:
        raise ValueError(f"{key} {policy!r} is not one of {allowed}")
    return policy


def _unit(path):
    """What a row's index is in `path`, and the note that goes with it."""
    if ".tar" in path.lower():
        return "row", " (shard order, from 0)"
    if path.lower().endswith(".json"):
        return "record", ""
    return "line", ""


def row_numbers(path, labels):
    """The first few of `labels` (a frame's index), in words: CSV/JSON-lines lines, JSON records, or
    positions in shard order."""
    first = [int(i) for i in labels[:5]]
    unit, _ = _unit(path)
    if unit == "row":
        return f"first rows in shard order (from 0): {first}"
    return f"first {unit}s: {first}"


def _repeats(records):
    """[(label, label of the earlier row it repeats)] for rows equal to an earlier one on DUPLICATE_KEYS
    (values compared without surrounding spaces)."""
    keys = zip(*(records[k].str.strip() for k in DUPLICATE_KEYS))
    first, repeats = {}, []
    for label, key in zip(records.index, keys):
        if key in first:
            repeats.append((label, first[key]))
        else:
            first[key] = label
    return repeats


def check_rows(records, path, fields=None, duplicate_rows="error"):
    """Required values present, exact duplicates (same image, question and answer) per `duplicate_rows`
    (error names the lines; skip keeps the first of each, counted), then unique question ids.

    Returns (rows, skipped): the rows kept and {reason: count} of rows dropped.
    """
    choose(duplicate_rows, DUPLICATE_ROW_POLICIES, "duplicate_rows")
    fields = {k: k for k in ROW_KEYS} | dict(fields or {})
    for key in REQUIRED_FIELDS:
        empty = records.index[records[key].str.strip() == ""]
        if len(empty):
            raise ValueError(
                f"{path}: {len(empty)} rows with an empty {fields[key]!r}; {row_numbers(path, empty)}"
            )
    skipped = {}
    repeats = _repeats(records)
    if repeats:
        unit, note = _unit(path)
        message = (
            f"{path}: {len(repeats)} rows repeat an earlier row (same image, question and answer), so they "
            "would be trained on or evaluated twice; first: "
            + ", ".join(f"{unit} {int(a)} repeats {unit} {int(b)}" for a, b in repeats[:5])
            + note
        )
        if duplicate_rows == "error":
            raise ValueError(f"{message}; set datasets.<name>.duplicate_rows: skip to keep the first of each")
        logging.warning("%s; skipped (the first of each kept)", message)
        skipped["duplicate"] = len(repeats)
        records = records.drop(index=[a for a, _ in repeats])
    duplicated = records.index[records["question_id"].duplicated(keep=False)]
    if len(duplicated):
        raise ValueError(
            f"{path}: {len(duplicated)} rows share a question_id (column {fields['question_id']!r}); "
            f"{row_numbers(path, duplicated)}"
        )
    return records, skipped


def apply_missing_style(records, path, missing_style="error", where_styles="column 'style' empty"):
    """Rows whose style is "": an error naming the file and rows (error), dropped and counted (skip), or
    kept for every term but the style ones (keep-unlabelled). `where_styles` says why they have none.

    Returns (rows, skipped) as check_rows does.
    """
    choose(missing_style, MISSING_STYLE_POLICIES, "missing_style")
    unlabelled = records.index[records["style"] == ""]
    if not len(unlabelled):
        return records, {}
    message = (
        f"{path}: {len(unlabelled)} of {len(records)} rows have no style ({where_styles}); "
        f"{row_numbers(path, unlabelled)}"
    )
    if missing_style == "error":
        raise ValueError(
            f"{message}; set datasets.<name>.missing_style: keep-unlabelled (train without the style "
            "terms) or skip (drop the rows)"
        )
    if missing_style == "skip":
        logging.warning("%s; skipped", message)
        return records.drop(index=unlabelled), {"no style": len(unlabelled)}
    logging.warning("%s; kept without the style terms", message)
    return records, {}


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
