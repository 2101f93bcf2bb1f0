"""The `art_captions` builder: each caption layout (ArtCap-style CSV and JSON, SemArt's TSV, LAVIS's
coco_caption JSON) builds, with styles from a column, a join table or a style table; several references per
image (a training row per caption, an evaluation row per image); each bad input is one error naming the file
and the row; the synthetic generator's captions name their style."""

import csv
import json

import numpy as np
import pytest
from lavis.common.registry import registry
from omegaconf import OmegaConf
from PIL import Image

import lavis_gated  # noqa: F401  (registers the builder)
from lavis_gated.datasets.caption_dataset import REFERENCE_SEPARATOR, leading_sentences
from lavis_gated.datasets.synthetic_artquest import STYLES, generate
from lavis_gated.styles import mentions_style

# SemArt's file names: <number>-<painter's name>.jpg
MONET, HOKUSAI, SEURAT = "19873-1monet.jpg", "11304-hokusai1.jpg", "35880-seurat2.jpg"
ARTCAP = {  # five human captions per painting, as ArtCap has them
    MONET: [
        "A woman with a parasol stands on a grassy hill.",
        "A lady holding an umbrella on a windy hillside.",
        "A woman and a child in a field under a blue sky.",
        "Impressionist painting of a woman with a parasol.",
        "A person with a green umbrella in the wind.",
    ],
    HOKUSAI: [
        "A great wave about to crash over three boats.",
        "Ukiyo-e print of a huge wave with Mount Fuji behind.",
        "Boats caught under a giant curling wave.",
        "A blue and white wave dwarfs the fishermen.",
        "A woodblock print of a stormy sea.",
    ],
}
STYLE_OF = {MONET: "Impressionism", HOKUSAI: "Ukiyo_e", SEURAT: "Pointillism"}


def save_image(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")
    return path


def write_rows(path, header, rows, delimiter=",", encoding="utf-8"):
    with open(path, "w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def images_for(tmp_path, names):
    for i, name in enumerate(names):
        save_image(tmp_path / "images" / name, seed=i)
    return str(tmp_path / "images")


def build(tmp_path, splits, **settings):
    """The art_captions builder's datasets for {split: file} over tmp_path/images."""
    block = OmegaConf.merge(
        OmegaConf.load(
            registry.get_builder_class("art_captions").default_config_path()
        ).datasets.art_captions,
        {
            "vis_processor": {
                "train": {"name": "blip_image_eval", "image_size": 32},
                "eval": {"name": "blip_image_eval", "image_size": 32},
            },
            "build_info": {
                "annotations": {split: {"storage": path} for split, path in splits.items()},
                "images": {"storage": str(tmp_path / "images")},
            },
            **settings,
        },
    )
    return registry.get_builder_class("art_captions")(block).build_datasets()


def row_per_caption_csv(tmp_path, captions=ARTCAP, style=True):
    rows = [[image, c] + ([STYLE_OF[image]] if style else []) for image, cs in captions.items() for c in cs]
    header = ["image", "caption"] + (["style"] if style else [])
    return write_rows(tmp_path / "artcap_train.csv", header, rows)


# ---- the layouts ----------------------------------------------------------------------------------------


def test_artcap_style_csv_a_row_per_caption_with_a_style_column(tmp_path):
    images_for(tmp_path, ARTCAP)
    path = row_per_caption_csv(tmp_path)
    val = write_rows(
        tmp_path / "artcap_val.csv",
        ["image", "caption", "style"],
        [[i, c, STYLE_OF[i]] for i, cs in ARTCAP.items() for c in cs],
    )
    datasets = build(tmp_path, {"train": path, "val": val})
    train, evaluation = datasets["train"], datasets["val"]
    # training: a row per caption; evaluation: a row per image with all five references
    assert len(train) == 10 and len(evaluation) == 2
    sample = train[0]
    assert sample["text_input"] == "" and sample["question_type"] == "caption"
    assert sample["answer"] == "a woman with a parasol stands on a grassy hill"  # blip_caption processor
    assert sample["style"] == "impressionism" and sample["image"].shape == (3, 32, 32)
    first = evaluation[1]
    assert first["question_id"] == HOKUSAI and first["style"] == "ukiyo e"
    assert first["references"].split(REFERENCE_SEPARATOR) == ARTCAP[HOKUSAI]
    batch = evaluation.collater([evaluation[0], evaluation[1]])
    assert batch["text_input"] == ["", ""] and len(batch["references"]) == 2
    assert train.summary["question_type"] == {"caption": 10}


def test_artcap_style_csv_with_five_caption_columns_and_a_join_table(tmp_path):
    images_for(tmp_path, ARTCAP)
    columns = [f"caption_{k}" for k in range(1, 6)]
    path = write_rows(tmp_path / "artcap.csv", ["painting", *columns], [[i, *cs] for i, cs in ARTCAP.items()])
    table = write_rows(tmp_path / "styles.csv", ["file", "movement"], sorted(STYLE_OF.items()))
    datasets = build(
        tmp_path,
        {"val": path},
        fields={"image": "painting", "caption": columns},
        style_table={"storage": table, "key": "file", "style": "movement"},
    )
    rows = datasets["val"].annotation
    assert [r["references"] for r in rows] == list(ARTCAP.values())
    assert [r["style"] for r in rows] == ["impressionism", "ukiyo e"]


def test_artcap_style_json_a_list_of_captions_per_painting(tmp_path):
    images_for(tmp_path, ARTCAP)
    path = tmp_path / "artcap.json"
    path.write_text(
        json.dumps([{"image": i, "captions": cs, "style": STYLE_OF[i]} for i, cs in ARTCAP.items()])
    )
    train = build(tmp_path, {"train": str(path)}, fields={"caption": ["captions"]})["train"]
    assert [r["answer"] for r in train.annotation] == [c for cs in ARTCAP.values() for c in cs]
    assert len({r["question_id"] for r in train.annotation}) == 10


def test_semart_tsv_description_under_a_word_limit_with_a_style_table(tmp_path):
    images_for(tmp_path, [MONET, SEURAT])
    header = [
        "IMAGE_FILE",
        "DESCRIPTION",
        "AUTHOR",
        "TITLE",
        "TECHNIQUE",
        "DATE",
        "TYPE",
        "SCHOOL",
        "TIMEFRAME",
    ]
    monet = (
        "Monet painted his wife Camille and their son Jean on a hill. "
        "The light falls from behind the figures. "
        "Their shadows are blue and the wind moves the parasol and the grass, which the painter renders in "
        "quick strokes of colour."
    )
    seurat = "A Sunday afternoon on the island of La Grande Jatte, painted in small dots of pure colour."
    rows = [
        [
            MONET,
            monet,
            "MONET, Claude",
            "Woman with a Parasol",
            "Oil on canvas",
            "1875",
            "genre",
            "French",
            "1851-1900",
        ],
        [
            SEURAT,
            seurat,
            "SEURAT, Georges",
            "La Grande Jatte",
            "Oil on canvas",
            "1884",
            "genre",
            "French",
            "1851-1900",
        ],
    ]
    path = write_rows(tmp_path / "semart_train.csv", header, rows, delimiter="\t", encoding="latin-1")
    # the style table is read with the split's encoding and delimiter
    table = write_rows(
        tmp_path / "style_table.csv",
        ["image", "style"],
        [[MONET, "Impressionism"], [SEURAT, "Pointillism"]],
        "\t",
    )
    train = build(
        tmp_path,
        {"train": path},
        fields={"image": "IMAGE_FILE", "caption": ["DESCRIPTION"]},
        delimiter="\t",
        encoding="latin-1",
        max_caption_words=30,
        style_table={"storage": table},
    )["train"]
    captions = [r["answer"] for r in train.annotation]
    # 13 + 7 words kept; the third sentence would pass 30 words
    assert (
        captions[0] == "Monet painted his wife Camille and their son Jean on a hill. "
        "The light falls from behind the figures."
    )
    assert captions[1] == seurat
    assert [r["style"] for r in train.annotation] == ["impressionism", "pointillism"]


def test_leading_sentences_keep_at_least_the_first_sentence():
    assert leading_sentences("One two three four. Five six.", 2) == "One two three four."
    assert leading_sentences("One two. Three four. Five.", 4) == "One two. Three four."


def test_lavis_coco_caption_json_train_and_karpathy_val(tmp_path):
    names = ["val2014/COCO_val2014_000000391895.jpg", "val2014/COCO_val2014_000000522418.jpg"]
    images_for(tmp_path, names)
    train = [
        {
            "image": names[0],
            "caption": "A man with a red helmet on a small moped on a dirt road. ",
            "image_id": "coco_391895",
        },
        {
            "image": names[0],
            "caption": "Man riding a motor bike on a dirt road on the countryside.",
            "image_id": "coco_391895",
        },
        {
            "image": names[1],
            "caption": "A woman wearing a net on her head cutting a cake. ",
            "image_id": "coco_522418",
        },
    ]
    val = [
        {"image": names[0], "caption": [t["caption"] for t in train[:2]]},
        {"image": names[1], "caption": [train[2]["caption"]]},
    ]
    (tmp_path / "coco_karpathy_train.json").write_text(json.dumps(train))
    (tmp_path / "coco_karpathy_val.json").write_text(json.dumps(val))
    table = write_rows(
        tmp_path / "styles.csv", ["image", "style"], [[names[0], "realism"], [names[1], "realism"]]
    )
    datasets = build(
        tmp_path,
        {
            "train": str(tmp_path / "coco_karpathy_train.json"),
            "val": str(tmp_path / "coco_karpathy_val.json"),
        },
        style_table={"storage": table},
    )
    assert [r["question_id"] for r in datasets["train"].annotation] == [
        "coco_391895#0",
        "coco_391895#1",
        "coco_522418#0",
    ]
    assert datasets["val"].annotation[0]["references"] == [
        "A man with a red helmet on a small moped on a dirt road.",
        "Man riding a motor bike on a dirt road on the countryside.",
    ]


def test_synthetic_captions_name_their_style(tmp_path):
    generate(tmp_path, {"train": 2, "val": 1}, size=32)
    records = json.loads((tmp_path / "captions_train.json").read_text())
    assert len(records) == 2 * len(STYLES) and all(len(r["captions"]) == 3 for r in records)
    for r in records:
        assert all(mentions_style(c, [r["style"]]) for c in r["captions"]), r
    assert "an ukiyo-e print of a" in " ".join(c for r in records for c in r["captions"])
    datasets = build(
        tmp_path, {"train": str(tmp_path / "captions_train.json")}, fields={"caption": ["captions"]}
    )
    assert len(datasets["train"]) == 6 * len(STYLES)


# ---- bad inputs: one clear error each, naming the file and the row --------------------------------------


def test_missing_and_corrupt_images_are_errors_naming_them(tmp_path):
    images_for(tmp_path, [MONET])
    (tmp_path / "images" / HOKUSAI).write_bytes(b"not a jpeg")
    path = row_per_caption_csv(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        build(tmp_path, {"train": path})
    assert path in str(err.value) and HOKUSAI in str(err.value) and "unreadable" in str(err.value)
    (tmp_path / "images" / HOKUSAI).unlink()
    with pytest.raises(FileNotFoundError, match=rf"{HOKUSAI} \(missing; line \d+\)"):
        build(tmp_path, {"train": path})


def test_a_repeated_caption_is_an_error_naming_the_lines_or_skipped(tmp_path):
    images_for(tmp_path, ARTCAP)
    captions = {MONET: ARTCAP[MONET] + [ARTCAP[MONET][1]], HOKUSAI: ARTCAP[HOKUSAI]}
    path = row_per_caption_csv(tmp_path, captions)
    with pytest.raises(ValueError) as err:
        build(tmp_path, {"train": path})
    assert path in str(err.value) and "1 captions repeat an earlier caption" in str(err.value)
    assert "first lines: [7]" in str(err.value)
    train = build(tmp_path, {"train": path}, duplicate_rows="skip")["train"]
    assert len(train) == 10 and train.skipped == {"duplicate": 1}


def test_an_image_outside_the_root_is_an_error_naming_the_line(tmp_path):
    images_for(tmp_path, [MONET])
    save_image(tmp_path / "elsewhere.jpg")
    path = write_rows(
        tmp_path / "c.csv",
        ["image", "caption", "style"],
        [[MONET, "a hill", "impressionism"], ["../elsewhere.jpg", "a sea", "realism"]],
    )
    with pytest.raises(ValueError, match=r"outside the image root.*first lines: \[3\]"):
        build(tmp_path, {"train": path})


def test_an_empty_caption_is_an_error_naming_the_line(tmp_path):
    images_for(tmp_path, ARTCAP)
    path = write_rows(
        tmp_path / "c.csv",
        ["image", "caption", "style"],
        [[MONET, "a hill", "impressionism"], [HOKUSAI, "  ", "ukiyo-e"]],
    )
    with pytest.raises(ValueError, match=r"c\.csv: 1 empty captions \(column caption\); first lines: \[3\]"):
        build(tmp_path, {"train": path})
    json_path = tmp_path / "c.json"
    json_path.write_text(json.dumps([{"image": MONET, "caption": ["a hill", ""], "style": "impressionism"}]))
    with pytest.raises(ValueError, match=r"c\.json: 1 empty captions .*first records: \[1\]"):
        build(tmp_path, {"train": str(json_path)})


def test_a_missing_caption_column_and_a_missing_style_are_errors(tmp_path):
    images_for(tmp_path, ARTCAP)
    path = row_per_caption_csv(tmp_path)
    with pytest.raises(KeyError, match=r"artcap_train\.csv: missing required column\(s\) \['description'\]"):
        build(tmp_path, {"train": path}, fields={"caption": ["description"]})
    path = write_rows(
        tmp_path / "c.csv",
        ["image", "caption", "style"],
        [[MONET, "a hill", "impressionism"], [HOKUSAI, "a wave", ""]],
    )
    with pytest.raises(ValueError, match=r"c\.csv: 1 of 2 rows have no style .*first lines: \[3\]"):
        build(tmp_path, {"train": path})
    kept = build(tmp_path, {"train": path}, missing_style="keep-unlabelled")["train"]
    assert [r["style"] for r in kept.annotation] == ["impressionism", ""]


def test_rows_of_one_image_with_different_styles_are_an_error(tmp_path):
    images_for(tmp_path, [MONET])
    path = write_rows(
        tmp_path / "c.csv",
        ["image", "caption", "style"],
        [[MONET, "a hill", "impressionism"], [MONET, "a lady", "realism"]],
    )
    with pytest.raises(
        ValueError, match=r"c\.csv: 1 images have rows with different styles; first: '19873-1monet\.jpg'"
    ):
        build(tmp_path, {"train": path})
