"""The web demo's logic without a browser: input checks, the checkpoint and its run's images, the model's
answers with the modulation on and off, top styles, strength and its reference, lavis-gated-predict and
the app launcher's refusals."""

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from lavis.common.registry import registry
from omegaconf import OmegaConf
from PIL import Image

from lavis_gated.app import checkpoint_files, launcher, predict
from lavis_gated.app.inference import DEFAULT_MAX_LENGTH, DEFAULT_NUM_BEAMS, DemoModel, top_styles
from lavis_gated.app.inputs import (
    MAX_IMAGE_MB,
    MAX_IMAGE_SIDE,
    InputError,
    check_question,
    read_image,
    read_image_file,
)

STYLES = ["cubism", "impressionism", "minimalism", "pointillism", "pop art", "ukiyo e"]
FROZEN_PREFIXES = ("visual_encoder.", "opt_model.", "style_encoder.cnn.")
QUESTION = "What shape is in the center of the painting?"


def png_bytes(size=(40, 30), mode="RGB", colour=(200, 30, 40)):
    buffer = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGB" else 128).save(buffer, format="PNG")
    return buffer.getvalue()


def write_images(folder, count):
    """count small distinct PNGs named img<i>.png in folder; their names."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(count):
        pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.png")
        names.append(f"img{i}.png")
    return names


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A checkpoint as lavis-gated's runner writes one (trainable weights + run config) of the tiny model
    with a non-zero modulation (init_scale 0.5), and the run's test split of 4 images; no training."""
    root = tmp_path_factory.mktemp("tiny_run")
    names = write_images(root / "images", 4)
    (root / "test.csv").write_text("image,question\n" + "".join(f"{n},{QUESTION}\n" for n in names))
    model_cls = registry.get_model_class("blip2_opt_gated")
    block = {"arch": "blip2_opt_gated", "model_type": "tiny", "gating": {"init_scale": 0.5}}
    cfg = OmegaConf.merge(OmegaConf.load(model_cls.default_config_path("tiny")).model, block)
    torch.manual_seed(0)
    model = model_cls.from_config(OmegaConf.merge(cfg, {"style_names": STYLES}))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(FROZEN_PREFIXES)}
    datasets = {
        "artquest": {
            "build_info": {
                "annotations": {"test": {"storage": str(root / "test.csv")}},
                "images": {"storage": str(root / "images")},
            }
        }
    }
    path = root / "checkpoint_best.pth"
    torch.save({"model": state, "config": {"model": block, "datasets": datasets}}, path)
    return path


@pytest.fixture(scope="module")
def demo(tiny_checkpoint):
    _, config = checkpoint_files.choose_checkpoint(str(tiny_checkpoint))
    return DemoModel.load(str(tiny_checkpoint), reference_images=checkpoint_files.demo_images(config))


# ---- input checks ----------------------------------------------------------------------------------


def test_read_image_gives_rgb_for_any_image_mode():
    for mode in ("RGB", "L", "RGBA", "P"):
        image = read_image(png_bytes(mode=mode))
        assert image.mode == "RGB" and image.size == (40, 30)


@pytest.mark.parametrize(
    "data, message",
    [
        (None, "No image: upload one or pick a demo test image"),
        (b"", "is empty"),
        (b"just some notes, not a picture\n", "is not an image"),
        (png_bytes(size=(MAX_IMAGE_SIDE + 1, 4)), f"limit is {MAX_IMAGE_SIDE} pixels a side"),
        (b"\0" * (MAX_IMAGE_MB * 1024 * 1024 + 1), f"limit is {MAX_IMAGE_MB} MB"),
    ],
)
def test_unusable_images_are_refused_with_a_message(data, message):
    with pytest.raises(InputError, match=message):
        read_image(data, "upload.png")


def test_read_image_file_names_a_missing_file_and_a_folder(tmp_path):
    with pytest.raises(InputError, match="No image file at .*nowhere.png"):
        read_image_file(tmp_path / "nowhere.png")
    with pytest.raises(InputError, match="is a folder"):
        read_image_file(tmp_path)


def test_question_is_stripped_and_a_blank_one_is_none_a_caption():
    assert check_question("  what style?  ") == "what style?"
    for empty in ("", "   ", None):
        assert check_question(empty) is None


# ---- the checkpoint and its run's files -------------------------------------------------------------


def test_newest_checkpoint_is_the_last_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert checkpoint_files.newest_checkpoint() is None
    for i, job in enumerate(("b", "a")):
        path = tmp_path / "output" / "demo" / job / "checkpoint_best.pth"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
        os.utime(path, (1000 + i, 1000 + i))
    assert checkpoint_files.newest_checkpoint() == os.path.join("output", "demo", "a", "checkpoint_best.pth")


def test_checkpoint_choice_refusals(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(checkpoint_files.CheckpointChoiceError, match="bash run_scripts/demo.sh"):
        checkpoint_files.choose_checkpoint()
    with pytest.raises(checkpoint_files.CheckpointChoiceError, match="No checkpoint file at missing.pth"):
        checkpoint_files.choose_checkpoint("missing.pth")
    torch.save({"model": {}}, tmp_path / "plain.pth")
    with pytest.raises(checkpoint_files.CheckpointChoiceError, match="holds no run config"):
        checkpoint_files.choose_checkpoint(str(tmp_path / "plain.pth"))


def test_demo_images_come_from_the_run_config_spread_over_the_list(tmp_path):
    names = write_images(tmp_path / "images", 6)
    rows = [*names, names[0], "gone.png"]  # a repeated image once; a missing one left out
    (tmp_path / "test.csv").write_text("picture,question\n" + "".join(f"{n},q\n" for n in rows))
    config = {
        "datasets": {
            "artquest": {
                "fields": {"image": "picture"},
                "build_info": {
                    "annotations": {"test": {"storage": str(tmp_path / "test.csv")}},
                    "images": {"storage": str(tmp_path / "images")},
                },
            }
        }
    }
    paths = [str(tmp_path / "images" / n) for n in names]
    assert checkpoint_files.demo_images(config) == paths
    assert checkpoint_files.demo_images(config, limit=3) == paths[::2]


def test_top_styles_by_hand():
    names = ["a", "b", "c", "d"]
    assert top_styles([0.1, 0.4, 0.1, 0.4], names, 3) == [("b", 0.4), ("d", 0.4), ("a", 0.1)]


# ---- the model -------------------------------------------------------------------------------------


def test_prediction_is_what_the_model_gives_directly(demo, tiny_checkpoint):
    image = read_image_file(tiny_checkpoint.parent / "images" / "img1.png")
    prediction = demo.predict(image, QUESTION, num_beams=2, max_length=4)

    model = demo.model
    samples = demo.samples(image, QUESTION)
    assert prediction.answer == model.generate(samples, num_beams=2, max_length=4)[0]
    with model.modulation_bypassed():
        assert prediction.answer_unmodulated == model.generate(samples, num_beams=2, max_length=4)[0]
    probabilities = model.style_probabilities(samples)[0]
    assert [name for name, _ in prediction.styles] == [
        STYLES[i] for i in probabilities.argsort(descending=True)[:5]
    ]
    assert [p for _, p in prediction.styles] == sorted(probabilities.tolist(), reverse=True)[:5]
    np.testing.assert_allclose(prediction.strength, model.modulation_strength(samples)[0].numpy())
    assert prediction.strength.shape == (2, 3, 4) and (prediction.strength > 0).all()


def test_reference_is_the_mean_strength_over_the_run_images_for_the_same_question(demo, tiny_checkpoint):
    folder = tiny_checkpoint.parent / "images"
    prediction = demo.predict(read_image_file(folder / "img0.png"), QUESTION, num_beams=1, max_length=2)
    strengths = [
        demo.predict(read_image_file(folder / f"img{i}.png"), QUESTION, num_beams=1, max_length=2).strength
        for i in range(4)
    ]
    assert prediction.reference_count == 4
    np.testing.assert_allclose(prediction.reference, np.mean(strengths, axis=0), rtol=1e-5, atol=1e-6)

    figure = demo.modulation_figure(prediction)
    images = [image for ax in figure.axes for image in ax.images]
    assert len(images) == 2  # deviation, then absolute
    np.testing.assert_allclose(
        images[0].get_array(),
        (prediction.strength - prediction.reference).transpose(1, 0, 2).reshape(3, 8),
        rtol=1e-6,
    )
    assert all(image.colorbar.ax.get_ylabel() for image in images)


def test_without_reference_images_only_the_absolute_strength_is_drawn(demo, tiny_checkpoint):
    alone = DemoModel(demo.model, demo.vis_processor, demo.text_processor)
    prediction = alone.predict(Image.new("RGB", (64, 64)), QUESTION, num_beams=1, max_length=2)
    assert prediction.reference is None and prediction.reference_count == 0
    assert [len(ax.images) for ax in alone.modulation_figure(prediction).axes if ax.images] == [1]


# ---- lavis-gated-predict and the launcher ---------------------------------------------------------


def test_predict_prints_the_answer_and_top_3(demo, tiny_checkpoint):
    image = tiny_checkpoint.parent / "images" / "img2.png"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    args = ["--checkpoint", tiny_checkpoint, "--image", image, "--question", QUESTION, "--device", "cpu"]
    result = subprocess.run(
        [sys.executable, "-m", "lavis_gated.app.predict", *map(str, args), "--json", "--unmodulated"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = json.loads(result.stdout)
    expected = demo.predict(read_image_file(image), QUESTION, DEFAULT_NUM_BEAMS, DEFAULT_MAX_LENGTH, top_k=3)
    assert printed["answer"] == expected.answer
    assert printed["answer_unmodulated"] == expected.answer_unmodulated
    assert [(s["style"], pytest.approx(s["probability"], abs=1e-6)) for s in printed["styles"]] == [
        (name, p) for name, p in expected.styles
    ]
    lines = predict.format_lines(expected).splitlines()
    assert lines[0] == f"answer: {expected.answer}" and lines[1].count(" | ") == 2
    assert lines[2] == f"answer without the modulation: {expected.answer_unmodulated}"


def test_without_a_question_predict_and_the_demo_caption_the_image(demo, tiny_checkpoint, capsys):
    image = tiny_checkpoint.parent / "images" / "img1.png"
    pil = read_image_file(image)
    caption = demo.predict(pil, None, num_beams=1, max_length=4)
    direct = demo.model.generate({"image": demo.vis_processor(pil).unsqueeze(0)}, num_beams=1, max_length=4)
    assert caption.answer == direct[0]  # generate() without a question: a caption after model.caption_prompt
    # the prompt differs from a question's: the modulation's control tokens are the caption prompt's
    asked = demo.predict(pil, QUESTION, num_beams=1, max_length=4)
    assert not np.allclose(caption.strength, asked.strength)
    assert caption.reference is not None and caption.strength.shape == caption.reference.shape
    argv = [
        "--checkpoint",
        str(tiny_checkpoint),
        "--image",
        str(image),
        "--num-beams",
        "1",
        "--max-len",
        "4",
    ]
    assert predict.main(argv) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"caption: {caption.answer}"


def unsafe_checkpoint(path):
    class SystemCall:
        def __reduce__(self):
            return os.system, ("true",)

    torch.save({"model": {}, "payload": SystemCall()}, path)
    return path


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--image", "nowhere.png"], "No image file at nowhere.png"),
        (["--image", "notes.png"], "notes.png is not an image"),
        (["--checkpoint", "unsafe.pth"], "Refusing to load checkpoint unsafe.pth"),
        (["--checkpoint", "missing.pth"], "No checkpoint file at missing.pth"),
    ],
)
def test_predict_refuses_bad_input_with_one_line(
    argv, message, tmp_path, monkeypatch, capsys, tiny_checkpoint
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.png").write_text("not a picture")
    (tmp_path / "ok.png").write_bytes(png_bytes())
    unsafe_checkpoint(tmp_path / "unsafe.pth")
    defaults = {"--checkpoint": str(tiny_checkpoint), "--image": "ok.png", "--question": QUESTION}
    defaults.update(dict(zip(argv[::2], argv[1::2])))
    assert predict.main([x for pair in defaults.items() for x in pair]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lavis-gated-predict: ") and message in err
    assert "Traceback" not in err


def test_app_refuses_to_start_without_a_usable_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert launcher.main([]) == 2
    assert "bash run_scripts/demo.sh" in capsys.readouterr().err
    assert launcher.main(["--checkpoint", str(unsafe_checkpoint(tmp_path / "unsafe.pth"))]) == 2
    assert "Refusing to load checkpoint" in capsys.readouterr().err


def test_app_binds_to_this_machine_by_default(tiny_checkpoint):
    args = launcher.parse_args(["--checkpoint", str(tiny_checkpoint)])
    command = launcher.streamlit_arguments(args.checkpoint, args.host, args.port)
    assert "--server.address=127.0.0.1" in command and "--browser.gatherUsageStats=false" in command
    assert command[command.index("--") + 1 :] == ["--checkpoint", os.path.abspath(tiny_checkpoint)]


def test_app_takes_two_checkpoints_and_a_device_but_not_three(tiny_checkpoint, capsys):
    args = launcher.parse_args(["--checkpoint", "a.pth", "--checkpoint", "b.pth", "--device", "cpu"])
    command = launcher.streamlit_arguments(args.checkpoint, args.host, args.port, args.device)
    assert command[command.index("--") + 1 :] == [
        "--checkpoint",
        os.path.abspath("a.pth"),
        "--checkpoint",
        os.path.abspath("b.pth"),
        "--device",
        "cpu",
    ]
    with pytest.raises(SystemExit):
        launcher.parse_args(["--checkpoint", "a", "--checkpoint", "b", "--checkpoint", "c"])
    assert "at most two checkpoints" in capsys.readouterr().err


# ---- the unmodulated answer on request, the style swap, a test image's references ------------------


def test_the_unmodulated_answer_is_generated_only_on_request(demo, tiny_checkpoint, monkeypatch):
    image = read_image_file(tiny_checkpoint.parent / "images" / "img1.png")
    calls = []
    generate = demo.model.generate
    monkeypatch.setattr(demo.model, "generate", lambda *a, **k: calls.append(1) or generate(*a, **k))
    assert (
        demo.predict(image, QUESTION, num_beams=1, max_length=2, unmodulated=False).answer_unmodulated is None
    )
    assert len(calls) == 1
    assert demo.predict(image, QUESTION, num_beams=1, max_length=2).answer_unmodulated is not None
    assert len(calls) == 3


def test_style_swap_answers_with_the_mean_feature_of_that_styles_images(demo, tiny_checkpoint):
    folder = tiny_checkpoint.parent / "images"
    image = read_image_file(folder / "img0.png")
    swapping = DemoModel(
        demo.model,
        demo.vis_processor,
        demo.text_processor,
        swap_images={
            "cubism": [str(folder / "img0.png")],
            "pop art": [str(folder / f"img{i}.png") for i in (1, 2, 3)],
        },
    )
    assert swapping.swap_styles == ["cubism", "pop art"]
    # the image's own feature swapped in (a style of this one image): the ordinary answer
    own = swapping.predict_swapped(image, QUESTION, "cubism", num_beams=2, max_length=4)
    assert own == type(own)("cubism", demo.predict(image, QUESTION, 2, 4).answer, 1)
    # another style: this image's ViT features, the control tokens of the three images' mean feature
    swapped = swapping.predict_swapped(image, QUESTION, "pop art", num_beams=2, max_length=4)
    model = demo.model
    images = torch.stack([demo.vis_processor(read_image_file(folder / f"img{i}.png")) for i in (1, 2, 3)])
    mean = model.style_encoder(images).mean(0, keepdim=True)
    frozen = model.frozen_features(demo.samples(image, QUESTION)["image"])
    samples = {"vit_features": frozen["vit_features"], "style_features": mean, "text_input": [QUESTION]}
    assert swapped.image_count == 3
    assert swapped.answer == model.generate(samples, num_beams=2, max_length=4)[0]
    # the swap moves the modulation: the control tokens differ from the image's own
    strength_own = model.modulation_strength({**frozen, "text_input": [QUESTION]})
    assert not torch.allclose(model.modulation_strength(samples), strength_own)
    with pytest.raises(ValueError, match="no train images of style 'ukiyo e'"):
        swapping.predict_swapped(image, QUESTION, "ukiyo e")


def test_split_rows_carry_the_reference_answer_and_the_style_from_a_style_table(tmp_path):
    names = write_images(tmp_path / "images", 4)
    (tmp_path / "test.csv").write_text(
        "image,question,answer,question_type\n"
        f"{names[0]},Who painted this?,Katsushika Hokusai,artist\n"
        f"{names[0]},When was it painted?,1801-1850,timeframe\n"
        f"{names[1]},What is its technique?,Woodblock print,technique\n"
        "gone.png,Who painted this?,Nobody,artist\n"
    )
    (tmp_path / "styles.csv").write_text(f"painting,movement\n{names[0]},Ukiyo_e\n{names[2]},Pop Art\n")
    config = {
        "datasets": {
            "artquest": {
                "style_table": {
                    "storage": str(tmp_path / "styles.csv"),
                    "key": "painting",
                    "style": "movement",
                },
                "build_info": {
                    "annotations": {"test": {"storage": str(tmp_path / "test.csv")}},
                    "images": {"storage": str(tmp_path / "images")},
                },
            }
        }
    }
    rows = checkpoint_files.split_rows(config, "test")
    references = checkpoint_files.image_references(rows)
    first, second = (str(tmp_path / "images" / n) for n in names[:2])
    assert references == {
        first: {
            "style": "ukiyo e",
            "answers": [("Who painted this?", "Katsushika Hokusai"), ("When was it painted?", "1801-1850")],
        },
        second: {"style": "", "answers": [("What is its technique?", "Woodblock print")]},
    }
    labelled = checkpoint_files.split_rows(config, "test", limit_per_style=1)
    assert list(labelled.image_path) == [first, first]  # the labelled image, with both its rows
    assert checkpoint_files.split_rows(config, "train").empty


# ---- lavis-gated-predict --input: batched, its columns, resuming ----------------------------------


def write_questions(root, names):
    """questions.csv under root: two questions per image, ids q-0, q-1, ...; its (id, image, question)."""
    pairs = [(name, question) for name in names for question in (QUESTION, "Who painted this?")]
    rows = [(f"q-{i}", name, question) for i, (name, question) in enumerate(pairs)]
    with open(root / "questions.csv", "w", newline="", encoding="utf-8") as f:
        f.write("id,image,question\n" + "".join(f"{i},images/{n},{q}\n" for i, n, q in rows))
    return rows


class Interrupted(Exception):
    pass


def test_predict_input_is_batched_resumes_after_an_interruption_and_matches_single_answers(
    demo, tiny_checkpoint, tmp_path, monkeypatch
):
    root = tiny_checkpoint.parent
    rows = write_questions(tmp_path, [f"img{i}.png" for i in range(4)])  # 8 rows
    (tmp_path / "images").symlink_to(root / "images")
    inputs = predict.read_inputs(str(tmp_path / "questions.csv"))
    output = tmp_path / "predictions.csv"
    generation = {"num_beams": 2, "max_length": 4}
    batches = []
    batch_predict = demo.predict_batch

    def counted(images, questions, **kwargs):
        batches.append(len(images))
        if len(batches) == 2 and interrupt:
            raise Interrupted  # as a kill after the first batch was written
        return batch_predict(images, questions, **kwargs)

    monkeypatch.setattr(demo, "predict_batch", counted)
    interrupt = True
    with pytest.raises(Interrupted):
        predict.predict_many(demo, inputs, str(output), 3, 2, True, generation, progress=False)
    assert len(list(csv.DictReader(open(output, encoding="utf-8")))) == 3
    interrupt = False
    assert predict.predict_many(demo, inputs, str(output), 3, 2, True, generation, progress=False) == (5, 3)
    assert batches == [3, 3, 3, 2]  # the first batch is not predicted again
    written = list(csv.DictReader(open(output, encoding="utf-8")))
    assert list(written[0]) == [
        "id",
        "image",
        "question",
        "answer",
        "answer_unmodulated",
        "style_1",
        "style_1_probability",
        "style_2",
        "style_2_probability",
    ]
    assert [r["id"] for r in written] == [r[0] for r in rows]
    for record in written:
        alone = demo.predict(read_image_file(record["image"]), record["question"], top_k=2, **generation)
        assert record["answer"] == alone.answer and record["answer_unmodulated"] == alone.answer_unmodulated
        assert [record["style_1"], record["style_2"]] == [name for name, _ in alone.styles]
        assert float(record["style_1_probability"]) == pytest.approx(alone.styles[0][1], abs=1e-5)
    # a third run finds everything done
    assert predict.predict_many(demo, inputs, str(output), 3, 2, True, generation, progress=False) == (0, 8)


def test_predict_command_on_a_folder_writes_json_on_the_cpu(tiny_checkpoint, tmp_path, capsys):
    output = tmp_path / "predictions.json"
    argv = ["--checkpoint", str(tiny_checkpoint), "--input", str(tiny_checkpoint.parent / "images")]
    argv += ["--question", QUESTION, "--output", str(output), "--batch-size", "3", "--device", "cpu"]
    argv += ["--max-len", "3", "--num-beams", "1", "--num-threads", "1"]
    assert predict.main(argv) == 0
    assert "4 predictions written" in capsys.readouterr().out
    records = json.loads(output.read_text())
    assert [r["id"] for r in records] == [f"img{i}.png" for i in range(4)]
    assert set(records[0]) == {
        "id",
        "image",
        "question",
        "answer",
        "style_1",
        "style_1_probability",
        "style_2",
        "style_2_probability",
        "style_3",
        "style_3_probability",
    }
    assert predict.main(argv) == 0
    assert "0 predictions written" in capsys.readouterr().out and len(json.loads(output.read_text())) == 4


@pytest.mark.parametrize(
    "table, message",
    [
        ("image,question\nimg0.png,\n", "line 2: the row has no question"),
        ("picture,question\nimg0.png,q\n", "no column(s) ['image']"),
        ("id,image,question\na,img0.png,q\na,img1.png,q\n", "line 3: id 'a' was already given on line 2"),
        ("image,question\nimg0.png,q\nnowhere.png,q\n", "line 3: no image file at"),
    ],
)
def test_predict_input_refusals_name_the_file_and_row(table, message, tmp_path, tiny_checkpoint):
    (tmp_path / "images").symlink_to(tiny_checkpoint.parent / "images")
    (tmp_path / "in.csv").write_text(table.replace("img", "images/img").replace("nowhere", "images/nowhere"))
    with pytest.raises(InputError) as err:
        predict.read_inputs(str(tmp_path / "in.csv"))
    assert str(tmp_path / "in.csv") in str(err.value) and message in str(err.value)


def test_predict_device_cpu_for_real_and_cuda_refused_clearly_without_a_gpu(tiny_checkpoint):
    from lavis_gated.app.inference import load_model

    model, _, _, device = load_model(str(tiny_checkpoint), "cpu")
    assert device == "cpu" and model.device.type == "cpu"
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cuda: no CUDA GPU is visible"):
            load_model(str(tiny_checkpoint), "cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_predict_on_cuda_by_default_answers_as_one_and_as_a_batch(tiny_checkpoint):
    cuda = DemoModel.load(str(tiny_checkpoint), device=None)  # the default picks the GPU
    assert cuda.device.type == "cuda" and cuda.model.style_encoder.scale.device.type == "cuda"
    # frozen parts keep their storage precision on CUDA (the tiny type stores fp32; real types fp16)
    assert cuda.model.opt_model.get_input_embeddings().weight.dtype == torch.float32
    image = read_image_file(tiny_checkpoint.parent / "images" / "img0.png")
    batch = cuda.predict_batch([image, image], [QUESTION, QUESTION], num_beams=2, max_length=4)
    assert batch[0].answer == batch[1].answer == cuda.predict(image, QUESTION, 2, 4).answer
