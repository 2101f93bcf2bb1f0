"""Issue 15's data checks, on ArtQuest in its public layout (image, question, answer, question_type; no
question_id, no style column) with SemArt-like image names and a style join table: duplicated rows, image
paths outside the image root, the image check before the style join, join misses by letter case, "NaN"
styles, malformed CSV rows, style terms that cover no train row, answers longer than the token budgets,
and the same rules on webdataset shards."""

import logging
from types import SimpleNamespace

import pytest
from helpers.data import PUBLIC_COLUMNS, build, builder_cfg, save_image, write_csv
from helpers.runs import REPO
from lavis.tasks.base_task import BaseTask
from omegaconf import OmegaConf
from transformers import AutoTokenizer

import lavis_gated  # noqa: F401  (registers the `artquest` builder)
from lavis_gated.datasets.annotation_files import read_table
from lavis_gated.datasets.artquest_dataset import read_split
from lavis_gated.datasets.make_shards import write_shards
from lavis_gated.datasets.style_sources import StyleTable
from lavis_gated.models.style_parts import StyleVocabularyState
from lavis_gated.styles import StyleVocabulary
from lavis_gated.tasks import checks
from lavis_gated.tasks.style_captioning import StyleCaptioningTask

# SemArt's file names: <number>-<painter's name>.jpg
MONET = "19873-1monet.jpg"
HOKUSAI = "11304-hokusai1.jpg"
SEURAT = "35880-seurat2.jpg"
PAINTINGS = (MONET, HOKUSAI, SEURAT)
STYLES = {MONET: "Impressionism", HOKUSAI: "Ukiyo-e", SEURAT: "Pointillism"}


def public_rows(images=PAINTINGS):
    """Two questions per painting, as ArtQuest asks them (capitalised, real-looking answers)."""
    rows = []
    for i, image in enumerate(images):
        rows.append([image, "Who painted this artwork?", f"Painter {i}", "artist"])
        rows.append([image, "When was this artwork made?", "1851-1900", "timeframe"])
    return rows


def public_files(tmp_path, rows=None, table=None, images=PAINTINGS):
    """artquest_train.csv in the public layout, its images, and the style join table; their paths."""
    for i, image in enumerate(images):
        save_image(tmp_path / "images" / image, seed=i)
    split = write_csv(tmp_path / "artquest_train.csv", PUBLIC_COLUMNS, rows or public_rows())
    table = write_csv(
        tmp_path / "semart_styles.csv",
        ["painting", "movement"],
        table if table is not None else sorted(STYLES.items()),
    )
    return split, table


def public_cfg(tmp_path, split, table, **extra):
    return builder_cfg(
        tmp_path,
        {"train": split},
        style_table={"storage": table, "key": "painting", "style": "movement"},
        **extra,
    )


# ---- 1. exact duplicate rows ----------------------------------------------------------------------------


def test_exact_duplicate_rows_are_an_error_naming_the_lines_or_skipped_and_counted(tmp_path, caplog):
    rows = public_rows()
    rows.insert(3, list(rows[0]))  # line 5 repeats line 2
    rows.append(list(rows[5]))  # line 9 repeats line 7
    rows.append([MONET, "Who painted this artwork?", "Someone else", "artist"])  # another answer: kept
    split, table = public_files(tmp_path, rows)
    with pytest.raises(ValueError) as err:
        build(public_cfg(tmp_path, split, table))
    message = str(err.value)
    assert split in message
    assert "2 rows repeat an earlier row (same image, question and answer, letter case aside)" in message
    assert "line 5 repeats line 2" in message and "line 9 repeats line 7" in message
    assert "duplicate_rows: skip" in message
    caplog.set_level(logging.INFO)
    dataset = build(public_cfg(tmp_path, split, table, duplicate_rows="skip"))["train"]
    assert len(dataset) == 7 and dataset.skipped == {"duplicate": 2}
    assert [r["question_id"] for r in dataset.annotation][:4] == ["train-0", "train-1", "train-2", "train-4"]
    assert (
        "2 rows repeat an earlier row" in caplog.text and "train: 7 rows; skipped: 2 duplicate" in caplog.text
    )


def test_unknown_duplicate_rows_policy_names_the_key(tmp_path):
    split, table = public_files(tmp_path)
    with pytest.raises(ValueError, match=r"datasets.artquest.duplicate_rows is 'warn'; it must be one of"):
        build(public_cfg(tmp_path, split, table, duplicate_rows="warn"))


# ---- 2. image paths outside the image root ---------------------------------------------------------------


def test_relative_image_paths_outside_the_root_are_refused_unless_allowed(tmp_path):
    outside = save_image(tmp_path / "elsewhere" / "99999-outside.jpg")
    rows = public_rows() + [
        ["../elsewhere/99999-outside.jpg", "Who painted this artwork?", "Nobody", "artist"],
        ["sub/../../elsewhere/99999-outside.jpg", "When was this artwork made?", "1951-2000", "timeframe"],
        [f"sub/../{MONET}", "What is this artwork?", "A painting", "title"],  # stays inside: fine
    ]
    table = sorted(STYLES.items()) + [
        ["../elsewhere/99999-outside.jpg", "Cubism"],
        ["sub/../../elsewhere/99999-outside.jpg", "Cubism"],
        [f"sub/../{MONET}", "Impressionism"],
    ]
    split, table = public_files(tmp_path, rows, table)
    with pytest.raises(ValueError) as err:
        build(public_cfg(tmp_path, split, table))
    message = str(err.value)
    assert split in message and f"2 rows name images outside the image root {tmp_path / 'images'}" in message
    assert "first lines: [8, 9]" in message and "'../elsewhere/99999-outside.jpg'" in message
    assert "allow_outside_root: true" in message
    dataset = build(public_cfg(tmp_path, split, table, allow_outside_root=True))["train"]
    assert [r["image_path"] for r in dataset.annotation][6:8] == [outside, outside]


def test_absolute_image_paths_stay_allowed_and_are_counted(tmp_path, caplog):
    outside = save_image(tmp_path / "elsewhere" / "99999-outside.jpg")
    rows = public_rows() + [[outside, "Who painted this artwork?", "Nobody", "artist"]]
    split, table = public_files(tmp_path, rows, sorted(STYLES.items()) + [[outside, "Cubism"]])
    caplog.set_level(logging.INFO)
    dataset = build(public_cfg(tmp_path, split, table))["train"]
    assert dataset.annotation[-1]["image_path"] == outside
    assert dataset.summary["absolute_image_paths"] == 1
    assert "train: 7 rows; skipped: none; absolute image paths: 1;" in caplog.text


# ---- 3. the image check runs before the style join ------------------------------------------------------


def test_a_missing_image_is_reported_as_an_image_not_as_no_style(tmp_path):
    rows = public_rows() + [["40000-lost.jpg", "Who painted this artwork?", "Nobody", "artist"]]
    split, table = public_files(tmp_path, rows)  # the lost painting is in neither the folder nor the table
    with pytest.raises(FileNotFoundError) as err:
        build(public_cfg(tmp_path, split, table))
    assert "1 of 7 rows refer to 1 missing or unreadable images" in str(err.value)
    assert "40000-lost.jpg (missing; line 8)" in str(err.value) and "no style" not in str(err.value)
    dataset = build(public_cfg(tmp_path, split, table, bad_image="skip"))["train"]
    assert len(dataset) == 6 and dataset.skipped == {"bad image": 1}


def test_a_corrupt_image_is_reported_as_an_image_not_as_no_style(tmp_path):
    split, table = public_files(tmp_path, table=[[MONET, "Impressionism"], [HOKUSAI, "Ukiyo-e"]])
    (tmp_path / "images" / SEURAT).write_bytes(b"<html>404</html>")  # neither decodes nor is in the table
    with pytest.raises(FileNotFoundError, match=rf"{SEURAT} \(unreadable"):
        build(public_cfg(tmp_path, split, table))


# ---- 4. join misses that are only a letter-case difference ------------------------------------------------


def test_a_join_miss_by_letter_case_names_the_image_and_the_tables_spelling(tmp_path, caplog):
    table = [[MONET, "Impressionism"], [HOKUSAI.upper(), "Ukiyo-e"], [SEURAT, "Pointillism"]]
    split, table = public_files(tmp_path, table=table)
    with pytest.raises(ValueError) as err:
        build(public_cfg(tmp_path, split, table))
    message = str(err.value)
    assert "2 of 6 rows have no style" in message
    assert (
        f"1 images differ from the table only by letter case: '{HOKUSAI}' (table: '{HOKUSAI.upper()}')"
        in message
    )
    caplog.set_level(logging.WARNING)
    build(public_cfg(tmp_path, split, table, missing_style="keep-unlabelled"))
    assert "only by letter case" in caplog.text


def test_a_table_with_both_spellings_gives_no_case_hint_for_the_exact_one(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["image", "style"], [["A.jpg", "cubism"], ["a.jpg", ""]])
    table = StyleTable.read(path)
    assert table.case_misses(["a.jpg", "A.jpg", "A.JPG"]) == [("A.JPG", "A.jpg")]


# ---- 5. "NaN" / "nan" is no style --------------------------------------------------------------------------


def test_nan_text_in_the_style_column_is_no_style_and_says_so(tmp_path):
    path = write_csv(
        tmp_path / "artquest_train.csv",
        PUBLIC_COLUMNS + ["style"],
        [row + [style] for row, style in zip(public_rows(), ["Impressionism", "NaN", "nan", "Ukiyo-e"] * 2)],
    )
    with pytest.raises(ValueError) as err:
        read_split(path, split="train")
    message = str(err.value)
    assert "3 of 6 rows have no style" in message and "first lines: [3, 4, 7]" in message
    assert "3 hold the text 'NaN' or 'nan', read as no style" in message
    rows, skipped = read_split(path, split="train", missing_style="keep-unlabelled")
    assert [r["style"] for r in rows] == ["impressionism", "", "", "ukiyo e", "impressionism", ""]
    assert StyleVocabulary.from_labels(r["style"] for r in rows).names == ["impressionism", "ukiyo e"]


def test_nan_text_in_the_style_table_is_no_style_and_says_so(tmp_path):
    split, table = public_files(tmp_path, table=[[MONET, "Impressionism"], [HOKUSAI, "NaN"], [SEURAT, "x"]])
    with pytest.raises(
        ValueError, match=r"2 of 6 rows have no style .*1 images have the text 'NaN' as their"
    ):
        build(public_cfg(tmp_path, split, table))
    dataset = build(public_cfg(tmp_path, split, table, missing_style="skip"))["train"]
    assert dataset.summary["style"] == {"impressionism": 2, "x": 2} and dataset.skipped == {"no style": 2}


# ---- 6. malformed CSV rows --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "broken, line, fields",
    [
        (
            [HOKUSAI, "Who painted this artwork?", "Hokusai, Katsushika", "artist"],
            4,
            5,
        ),  # pandas: ParserError
        ([MONET, "Who painted this artwork, and when?", "Monet", "artist"], 2, 5),  # pandas: shifts columns
        ([SEURAT, "Who painted this artwork?", "Seurat"], 3, 3),  # pandas: "" in question_type
    ],
)
def test_a_malformed_csv_row_names_the_file_and_the_line(tmp_path, broken, line, fields):
    rows = [",".join(r) for r in public_rows()[:3]]
    rows.insert(line - 2, ",".join(broken))
    path = tmp_path / "artquest_train.csv"
    path.write_text("\n".join([",".join(PUBLIC_COLUMNS)] + rows) + "\n", encoding="utf-8")
    with pytest.raises(ValueError) as err:
        read_table(str(path))
    message = str(err.value)
    assert str(path) in message
    assert f"1 rows do not have the header's 4 fields; first: line {line} has {fields}" in message
    assert "quote" in message


def test_an_unterminated_quote_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "artquest_val.csv"
    path.write_text(
        ",".join(PUBLIC_COLUMNS) + f'\n{MONET},"Who painted this artwork?,Monet,artist\n', encoding="utf-8"
    )
    with pytest.raises(ValueError, match=r"artquest_val\.csv: line 2: .*quote"):
        read_table(str(path))


def test_quoted_commas_blank_lines_and_line_numbers(tmp_path):
    path = tmp_path / "artquest_test.csv"
    path.write_text(
        ",".join(PUBLIC_COLUMNS) + f'\n{MONET},"Who painted it,\nand when?",Monet,artist\n\n'
        f"{HOKUSAI},Who?,,artist\n",
        encoding="utf-8",
    )
    frame = read_table(str(path))
    assert frame["question"].tolist() == ["Who painted it,\nand when?", "Who?"]
    assert frame.index.tolist() == [2, 5]  # the line each record starts on
    with pytest.raises(ValueError, match=r"1 rows with an empty 'answer'; first lines: \[5\]"):
        read_split(str(path), missing_style="keep-unlabelled")


def test_a_multi_character_delimiter_names_the_key(tmp_path):
    path = write_csv(tmp_path / "a.csv", PUBLIC_COLUMNS, public_rows())
    with pytest.raises(ValueError, match=r"datasets.<name>.delimiter must be one character, got '::'"):
        read_table(path, delimiter="::")


# ---- 7. style terms that cover no train row ----------------------------------------------------------------


class _Split:
    def __init__(self, rows):
        self.annotation = rows

    def style_labels(self):
        return [r["style"] for r in self.annotation]


def _task_datasets(monkeypatch, rows):
    monkeypatch.setattr(BaseTask, "build_datasets", lambda self, cfg: {"artquest": {"train": _Split(rows)}})


PUBLIC_TRAIN = [
    {"question_type": t, "style": "impressionism", "answer": "Monet"}
    for t in ("artist", "timeframe", "school")
]


def test_the_style_terms_cover_every_labelled_row_of_artquests_question_types(monkeypatch, tiny_tokenizer):
    """Real ArtQuest asks no style question: the probe still covers every labelled row, whatever it asks."""
    rows = PUBLIC_TRAIN + [{"question_type": "title", "style": "", "answer": "The Visitation"}]
    _task_datasets(monkeypatch, rows)
    task = StyleCaptioningTask(style_question_types=["style"], style_name_weight=0.1, style_kl_weight=0.1)
    assert "train" in task.build_datasets(None)["artquest"]  # no row asks for a style: fine
    styles = StyleVocabularyState(StyleVocabulary(["impressionism"]))
    eos = tiny_tokenizer("\n", add_special_tokens=False).input_ids[0]
    model = SimpleNamespace(
        opt_tokenizer=tiny_tokenizer,
        max_txt_len=16,
        eos_token_id=eos,
        vocabulary=styles.vocabulary,
        style_vocabulary=styles,
    )
    covered = checks.term_coverage(model, task.train_rows)
    assert covered["style_name_loss"] == covered["style_kl"] == covered["style_ce"] == 3
    assert covered["lm_loss"] == 4


def test_weighted_style_terms_without_any_labelled_train_row_are_an_error(tiny_tokenizer):
    covered = {"lm_loss": 3, "style_name_loss": 0, "style_kl": 0, "style_ce": 0, "any_style_token_rows": 0}
    task = StyleCaptioningTask(style_kl_weight=0.1)
    with pytest.raises(
        ValueError, match=r"\['style_kl'\] cover no train row: no train row has a style label"
    ):
        checks.check_coverage(covered, task.weights, task.config)


# ---- 8. answers longer than the token budgets --------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_tokenizer():
    return AutoTokenizer.from_pretrained(
        str(REPO / "lavis_gated" / "configs" / "assets" / "tiny" / "opt"), use_fast=False
    )


def test_answers_longer_than_max_len_tokens_are_counted_and_warned_at_build_time(
    monkeypatch, caplog, tiny_tokenizer
):
    """The demo's max_len: 6 cannot generate "1951-2000" (7 tokens of the tiny model's 599)."""
    eos = tiny_tokenizer("\n", add_special_tokens=False).input_ids[0]
    styles = StyleVocabularyState(StyleVocabulary(["impressionism"]))  # what the style terms read, too
    model = SimpleNamespace(
        opt_tokenizer=tiny_tokenizer,
        max_txt_len=16,
        eos_token_id=eos,
        vocabulary=styles.vocabulary,
        style_vocabulary=styles,
    )
    monkeypatch.setattr(BaseTask, "build_model", lambda self, cfg: model)
    answers = ["impressionism", "1951-2000", "1951-2000", "Art Nouveau (Modern)", "1801-1850"]
    rows = [{"question_type": "timeframe", "style": "impressionism", "answer": a} for a in answers]
    _task_datasets(monkeypatch, rows)
    task = StyleCaptioningTask(max_len=6)
    task.build_datasets(None)
    cfg = SimpleNamespace(
        model_cfg=OmegaConf.create({"arch": "blip2_opt_gated"}), run_cfg=OmegaConf.create({})
    )
    with caplog.at_level(logging.WARNING):
        assert task.build_model(cfg) is model
    assert task.answer_lengths == {
        "artquest/train": {"answers": 5, "over_max_len": 3, "over_answer_budget": 1, "longest": 13}
    }
    assert "artquest/train: 3 of 5 reference answers are longer than run.max_len = 6 tokens" in caplog.text
    assert "'1951-2000' (7 tokens)" in caplog.text and "counts tokens of the model's tokenizer" in caplog.text
    assert "1 of 5 reference answers are longer than model.max_txt_len // 2 = 8 tokens" in caplog.text


# ---- 9. the same rules on webdataset shards ----------------------------------------------------------------


def _shard_rows(tmp_path, styles):
    rows = []
    for i, (row, style) in enumerate(zip(public_rows(), styles)):
        image = save_image(tmp_path / "images" / row[0], seed=i)
        rows.append(dict(zip(PUBLIC_COLUMNS, row), question_id=f"train-{i}", style=style, image_path=image))
    return rows


def _shard_cfg(pattern, **extra):
    return OmegaConf.create(
        {
            "data_type": "images",
            "vis_processor": {"train": {"name": "blip_image_eval", "image_size": 16}},
            "text_processor": {"train": {"name": "blip_question"}},
            "build_info": {"shards": {"train": {"storage": pattern}}},
            **extra,
        }
    )


def test_shards_get_the_duplicate_rule(tmp_path):
    rows = _shard_rows(tmp_path, ["impressionism"] * 6)
    rows.append({**rows[1], "question_id": "train-6"})  # the same question again, under a new id
    pattern = write_shards(rows, str(tmp_path / "shards"), "train", maxcount=4)
    with pytest.raises(ValueError, match=r"1 rows repeat an earlier row .*row 6 repeats row 1 \(shard order"):
        build(_shard_cfg(pattern))
    dataset = build(_shard_cfg(pattern, duplicate_rows="skip"))["train"]
    assert len(dataset.annotation) == 6 and dataset.summary["skipped"] == {"duplicate": 1}
    assert sorted(s["question_id"] for s in dataset) == [f"train-{i}" for i in range(6)]


def test_shards_read_nan_styles_as_no_style(tmp_path):
    rows = _shard_rows(tmp_path, ["impressionism", "nan", "NaN", "ukiyo e", "impressionism", "ukiyo e"])
    pattern = write_shards(rows, str(tmp_path / "shards"), "train", maxcount=4)
    with pytest.raises(ValueError, match=r"2 of 6 rows have no style .*2 hold the text 'NaN' or 'nan'"):
        build(_shard_cfg(pattern))
    dataset = build(_shard_cfg(pattern, missing_style="keep-unlabelled"))["train"]
    assert dataset.style_labels() == ["impressionism", "", "", "ukiyo e", "impressionism", "ukiyo e"]
