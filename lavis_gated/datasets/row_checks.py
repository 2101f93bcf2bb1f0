"""Rules over the rows of one split, shared by annotation files and shards: required values, exact
duplicates, unique question ids, and the missing-style policy; and one rule across splits: train shares no
image (or image and question) with val or test.

Rows come as a DataFrame with ROW_KEYS columns whose index says where each row is (a file's line or
record number, or a position in shard order), so every message names the rows it is about.
"""

import logging

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
