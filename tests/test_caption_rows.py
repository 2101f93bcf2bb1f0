"""Caption rows in blip2_opt_gated's one forward: LAVIS's caption rows (image + text_input), mixed with
question rows in one batch; the caption prompt masked from the loss; the caption budget and its cut rule;
captions from generate() without a question; the two prompt settings; LAVIS's own CaptionTask and caption
datasets."""

import json

import pytest
import torch
from lavis.common.registry import registry
from lavis.datasets.datasets.caption_datasets import CaptionDataset, CaptionEvalDataset
from lavis.processors.blip_processors import BlipCaptionProcessor
from lavis.tasks.captioning import CaptionTask
from omegaconf import OmegaConf

import lavis_gated  # noqa: F401  (registration)
from lavis_gated.configs.model_config import model_config
from lavis_gated.datasets.synthetic_artquest import captions_of, draw_painting
from lavis_gated.models.text_inputs import IGNORE, row_texts

STYLES = ["ukiyo e", "pop art", "cubism"]
CAPTIONS = [
    "an ukiyo-e print of a circle",
    "a pop art painting of a square",
    "a cubism painting of a triangle",
]


def build_tiny(**overrides):
    model_cls = registry.get_model_class("blip2_opt_gated")
    cfg = OmegaConf.load(model_cls.default_config_path("tiny")).model
    cfg = OmegaConf.merge(cfg, {"style_names": STYLES, "image_size": 32, **overrides})
    torch.manual_seed(0)
    return model_cls.from_config(cfg)


def images(size=3):
    return torch.randn(size, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def ids(model, text, end=True):
    """The ids a target text must carry: " <text>" and, unless cut, the end token."""
    tokens = model.opt_tokenizer(" " + text, add_special_tokens=False).input_ids
    return tokens + [model.eos_token_id] if end else tokens


def carried(out, row):
    """The target ids that carry the loss in a row (those not IGNORE)."""
    targets = out["targets"][row]
    return targets[targets != IGNORE].tolist()


def loss_positions(model, out, row):
    """The text positions (0 = first prompt token after BOS ... ) whose next token carries the loss."""
    return (out["targets"][row] != IGNORE).nonzero().flatten().tolist()


@pytest.fixture(scope="module")
def captioner():
    return build_tiny(caption_prompt="a painting of")


def train_steps(model, samples, steps=15):
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=3e-3)
    losses = []
    for _ in range(steps):
        loss = model(samples)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_training_on_caption_rows_puts_the_loss_on_the_caption_tokens_only(captioner):
    """LAVIS's caption rows: image + text_input, no question, no answer (blip2_opt's training rows)."""
    samples = {"image": images(), "text_input": CAPTIONS}
    out = captioner(samples)
    prompt = captioner.opt_tokenizer("a painting of").input_ids  # BOS + the caption prompt
    for row, caption in enumerate(CAPTIONS):
        assert carried(out, row) == ids(captioner, caption)  # the caption, ending with "\n"
        assert carried(out, row)[-1] == captioner.eos_token_id
        # the prompt is masked: the first target sits right after BOS + "a painting of"
        assert loss_positions(captioner, out, row)[0] == len(prompt)
        assert torch.all(out["targets"][row][: len(prompt)] == IGNORE)
    losses = train_steps(build_tiny(caption_prompt="a painting of"), samples)
    assert losses[-1] < 0.5 * losses[0], losses


def test_a_mixed_batch_of_caption_and_question_rows_trains_in_one_forward():
    """Caption rows (a blank question, or a None answer with the caption in text_input) beside question rows:
    each row's loss falls on its own target: the caption after the caption prompt, the answer after the
    question template."""
    model = build_tiny(caption_prompt="a painting of")
    samples = {
        "image": images(4),
        "text_input": ["", "what style is this painting", CAPTIONS[2], "which shape is in the middle"],
        "answer": [CAPTIONS[0], "pop art", None, "triangle"],
        "style": ["ukiyo e", "pop art", "cubism", "cubism"],
    }
    questions, targets = row_texts(samples, training=True)
    assert questions == [None, "what style is this painting", None, "which shape is in the middle"]
    out = model(samples)
    assert carried(out, 0) == ids(model, CAPTIONS[0])
    assert carried(out, 1) == ids(model, "pop art")
    assert carried(out, 2) == ids(model, CAPTIONS[2])
    assert carried(out, 3) == ids(model, "triangle")
    caption_prompt = len(model.opt_tokenizer("a painting of").input_ids)
    question_prompt = len(model.opt_tokenizer("Question: what style is this painting Answer:").input_ids)
    assert loss_positions(model, out, 0)[0] == caption_prompt
    assert loss_positions(model, out, 1)[0] == question_prompt
    losses = train_steps(model, samples)
    assert losses[-1] < 0.5 * losses[0], losses
    # one forward, not a fork: the mixed batch's per-row losses equal each row's alone
    model.eval()
    with torch.no_grad():
        mixed = model(samples)["logits"]
        for row in range(4):
            alone = {k: v[row : row + 1] for k, v in samples.items()}
            single = model(alone)["logits"][0]
            assert torch.allclose(mixed[row, : single.shape[0]], single, atol=1e-4)


def test_a_caption_cut_by_its_budget_has_no_end_token_and_the_prompt_is_counted_apart():
    long = "a pop art painting with a circle in the middle of a square in the center of a triangle"
    model = build_tiny(
        caption_prompt="a painting in the style of its time of", max_caption_len=6, max_txt_len=8
    )
    out = model({"image": images(2), "text_input": [long, "a circle"]})
    assert carried(out, 0) == ids(model, long, end=False)[:6]  # cut: six tokens, no "\n"
    assert model.eos_token_id not in carried(out, 0)
    assert carried(out, 1) == ids(model, "a circle")  # whole: it ends with "\n"
    # the caption prompt (longer than max_txt_len) is kept whole: it is not in the caption's budget
    prompt = model.opt_tokenizer("a painting in the style of its time of").input_ids
    assert len(prompt) > 8 and loss_positions(model, out, 1)[0] == len(prompt)
    # a question row's answer still keeps max_txt_len // 2 tokens, and a cut answer has no end token either
    out = model({"image": images(1), "text_input": ["what"], "answer": [long]})
    assert carried(out, 0) == ids(model, long, end=False)[:4]


def test_generate_captions_rows_without_a_question(captioner):
    captioner.eval()
    image = images(2)
    explicit = captioner.generate({"image": image, "prompt": "a painting of"}, num_beams=2, max_length=5)
    assert captioner.generate({"image": image}, num_beams=2, max_length=5) == explicit
    # a blank question is a caption row too, also beside a question row (left padding: each as alone)
    mixed = captioner.generate(
        {"image": image, "text_input": ["", "what style is this painting"]}, num_beams=1, max_length=5
    )
    alone = captioner.generate({"image": image[:1]}, num_beams=1, max_length=5)
    asked = captioner.generate(
        {"image": image[1:], "text_input": ["what style is this painting"]}, num_beams=1, max_length=5
    )
    assert mixed == alone + asked


def test_a_question_under_a_caption_coco_type_keeps_its_question():
    """LAVIS's caption_coco types set prompt "a photo of"; here that is the caption prompt, and a question
    still gets the question template: two different questions are two different prompts."""
    model_cls = registry.get_model_class("blip2_opt_gated")
    coco = OmegaConf.load(model_cls.default_config_path("caption_coco_opt2.7b")).model
    settings = model_config(coco)
    assert settings.caption_prompt == "a photo of" and settings.prompt == "Question: {} Answer:"
    model = build_tiny(caption_prompt=settings.caption_prompt, prompt=settings.prompt)
    (_, _), prompts = model.prompt_batch(
        {"image": images(3), "text_input": ["what style is it", "which shape is it", ""]}
    )
    decoded = [model.opt_tokenizer.decode(p, skip_special_tokens=True) for p in prompts]
    assert decoded == [
        "Question: what style is it Answer:",
        "Question: which shape is it Answer:",
        "a photo of",
    ]


def test_a_question_template_without_braces_is_refused_naming_the_key():
    with pytest.raises(
        ValueError, match=r"model\.prompt 'a photo of' must hold \{\} once.*model\.caption_prompt"
    ):
        build_tiny(prompt="a photo of")


def test_lavis_caption_task_and_caption_datasets_drive_the_model(tmp_path):
    """LAVIS's own pieces: its CaptionDataset / CaptionEvalDataset over coco_caption-format annotations, its
    collater, and CaptionTask's train_step and valid_step."""
    model = build_tiny()
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    train, val = [], []
    for k, (style, shape) in enumerate([("ukiyo-e", "circle"), ("pop art", "square")]):
        name = f"p{k}.png"
        draw_painting(style, shape, seed=k, size=32).save(image_dir / name)
        train += [{"image": name, "caption": c, "image_id": f"art_{k}"} for c in captions_of(style, shape)]
        val.append({"image": name, "caption": captions_of(style, shape), "image_id": k})
    (tmp_path / "train.json").write_text(json.dumps(train))
    (tmp_path / "val.json").write_text(json.dumps(val))
    vis = registry.get_processor_class("blip_image_eval").from_config(OmegaConf.create({"image_size": 32}))
    text = BlipCaptionProcessor()
    train_set = CaptionDataset(vis, text, str(image_dir), [str(tmp_path / "train.json")])
    val_set = CaptionEvalDataset(vis, text, str(image_dir), [str(tmp_path / "val.json")])
    batch = train_set.collater([train_set[i] for i in range(len(train_set))])
    assert set(batch) == {"image", "text_input", "image_id"}  # caption rows: no question, no answer

    task = CaptionTask(num_beams=2, max_len=6, min_len=1, evaluate=False, report_metric=False)
    model.train()
    out = model(batch)
    for row, caption in enumerate(batch["text_input"]):
        assert carried(out, row) == ids(model, caption)
    loss = task.train_step(model, batch)
    loss.backward()
    assert model.opt_proj.weight.grad.abs().sum() > 0

    model.eval()
    results = task.valid_step(model, val_set.collater([val_set[0], val_set[1]]))
    assert [r["image_id"] for r in results] == [0, 1]
    assert all(isinstance(r["caption"], str) for r in results)
    assert [r["caption"] for r in results] == model.generate(
        {"image": torch.stack([val_set[0]["image"], val_set[1]["image"]])}, num_beams=2, max_length=6
    )
