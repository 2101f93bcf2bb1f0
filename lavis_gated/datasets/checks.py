"""Rules over the rows of one split, shared by annotation files and shards: required values, exact
duplicates, unique question ids, and the missing-style policy; and one rule across splits: train shares no
image (or image and question) with val or test.

Rows come as a DataFrame with ROW_KEYS columns whose index says where each row is (a file's line or
record number, or a position in shard order), so every message names the rows it is about.

Image files of a split: where each one lives, whether it stays under the image root, and whether it
decodes, checked once at build time; and `read_rgb`, the one way an image enters the package (datasets,
shards, the frozen-feature cache, predict, the demo page, the style-CNN tools), so that training,
evaluation and prediction see the same pixels.

A missing or broken image found here is reported with its name and a count, instead of killing a
data-loader worker hours into training. A relative name that climbs out of the image root ("../x.jpg")
is refused unless allowed: it usually means the wrong root, or a file list from another machine.
Absolute names are used as given.
"""

import contextlib
import io
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps

ROW_KEYS = ("question_id", "image", "question", "answer", "question_type", "style")
REQUIRED_FIELDS = ("image", "question", "answer")
DUPLICATE_KEYS = ("image", "question", "answer")
MISSING_STYLE_POLICIES = ("error", "skip", "keep-unlabelled")
SPLIT_OVERLAP_POLICIES = ("error", "warning")
SPLIT_OVERLAP_KEYS = ("image", "image_question")
DUPLICATE_ROW_POLICIES = ("error", "skip")


def choose(policy, allowed, key):
    """`policy` if it is one of `allowed`, else a ValueError naming the key."""
    if policy not in allowed:
        raise ValueError(f"{key} {policy!r} is not one of {allowed}")
    return policy


def row_unit(path):
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
    unit, _ = row_unit(path)
    if unit == "row":
        return f"first rows in shard order (from 0): {first}"
    return f"first {unit}s: {first}"


def _repeats(records):
    """[(label, label of the earlier row it repeats)] for rows equal to an earlier one on DUPLICATE_KEYS
    (values compared without surrounding spaces; question and answer also without letter case, which exact
    match ignores too: "Cubism" and "cubism" are one reference answer, trained on or scored twice)."""
    casefold = {"question", "answer"}
    keys = zip(
        *(
            records[k].str.strip().str.casefold() if k in casefold else records[k].str.strip()
            for k in DUPLICATE_KEYS
        )
    )
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
        unit, note = row_unit(path)
        message = (
            f"{path}: {len(repeats)} rows repeat an earlier row (same image, question and answer, "
            "letter case aside), so they would be trained on or evaluated twice; first: "
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


def _where(row):
    """Where a built row came from: its file line, or its position in shard order."""
    if "line" in row:
        return f"line {int(row['line'])}"
    return f"row {int(row.get('position', -1))} (shard order)"


def check_split_overlap(splits, sources, policy="error", key="image"):
    """Rows of val/test splits whose image (key "image"), or image and question (key "image_question"), a
    train row has too: training on them makes validation pick the best checkpoint, and test report
    scores, on what the model saw. The message gives, per split, the shared images and (image, question)
    pairs with counts and the first lines of both files.

    splits: {split: rows (dicts with image or image_path, question, and line or position)}; sources: {split:
    its file or shards}. policy "error" raises ValueError, "warning" logs. Returns {split: rows shared}.
    """
    choose(policy, SPLIT_OVERLAP_POLICIES, "split_overlap")
    choose(key, SPLIT_OVERLAP_KEYS, "split_overlap_key")
    train = splits.get("train")
    if not train:
        return {}

    def image(row):
        return row.get("image_path") or row["image"].strip()

    def pair(row):
        return image(row), row["question"].strip().casefold()

    train_images, train_pairs = {}, {}
    for row in train:
        train_images.setdefault(image(row), row)
        train_pairs.setdefault(pair(row), row)
    found, messages = {}, []
    for split, rows in splits.items():
        if split == "train":
            continue
        by_image = [row for row in rows if image(row) in train_images]
        by_pair = [row for row in by_image if pair(row) in train_pairs]
        shared = by_image if key == "image" else by_pair
        if not shared:
            continue
        found[split] = len(shared)
        earlier = (lambda r: train_images[image(r)]) if key == "image" else (lambda r: train_pairs[pair(r)])
        first = ", ".join(f"{_where(r)} ({r['image']}) = train {_where(earlier(r))}" for r in shared[:5])
        messages.append(
            f"{split} ({sources.get(split, '?')}) shares {len({image(r) for r in by_image})} images "
            f"({len(by_image)} rows) and {len({pair(r) for r in by_pair})} (image, question) pairs "
            f"({len(by_pair)} rows) with train ({sources.get('train', '?')}); first: {first}"
        )
    if not messages:
        return found
    what = "images" if key == "image" else "(image, question) pairs"
    message = (
        f"train and evaluation splits share {what}, so the best checkpoint would be chosen and tests "
        f"scored on what the model trained on: {'; '.join(messages)}"
    )
    if policy == "error":
        raise ValueError(
            f"{message}. Fix the split files, or set datasets.<name>.split_overlap: warning to go on (and "
            "split_overlap_key: image_question when only the same question on the same image counts)"
        )
    logging.warning(message)
    return found


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


_strict_lock = threading.Lock()
_strict_users = 0
_strict_previous = False


@contextlib.contextmanager
def _truncated_images_fail():
    """PIL's LOAD_TRUNCATED_IMAGES off while any thread of this process decodes through read_rgb.

    LAVIS sets it True for every user at import (lavis/datasets/datasets/coco_caption_datasets.py:14), which
    lets a cut-off file load with its missing part grey. PIL reads the module global at decode time, so it
    is switched off for as long as any reader is inside (a count, so that threads decoding at once never
    switch it back under each other) and restored when the last one leaves.
    """
    global _strict_users, _strict_previous
    with _strict_lock:
        if _strict_users == 0:
            _strict_previous = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = False
        _strict_users += 1
    try:
        yield
    finally:
        with _strict_lock:
            _strict_users -= 1
            if _strict_users == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES = _strict_previous


HIGH_BIT_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
ALPHA_BACKGROUND = (255, 255, 255)  # transparent parts read as white, like the paper around a painting


def _to_8_bits(image):
    """A single-channel high-bit-depth image ("I;16*", "I", "F") as "L", scaled, not clipped.

    PIL's convert("RGB") clips such values at 255, so a 16-bit scan turns almost white. 16-bit modes are
    scaled by their full scale (65535 -> 255); "I" by 16-bit full scale when its values fit 16 bits (how
    PIL opens 16-bit PNGs and TIFFs), else by its own minimum..maximum; "F" by 255 when it lies in [0, 1]
    (the usual float image), else by its own minimum..maximum.
    """
    values = np.asarray(image, dtype=np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode.startswith("I;16") or (image.mode == "I" and low >= 0 and high <= 65535):
        scaled = values / 65535.0 * 255.0 if high > 255 or image.mode.startswith("I;16") else values
    elif image.mode == "F" and low >= 0 and high <= 1:
        scaled = values * 255.0
    else:
        scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def to_rgb(image):
    """A loaded PIL image as 8-bit RGB, the way the real data needs it.

    - high-bit-depth single-channel images (16-bit PNG/TIFF, "I", "F") are scaled to 8 bits (_to_8_bits);
    - an alpha channel (RGBA, LA, a palette with a transparent colour) is composited on white, since
      transparency in a painting's file is the margin around it, and PIL's convert("RGB") would keep the
      hidden colour under it (often black);
    - palettes, grayscale, CMYK, YCbCr and the rest go through PIL's own conversion.
    """
    if image.mode in HIGH_BIT_DEPTH_MODES:
        return _to_8_bits(image).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def read_rgb(source, draft_size=None):
    """The 8-bit RGB image of a file (a path, bytes or a binary file object), upright and whole.

    - EXIF orientation is applied (ImageOps.exif_transpose): phone photos and many scans store the pixels
      sideways with a rotation tag; the model must see the painting upright, as a viewer shows it;
    - a truncated file is an OSError ("image file is truncated"), whatever LAVIS set globally;
    - to_rgb's rules for bit depth, alpha and palettes.
    draft_size: let JPEG decode at 1/2, 1/4 or 1/8 scale while the image stays above this many pixels a side
    (large paintings for a network that sees a few hundred). Errors are PIL's (OSError, SyntaxError,
    ValueError, ...), with the file in them where PIL names it.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    with _truncated_images_fail(), Image.open(source) as image:
        if draft_size:
            image.draft("RGB", (draft_size, draft_size))
        image.load()
        upright = ImageOps.exif_transpose(image)
        return to_rgb(upright)


def image_problem(path, check="decode"):
    """None if the image is usable, else "missing" or "unreadable (<reason>)"."""
    if not os.path.isfile(path):
        return "missing"
    if check == "exists":
        return None
    try:
        read_rgb(path, draft_size=32)  # JPEG: decode at reduced scale; every byte is still read
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... for broken files
        return f"unreadable ({type(err).__name__}: {err})"
    return None


def case_twin(path):
    """The name of a file beside missing `path` whose name differs only in letter case ("A.JPG" for
    "a.jpg"), else None: names from another operating system or a case-insensitive disk."""
    folder, name = os.path.split(path)
    try:
        entries = os.listdir(folder or ".")
    except OSError:
        return None
    twins = [entry for entry in entries if entry.lower() == name.lower() and entry != name]
    return twins[0] if twins else None


def find_bad_images(paths, check="decode", threads=8):
    """{path: problem} for the distinct paths that are missing or do not decode."""
    if check not in IMAGE_CHECKS:
        raise ValueError(f"image_check {check!r} is not one of {IMAGE_CHECKS}")
    distinct = sorted(set(paths))
    with ThreadPoolExecutor(max_workers=threads) as pool:  # PIL decodes without the GIL
        problems = pool.map(lambda p: image_problem(p, check), distinct)
        return {path: problem for path, problem in zip(distinct, problems) if problem}
