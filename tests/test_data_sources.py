"""The data path on real-world input: the public ArtQuest layout, style sources, file formats, bad input,
image paths and the build-time summary. Every error must name the offending file, column or row."""

import json
import logging
import os

import pytest
from helpers.data import PUBLIC_COLUMNS, build, builder_cfg, save_image, write_csv

import lavis_gated  # noqa: F401  (registers the `artquest` builder)
from lavis_gated.datasets.annotation_files import read_table
from lavis_gated.datasets.artquest_dataset import read_split
from lavis_gated.datasets.checks import find_bad_images, resolve_image_paths
from lavis_gated.datasets.style_sources import StyleTable
from lavis_gated.styles import StyleVocabulary, unseen_styles
from lavis_gated.tasks import checks
from lavis_gated.tasks.style_captioning import StyleCaptioningTask


def public_split(tmp_path, name="artquest_train.csv", images=("a.jpg", "b.jpg", "c.jpg")):
    """A split in the exact public column layout, with its images under tmp_path/images."""
    for i, image in enumerate(images):
        save_image(tmp_path / "images" / image, seed=i)
    rows = [[image, f"Who painted {image}?", f"painter {i}", "artist"] for i, image in enumerate(images)]
    rows += [[image, f"Which school is {image}?", "Italian", "school"] for image in images]
    return write_csv(tmp_path / name, PUBLIC_COLUMNS, rows)


# ---- style sources ------------------------------------------------------------------------------------


def test_public_layout_plus_style_table_builds(tmp_path):
    split = public_split(tmp_path)
    table = write_csv(
        tmp_path / "styles.csv",
        ["file", "movement"],
        [["a.jpg", "Pop_Art "], ["b.jpg", "CUBISM"], ["c.jpg", "ukiyo-e"], ["unused.jpg", "baroque"]],
    )
    cfg = builder_cfg(
        tmp_path, {"train": split}, style_table={"storage": table, "key": "file", "style": "movement"}
    )
    dataset = build(cfg)["train"]
    assert [r["style"] for r in dataset.annotation] == ["pop art", "cubism", "ukiyo e"] * 2
    assert [r["question_id"] for r in dataset.annotation] == [f"train-{i}" for i in range(6)]
    item = dataset[4]
    assert item["style"] == "cubism" and item["answer"] == "Italian" and item["question_type"] == "school"
    assert item["image"].shape == (3, 16, 16)
    assert dataset.summary == {
        "rows": 6,
        "question_type": {"artist": 3, "school": 3},
        "style": {"cubism": 2, "pop art": 2, "ukiyo e": 2},
        "skipped": {},
        "absolute_image_paths": 0,
    }


def test_public_layout_without_style_source_lists_the_options(tmp_path):
    split = public_split(tmp_path)
    with pytest.raises(ValueError) as err:
        build(builder_cfg(tmp_path, {"train": split}))
    message = str(err.value)
    assert split in message and "no style source" in message
    assert f"columns found: {PUBLIC_COLUMNS}" in message
    for option in ("fields.style", "style_table.storage", "style_table.key", "'school'", "keep-unlabelled"):
        assert option in message, option


def test_existing_column_as_style(tmp_path):
    path = write_csv(
        tmp_path / "semart.csv",
        ["image", "question", "answer", "school"],
        [["a.jpg", "q1", "x", "Italian"], ["b.jpg", "q2", "y", " flemish_"]],
    )
    rows, _ = read_split(path, fields={"style": "school"})
    assert [r["style"] for r in rows] == ["italian", "flemish"]


def test_join_rows_missing_from_the_table_name_table_and_lines(tmp_path):
    split = public_split(tmp_path)
    table_path = write_csv(tmp_path / "styles.csv", ["image", "style"], [["a.jpg", "cubism"], ["c.jpg", " "]])
    table = StyleTable.read(table_path)
    with pytest.raises(ValueError) as err:
        read_split(split, style_table=table)
    message = str(err.value)
    assert split in message and table_path in message and "'image'" in message
    assert "4 of 6 rows have no style" in message and "first lines: [3, 4, 6, 7]" in message
    rows, skipped = read_split(split, style_table=table, missing_style="skip")
    assert [r["image"] for r in rows] == ["a.jpg", "a.jpg"] and skipped == {"no style": 4}
    rows, skipped = read_split(split, style_table=table, missing_style="keep-unlabelled")
    assert [r["style"] for r in rows] == ["cubism", "", ""] * 2 and skipped == {}


def test_style_table_errors_name_file_and_columns(tmp_path):
    with pytest.raises(FileNotFoundError, match="style table not found: .*nope.csv"):
        StyleTable.read(str(tmp_path / "nope.csv"))
    path = write_csv(tmp_path / "t.csv", ["filename", "label"], [["a.jpg", "cubism"]])
    with pytest.raises(KeyError) as err:
        StyleTable.read(path, key="image", style="label")
    assert (
        path in str(err.value) and "['image']" in str(err.value) and "['filename', 'label']" in str(err.value)
    )
    path = write_csv(
        tmp_path / "c.csv",
        ["image", "style"],
        [["a.jpg", "cubism"], ["a.jpg", "Cubism"], ["a.jpg", "rococo"]],
    )
    with pytest.raises(
        ValueError, match=r"c\.csv: 1 images have conflicting styles; first: \[\"line 4: 'a.jpg'"
    ):
        StyleTable.read(path)


def test_keep_unlabelled_rows_leave_only_the_style_terms():
    """A kept unlabelled row has no style id: the style probe's rows and the CE rows exclude it."""
    from lavis_gated.tasks.losses import probe_rows

    vocabulary = StyleVocabulary(["cubism", "pop art"])
    ids = vocabulary.ids(["cubism", "", "pop art"])
    assert probe_rows(ids) == [True, False, True]


# ---- formats and encodings ---------------------------------------------------------------------------


def test_aqua_style_json_with_field_mapping(tmp_path):
    path = tmp_path / "aqua_val.json"
    path.write_text(
        json.dumps(
            [
                {
                    "image": "a.jpg",
                    "question": "Who?",
                    "answer": "Goya",
                    "need_external_knowledge": True,
                    "style": "Romanticism",
                },
                {
                    "image": "b.jpg",
                    "question": "What?",
                    "answer": "0",
                    "need_external_knowledge": False,
                    "style": "baroque",
                },
            ]
        )
    )
    rows, _ = read_split(str(path), fields={"question_type": "need_external_knowledge"}, split="val")
    assert rows == [
        {
            "question_id": "val-0",
            "image": "a.jpg",
            "question": "Who?",
            "answer": "Goya",
            "question_type": "True",
            "style": "romanticism",
            "style_source": "column",
        },
        {
            "question_id": "val-1",
            "image": "b.jpg",
            "question": "What?",
            "answer": "0",
            "question_type": "False",
            "style": "baroque",
            "style_source": "column",
        },
    ]


def test_json_lines_and_tsv_read_like_csv(tmp_path):
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text(
        '{"image": "a.jpg", "question": "q", "answer": "None", "style": "cubism", "question_id": 7}\n\n'
        '{"image": "b.jpg", "question": "q", "answer": "x", "style": "rococo", "question_id": 8}\n'
    )
    tsv = tmp_path / "train.tsv"
    tsv.write_text(
        "image\tquestion\tanswer\tstyle\tquestion_id\na.jpg\tq\tNone\tcubism\t7\nb.jpg\tq\tx\trococo\t8\n"
    )
    assert read_split(str(jsonl))[0] == read_split(str(tsv))[0]
    assert read_split(str(jsonl))[0][0] == {
        "question_id": "7",
        "image": "a.jpg",
        "question": "q",
        "answer": "None",
        "question_type": "",
        "style": "cubism",
        "style_source": "column",
    }


def test_bad_json_names_file_and_line(tmp_path):
    path = tmp_path / "val.jsonl"
    path.write_text('{"image": "a.jpg"}\n{"image": \n')
    with pytest.raises(ValueError, match=r"val\.jsonl: line 2 is not JSON"):
        read_table(str(path))
    path = tmp_path / "val.json"
    path.write_text('{"image": "a.jpg"}')
    with pytest.raises(ValueError, match=r"val\.json: expected a list of objects"):
        read_table(str(path))


def test_non_utf8_text_names_file_and_line_and_the_encoding_option(tmp_path):
    path = tmp_path / "semart_train.csv"
    path.write_bytes(
        "image,question,answer,style\na.jpg,q,x,cubism\nb.jpg,Qui a peint ?,Courbet,réalisme\n".encode(
            "latin-1"
        )
    )
    with pytest.raises(ValueError) as err:
        read_split(str(path))
    assert str(path) in str(err.value) and "line 3 is not valid utf-8" in str(err.value)
    assert "encoding" in str(err.value)
    rows, _ = read_split(str(path), encoding="latin-1")
    assert rows[1]["style"] == "réalisme"


def test_utf8_byte_order_mark_is_not_part_of_the_header(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("image,question,answer,style\na.jpg,q,x,cubism\n".encode("utf-8-sig"))
    assert read_split(str(path))[0][0]["image"] == "a.jpg"


# ---- bad input: the error names the file / column / row ----------------------------------------------


def test_zero_byte_file_names_the_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.csv: the file is empty"):
        read_split(str(path))


def test_builder_missing_split_file_names_split_and_path(tmp_path):
    missing = tmp_path / "artquest_val.csv"
    os.makedirs(tmp_path / "images")
    with pytest.raises(FileNotFoundError, match=rf"val annotation file not found: {missing}"):
        build(builder_cfg(tmp_path, {"val": missing}))


def _split_with_images(tmp_path, names):
    rows = [[f"q{i}", name, f"what is in painting {i}?", "x", "cubism"] for i, name in enumerate(names)]
    return write_csv(tmp_path / "val.csv", ["question_id", "image", "question", "answer", "style"], rows)


def test_missing_images_listed_with_a_count_or_skipped(tmp_path, caplog):
    save_image(tmp_path / "images" / "ok.png")
    names = ["ok.png"] + [f"gone{i}.png" for i in range(7)] + ["gone0.png"]
    split = _split_with_images(tmp_path, names)
    with pytest.raises(FileNotFoundError) as err:
        build(builder_cfg(tmp_path, {"val": split}))
    message = str(err.value)
    assert split in message and str(tmp_path / "images") in message
    assert "8 of 9 rows refer to 7 missing or unreadable images" in message
    # each image once, with the lines of its rows (the header is line 1); the first five images only
    assert "first: gone0.png (missing; lines 3, 10), gone1.png (missing; line 4)," in message
    assert message.count("gone0.png") == 1 and "gone4.png (missing; line 7)" in message
    assert "gone5.png" not in message
    caplog.set_level(logging.INFO)
    dataset = build(builder_cfg(tmp_path, {"val": split}, bad_image="skip"))["val"]
    assert [r["image"] for r in dataset.annotation] == ["ok.png"]
    assert dataset.skipped == {"bad image": 8} and dataset.summary["skipped"] == {"bad image": 8}
    assert "8 of 9 rows refer to 7 missing or unreadable images" in caplog.text and "skipped" in caplog.text


@pytest.mark.parametrize("kind", ["truncated jpeg", "truncated png", "not an image"])
def test_unreadable_or_truncated_images_are_found(tmp_path, kind):
    good = save_image(tmp_path / "images" / "good.jpg", size=64)
    bad = tmp_path / "images" / ("bad.png" if kind == "truncated png" else "bad.jpg")
    if kind == "not an image":
        bad.write_bytes(b"<html>404</html>")
    else:
        data = open(save_image(bad, seed=1, size=64), "rb").read()
        bad.write_bytes(data[: len(data) // 2])
    split = _split_with_images(tmp_path, ["good.jpg", bad.name])
    with pytest.raises(FileNotFoundError) as err:
        build(builder_cfg(tmp_path, {"val": split}))
    message = str(err.value)
    assert split in message and "1 of 2 rows" in message and f"first: {bad.name} (unreadable" in message
    if kind != "not an image":
        assert "truncated" in message
    dataset = build(builder_cfg(tmp_path, {"val": split}, bad_image="skip"))["val"]
    assert [r["image_path"] for r in dataset.annotation] == [good] and dataset.skipped == {"bad image": 1}
    # image_check: exists trusts the file (a broken one then fails when read)
    assert len(build(builder_cfg(tmp_path, {"val": split}, image_check="exists"))["val"]) == 2


def test_every_row_left_out_is_an_error(tmp_path):
    split = _split_with_images(tmp_path, ["gone.png"])
    os.makedirs(tmp_path / "images")
    with pytest.raises(ValueError, match=r"val\.csv: every row was left out \(\{'bad image': 1\}\)"):
        build(builder_cfg(tmp_path, {"val": split}, bad_image="skip"))


def test_unknown_policies_are_errors(tmp_path):
    save_image(tmp_path / "images" / "ok.png")
    split = _split_with_images(tmp_path, ["ok.png"])
    with pytest.raises(
        ValueError, match=r"datasets.artquest.bad_image is 'ignore'; it must be one of \['error', 'skip'\]"
    ):
        build(builder_cfg(tmp_path, {"val": split}, bad_image="ignore"))
    with pytest.raises(ValueError, match="image_check 'full' is not one of"):
        find_bad_images([split], check="full")


# ---- image paths ---------------------------------------------------------------------------------------


def test_image_paths_relative_split_folder_or_absolute(tmp_path):
    root = tmp_path / "images"
    in_split = save_image(root / "val" / "a.png")
    at_root = save_image(root / "b.png")
    nested = save_image(root / "sub" / "c.png")
    absolute = save_image(tmp_path / "elsewhere" / "d.png")
    names = ["a.png", "b.png", "sub/c.png", absolute]
    assert resolve_image_paths(names, str(root), "val") == [in_split, at_root, nested, absolute]
    assert resolve_image_paths(["b.png"], str(root), "test") == [at_root]  # no test/ folder: the root
    split = _split_with_images(tmp_path, names)
    dataset = build(builder_cfg(tmp_path, {"val": split}))["val"]
    assert [r["image_path"] for r in dataset.annotation] == [in_split, at_root, nested, absolute]
    assert dataset[0]["image_file"] == "a.png"


# ---- summary and styles unknown to the vocabulary -------------------------------------------------------


def test_summary_is_logged_at_build_time(tmp_path, caplog):
    split = public_split(tmp_path)
    table = write_csv(tmp_path / "styles.csv", ["image", "style"], [["a.jpg", "cubism"], ["b.jpg", "rococo"]])
    caplog.set_level(logging.INFO)
    datasets = build(
        builder_cfg(
            tmp_path,
            {"train": split, "val": split},
            missing_style="keep-unlabelled",
            style_table={"storage": table},
            split_overlap="warning",  # the same file twice: the summaries are the point here
        )
    )
    assert datasets["val"].summary == {
        "rows": 6,
        "question_type": {"artist": 3, "school": 3},
        "style": {"(no style)": 2, "cubism": 2, "rococo": 2},
        "skipped": {},
        "absolute_image_paths": 0,
    }
    assert "train: 6 rows; skipped: none; question_type {'artist': 3, 'school': 3}" in caplog.text
    assert "'(no style)': 2" in caplog.text


def test_styles_unknown_to_the_vocabulary_are_counted(caplog):
    vocabulary = StyleVocabulary(["cubism", "pop art"])
    assert unseen_styles(["Cubism", "", "Rococo", "rococo", "Pop_Art", "baroque"], vocabulary) == {
        "baroque": 1,
        "rococo": 2,
    }
    task = StyleCaptioningTask()
    task.split_styles = {"artquest/train": ["cubism"], "artquest/val": ["cubism", "rococo", "rococo", ""]}
    with caplog.at_level(logging.WARNING):
        assert checks.report_unseen_styles(task.split_styles, vocabulary) == {"artquest/val": {"rococo": 2}}
    assert "artquest/val: 2 rows have styles not in the model's style vocabulary" in caplog.text
