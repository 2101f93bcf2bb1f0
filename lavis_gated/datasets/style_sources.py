"""Where each row's style label comes from, and why a row has none.

The public ArtQuest release has no style column, so a style is either a column of the split file
(`fields.style`: a `style` column, or an existing one such as `school`) or joined from a separate
table mapping image -> style (`style_table`). Labels are normalised (normalise_style) on the way in.
Each label also records its source (`style_source` of a row): "column" (the split file's own column), or a
style table's `source` column ("metadata_join", "metadata", "cnn", ...; lavis-gated-style-table writes it);
a table without one is "cnn" when it has a `confidence` column (the CNN's pseudo-labels), else
"style_table". Metrics against CNN-made labels are named agreement with the style table (split_metrics).
The text that pandas or str() writes for a missing value ("NaN", "nan", "None", ...) is no style, not a
style named "nan"; the messages about rows without a style count such texts, and name the images that
differ from the join table only by letter case, with the table's spelling.
"""

import os
from dataclasses import dataclass, field
from typing import Optional

import pandas as pd

from lavis_gated.datasets.annotation_files import read_table
from lavis_gated.styles import normalise_style

SOURCE_COLUMN, CONFIDENCE_COLUMN = "source", "confidence"  # a style table's optional provenance columns
# normalised texts that stand for a missing value (pandas' NA strings, str(None), str(float("nan")))
MISSING_TEXTS = frozenset({"nan", "none", "null", "na", "n/a", "#n/a", "<na>"})

STYLE_SOURCE_OPTIONS = (
    "give each row a style by one of: (1) a column of the split file named by fields.style "
    "(default 'style'); (2) style_table.storage, a CSV/JSON file mapping image -> style "
    "(columns style_table.key and style_table.style); "
    "(3) fields.style set to an existing column used as the style, e.g. 'school'; "
    "or set missing_style: keep-unlabelled (or skip) to use rows without a style"
)


def is_missing_text(raw) -> bool:
    """Whether `raw` is the text of a missing value ("NaN", "nan", "None", "null", "N/A", ...)."""
    return isinstance(raw, str) and normalise_style(raw) in MISSING_TEXTS


def style_label(raw) -> str:
    """The normalised style of a raw label; "" (no style) for an empty one or the text of a missing
    value."""
    return "" if is_missing_text(raw) else normalise_style(raw)


def _either(texts):
    return " or ".join(repr(t) for t in sorted(set(texts)))


@dataclass(frozen=True)
class StyleTable:
    """image name -> normalised style, read from `path` (columns `key` and `style`).

    missing_text: image -> its style text where that is a missing value's ("NaN"); by_case: image name
    case-folded -> the table's spellings of it, for join misses that are only a letter-case difference;
    sources: image -> where its label comes from (module docstring)."""

    path: str
    key: str = "image"
    style: str = "style"
    styles: dict[str, str] = field(default_factory=dict, repr=False)
    missing_text: dict[str, str] = field(default_factory=dict, repr=False)
    by_case: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    sources: dict[str, str] = field(default_factory=dict, repr=False)

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
        styles, conflicts, missing_text, by_case = {}, [], {}, {}
        default = "cnn" if CONFIDENCE_COLUMN in frame.columns else "style_table"
        provenance = (
            frame[SOURCE_COLUMN].fillna(default).astype(str).str.strip().str.lower()
            if SOURCE_COLUMN in frame.columns
            else pd.Series(default, index=frame.index)
        )
        sources = dict(zip(frame[key].str.strip(), provenance))
        for line, image, raw in zip(frame.index, frame[key].str.strip(), frame[style]):
            label = style_label(raw)
            spellings = by_case.setdefault(image.casefold(), ())
            if image not in spellings:
                by_case[image.casefold()] = spellings + (image,)
            if is_missing_text(raw):
                missing_text[image] = raw.strip()
            if image and label and styles.setdefault(image, label) != label:
                conflicts.append(f"line {line}: {image!r} is {label!r} and {styles[image]!r}")
        if conflicts:
            raise ValueError(
                f"{path}: {len(conflicts)} images have conflicting styles; first: {conflicts[:5]}"
            )
        return cls(path, key, style, styles, missing_text, by_case, sources)

    @classmethod
    def from_config(cls, cfg, encoding="utf-8", delimiter=None) -> Optional["StyleTable"]:
        """The table named by a StyleTableConfig's `storage`, or None when no table is configured."""
        if cfg is None or not cfg.storage:
            return None
        return cls.read(cfg.storage, cfg.key, cfg.style, encoding, delimiter)

    def lookup(self, images: pd.Series) -> pd.Series:
        return images.str.strip().map(self.styles).fillna("")

    def lookup_sources(self, images: pd.Series) -> pd.Series:
        return images.str.strip().map(self.sources).fillna("")

    def case_misses(self, images) -> list[tuple[str, str]]:
        """[(image, the table's spelling)] of the distinct `images` the table lacks, but has in another
        letter case."""
        spellings = {image: self.by_case.get(image.casefold(), ()) for image in dict.fromkeys(images)}
        return [(image, found[0]) for image, found in spellings.items() if found and image not in found]


def style_labels(frame, style_column, image_column, style_table=None) -> Optional[pd.Series]:
    """Normalised style per row ("" where missing), or None when the split has no style source."""
    if style_table is not None:
        return style_table.lookup(frame[image_column])
    if style_column in frame.columns:
        return frame[style_column].map(style_label)
    return None


def label_sources(frame, image_column, style_table=None) -> pd.Series:
    """Per row, where its label comes from: the style table's record of it, else "column"."""
    if style_table is not None:
        return style_table.lookup_sources(frame[image_column])
    return pd.Series("column", index=frame.index)


def describe_missing(images, raw_styles=(), column="column 'style'", style_table=None) -> str:
    """Why rows have no style, for the message about them: their `images` and, for a style `column`
    (its name in words), their `raw_styles`."""
    if style_table is not None:
        parts = [
            f"image not in style table {style_table.path} (column {style_table.key!r}) or no style there"
        ]
        texts = [style_table.missing_text[i] for i in dict.fromkeys(images) if i in style_table.missing_text]
        if texts:
            parts.append(
                f"{len(texts)} images have the text {_either(texts)} as their style in the table, "
                "read as no style"
            )
        misses = style_table.case_misses(images)
        if misses:
            parts.append(
                f"{len(misses)} images differ from the table only by letter case: "
                + ", ".join(f"{image!r} (table: {spelling!r})" for image, spelling in misses[:5])
            )
        return "; ".join(parts)
    raw_styles = list(raw_styles)
    texts = [raw.strip() for raw in raw_styles if is_missing_text(raw)]
    if not texts:
        return f"{column} empty"
    empty = f"{len(raw_styles) - len(texts)} empty, " if len(raw_styles) > len(texts) else ""
    return f"{column}: {empty}{len(texts)} hold the text {_either(texts)}, read as no style"
