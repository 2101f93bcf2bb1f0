"""Frozen-feature cache: cached training computes what uncached training does, and each image is encoded
once."""

import copy
import json
import os

import pytest
import torch
from helpers.runs import only_run_dir, run, write_config
from helpers.tiny_model import build_tiny
from lavis.processors.blip_processors import (
    BlipImageEvalProcessor,
    BlipImageTrainProcessor,
    BlipQuestionProcessor,
)
from omegaconf import OmegaConf
from PIL import Image

from lavis_gated.datasets.artquest_dataset import ArtQuestDataset, ImageCheck, read_split
from lavis_gated.datasets.feature_cache import FeatureStore, attach_feature_cache, build_store
from lavis_gated.datasets.style_image import BlipImageEvalStyleProcessor, BlipImageTrainStyleProcessor
from lavis_gated.datasets.synthetic_artquest import generate
from lavis_gated.tasks.style_captioning import StyleCaptioningTask

IMAGE_SIZE = 32


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate(str(root), {"train": 2, "val": 1, "test": 1}, seed=5)  # 6 styles x 2 images, 2 questions each
    return root


def artquest(root, split="train", processor=None):
    records, _ = read_split(
        str(root / f"artquest_{split}.csv"), split=split, images=ImageCheck(str(root / "images"))
    )
    return ArtQuestDataset(
        processor or BlipImageEvalProcessor(image_size=IMAGE_SIZE),
        BlipQuestionProcessor(),
        str(root / "images"),
        records,
    )


class Counter:
    """Counts the batches and images that go through the frozen ViT."""

    def __init__(self, model):
        self.batches = self.images = 0
        model.visual_encoder.register_forward_hook(self)

    def __call__(self, module, inputs, output):
        self.batches += 1
        self.images += inputs[0].shape[0]


def train(model, dataset, epochs=2, batch_size=4):
    """Per-step losses of a few epochs with the style_captioning task's full loss (fixed order, fp32; the
    style probe's rows drawn from the same seed)."""
    torch.manual_seed(0)
    task = StyleCaptioningTask(style_name_weight=0.1, style_kl_weight=0.1, style_ce_weight=1.0)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    losses = []
    for _ in range(epochs):
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=dataset.collater)
        for samples in loader:
            loss = task.train_step(model, samples)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
    return losses


def test_cached_training_gives_the_uncached_losses_and_encodes_each_image_once(data_root, tmp_path):
    model = build_tiny(image_size=IMAGE_SIZE)
    cached_model = copy.deepcopy(model)
    dataset = artquest(data_root)
    images = len({row["image"] for row in dataset.annotation})
    assert len(dataset) == 2 * images  # two questions per image

    counter = Counter(cached_model)
    cached = attach_feature_cache(
        {"artquest": {"train": dataset}}, cached_model, str(tmp_path / "cache"), "cpu", batch_size=4
    )
    assert counter.images == images == 12, "one encoding per distinct image (in full batches of 4)"
    sample = cached["artquest"]["train"][0]
    assert "image" not in sample and sample["vit_features"].dtype == torch.float32
    assert {k: v for k, v in sample.items() if k not in ("vit_features", "style_features")} == dataset.fields(
        0
    )

    expected = train(model, dataset)
    got = train(cached_model, cached["artquest"]["train"])
    assert counter.images == images, "training with the cache never runs the ViT"
    assert got == pytest.approx(expected, abs=1e-5)
    assert expected[0] != pytest.approx(expected[-1], abs=1e-3), "the model trained"

    # a new run over the same images (and the val split's, under the same transform) reuses the store
    again = attach_feature_cache(
        {"artquest": {"train": dataset, "val": artquest(data_root, "val")}},
        cached_model,
        str(tmp_path / "cache"),
        "cpu",
        batch_size=6,
    )
    val_images = len({row["image"] for row in again["artquest"]["val"].annotation})
    assert counter.images == images + val_images and val_images == 6, "only the val images were encoded"
    assert again["artquest"]["train"].store.folder == cached["artquest"]["train"].store.folder


STYLE_SIZE = 64  # the tiny model's style CNN input size: twice the ViT's 32 px view here


def style_processor(train=False):
    config = {"image_size": IMAGE_SIZE, "style_image_size": STYLE_SIZE}
    processor_class = BlipImageTrainStyleProcessor if train else BlipImageEvalStyleProcessor
    return processor_class.from_config(OmegaConf.create(config))


def test_the_style_cnn_gets_the_full_image_at_its_own_size_and_normalisation(data_root):
    """The CNN reads the whole painting resized to its input size and ImageNet-normalised, not the ViT's
    (randomly cropped) 32 px view upsampled; the same view in training and evaluation."""
    model = build_tiny(image_size=IMAGE_SIZE)
    seen = []
    model.style_encoder.cnn.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    dataset = artquest(data_root, processor=style_processor(train=True))
    sample = dataset[0]
    assert sample["image"].shape[-1] == IMAGE_SIZE and sample["style_image"].shape[-1] == STYLE_SIZE
    with Image.open(dataset.image_path(0)) as image:
        full = image.convert("RGB").resize((STYLE_SIZE, STYLE_SIZE), Image.BICUBIC)
    expected = (
        torch.tensor(list(full.getdata()), dtype=torch.float32).T.reshape(3, STYLE_SIZE, STYLE_SIZE) / 255
    )
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    expected = (expected - mean[:, None, None]) / std[:, None, None]
    assert torch.allclose(sample["style_image"], expected, atol=0.05)  # torchvision's and PIL's bicubic
    assert torch.equal(dataset[0]["style_image"], sample["style_image"])  # no random crop for the CNN
    batch = dataset.collater([dataset[0], dataset[1]])
    features = model.frozen_features(batch["image"], batch["style_image"])
    assert seen[-1].shape == (2, 3, STYLE_SIZE, STYLE_SIZE)
    assert torch.equal(seen[-1], batch["style_image"].contiguous(memory_format=torch.channels_last))
    assert not torch.allclose(features["style_features"], model.style_encoder(batch["image"]))


def test_cached_style_features_are_the_full_image_ones(data_root, tmp_path):
    """The frozen-feature cache stores the CNN's feature of its own full-image view: cached == uncached."""
    model = build_tiny(image_size=IMAGE_SIZE)
    cached_model = copy.deepcopy(model)
    dataset = artquest(data_root, processor=style_processor())
    cached = attach_feature_cache(
        {"artquest": {"train": dataset}}, cached_model, str(tmp_path / "cache"), "cpu", batch_size=4
    )["artquest"]["train"]
    batch = dataset.collater([dataset[i] for i in range(4)])
    with torch.no_grad():
        uncached = model.frozen_features(batch["image"], batch["style_image"])
    stored = torch.stack([cached[i]["style_features"] for i in range(4)])
    assert torch.allclose(stored, uncached["style_features"], atol=1e-5)
    assert not torch.allclose(stored, model.style_encoder(batch["image"]), atol=1e-3)  # not the ViT's view
    assert train(cached_model, cached, epochs=1) == pytest.approx(train(model, dataset, epochs=1), abs=1e-5)
    with pytest.raises(ValueError, match="BlipImageTrainStyleProcessor"):  # a random ViT view is refused
        attach_feature_cache(
            {"a": {"train": artquest(data_root, processor=style_processor(train=True))}},
            cached_model,
            str(tmp_path / "cache"),
            "cpu",
        )


def test_a_changed_image_file_is_encoded_again(data_root, tmp_path):
    model = build_tiny(image_size=IMAGE_SIZE)
    dataset = artquest(data_root, "test")
    root = str(tmp_path / "cache")
    before = attach_feature_cache({"a": {"test": dataset}}, model, root, "cpu")["a"]["test"][0][
        "vit_features"
    ]
    counter = Counter(model)
    path = dataset.image_path(0)
    Image.new("RGB", (64, 64), (255, 255, 255)).save(path)
    os.utime(path, ns=(1, 1))
    after = attach_feature_cache({"a": {"test": dataset}}, model, root, "cpu")["a"]["test"][0]["vit_features"]
    assert counter.batches == 1, "only the changed image was encoded (one batch, padded to the batch size)"
    assert not torch.allclose(before, after)


def test_random_training_transforms_are_refused(data_root, tmp_path):
    dataset = artquest(data_root, processor=BlipImageTrainProcessor(image_size=IMAGE_SIZE))
    with pytest.raises(
        ValueError, match=r"datasets.artquest split 'train' uses BlipImageTrainProcessor.*blip_image_eval"
    ):
        attach_feature_cache(
            {"artquest": {"train": dataset}},
            build_tiny(image_size=IMAGE_SIZE),
            str(tmp_path / "cache"),
            "cpu",
        )


def test_a_trained_vit_is_refused(data_root, tmp_path):
    """With model.freeze_vit false the ViT learns: its cached output would go stale, and it would get no
    gradient."""
    model = build_tiny(image_size=IMAGE_SIZE, freeze_vit=False)
    with pytest.raises(ValueError, match=r"trains its ViT \(model.freeze_vit is false.*set model.freeze_vit"):
        attach_feature_cache({"artquest": {"train": artquest(data_root)}}, model, str(tmp_path), "cpu")
    assert not os.listdir(tmp_path), "nothing is encoded"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_features_come_back_bit_exact_in_their_dtype(data_root, tmp_path, dtype):
    """The store keeps what the frozen parts produced (fp16/bf16 on CUDA, fp32 on CPU), written atomically."""
    paths = sorted(str(p) for p in (data_root / "images").iterdir())[:3]
    processor = BlipImageEvalProcessor(image_size=8)

    def encode(images):  # (B, 3, 8, 8) -> (B, 5, 4): a stand-in for the frozen parts, in `dtype`
        return {"vit_features": (images[:, :, :5, :4].sum(1) * 10).to(dtype)}

    store = build_store(str(tmp_path / "store"), {"test": 1}, paths, processor, encode, batch_size=2)
    values = {p: encode(processor(Image.open(p).convert("RGB"))[None])["vit_features"][0] for p in paths}
    reopened = FeatureStore(store.folder)
    for p in paths:
        got = reopened.get(p)["vit_features"]
        assert got.dtype == dtype and torch.equal(got, values[p])
    assert sorted(os.listdir(tmp_path)) == ["store"], "no temporary folder left behind"
    assert json.loads((tmp_path / "store" / "meta.json").read_text())["features"]["vit_features"][
        "shape"
    ] == [5, 4]


def test_train_py_with_the_cache_trains_and_evaluates_as_without(data_root, tmp_path):
    """run.frozen_feature_cache through the real entry point: one store for all splits (one transform), and
    the same test metrics as the uncached run (fp32, same seed, same order)."""
    metrics = {}
    for name, run_options in (("plain", {}), ("cached", {"frozen_feature_cache": str(tmp_path / "cache")})):
        cfg = write_config(tmp_path, data_root, name, max_epoch=1, warmup_steps=1, **run_options)
        run(["lavis_gated/train.py", "--cfg-path", str(cfg)])
        metrics[name] = json.loads((only_run_dir(tmp_path / name) / "test_metrics.json").read_text())
    stores = [p for p in (tmp_path / "cache").iterdir()]
    assert len(stores) == 1 and not stores[0].name.startswith(".")
    index = json.loads((stores[0] / "meta.json").read_text())["index"]
    assert len(index) == len(list((data_root / "images").iterdir()))
    for key in ("loss", "lm_loss", "style_kl", "style_ce", "style_head_acc", "em"):
        assert metrics["cached"][key] == pytest.approx(metrics["plain"][key], abs=1e-5), key
