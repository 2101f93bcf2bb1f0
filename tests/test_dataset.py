"""Style names, CSV validation, the synthetic generator and the `artquest` builder on a tiny generated set."""

import csv
import math
import os

import numpy as np
import pytest
import torch
from helpers.data import write_csv
from lavis.common.registry import registry
from omegaconf import OmegaConf

import lavis_gated  # noqa: F401  (registers the `artquest` builder)
from lavis_gated.datasets.artquest_dataset import read_split
from lavis_gated.datasets.synthetic_artquest import STYLES, generate
from lavis_gated.styles import NO_STYLE, StyleVocabulary, normalise_style

SMALL = {"train": 2, "val": 1, "test": 1}


# ---- style names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Pop_Art ", "pop art"),
        ("ukiyo-e", "ukiyo e"),
        ("  Post -  Impressionism", "post impressionism"),
        ("CUBISM", "cubism"),
        ("pop\tart", "pop art"),
        ("", ""),
        ("   ", ""),
        (float("nan"), ""),
        (None, ""),
        (3, ""),
    ],
)
def test_normalise_style(raw, expected):
    assert normalise_style(raw) == expected


def test_vocabulary_is_sorted_unique_normalised():
    vocab = StyleVocabulary(["Pop_Art", "cubism", "pop art", "Ukiyo-e", "CUBISM"])
    assert vocab.names == ["cubism", "pop art", "ukiyo e"]
    assert len(vocab) == 3
    assert vocab.id_of("cubism") == 0
    assert vocab.id_of("POP-ART") == 1
    assert vocab.id_of("ukiyo e") == 2
    assert vocab.ids(["baroque", "", None, "pop art"]) == [NO_STYLE, NO_STYLE, NO_STYLE, 1]
    assert NO_STYLE == -1
    assert vocab == StyleVocabulary(["ukiyo e", "pop art", "cubism"])
    assert vocab != StyleVocabulary(["cubism"])


def test_vocabulary_from_labels_skips_missing_labels():
    vocab = StyleVocabulary.from_labels(["b", "", None, float("nan"), "a", "b "])
    assert vocab.names == ["a", "b"]


def test_vocabulary_empty_raises():
    with pytest.raises(ValueError, match="empty"):
        StyleVocabulary([])
    with pytest.raises(ValueError, match="no style labels"):
        StyleVocabulary.from_labels(["", None])
    with pytest.raises(ValueError, match="empty style names"):
        StyleVocabulary(["cubism", " "])


class _Tokenizer:
    """Character-level stand-in: ids are code points."""

    def __call__(self, text, add_special_tokens=True):
        assert add_special_tokens is False
        return type("Encoding", (), {"input_ids": [ord(c) for c in text]})()


def test_vocabulary_token_ids_use_a_leading_space():
    assert StyleVocabulary(["b", "ab"]).token_ids(_Tokenizer()) == [[32, 97, 98], [32, 98]]


# ---- read_split ---------------------------------------------------------------------------------------


def test_read_split_default_columns(tmp_path):
    path = write_csv(
        tmp_path / "val.csv",
        ["question_id", "image", "question", "answer", "question_type", "style"],
        [
            ["007", "a.png", "What style?", "Pop Art", "style", "Pop_Art "],
            ["8", "b.png", "How many?", "None", "count", "cubism"],
        ],
    )
    rows, skipped = read_split(path, split="val")
    assert skipped == {}
    assert rows == [
        {
            "question_id": "007",
            "image": "a.png",
            "question": "What style?",
            "answer": "Pop Art",
            "question_type": "style",
            "style": "pop art",
            "style_source": "column",
        },
        {
            "question_id": "8",
            "image": "b.png",
            "question": "How many?",
            "answer": "None",  # not NaN
            "question_type": "count",
            "style": "cubism",
            "style_source": "column",
        },
    ]


def test_read_split_missing_file_names_the_path(tmp_path):
    path = str(tmp_path / "nope" / "train.csv")
    with pytest.raises(FileNotFoundError) as err:
        read_split(path, split="train")
    assert path in str(err.value)
    assert "train" in str(err.value)


def test_read_split_missing_column_names_column_file_and_columns_found(tmp_path):
    path = write_csv(tmp_path / "train.csv", ["image", "question", "style"], [["a.png", "q", "cubism"]])
    with pytest.raises(KeyError) as err:
        read_split(path)
    message = str(err.value)
    assert path in message
    assert "['answer']" in message
    assert "columns found: ['image', 'question', 'style']" in message


def test_read_split_missing_mapped_column_names_the_csv_column(tmp_path):
    path = write_csv(
        tmp_path / "train.csv", ["image", "question", "answer", "style"], [["a.png", "q", "x", "cubism"]]
    )
    with pytest.raises(KeyError, match="img"):
        read_split(path, fields={"image": "img"})


def test_read_split_header_only_is_an_error(tmp_path):
    path = write_csv(tmp_path / "test.csv", ["image", "question", "answer", "style"], [])
    with pytest.raises(ValueError) as err:
        read_split(path, split="test")
    assert path in str(err.value) and "no rows" in str(err.value)


def _csv_with_unlabelled_rows(tmp_path):
    return write_csv(
        tmp_path / "train.csv",
        ["image", "question", "answer", "style"],
        [
            ["a.png", "q1", "x", "cubism"],
            ["b.png", "q2", "y", ""],
            ["c.png", "q3", "z", "pop art"],
            ["d.png", "q4", "w", "   "],
        ],
    )


def test_read_split_rows_without_style_are_an_error_naming_file_and_rows(tmp_path):
    path = _csv_with_unlabelled_rows(tmp_path)
    with pytest.raises(ValueError) as err:
        read_split(path, split="train")
    message = str(err.value)
    assert path in message
    assert "2 of 4 rows" in message
    assert "[3, 5]" in message  # CSV line numbers, the header being line 1
    assert "'style'" in message
    assert "missing_style: keep-unlabelled" in message


def test_read_split_keeps_rows_without_style_when_asked(tmp_path):
    rows, skipped = read_split(
        _csv_with_unlabelled_rows(tmp_path), split="train", missing_style="keep-unlabelled"
    )
    assert [r["style"] for r in rows] == ["cubism", "", "pop art", ""]
    assert [r["image"] for r in rows] == ["a.png", "b.png", "c.png", "d.png"]
    assert skipped == {}


def test_read_split_skips_rows_without_style_and_counts_them(tmp_path):
    rows, skipped = read_split(_csv_with_unlabelled_rows(tmp_path), split="train", missing_style="skip")
    assert [r["image"] for r in rows] == ["a.png", "c.png"]
    assert skipped == {"no style": 2}


def test_read_split_without_style_column_is_a_no_source_error(tmp_path):
    path = write_csv(
        tmp_path / "train.csv", ["image", "question", "answer"], [["a.png", "q", "x"], ["b.png", "q", "y"]]
    )
    with pytest.raises(ValueError, match=r"no style source .*style_table"):
        read_split(path)
    assert [r["style"] for r in read_split(path, missing_style="keep-unlabelled")[0]] == ["", ""]


def test_read_split_configurable_field_names_and_generated_ids(tmp_path):
    path = write_csv(
        tmp_path / "val.csv",
        ["img", "q", "a", "style_label", "kind", "extra"],
        [
            ["x/1.jpg", "Which style?", "ukiyo-e", "Ukiyo-e", "style", "ignored"],
            ["x/2.jpg", "Which shape?", "circle", "cubism", "shape", "ignored"],
            ["x/3.jpg", "Which style?", "cubism", "cubism", "style", "ignored"],
        ],
    )
    fields = {"image": "img", "question": "q", "answer": "a", "style": "style_label", "question_type": "kind"}
    rows, _ = read_split(path, fields=fields, split="val")
    assert rows[0] == {
        "question_id": "val-0",
        "image": "x/1.jpg",
        "question": "Which style?",
        "answer": "ukiyo-e",
        "question_type": "style",
        "style": "ukiyo e",
        "style_source": "column",
    }
    assert [r["question_id"] for r in rows] == ["val-0", "val-1", "val-2"]
    assert [r["question_type"] for r in rows] == ["style", "shape", "style"]
    assert all("extra" not in r and "img" not in r for r in rows)


def test_read_split_without_question_type_column(tmp_path):
    path = write_csv(
        tmp_path / "train.csv", ["image", "question", "answer", "style"], [["a.png", "q", "x", "cubism"]]
    )
    assert read_split(path, split="train")[0] == [
        {
            "question_id": "train-0",
            "image": "a.png",
            "question": "q",
            "answer": "x",
            "question_type": "",
            "style": "cubism",
            "style_source": "column",
        }
    ]


# ---- synthetic generator -----------------------------------------------------------------------------


def _files(root):
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                out[os.path.relpath(path, root)] = handle.read()
    return out


def test_synthetic_generator_is_deterministic(tmp_path):
    first = generate(str(tmp_path / "a"), SMALL, seed=3, size=32)
    generate(str(tmp_path / "b"), SMALL, seed=3, size=32)
    generate(str(tmp_path / "c"), SMALL, seed=4, size=32)
    assert sorted(first) == ["test", "train", "val"]
    assert first["train"] == str(tmp_path / "a" / "artquest_train.csv")
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(a) == 6 + len(STYLES) * 4  # 3 CSVs, 3 caption JSONs and (2 + 1 + 1) images per style
    assert a == b  # byte-identical
    assert sorted(a) == sorted(c)
    images = [name for name in a if name.endswith(".png")]
    assert all(a[name] != c[name] for name in images)  # another seed draws other paintings


def test_synthetic_generator_content(tmp_path):
    paths = generate(str(tmp_path), SMALL, seed=0, size=32)
    with open(paths["train"], newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * len(STYLES) * 2  # 2 images per style, one question of each type
    styles = {r["style"] for r in rows}
    assert len(styles) >= 5 and styles == set(STYLES)
    assert {r["question_type"] for r in rows} == {"style", "shape"}
    assert len({r["question_id"] for r in rows}) == len(rows)
    for r in rows:
        assert os.path.isfile(os.path.join(tmp_path, "images", r["image"]))
        if r["question_type"] == "style":
            assert r["answer"] == normalise_style(r["style"])
        else:
            assert r["answer"] in ("circle", "square", "triangle")
    assert rows[0] == {
        "question_id": "train-000000",
        "image": "train_impressionism_0000.png",
        "question": "What style is this painting?",
        "answer": "impressionism",
        "question_type": "style",
        "style": "impressionism",
    }
    # the generated CSVs pass validation
    assert len(read_split(paths["val"], split="val")[0]) == len(STYLES) * 2


# ---- the `artquest` builder -----------------------------------------------------------------------------


def builder_config(data_root, image_root=None, splits=("train", "val", "test"), **extra):
    return OmegaConf.create(
        {
            "data_type": "images",
            "vis_processor": {
                "train": {"name": "blip_image_eval", "image_size": 32},
                "eval": {"name": "blip_image_eval", "image_size": 32},
            },
            "text_processor": {"train": {"name": "blip_question"}, "eval": {"name": "blip_question"}},
            "build_info": {
                "annotations": {
                    s: {"storage": os.path.join(str(data_root), f"artquest_{s}.csv")} for s in splits
                },
                "images": {
                    "storage": str(
                        image_root if image_root is not None else os.path.join(str(data_root), "images")
                    )
                },
            },
            **extra,
        }
    )


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_artquest")
    generate(str(root), SMALL, seed=0, size=48)
    return root


def test_builder_builds_every_split(synthetic_root):
    builder = registry.get_builder_class("artquest")(builder_config(synthetic_root))
    datasets = builder.build_datasets()
    assert sorted(datasets) == ["test", "train", "val"]
    assert len(datasets["train"]) == 2 * len(STYLES) * 2
    assert len(datasets["val"]) == len(STYLES) * 2
    assert len(datasets["test"]) == len(STYLES) * 2
    assert sorted(set(datasets["train"].style_labels())) == sorted(s.replace("-", " ") for s in STYLES)

    item = datasets["val"][0]
    assert item["image"].shape == (3, 32, 32)
    assert item["image"].dtype == torch.float32
    assert item["text_input"] == "what style is this painting?"  # blip_question lower-cases
    assert item["answer"] == "impressionism"
    assert item["question_type"] == "style"
    assert item["style"] == "impressionism"
    assert item["question_id"] == "val-000000"
    assert item["image_file"] == "val_impressionism_0000.png"
    assert item["instance_id"] == "0"

    item = datasets["train"][len(datasets["train"]) - 1]  # minimalism (style 5), image 1, shape question
    assert item["style"] == "minimalism" and item["question_type"] == "shape"
    assert item["text_input"] == "what shape is in the center of the painting?"
    assert item["answer"] == "circle"  # SHAPES[(1 + 5) % 3]
    assert item["image_file"] == "train_minimalism_0001.png"
    assert item["question_id"] == "train-000023"


def test_builder_batches_collate(synthetic_root):
    dataset = registry.get_builder_class("artquest")(
        builder_config(synthetic_root, splits=("val",))
    ).build_datasets()["val"]
    batch = dataset.collater([dataset[0], dataset[1]])
    assert batch["image"].shape == (2, 3, 32, 32)
    assert batch["question_id"] == ["val-000000", "val-000001"]
    assert batch["question_type"] == ["style", "shape"]


def test_builder_relative_paths_from_the_working_directory(synthetic_root, monkeypatch):
    monkeypatch.chdir(synthetic_root)
    cfg = OmegaConf.create(
        {
            "data_type": "images",
            "build_info": {
                "annotations": {"val": {"storage": "artquest_val.csv"}},
                "images": {"storage": "images"},
            },
        }
    )
    datasets = registry.get_builder_class("artquest")(cfg).build_datasets()
    assert list(datasets) == ["val"]
    assert datasets["val"].vis_root == os.path.join(str(synthetic_root), "images")


def test_builder_missing_image_root_names_the_path(synthetic_root, tmp_path):
    missing = tmp_path / "no_images_here"
    with pytest.raises(FileNotFoundError) as err:
        registry.get_builder_class("artquest")(
            builder_config(synthetic_root, image_root=missing)
        ).build_datasets()
    assert str(missing) in str(err.value)


def test_builder_missing_annotation_names_the_path(synthetic_root, tmp_path):
    cfg = builder_config(synthetic_root, splits=("val",))
    cfg.build_info.annotations.val.storage = str(tmp_path / "missing_val.csv")
    with pytest.raises(FileNotFoundError, match="missing_val.csv"):
        registry.get_builder_class("artquest")(cfg).build_datasets()


def test_builder_without_build_info_raises():
    cfg = OmegaConf.create({"data_type": "images"})
    with pytest.raises(KeyError, match="build_info"):
        registry.get_builder_class("artquest")(cfg).build_datasets()


def test_builder_passes_fields_and_missing_style(tmp_path):
    os.makedirs(tmp_path / "imgs")
    generate(str(tmp_path / "src"), {"val": 1}, seed=0, size=16)
    write_csv(
        tmp_path / "val.csv",
        ["img", "q", "a", "label"],
        [
            [os.path.join(str(tmp_path / "src" / "images"), "val_cubism_0000.png"), "Which?", "cubism", ""],
        ],
    )
    cfg = OmegaConf.create(
        {
            "data_type": "images",
            "vis_processor": {"eval": {"name": "blip_image_eval", "image_size": 32}},
            "text_processor": {"eval": {"name": "blip_question"}},
            "fields": {"image": "img", "question": "q", "answer": "a", "style": "label"},
            "build_info": {
                "annotations": {"val": {"storage": str(tmp_path / "val.csv")}},
                "images": {"storage": str(tmp_path / "imgs")},
            },
        }
    )
    builder_cls = registry.get_builder_class("artquest")
    with pytest.raises(ValueError, match="no style"):
        builder_cls(cfg).build_datasets()
    cfg.missing_style = "keep-unlabelled"
    item = builder_cls(cfg).build_datasets()["val"][0]
    assert item["style"] == "" and item["answer"] == "cubism" and item["question_id"] == "val-0"
    assert item["image"].shape == (3, 32, 32)  # an absolute image path ignores the image root
    assert not math.isnan(float(item["image"].mean()))


def test_read_split_rejects_duplicated_question_ids(tmp_path):
    path = write_csv(
        tmp_path / "dup.csv",
        ["question_id", "image", "question", "answer", "style"],
        [
            ["q1", "a.png", "what?", "x", "cubism"],
            ["q2", "b.png", "what?", "y", "cubism"],
            ["q1", "c.png", "what?", "z", "cubism"],
        ],
    )
    with pytest.raises(ValueError, match=r"dup\.csv: 2 rows share a question_id .*first lines: \[2, 4\]"):
        read_split(str(path))


@pytest.mark.parametrize("column", ["image", "question", "answer"])
def test_read_split_rejects_empty_required_values(tmp_path, column):
    header = ["question_id", "image", "question", "answer", "style"]
    row = {"question_id": "q2", "image": "b.png", "question": "what?", "answer": "y", "style": "cubism"}
    row[column] = " "
    path = write_csv(
        tmp_path / "empty.csv", header, [["q1", "a.png", "what?", "x", "cubism"], [row[h] for h in header]]
    )
    with pytest.raises(ValueError, match=rf"empty\.csv: 1 rows with an empty '{column}'; first lines: \[3\]"):
        read_split(str(path))


def test_read_split_rejects_unknown_missing_style_policy(tmp_path):
    path = write_csv(
        tmp_path / "ok.csv", ["image", "question", "answer", "style"], [["a.png", "what?", "x", "cubism"]]
    )
    with pytest.raises(ValueError, match="missing_style 'keep' is not one of"):
        read_split(str(path), missing_style="keep")


def test_shared_palette_leaves_only_the_brushwork(tmp_path):
    """--shared-palette: every style paints with the same seeded colours (the texture ablation's condition),
    while the default palettes are the style's own."""
    from lavis_gated.datasets.synthetic_artquest import _shared_palette, draw_painting

    fixed = {(0, 0, 0), (255, 255, 255), (240, 236, 225), (20, 15, 10)}  # outline, canvas, pointillism
    for seed in (0, 1):
        palette = set(_shared_palette(np.random.default_rng(seed))) | fixed
        for style in STYLES:
            image = draw_painting(style, "circle", seed, size=48, shared_palette=True)
            assert set(image.getdata()) <= palette, style
    own = draw_painting("ukiyo-e", "circle", 0, size=48)
    assert not set(own.getdata()) <= set(_shared_palette(np.random.default_rng(0))) | fixed


def test_style_folders_for_a_style_cnn(tmp_path):
    """--style-folders: WikiArt's layout, names the vocabulary reads as the data's styles, and paintings
    that are not in any ArtQuest split."""
    from lavis_gated.datasets.synthetic_artquest import write_style_folders
    from lavis_gated.wikiart.style_folders import scan_style_folders

    generate(str(tmp_path / "aq"), SMALL, seed=0, size=32)
    root = write_style_folders(str(tmp_path / "folders"), per_style=3, seed=0, size=32)
    scanned = scan_style_folders(root)
    folders = sorted(os.listdir(root))
    assert [normalise_style(name) for name in folders] == sorted(normalise_style(s) for s in STYLES)
    assert all(len(os.listdir(os.path.join(root, f))) == 3 for f in folders)
    assert len(scanned.labels) == 3 * len(STYLES)
    split_images = {data for name, data in _files(tmp_path / "aq").items() if name.endswith(".png")}
    assert not split_images & set(_files(root).values())
