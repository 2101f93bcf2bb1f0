"""The `datasets.artquest:` block (builder `artquest`) and the `datasets.art_captions:` block (builder
`art_captions`); each field is that key's one default.

LAVIS's own keys of a dataset block (data_type, build_info, vis_processor, text_processor, ...) are accepted
as LAVIS defines them; build_info's layout is checked here too, since a misspelt split entry would silently
leave that split out.
"""

from dataclasses import dataclass
from typing import Optional

from lavis_gated.configs.schema import block, check_keys, from_block, plain, setting

LAVIS_DATASET_KEYS = (
    "data_type",
    "build_info",
    "vis_processor",
    "text_processor",
    "dataset_card",
    "sample_ratio",
)


@dataclass
class FieldsConfig:
    image: str = setting("image", "column of the image file name (required)")
    question: str = setting("question", "column of the question (required)")
    answer: str = setting("answer", "column of the reference answer (required)")
    question_type: str = setting("question_type", "column of the question type (optional)")
    style: str = setting("style", "column used as the style label, e.g. an existing `school` (optional)")
    question_id: str = setting("question_id", "column of the question id (optional; else <split>-<row>)")


@dataclass
class StyleTableConfig:
    storage: Optional[str] = setting(
        None, "CSV/JSON file mapping image -> style; when set it is the style source"
    )
    key: str = setting("image", "its image column (joined on fields.image)")
    style: str = setting("style", "its style column")


@dataclass
class ArtQuestConfig:
    fields: FieldsConfig = block(FieldsConfig, "file column of each field")
    style_table: StyleTableConfig = block(StyleTableConfig, "an image -> style join table")
    missing_style: str = setting(
        "error",
        "rows without a style: error (names the file and rows), skip (dropped, "
        "counted) or keep-unlabelled (kept, left out of the style terms)",
        choices=("error", "skip", "keep-unlabelled"),
    )
    bad_image: str = setting(
        "error",
        "rows whose image is missing, unreadable or truncated: error (first five and "
        "a count) or skip (dropped, counted)",
        choices=("error", "skip"),
    )
    duplicate_rows: str = setting(
        "error",
        "rows repeating an earlier row's image, question and answer: error (names the "
        "lines) or skip (the first of each kept, the others counted)",
        choices=("error", "skip"),
    )
    allow_outside_root: bool = setting(
        False,
        "accept relative image paths that lead out of the image root (../x.jpg); absolute "
        "paths are always used as given (and counted in the build log)",
    )
    split_overlap: str = setting(
        "error",
        "train rows sharing an image (or an image and question, see split_overlap_key) with val or test: "
        "error (counts and first lines of both files) or warning",
        choices=("error", "warning"),
    )
    split_overlap_key: str = setting(
        "image",
        "what counts as shared between train and val/test: image (the same image file) or image_question "
        "(the same question on the same image, for sets split by question)",
        choices=("image", "image_question"),
    )
    image_check: str = setting(
        "decode",
        "decode each distinct image once at build time, or only check it exists",
        choices=("decode", "exists"),
    )
    encoding: str = setting("utf-8", "text encoding of the annotation files (SemArt's CSVs are latin-1)")
    delimiter: Optional[str] = setting(None, "CSV delimiter; null: tab for .tsv, else comma")
    shuffle_buffer: int = setting(
        1000, "shards only: the train stream is shuffled within this many rows per process (0 = shard order)"
    )


@dataclass
class CaptionFieldsConfig:
    image: str = setting("image", "column of the image file name (required)")
    caption: list[str] = setting(
        ["caption"],
        "column(s) of the captions (required): one caption per row (an image's rows are grouped), a JSON "
        "list of captions, or several columns (ArtCap-style caption_1 .. caption_5); SemArt: [DESCRIPTION]",
    )
    style: str = setting("style", "column used as the style label (optional)")
    image_id: str = setting("image_id", "column of the image id (optional; else the image file name)")


@dataclass
class CaptionsConfig:
    fields: CaptionFieldsConfig = block(CaptionFieldsConfig, "file column of each field")
    style_table: StyleTableConfig = block(StyleTableConfig, "an image -> style join table")
    missing_style: str = setting(
        "error",
        "images without a style: error (names the file and rows), skip or keep-unlabelled",
        choices=("error", "skip", "keep-unlabelled"),
    )
    bad_image: str = setting(
        "error",
        "images missing, unreadable or truncated: error or skip (dropped, counted)",
        choices=("error", "skip"),
    )
    duplicate_rows: str = setting(
        "error",
        "a caption repeated for the same image: error (names the lines) or skip (the first kept, counted)",
        choices=("error", "skip"),
    )
    allow_outside_root: bool = setting(
        False, "accept relative image paths that lead out of the image root (../x.jpg)"
    )
    image_check: str = setting(
        "decode",
        "decode each distinct image once at build time, or only check it exists",
        choices=("decode", "exists"),
    )
    encoding: str = setting("utf-8", "text encoding of the annotation files (SemArt's are latin-1)")
    delimiter: Optional[str] = setting(None, "CSV delimiter; null: tab for .tsv, else comma")
    max_caption_words: Optional[int] = setting(
        None,
        "a caption over this many words keeps its leading whole sentences within it (at least its first "
        "sentence): for SemArt's DESCRIPTION paragraphs; null keeps every caption whole. The model's "
        "max_caption_len then cuts, in tokens, what is still too long",
    )


BUILD_INFO_KEYS = {
    "annotations": "one annotation file per split",
    "images": "the image root",
    "shards": "webdataset shards per split",
}


def artquest_config(block_values, where="datasets.artquest"):
    """A checked ArtQuestConfig from a YAML dataset block (its LAVIS keys checked for layout, then left
    out)."""
    values = plain(block_values) or {}
    check_build_info(values.get("build_info") or {}, f"{where}.build_info")
    return from_block(ArtQuestConfig, values, where, ignore=LAVIS_DATASET_KEYS)


def captions_config(block_values, where="datasets.art_captions"):
    """A checked CaptionsConfig from a YAML dataset block."""
    values = plain(block_values) or {}
    check_build_info(values.get("build_info") or {}, f"{where}.build_info")
    config = from_block(CaptionsConfig, values, where, ignore=LAVIS_DATASET_KEYS)
    caption = config.fields.caption
    columns = [caption] if isinstance(caption, str) else list(caption or [])
    if not columns or not all(isinstance(c, str) and c for c in columns):
        raise ValueError(f"{where}.fields.caption must name one or more columns, got {caption!r}")
    config.fields.caption = columns
    if config.max_caption_words is not None and config.max_caption_words < 1:
        raise ValueError(f"{where}.max_caption_words is {config.max_caption_words}; it must be at least 1")
    return config


def check_build_info(build_info, where):
    """annotations/shards hold {split: {storage}}; images holds {storage}."""
    check_keys(build_info, BUILD_INFO_KEYS, where)
    for name in ("annotations", "shards"):
        for split, entry in (build_info.get(name) or {}).items():
            check_keys(entry or {}, ("storage", "url"), f"{where}.{name}.{split}")
    check_keys(build_info.get("images") or {}, ("storage", "url"), f"{where}.images")
