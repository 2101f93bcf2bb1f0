"""ArtQuest-format rows as a LAVIS dataset: one (image, question, answer) per row, with its style label.

Reading and validating happens in `read_split`, in this order: the file (annotation_files), the rows
(row_checks: required values, exact duplicates, question ids), the images (image_files: under the image
root, present, decodable), then the style join and the missing-style policy. Images come before the
join, so that a missing image is reported as one and not as a row without a style. A bad file fails at
build time with the file, column or row named, not in a data-loader worker halfway through an epoch. Rows
that a policy drops are counted, logged and returned in `skipped`.
"""

import logging
import os

import pandas as pd
from lavis.datasets.datasets.base_dataset import BaseDataset

from lavis_gated.datasets.annotation_files import read_table
from lavis_gated.datasets.checks import (
    BAD_IMAGE_POLICIES,
    MISSING_STYLE_POLICIES,
    REQUIRED_FIELDS,
    ROW_KEYS,
    ImageCheck,
    apply_missing_style,
    case_twin,
    check_rows,
    choose,
    find_bad_images,
    outside_root,
    read_rgb,
    resolve_image_paths,
    row_numbers,
    row_unit,
)
from lavis_gated.datasets.style_sources import (
    STYLE_SOURCE_OPTIONS,
    describe_missing,
    label_sources,
    style_labels,
)

__all__ = ["ROW_KEYS", "ArtQuestDataset", "ImageCheck", "read_split", "to_sample"]

DEFAULT_FIELDS = {key: key for key in ROW_KEYS}


def read_split(
    path,
    fields=None,
    split="",
    missing_style="error",
    style_table=None,
    encoding="utf-8",
    delimiter=None,
    duplicate_rows="error",
    images=None,
    lines=False,
):
    """Rows of one split file as dicts with ROW_KEYS (and "image_path" when `images` is given; "line", where
    the row starts in the file, with `lines`), and {reason: count} of the rows dropped.

    fields maps canonical key -> file column; image, question and answer are required columns,
    question_type and question_id optional. duplicate_rows: "error" (default) names the lines of rows
    repeating an earlier one's image, question and answer, "skip" keeps the first. images (an ImageCheck)
    resolves and checks every image before the style join. The style comes from `style_table` (a
    StyleTable) when given, else from the column fields["style"]; see style_sources. lines: the builder's,
    for messages about rows after the build (checks.check_split_overlap). missing_style:
    "error" (default) names the file and rows, "skip" drops such rows, "keep-unlabelled" keeps them with
    style "" so that only the style terms leave them out.
    """
    choose(missing_style, MISSING_STYLE_POLICIES, "missing_style")
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
    style_column = fields["style"] if style_table is None and fields["style"] in frame.columns else None
    if style_table is None and style_column is None:
        message = (
            f"{path}: no style source (no column {fields['style']!r}, no style_table); "
            f"columns found: {list(frame.columns)}"
        )
        if missing_style == "error":
            raise ValueError(f"{message}; {STYLE_SOURCE_OPTIONS}")

    def column(key, default):
        return frame[fields[key]] if fields[key] in frame.columns else pd.Series(default, index=frame.index)

    records = pd.DataFrame(
        {
            "question_id": column("question_id", [f"{split}-{i}" for i in range(len(frame))]),
            "image": column("image", "").str.strip(),
            "question": column("question", ""),
            "answer": column("answer", ""),
            "question_type": column("question_type", ""),
        }
    )
    records, skipped = check_rows(records, path, fields, duplicate_rows)
    if images is not None:
        records, bad = attach_images(records, path, split, images)
        skipped.update(bad)
    kept = frame.loc[records.index]
    styles = style_labels(kept, fields["style"], fields["image"], style_table)
    records.insert(5, "style", "" if styles is None else styles)
    records["style_source"] = label_sources(kept, fields["image"], style_table).where(
        records["style"] != "", ""
    )
    unlabelled = records.index[records["style"] == ""]
    if styles is None:
        where = f"no column {fields['style']!r} and no style_table"
    else:
        raw = kept.loc[unlabelled, style_column] if style_column else ()
        where = describe_missing(
            records.loc[unlabelled, "image"], raw, f"column {fields['style']!r}", style_table
        )
    records, no_style = apply_missing_style(records, path, missing_style, where)
    if lines:
        records = records.assign(line=[int(label) for label in records.index])
    return records.to_dict("records"), {**skipped, **no_style}


def attach_images(records, source, split, images: ImageCheck):
    """records (a frame of rows) with their resolved "image_path"; a relative image path leading out of the
    image root is an error (unless images.allow_outside_root); rows whose image is missing or does not
    decode are an error listing the first few (bad_image: error) or dropped and counted (bad_image: skip).

    Returns (rows, skipped) as read_split does.
    """
    choose(images.bad_image, BAD_IMAGE_POLICIES, "bad_image")
    names = records["image"].tolist()
    paths = resolve_image_paths(names, images.root, split)
    if not images.allow_outside_root:
        outside = [i for i, name, p in zip(records.index, names, paths) if outside_root(name, p, images.root)]
        if outside:
            shown = ", ".join(repr(n) for n in list(dict.fromkeys(records.loc[outside, "image"]))[:5])
            raise ValueError(
                f"{source}: {len(outside)} rows name images outside the image root {images.root} (relative "
                f"paths through '..'); {row_numbers(source, outside)} ({shown}); set "
                "datasets.<name>.allow_outside_root: true to allow them"
            )
    problems = find_bad_images(paths, images.check)
    bad = [(label, name, p) for label, name, p in zip(records.index, names, paths) if p in problems]
    if bad:
        message = (
            f"{source or split}: {len(bad)} of {len(records)} rows refer to {len(set(problems))} missing or "
            f"unreadable images under {images.root}; first: {describe_bad_images(bad, problems, source)}"
        )
        if images.bad_image == "error":
            raise FileNotFoundError(f"{message}; set datasets.<name>.bad_image: skip to leave those rows out")
        logging.warning("%s; skipped", message)
    keep = [p not in problems for p in paths]
    records = records.assign(image_path=paths)[keep]
    return records, ({"bad image": len(bad)} if bad else {})


def describe_bad_images(bad, problems, source, shown=5):
    """The first `shown` distinct bad images of `bad` ([(row label, name, path)]), each once with its problem,
    a hint when only the letter case differs from a file that exists, and the rows that name it."""
    rows = {}
    for label, name, path in bad:
        rows.setdefault((name, path), []).append(int(label))
    unit, note = row_unit(source)
    parts = []
    for (name, path), labels in list(rows.items())[:shown]:
        problem = problems[path]
        twin = case_twin(path) if problem == "missing" else None
        if twin:
            problem += f"; {twin} exists: image names are case-sensitive"
        where = ", ".join(map(str, labels[:5])) + (", ..." if len(labels) > 5 else "")
        parts.append(f"{name} ({problem}; {unit}{'s' if len(labels) > 1 else ''} {where})")
    return ", ".join(parts) + note


def to_sample(row, image, vis_processor, text_processor):
    """The dict a batch is collated from, for a row and its image as read_rgb reads it; with a processor that
    has a style_transform (datasets/style_image.py), also the style CNN's full-image view as "style_image"."""
    sample = {"image": vis_processor(image), **row_fields(row, text_processor)}
    if getattr(vis_processor, "style_transform", None) is not None:
        sample["style_image"] = vis_processor.style_transform(image)
    return sample


def row_fields(row, text_processor):
    """A sample's fields other than the image."""
    return {
        "text_input": text_processor(row["question"]),
        "answer": row["answer"],
        "question_type": row["question_type"],
        "style": row["style"],
        "style_source": row.get("style_source", ""),
        "question_id": row["question_id"],
        "image_file": row["image"],
        "instance_id": row["instance_id"],
    }


class ArtQuestDataset(BaseDataset):
    """Map-style dataset over validated rows whose images read_split resolved (their "image_path")."""

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
        path = self.image_path(index)
        try:
            image = read_rgb(path)
        except Exception as err:  # e.g. a truncated file that build_info's image_check: exists let through
            raise OSError(f"{path}: image does not decode ({type(err).__name__}: {err})") from err
        return to_sample(self.annotation[index], image, self.vis_processor, self.text_processor)
