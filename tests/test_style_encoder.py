"""The frozen style CNN: timm EfficientNet weights from a file, class-row init of the style head, clear
errors."""

import json

import pytest
import timm
import torch
from helpers.tiny_model import build_tiny

import lavis_gated  # noqa: F401  (registration)
from lavis_gated.models.backbones import SourceUnavailableError
from lavis_gated.models.style_parts import StyleEncoder

ARCH = "efficientnet_b0"
CLASS_NAMES = ["Impressionism", "Pop_Art", "Baroque", "Cubism", "Ukiyo-e"]


def trained_cnn(arch=ARCH, num_classes=None, seed=3):
    num_classes = len(CLASS_NAMES) if num_classes is None else num_classes
    torch.manual_seed(seed)
    return timm.create_model(arch, pretrained=False, num_classes=num_classes)


def save(obj, path):
    torch.save(obj, path)
    return str(path)


@pytest.mark.parametrize("layout", ["plain", "state_dict", "model", "module_prefix"])
def test_checkpoint_layouts_load_the_same_weights(tmp_path, layout):
    cnn = trained_cnn()
    state = cnn.state_dict()
    wrapped = {
        "plain": state,
        "state_dict": {"state_dict": state, "epoch": 3},
        "model": {"model": state},
        "module_prefix": {"state_dict": {f"module.{k}": v for k, v in state.items()}},
    }[layout]
    encoder = StyleEncoder(ARCH, image_size=32, checkpoint=save(wrapped, tmp_path / "cnn.pth"))
    for key, value in encoder.cnn.state_dict().items():
        assert torch.equal(value, state[key]), key
    image = torch.randn(2, 3, 32, 32)
    cnn.eval().reset_classifier(0)
    assert torch.allclose(encoder(image), cnn(image * encoder.scale + encoder.shift), atol=1e-5)


def test_style_head_starts_from_matching_classifier_rows(tmp_path):
    cnn = trained_cnn()
    names = save_json(CLASS_NAMES, tmp_path / "classes.json")
    model = build_tiny(
        style_names=["cubism", "impressionism", "pop art", "realism", "ukiyo e"],
        style_encoder={
            "arch": ARCH,
            "image_size": 32,
            "allow_random": False,
            "checkpoint": save(cnn.state_dict(), tmp_path / "cnn.pth"),
            "class_names": names,
        },
    )
    weight, bias = cnn.classifier.weight, cnn.classifier.bias
    for style, row in [("cubism", 3), ("impressionism", 0), ("pop art", 1), ("ukiyo e", 4)]:
        i = model.vocabulary.names.index(style)
        assert (
            torch.equal(model.style_head.weight[i], weight[row]) and model.style_head.bias[i] == bias[row]
        ), style
    realism = model.vocabulary.names.index("realism")
    assert not any(torch.equal(model.style_head.weight[realism], w) for w in weight)


def save_json(obj, path):
    path.write_text(json.dumps(obj))
    return str(path)


def test_wrong_architecture_names_the_file_and_keys(tmp_path):
    path = save(trained_cnn("efficientnet_b1").state_dict(), tmp_path / "b1.pth")
    with pytest.raises(
        ValueError,
        match=r"b1\.pth does not fit timm efficientnet_b0 .*(unexpected|missing) keys.*blocks\.",
    ):
        StyleEncoder(ARCH, checkpoint=path)


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(SourceUnavailableError, match="nowhere.pth"):
        StyleEncoder(ARCH, checkpoint=str(tmp_path / "nowhere.pth"))


def test_class_names_must_match_the_classifier_rows(tmp_path):
    path = save(trained_cnn().state_dict(), tmp_path / "cnn.pth")
    names = save_json(CLASS_NAMES[:3], tmp_path / "classes.json")
    with pytest.raises(
        ValueError, match=r"classes\.json lists 3 class names, but the classifier in .*cnn\.pth has 5 rows"
    ):
        StyleEncoder(ARCH, checkpoint=path, class_names=names)


def test_random_cnn_only_when_the_config_says_so():
    with pytest.raises(ValueError, match="allow_random"):
        StyleEncoder(ARCH)
    with pytest.warns(UserWarning, match="random weights"):
        StyleEncoder(ARCH, allow_random=True)


def test_input_size_and_filter_follow_the_weights_timm_config_unless_set():
    """A frozen CNN sees images as its weights were evaluated: EfficientNet-B3's timm config is bicubic at 320
    px (288 for training); an explicit model.style_encoder.image_size / interpolation wins."""
    from lavis_gated.models.style_parts import StyleEncoder

    default = StyleEncoder("efficientnet_b3", allow_random=True)
    assert (default.image_size, default.interpolation) == (320, "bicubic")
    chosen = StyleEncoder("efficientnet_b3", image_size=300, interpolation="bilinear", allow_random=True)
    assert (chosen.image_size, chosen.interpolation) == (300, "bilinear")
    image = torch.randn(1, 3, 224, 224)
    assert not torch.equal(
        default(image), StyleEncoder("efficientnet_b3", interpolation="bilinear", allow_random=True)(image)
    )
