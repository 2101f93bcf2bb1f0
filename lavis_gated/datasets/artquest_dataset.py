"""ArtQuest-format rows as a LAVIS dataset: one (image, question, answer) per row, with its style label.

Reading and validating the CSV happens in `read_split`, so a bad file fails at build time with the
file, column or row named, not in a data-loader worker halfway through an epoch.
"""
import logging
import os

import pandas as pd
from lavis.datasets.datasets.base_dataset import BaseDataset
from PIL import Image

from lavis_gated.datasets.style_vocabulary import normalise_style

DEFAULT_FIELDS = {"image": "image", "question": "question", "answer": "answer", "question_type": "question_type",
                  "style": "style", "question_id": "question_id"}
REQUIRED_FIELDS = ("image", "question", "answer")
MISSING_STYLE_POLICIES = ("error", "keep")


def read_split(csv_path, fields=None, split="", missing_style="error"):
    """Rows of one split CSV as dicts with our canonical keys; fields maps canonical key -> CSV column.

    missing_style: "error" (default) raises naming the file and rows; "keep" keeps such rows with style ""
    (excluded from the style terms only). question_type and question_id are optional columns.
    """
    if missing_style not in MISSING_STYLE_POLICIES:
        raise ValueError(f"missing_style {missing_style!r} is not one of {MISSING_STYLE_POLICIES}")
    fields = {**DEFAULT_FIELDS, **(fields or {})}
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"{split or 'split'} annotation file not found: {csv_path}")
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8")
    missing = [fields[k] for k in REQUIRED_FIELDS if fields[k] not in frame.columns]
    if missing:
        raise KeyError(f"{csv_path}: missing required column(s) {missing}; columns found: {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{csv_path}: no rows")

    def column(key, default):
        return frame[fields[key]] if fields[key] in frame.columns else pd.Series(default, index=frame.index)

    records = pd.DataFrame({
        "question_id": column("question_id", [f"{split}-{i}" for i in range(len(frame))]),
        "image": column("image", ""),
        "question": column("question", ""),
        "answer": column("answer", ""),
        "question_type": column("question_type", ""),
        "style": column("style", "").map(normalise_style),
    })
    for key in REQUIRED_FIELDS:
        empty = records.index[records[key].str.strip() == ""].tolist()
        if empty:
            raise ValueError(f"{csv_path}: {len(empty)} rows with an empty {fields[key]!r}; first lines: {[i + 2 for i in empty[:5]]}")
    duplicated = records.index[records["question_id"].duplicated(keep=False)].tolist()
    if duplicated:
        raise ValueError(f"{csv_path}: {len(duplicated)} rows share a question_id (column {fields['question_id']!r}); "
                         f"first lines: {[i + 2 for i in duplicated[:5]]}")
    unlabelled = records.index[records["style"] == ""].tolist()
    if unlabelled:
        where = (f"{csv_path}: {len(unlabelled)} of {len(records)} rows have no style (column {fields['style']!r}); "
                 f"first lines: {[i + 2 for i in unlabelled[:5]]}")
        if missing_style == "error":
            raise ValueError(where + "; set datasets.<name>.missing_style: keep to train on them without the style terms")
        logging.warning(where + "; kept without style terms")
    return records.to_dict("records")


class ArtQuestDataset(BaseDataset):
    """Map-style dataset over validated rows; images are read from vis_root (or absolute paths)."""

    def __init__(self, vis_processor, text_processor, vis_root, records):
        super().__init__(vis_processor, text_processor, vis_root, ann_paths=[])
        self.annotation = records
        self._add_instance_ids()

    def style_labels(self):
        return [row["style"] for row in self.annotation]

    def image_path(self, index):
        return os.path.join(self.vis_root, self.annotation[index]["image"])

    def fields(self, index):
        """Everything of a sample but the image (what the frozen-feature cache pairs with cached features)."""
        row = self.annotation[index]
        return {
            "text_input": self.text_processor(row["question"]),
            "answer": row["answer"],
            "question_type": row["question_type"],
            "style": row["style"],
            "question_id": row["question_id"],
            "image_file": row["image"],
            "instance_id": row["instance_id"],
        }

    def __getitem__(self, index):
        image = Image.open(self.image_path(index)).convert("RGB")
        return {"image": self.vis_processor(image), **self.fields(index)}
