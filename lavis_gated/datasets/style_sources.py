"""Where each row's style label comes from.

The public ArtQuest release has no style column, so a style is either a column of the split file
(`fields.style`: a `style` column, or an existing one such as `school`) or joined from a separate
table mapping image -> style (`style_table`). Labels are normalised (normalise_style) on the way in.
"""

import os
from dataclasses import dataclass, field
from typing import Optional

import pandas as pd

from lavis_gated.datasets.annotation_files import read_table
from lavis_gated.datasets.style_vocabulary import normalise_style

STYLE_SOURCE_OPTIONS = (
    "give each row a style by one of: (1) a column of the split file named by fields.style "
    "(default 'style'); (2) style_table.storage, a CSV/JSON file mapping image -> style "
    "(columns style_table.key and style_table.style); "
    "(3) fields.style set to an existing column used as the style, e.g. 'school'; "
    "or set missing_style: keep-unlabelled (or skip) to use rows without a style"
)


@dataclass(frozen=True)
class StyleTable:
    """image name -> normalised style, read from `path` (columns `key` and `style`)."""

    path: str
    key: str = "image"
    style: str = "style"
    styles: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def read(cls, path, key="image", style="style", encoding="utf-8", delimiter=None):
        """Read and check the table; an image listed twice with different styles is an error."""
        path = os.path.abspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"style table not found: {path} (datasets.<name>.style_table.storage)")
        frame = read_table(path, encoding, delimiter)
        missing = [c for c in (key, style) if c not in frame.columns]
        if missing:
            raise KeyError(
                f"{path}: style table has no column(s) {missing} (style_table.key / style_table.style); "
                f"columns found: {list(frame.columns)}"
            )
        styles, conflicts = {}, []
        for line, (image, label) in enumerate(
            zip(frame[key].str.strip(), frame[style].map(normalise_style)), 2
        ):
            if image and label and styles.setdefault(image, label) != label:
                conflicts.append(f"line {line}: {image!r} is {label!r} and {styles[image]!r}")
        if conflicts:
            raise ValueError(
                f"{path}: {len(conflicts)} images have conflicting styles; first: {conflicts[:5]}"
            )
        return cls(path=path, key=key, style=style, styles=styles)

    @classmethod
    def from_config(cls, cfg, encoding="utf-8", delimiter=None) -> Optional["StyleTable"]:
        """The table named by a StyleTableConfig's `storage`, or None when no table is configured."""
        if cfg is None or not cfg.storage:
            return None
        return cls.read(cfg.storage, cfg.key, cfg.style, encoding, delimiter)

    def lookup(self, images: pd.Series) -> pd.Series:
        return images.str.strip().map(self.styles).fillna("")


def style_labels(frame, style_column, image_column, style_table=None) -> Optional[pd.Series]:
    """Normalised style per row ("" where missing), or None when the split has no style source."""
    if style_table is not None:
        return style_table.lookup(frame[image_column])
    if style_column in frame.columns:
        return frame[style_column].map(normalise_style)
    return None


def describe_source(style_column, style_table=None) -> str:
    """Where the labels came from, for messages about rows without one."""
    if style_table is not None:
        return f"image not in style table {style_table.path} (column {style_table.key!r}) or no style there"
    return f"column {style_column!r} empty"
