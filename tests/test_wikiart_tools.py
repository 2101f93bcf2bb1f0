"""The WikiArt tools on tiny generated style folders: the trained CNN loads into StyleEncoder with its
classifier rows named, the image -> style table it predicts is read back by StyleTable, and each bad
input is an error naming the folder, file or lines."""

import contextlib
import csv
import io
import json
import os
import re
from types import SimpleNamespace

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from lavis_gated.common.checkpoints import CheckpointMismatchError, load_checkpoint
from lavis_gated.datasets.style_sources import StyleTable
from lavis_gated.models.style_parts import StyleEncoder
from lavis_gated.styles import normalise_style
from lavis_gated.wikiart import style_table, train_style_cnn
from lavis_gated.wikiart.style_folders import scan_style_folders, split_per_class
from lavis_gated.wikiart.timm_weights import load_backbone, load_classifier

STYLES = ("Impressionism", "Pop_Art", "Ukiyo-e")  # sorted, as the classifier rows will be
ARCH, SIZE = "resnet18", 48


def painting(style, rng):
    """A small noisy image whose style shows at any crop: red; blue with white stripes; a checkerboard."""
    h, w = rng.integers(40, 72, 2)
    pixels = rng.normal(0, 20, (h, w, 3))
    if style == 0:
        pixels += (200, 40, 40)
    elif style == 1:
        pixels += (40, 60, 200)
        pixels[::6] += (170, 150, 45)
    else:
        y, x = np.mgrid[:h, :w]
        pixels += np.where(((y // 8 + x // 8) % 2)[..., None] == 1, (40, 180, 60), (230, 230, 200))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_style_folders(root, per_style, seed=0, styles=STYLES):
    rng = np.random.default_rng(seed)
    for index, style in enumerate(styles):
        os.makedirs(root / style, exist_ok=True)
        for i in range(per_style):
            painting(index, rng).save(root / style / f"{style.lower()}_{i}.jpg")
    return root


def run(main, *argv):
    """main(argv) of a command; returns what it printed."""
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        main([str(a) for a in argv])
    return printed.getvalue()


def train_args(data, out, *extra):
    return [
        "--images",
        data,
        "--output-dir",
        out,
        "--arch",
        ARCH,
        "--image-size",
        SIZE,
        "--device",
        "cpu",
        "--num-workers",
        0,
        "--batch-size",
        8,
        "--lr",
        1e-3,
        *extra,
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """resnet18 at 48 px, 2 epochs on 3 styles x 16 images (a quarter held out): a few seconds on one core."""
    tmp = tmp_path_factory.mktemp("wikiart")
    data = make_style_folders(tmp / "wikiart", per_style=16)
    printed = run(train_style_cnn.main, *train_args(data, tmp / "cnn", "--epochs", 2, "--val-fraction", 0.25))
    return SimpleNamespace(tmp=tmp, data=data, out=tmp / "cnn", printed=printed)


def test_training_writes_a_plain_timm_state_dict_class_names_and_metrics(trained):
    assert json.loads((trained.out / "class_names.json").read_text()) == list(STYLES)
    state = load_checkpoint(str(trained.out / "style_cnn.pth"))
    expected = timm.create_model(ARCH, num_classes=len(STYLES)).state_dict()
    assert set(state) == set(expected) and state["fc.weight"].shape == (3, 512)
    metrics = json.loads((trained.out / "metrics.json").read_text())
    assert (metrics["arch"], metrics["image_size"], metrics["train_images"], metrics["val_images"]) == (
        ARCH,
        SIZE,
        36,
        12,
    )
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    tops = [e["val_top1"] for e in metrics["epochs"]]
    assert metrics["best_val_top1"] == max(tops) == tops[metrics["best_epoch"] - 1]
    assert all(np.isfinite(e["train_loss"]) for e in metrics["epochs"])
    assert (
        "3 styles, 48 images (36 train, 12 val): Impressionism 16, Pop_Art 16, Ukiyo-e 16" in trained.printed
    )
    assert (
        f"arch: {ARCH}\n    image_size: {SIZE}\n    checkpoint: {trained.out}/style_cnn.pth"
        in trained.printed
    )


def test_trained_cnn_beats_chance_on_its_validation_images(trained):
    metrics = json.loads((trained.out / "metrics.json").read_text())
    assert metrics["best_val_top1"] >= 0.75  # chance: 1/3; the styles differ in colour at any crop


def test_style_encoder_loads_the_weights_with_the_classifier_rows_named(trained):
    state = load_checkpoint(str(trained.out / "style_cnn.pth"))
    encoder = StyleEncoder(
        arch=ARCH,
        image_size=SIZE,
        checkpoint=str(trained.out / "style_cnn.pth"),
        class_names=str(trained.out / "class_names.json"),
    )
    assert encoder.classifier.class_names == list(STYLES)
    assert torch.equal(encoder.classifier.weight, state["fc.weight"])
    assert torch.equal(encoder.classifier.bias, state["fc.bias"])
    assert torch.equal(
        encoder.cnn.state_dict()["layer4.1.bn2.running_var"], state["layer4.1.bn2.running_var"]
    )
    # the model matches classifier rows to its style vocabulary by normalised name
    assert [normalise_style(n) for n in encoder.classifier.class_names] == [
        "impressionism",
        "pop art",
        "ukiyo e",
    ]


def held_out_images(folder, per_style=6, seed=1):
    """Images the CNN never saw, named <style>_<i>.jpg; one style's last image in a sub-folder."""
    rng = np.random.default_rng(seed)
    (folder / "more").mkdir(parents=True)
    names = {}
    for index, style in enumerate(STYLES):
        for i in range(per_style):
            name = f"more/{style}_{i}.jpg" if index == 2 and i == per_style - 1 else f"{style}_{i}.jpg"
            painting(index, rng).save(folder / name)
            names[name] = style
    return names


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_predicted_style_table_is_read_by_style_table_and_beats_chance(trained, tmp_path):
    truth = held_out_images(tmp_path / "images")
    out = tmp_path / "image_styles.csv"
    printed = run(
        style_table.main,
        "--checkpoint",
        trained.out / "style_cnn.pth",
        "--class-names",
        trained.out / "class_names.json",
        "--images",
        tmp_path / "images",
        "--output",
        out,
        "--num-workers",
        0,
        "--device",
        "cpu",
    )
    header, *rows = read_rows(out)
    assert header == ["image", "style", "confidence", "source"]
    assert {r[3] for r in rows} == {"cnn"}  # the provenance the metrics read: agreement with the style table
    assert sorted(r[0] for r in rows) == sorted(truth)  # names relative to --images, "/"-separated
    assert all(r[1] in STYLES and 1 / 3 <= float(r[2]) <= 1 for r in rows)
    correct = sum(truth[image] == style for image, style, _, _ in rows)
    assert correct >= 12, rows  # of 18; chance is 6
    table = StyleTable.read(str(out))
    assert table.styles == {image: normalise_style(style) for image, style, _, _ in rows}
    assert set(table.sources.values()) == {"cnn"}
    assert f"{ARCH} at {SIZE} px predicted the style of 18 images" in printed  # arch, size from metrics.json
    assert f"storage: {out}" in printed

    confidences = sorted(float(r[2]) for r in rows)
    gap, threshold = max((b - a, round((a + b) / 2, 6)) for a, b in zip(confidences, confidences[1:]))
    assert gap > 1e-3  # halfway across the widest gap, so the 4-decimal rounding of the file cannot cross it
    kept = sum(c >= threshold for c in confidences)
    printed = run(
        style_table.main,
        "--checkpoint",
        trained.out / "style_cnn.pth",
        "--class-names",
        trained.out / "class_names.json",
        "--images",
        tmp_path / "images",
        "--output",
        out,
        "--num-workers",
        0,
        "--device",
        "cpu",
        "--min-confidence",
        threshold,
    )
    assert len(read_rows(out)) - 1 == kept
    assert f"left out: {18 - kept} below --min-confidence {threshold}, 0 unreadable" in printed


def test_class_names_must_match_the_classifier_rows(trained):
    with pytest.raises(ValueError, match=r"classifier in .*style_cnn\.pth has 3 rows, but 2 class names"):
        load_classifier(ARCH, str(trained.out / "style_cnn.pth"), ["a", "b"])


def test_pretrained_weights_start_everything_but_the_classifier(tmp_path):
    torch.manual_seed(0)
    imagenet = timm.create_model(ARCH, num_classes=1000).state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in imagenet.items()}}, tmp_path / "imagenet.pth")
    model = timm.create_model(ARCH, num_classes=3)
    fresh_fc = model.fc.weight.detach().clone()
    load_backbone(model, str(tmp_path / "imagenet.pth"))
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in imagenet.items() if not k.startswith("fc."))
    assert torch.equal(state["fc.weight"], fresh_fc)


def test_timm_weights_are_checked_by_the_one_key_and_shape_rule(tmp_path):
    """The WikiArt commands report a file that does not fit as the style encoder and the runner do
    (checkpoint_keys): counted kinds of mismatch, each listing its keys."""
    model = timm.create_model(ARCH, num_classes=3)
    torch.save(timm.create_model("resnet34").state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(
        CheckpointMismatchError,
        match=r"resnet34\.pth does not fit timm resnet18: \d+ unexpected keys \['layer1\.2\.",
    ):
        load_backbone(model, str(tmp_path / "resnet34.pth"))
    torch.save(timm.create_model(ARCH, in_chans=1).state_dict(), tmp_path / "grey.pth")
    with pytest.raises(CheckpointMismatchError) as refused:
        load_backbone(model, str(tmp_path / "grey.pth"))
    wrong = "['conv1.weight (64, 1, 7, 7) != (64, 3, 7, 7)']"
    assert str(refused.value) == f"{tmp_path / 'grey.pth'} does not fit timm resnet18: 1 wrong shapes {wrong}"


def test_metadata_table_keeps_each_image_once_and_is_read_by_style_table(tmp_path):
    metadata = tmp_path / "wikiart_meta.csv"
    metadata.write_text(
        "file,genre,artist\n"
        "a.jpg,Impressionism,monet\n"
        "b.jpg,Pop_Art,warhol\n"
        "a.jpg,impressionism,monet\n"  # the same style spelt differently: a repeat
        "c.jpg,,unknown\n"  # no style: left out, counted
        "d.jpg,Ukiyo-e,hokusai\n",
        encoding="utf-8",
    )
    out = tmp_path / "styles.csv"
    printed = run(
        style_table.main,
        "--from-metadata",
        metadata,
        "--image-column",
        "file",
        "--style-column",
        "genre",
        "--output",
        out,
    )
    assert read_rows(out) == [
        ["image", "style", "source"],
        ["a.jpg", "Impressionism", "metadata"],
        ["b.jpg", "Pop_Art", "metadata"],
        ["d.jpg", "Ukiyo-e", "metadata"],
    ]
    assert (
        "5 rows; 3 images with a style; left out: 1 repeated images (same style), 1 rows without" in printed
    )
    assert StyleTable.read(str(out)).styles == {
        "a.jpg": "impressionism",
        "b.jpg": "pop art",
        "d.jpg": "ukiyo e",
    }


def test_metadata_image_with_two_styles_names_the_lines(tmp_path):
    metadata = tmp_path / "meta.csv"
    metadata.write_text("image,style\nx.jpg,Baroque\ny.jpg,Rococo\nx.jpg,Rococo\n", encoding="utf-8")
    with pytest.raises(
        ValueError,
        match=r"meta\.csv: 1 images have two different styles: 'x\.jpg' is "
        r"'Baroque' on line 2 and 'Rococo' on line 4",
    ):
        run(style_table.main, "--from-metadata", metadata, "--output", tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_conflict_lines_are_the_files_own_after_blank_lines_and_multi_line_fields(tmp_path, suffix):
    """The lines named are where the records are in the file (read_table's index), not row counts."""
    metadata = tmp_path / f"wikiart_meta{suffix}"
    if suffix == ".csv":
        metadata.write_text(
            "image,style,title\n"  # line 1
            "\n"
            "vermeer_milkmaid.jpg,Baroque,The Milkmaid\n"  # line 3, after a blank line
            'hokusai_wave.jpg,Ukiyo-e,"The Great Wave\noff Kanagawa"\n'  # lines 4-5: a two-line title
            "\n"
            "vermeer_milkmaid.jpg,Rococo,The Milkmaid\n",  # line 7
            encoding="utf-8",
        )
    else:
        records = [
            {"image": "vermeer_milkmaid.jpg", "style": "Baroque"},
            {"image": "hokusai_wave.jpg", "style": "Ukiyo-e"},
            {"image": "vermeer_milkmaid.jpg", "style": "Rococo"},
        ]
        lines = ["", json.dumps(records[0]), json.dumps(records[1]), "", "", json.dumps(records[2])]
        metadata.write_text("\n".join(lines) + "\n", encoding="utf-8")
    first, second = (3, 7) if suffix == ".csv" else (2, 6)
    with pytest.raises(ValueError) as refused:
        style_table.metadata_rows(str(metadata), "image", "style")
    assert str(refused.value) == (
        f"{metadata}: 1 images have two different styles: 'vermeer_milkmaid.jpg' is 'Baroque' on line "
        f"{first} and 'Rococo' on line {second}"
    )


def test_missing_root_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"WikiArt folder not found: {tmp_path}/nowhere")):
        run(train_style_cnn.main, *train_args(tmp_path / "nowhere", tmp_path / "out"))


def test_empty_style_folder_is_named(tmp_path):
    data = make_style_folders(tmp_path / "wikiart", per_style=2)
    (data / "Baroque").mkdir()
    (data / "Baroque" / "notes.txt").write_text("not an image")
    with pytest.raises(
        ValueError, match=r"1 style folder.s. have no images .*: " + re.escape(f"{data}/Baroque") + "$"
    ):
        run(train_style_cnn.main, *train_args(data, tmp_path / "out"))


def test_fewer_than_two_styles_is_an_error(tmp_path):
    data = make_style_folders(tmp_path / "wikiart", per_style=2, styles=("Baroque",))
    with pytest.raises(ValueError, match=r"has 1 style folder.s. \['Baroque'\]; .* at least 2"):
        run(train_style_cnn.main, *train_args(data, tmp_path / "out"))


def test_unreadable_images_are_named_counted_and_can_be_skipped(tmp_path):
    data = make_style_folders(tmp_path / "wikiart", per_style=3)
    (data / "Pop_Art" / "empty.jpg").write_bytes(b"")
    whole = (data / "Ukiyo-e" / "ukiyo-e_0.jpg").read_bytes()
    (data / "Ukiyo-e" / "cut.jpg").write_bytes(whole[: len(whole) // 2])  # truncated mid-scan
    with pytest.raises(
        ValueError,
        match=r"2 of 11 images under .* cannot be read \(rerun with --skip-bad-images"
        r".*Pop_Art/empty\.jpg: unreadable.*Ukiyo-e/cut\.jpg: unreadable",
    ):
        run(train_style_cnn.main, *train_args(data, tmp_path / "out"))
    scanned = scan_style_folders(str(data), skip_bad_images=True)
    assert sorted(os.path.basename(p) for p in scanned.skipped) == ["cut.jpg", "empty.jpg"]
    assert len(scanned.paths) == 9 and scanned.labels == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_a_style_left_without_readable_images_is_named(tmp_path):
    data = make_style_folders(tmp_path / "wikiart", per_style=2)
    for image in (data / "Pop_Art").iterdir():
        image.write_bytes(b"broken")
    with pytest.raises(ValueError, match=r"no readable images left after skipping .*Pop_Art"):
        scan_style_folders(str(data), skip_bad_images=True)


def test_validation_split_is_seeded_and_per_class():
    labels = [0] * 10 + [1] * 3 + [2]
    train, val = split_per_class(labels, 0.2, seed=5)
    assert sorted(train + val) == list(range(len(labels)))
    assert [sum(labels[i] == c for i in val) for c in range(3)] == [2, 1, 0]  # a 1-image class stays in train
    assert split_per_class(labels, 0.2, seed=5) == (train, val)
    assert split_per_class(labels, 0.0, seed=5) == (list(range(len(labels))), [])


def test_commands_are_declared_in_pyproject():
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(os.path.dirname(__file__), "..", "pyproject.toml"), "rb") as handle:
        scripts = tomllib.load(handle)["project"]["scripts"]
    assert scripts["lavis-gated-train-style-cnn"] == "lavis_gated.wikiart.train_style_cnn:main"
    assert scripts["lavis-gated-style-table"] == "lavis_gated.wikiart.style_table:main"


def test_the_model_sees_images_at_the_size_and_filter_the_trainer_recorded(trained):
    """One rule (style_encoder.cnn_input): the trainer's size reaches the model with image_size null."""
    from lavis_gated.models.style_parts import StyleEncoder, cnn_input

    metrics = json.loads((trained.out / "metrics.json").read_text())
    encoder = StyleEncoder(arch=ARCH, checkpoint=str(trained.out / "style_cnn.pth"))
    assert (encoder.image_size, encoder.interpolation) == (SIZE, metrics["interpolation"])
    # an explicit model.style_encoder.image_size still wins
    assert (
        StyleEncoder(arch=ARCH, image_size=64, checkpoint=str(trained.out / "style_cnn.pth")).image_size == 64
    )
    # without a record: the weights' timm input_size (the size they are trained and validated at), not
    # timm's larger test_input_size
    b3 = timm.create_model("efficientnet_b3", pretrained=False, num_classes=0)
    assert b3.default_cfg["test_input_size"][-1] == 320
    assert cnn_input(b3) == (288, "bicubic")
