"""ArtQuest-format rows as a LAVIS dataset: one (image, question, answer) per row, with its style label.

Reading and validating happens in `read_split` and `attach_images`, so a bad file fails at build time
with the file, column or row named, not in a data-loader worker halfway through an epoch. Rows that a
policy drops are counted, logged and returned in `skipped`.
"""

import logging
import os

import pandas as pd
from lavis.datasets.datasets.base_dataset import BaseDataset
from PIL import Image

from lavis_gated.datasets.annotation_files import read_table
from lavis_gated.datasets.image_files import find_bad_images, resolve_image_paths
from lavis_gated.datasets.style_sources import STYLE_SOURCE_OPTIONS, describe_source, style_labels

DEFAULT_FIELDS = {
    "image": "image",
    "question": "question",
    "answer": "answer",
    "question_type": "question_type",
    "style": "style",
    "question_id": "question_id",
}
REQUIRED_FIELDS = ("image", "question", "answer")
ROW_KEYS = ("question_id", "image", "question", "answer", "question_type", "style")
MISSING_STYLE_POLICIES = ("error", "skip", "keep-unlabelled")
BAD_IMAGE_POLICIES = ("error", "skip")


def _choose(policy, allowed, key):
    if policy not in allowed:
        raise ValueError(f"{key} {policy!r} is not one of {allowed}")
    return policy


def row_numbers(path, indices):
    """Where rows sit in their file: CSV lines (the header is line 1), JSON-lines lines, JSON records, or
    positions in shard order."""
    first = [int(i) for i in indices[:5]]
    if ".tar" in path.lower():
        return f"first rows in shard order (from 0): {first}"
    if path.lower().endswith(".json"):
        return f"first records: {[i + 1 for i in first]}"
    offset = 1 if path.lower().endswith(".jsonl") else 2
    return f"first lines: {[i + offset for i in first]}"


def check_rows(records, path, fields=None, missing_style="error", where_styles="column 'style' empty"):
    """Validate canonical rows (DataFrame with ROW_KEYS) and apply the missing-style policy.

    Returns (rows, skipped): the rows kept and {reason: count} of rows dropped.
    """
    fields = {**DEFAULT_FIELDS, **(fields or {})}
    for key in REQUIRED_FIELDS:
        empty = records.index[records[key].str.strip() == ""]
        if len(empty):
            raise ValueError(
                f"{path}: {len(empty)} rows with an empty {fields[key]!r}; {row_numbers(path, empty)}"
            )
    duplicated = records.index[records["question_id"].duplicated(keep=False)]
    if len(duplicated):
        raise ValueError(
            f"{path}: {len(duplicated)} rows share a question_id (column {fields['question_id']!r}); "
            f"{row_numbers(path, duplicated)}"
        )
    skipped = {}
    unlabelled = records.index[records["style"] == ""]
    if len(unlabelled):
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
            skipped["no style"] = len(unlabelled)
            records = records.drop(index=unlabelled)
        else:
            logging.warning("%s; kept without the style terms", message)
    return records, skipped


def read_split(
    path, fields=None, split="", missing_style="error", style_table=None, encoding="utf-8", delimiter=None
):
    """Rows of one split file as dicts with ROW_KEYS, and {reason: count} of the rows dropped.

    fields maps canonical key -> file column; image, question and answer are required columns,
    question_type and question_id optional. The style comes from `style_table` (a StyleTable) when
    given, else from the column fields["style"]; see style_sources. missing_style: "error" (default)
    names the file and rows, "skip" drops such rows, "keep-unlabelled" keeps them with style "" so that
    only the style terms leave them out.
    """
    _choose(missing_style, MISSING_STYLE_POLICIES, "missing_style")
    fields = {**DEFAULT_FIELDS, **(fields or {})}
    try:
        frame = read_table(path, encoding, delimiter)
    except FileNotFoundError:
        raise FileNotFoundError(f"{split or 'split'} annotation file not found: {path}") from None
    missing = [fields[k] for k in REQUIRED_FIELDS if fields[k] not in frame.columns]
    if missing:
        raise KeyError(f"{path}: missing required column(s) {missing}; columns found: {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{path}: no rows")

    def column(key, default):
        return frame[fields[key]] if fields[key] in frame.columns else pd.Series(default, index=frame.index)

    styles = style_labels(frame, fields["style"], fields["image"], style_table)
    if styles is None:
        message = (
            f"{path}: no style source (no column {fields['style']!r}, no style_table); "
            f"columns found: {list(frame.columns)}"
        )
        if missing_style == "error":
            raise ValueError(f"{message}; {STYLE_SOURCE_OPTIONS}")
        styles = pd.Series("", index=frame.index)
    records = pd.DataFrame(
        {
            "question_id": column("question_id", [f"{split}-{i}" for i in range(len(frame))]),
            "image": column("image", "").str.strip(),
            "question": column("question", ""),
            "answer": column("answer", ""),
            "question_type": column("question_type", ""),
            "style": styles,
        }
    )
    records, skipped = check_rows(
        records, path, fields, missing_style, describe_source(fields["style"], style_table)
    )
    return records.to_dict("records"), skipped


def attach_images(records, image_root, split="", bad_image="error", image_check="decode", source=""):
    """Add each row's resolved "image_path"; rows whose image is missing or does not decode are an
    error listing the first few (bad_image: error) or dropped and counted (bad_image: skip).

    Returns (rows, skipped) as read_split does.
    """
    _choose(bad_image, BAD_IMAGE_POLICIES, "bad_image")
    paths = resolve_image_paths([r["image"] for r in records], image_root, split)
    problems = find_bad_images(paths, image_check)
    bad = [(r["image"], problems[p]) for r, p in zip(records, paths) if p in problems]
    if bad:
        message = (
            f"{source or split}: {len(bad)} of {len(records)} rows refer to {len(set(problems))} missing or "
            f"unreadable images under {image_root}; first: " + ", ".join(f"{n} ({why})" for n, why in bad[:5])
        )
        if bad_image == "error":
            raise FileNotFoundError(f"{message}; set datasets.<name>.bad_image: skip to leave those rows out")
        logging.warning("%s; skipped", message)
    kept = [{**r, "image_path": p} for r, p in zip(records, paths) if p not in problems]
    return kept, ({"bad image": len(bad)} if bad else {})


def to_sample(row, image, vis_processor, text_processor):
    """The dict a batch is collated from, for a row and its decoded PIL image."""
    return {"image": vis_processor(image.convert("RGB")), **row_fields(row, text_processor)}


def row_fields(row, text_processor):
    """A sample's fields other than the image."""
    return {
        "text_input": text_processor(row["question"]),
        "answer": row["answer"],
        "question_type": row["question_type"],
        "style": row["style"],
        "question_id": row["question_id"],
        "image_file": row["image"],
        "instance_id": row["instance_id"],
    }


class ArtQuestDataset(BaseDataset):
    """Map-style dataset over validated rows whose images were resolved by attach_images."""

    def __init__(self, vis_processor, text_processor, vis_root, records, skipped=None):
        super().__init__(vis_processor, text_processor, vis_root, ann_paths=[])
        self.annotation = records
        self.skipped = dict(skipped or {})  # {reason: rows left out}
        self.summary = None
        self._add_instance_ids()

    def style_labels(self):
        return [row["style"] for row in self.annotation]

    def image_path(self, index):
        row = self.annotation[index]
        return row.get("image_path") or os.path.join(self.vis_root, row["image"])

    def fields(self, index):
        """Everything of a sample but the image (what the frozen-feature cache pairs with cached features)."""
        return row_fields(self.annotation[index], self.text_processor)

    def __getitem__(self, index):
        with Image.open(self.image_path(index)) as image:
            return to_sample(self.annotation[index], image, self.vis_processor, self.text_processor)
