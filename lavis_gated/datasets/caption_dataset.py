"""Caption files as a LAVIS dataset: images with one or more reference captions each, and a style label.

The layouts (docs/data.md) are all tables of an image column and caption column(s), read by
annotation_files: ArtCap-style CSV/JSON (a row per caption with the image repeated, a JSON list of
captions, or several caption columns), SemArt's tab-separated files (DESCRIPTION as the caption, latin-1)
and LAVIS's coco_caption annotation JSON ({"image", "caption", "image_id"}, "caption" a string in train and
a list in val/test).

Reading and checking follow read_split's order for ArtQuest: the file, the captions (image and caption
present, a caption repeated for its image), the images (under the root, present, decodable), then the style
source and the missing-style policy; every error names the file and its lines (records in a .json list).

Several references per image: training uses every caption, a row each (as LAVIS's coco_caption train split
does); evaluation has one row per image, generated once and scored against all of its references
(tasks/metrics.py); its LM loss is computed on its first reference.
"""

import logging
import re

import pandas as pd
from PIL import Image

from lavis_gated.datasets.annotation_files import read_table
from lavis_gated.datasets.artquest_dataset import ArtQuestDataset, attach_images
from lavis_gated.datasets.checks import (
    DUPLICATE_ROW_POLICIES,
    MISSING_STYLE_POLICIES,
    apply_missing_style,
    choose,
    row_numbers,
)
from lavis_gated.datasets.style_sources import STYLE_SOURCE_OPTIONS, describe_missing, style_labels

CAPTION_TYPE = "caption"  # the question_type of caption rows (they have no question)
# An image's references travel joined in one string: LAVIS's default_collate cannot batch lists of different
# lengths. "\n" is the end token: text_inputs never leaves one inside a target.
REFERENCE_SEPARATOR = "\n"
DEFAULT_FIELDS = {"image": "image", "caption": ["caption"], "style": "style", "image_id": "image_id"}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def leading_sentences(text, max_words):
    """The leading whole sentences of `text` within max_words words (at least the first sentence, however
    long: a cut mid-sentence is the model's token budget's to make, without the end token)."""
    kept, count = [], 0
    for sentence in _SENTENCE_END.split(text):
        words = len(sentence.split())
        if kept and count + words > max_words:
            break
        kept.append(sentence)
        count += words
    return " ".join(kept)


def _caption_pairs(frame, path, image_column, caption_columns):
    """A frame of (image, caption) pairs, a row per caption, indexed by the line (record) it came from."""
    listed = [line for line, value in zip(frame.index, frame[image_column]) if isinstance(value, list)]
    if listed:
        raise ValueError(
            f"{path}: the image column {image_column!r} holds a list; {row_numbers(path, listed)}"
        )
    lines, images, captions = [], [], []
    for line, image, *values in zip(frame.index, frame[image_column], *(frame[c] for c in caption_columns)):
        for value in values:
            for caption in (value if isinstance(value, list) else [value]) or [""]:  # [] is an empty caption
                lines.append(line)
                images.append(image.strip())
                captions.append(" ".join(str(caption).split()))
    return pd.DataFrame({"image": images, "caption": captions}, index=lines)


def _check_pairs(pairs, path, fields, duplicate_rows):
    """Image and caption present; a caption repeated for its image per `duplicate_rows`. (pairs, skipped)."""
    for key, column in (("image", fields["image"]), ("caption", fields["caption"])):
        empty = pairs.index[pairs[key] == ""]
        if len(empty):
            raise ValueError(
                f"{path}: {len(empty)} empty {key}s (column {column}); {row_numbers(path, empty)}"
            )
    repeated = pairs.duplicated(["image", "caption"], keep="first")
    if not repeated.any():
        return pairs, {}
    lines = pairs.index[repeated]
    message = (
        f"{path}: {len(lines)} captions repeat an earlier caption of the same image, so they would be "
        f"trained on twice and count twice as references; {row_numbers(path, lines)}"
    )
    if duplicate_rows == "error":
        raise ValueError(f"{message}; set datasets.<name>.duplicate_rows: skip to keep the first of each")
    logging.warning("%s; skipped (the first of each kept)", message)
    return pairs[~repeated.to_numpy()], {"duplicate": int(repeated.sum())}


def _image_styles(frame, pairs, path, fields, style_table):
    """Per image of `pairs` (in order of first appearance): its style ("" for none), or None when the file
    has no style source. An image whose rows give different styles is an error naming the lines."""
    labels = style_labels(frame, fields["style"], fields["image"], style_table)
    if labels is None:
        return None
    by_image = {}
    for line, image in zip(frame.index, frame[fields["image"]].str.strip()):
        by_image.setdefault(image, {}).setdefault(labels[line], []).append(line)
    conflicts = [(image, found) for image, found in by_image.items() if len({s for s in found if s}) > 1]
    if conflicts:
        image, found = conflicts[0]
        shown = ", ".join(f"{style!r} (lines {lines[:3]})" for style, lines in found.items() if style)
        raise ValueError(
            f"{path}: {len(conflicts)} images have rows with different styles; first: {image!r}: {shown}"
        )
    return {image: next((s for s in found if s), "") for image, found in by_image.items()}


def read_caption_split(
    path,
    fields=None,
    split="",
    missing_style="error",
    style_table=None,
    encoding="utf-8",
    delimiter=None,
    duplicate_rows="error",
    images=None,
    max_caption_words=None,
):
    """The images of one caption file as dicts {image, image_id, captions, style} (plus "image_path" when
    `images`, an ImageCheck, is given), in order of first appearance, and {reason: count} of what was left
    out.

    fields maps image, caption (a list of columns), style and image_id to file columns. The style comes from
    `style_table` when given, else from the column fields["style"] (style_sources); missing_style as for
    ArtQuest: error, skip or keep-unlabelled. max_caption_words: leading_sentences of longer captions.
    """
    choose(missing_style, MISSING_STYLE_POLICIES, "missing_style")
    choose(duplicate_rows, DUPLICATE_ROW_POLICIES, "duplicate_rows")
    fields = {**DEFAULT_FIELDS, **(fields or {})}
    if isinstance(fields["caption"], str):
        fields["caption"] = [fields["caption"]]
    try:
        frame = read_table(path, encoding, delimiter, keep_lists=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{split or 'split'} caption file not found: {path}") from None
    missing = [c for c in [fields["image"], *fields["caption"]] if c not in frame.columns]
    if missing:
        raise KeyError(f"{path}: missing required column(s) {missing}; columns found: {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{path}: no rows")
    if style_table is None and fields["style"] not in frame.columns and missing_style == "error":
        raise ValueError(
            f"{path}: no style source (no column {fields['style']!r}, no style_table); columns found: "
            f"{list(frame.columns)}; {STYLE_SOURCE_OPTIONS}"
        )
    pairs = _caption_pairs(frame, path, fields["image"], fields["caption"])
    if max_caption_words:
        pairs["caption"] = [leading_sentences(c, max_caption_words) for c in pairs["caption"]]
    pairs, skipped = _check_pairs(
        pairs, path, {**fields, "caption": ", ".join(fields["caption"])}, duplicate_rows
    )

    records = pairs[~pairs["image"].duplicated(keep="first").to_numpy()][["image"]].copy()
    captions = pairs.groupby("image", sort=False)["caption"].agg(list)
    records["captions"] = [captions[image] for image in records["image"]]
    if fields["image_id"] in frame.columns:
        records["image_id"] = [str(frame.at[line, fields["image_id"]]).strip() for line in records.index]
        records.loc[records["image_id"] == "", "image_id"] = records["image"]
    else:
        records["image_id"] = records["image"]
    shared = records.index[records["image_id"].duplicated(keep=False)]
    if len(shared):
        raise ValueError(
            f"{path}: {len(shared)} different images share an image_id (column {fields['image_id']!r}); "
            f"{row_numbers(path, shared)}"
        )
    if images is not None:
        records, bad = attach_images(records, path, split, images)
        skipped.update(bad)
    styles = _image_styles(frame, pairs, path, fields, style_table)
    records["style"] = "" if styles is None else [styles.get(image, "") for image in records["image"]]
    unlabelled = records.index[records["style"] == ""]
    if styles is None:
        where = f"no column {fields['style']!r} and no style_table"
    else:
        raw = frame.loc[unlabelled, fields["style"]] if style_table is None else ()
        where = describe_missing(
            records.loc[unlabelled, "image"], raw, f"column {fields['style']!r}", style_table
        )
    records, no_style = apply_missing_style(records, path, missing_style, where)
    return records.to_dict("records"), {**skipped, **no_style}


def caption_rows(images, training):
    """Dataset rows of read_caption_split's images: a row per caption (training), else a row per image whose
    `answer` is its first reference (the evaluation loss's target) and `references` all of them."""
    rows = []
    for image in images:
        captions = image["captions"] if training else image["captions"][:1]
        for k, caption in enumerate(captions):
            rows.append(
                {
                    "question_id": f"{image['image_id']}#{k}" if training else image["image_id"],
                    "image": image["image"],
                    "question": "",
                    "answer": caption,
                    "references": image["captions"],
                    "question_type": CAPTION_TYPE,
                    "style": image["style"],
                    **({"image_path": image["image_path"]} if "image_path" in image else {}),
                }
            )
    return rows


class CaptionDataset(ArtQuestDataset):
    """Caption rows (caption_rows) over validated images: samples shaped as ArtQuest's, with an empty
    question (the model's caption rows: text_inputs.row_texts), the caption as `answer` (through the text
    processor, as LAVIS's caption datasets do) and the image's references joined by REFERENCE_SEPARATOR."""

    def __init__(self, vis_processor, text_processor, vis_root, images, skipped=None, training=True):
        super().__init__(vis_processor, text_processor, vis_root, caption_rows(images, training), skipped)
        self.images = images

    def fields(self, index):
        row = self.annotation[index]
        return {
            "text_input": "",
            "answer": self.text_processor(row["answer"]),
            "references": REFERENCE_SEPARATOR.join(row["references"]),
            "question_type": CAPTION_TYPE,
            "style": row["style"],
            "question_id": row["question_id"],
            "image_file": row["image"],
            "instance_id": row["instance_id"],
        }

    def __getitem__(self, index):
        with Image.open(self.image_path(index)) as image:
            return {"image": self.vis_processor(image.convert("RGB")), **self.fields(index)}
