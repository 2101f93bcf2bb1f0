"""The frozen style CNN: a timm EfficientNet seeing the same image as the ViT.

The batch arrives normalised for BLIP (CLIP mean/std) at the ViT's resolution; the CNN was trained
on ImageNet-normalised images at its own resolution, so the image is re-normalised and resized here
rather than loaded twice.
"""

import json
import logging
import os
import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lavis_gated.checkpoint_keys import check_state_dict

BLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
BLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


TRAINING_RECORD = "metrics.json"  # written beside style_cnn.pth by lavis-gated-train-style-cnn


def recorded_input(checkpoint):
    """{"arch", "image_size", "interpolation"} that lavis-gated-train-style-cnn recorded in metrics.json
    beside `checkpoint` (those present); {} for weights trained elsewhere."""
    path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), TRAINING_RECORD)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        recorded = json.load(handle)
    return {k: recorded[k] for k in ("arch", "image_size", "interpolation") if recorded.get(k)}


def cnn_input(cnn, image_size=None, interpolation=None, checkpoint=None):
    """(side in pixels, interpolation) at which the style CNN sees images: the one rule shared by its
    trainer (lavis-gated-train-style-cnn), the style-table maker (lavis-gated-style-table) and the model.

    Precedence: the explicit setting (model.style_encoder.image_size / interpolation, --image-size), then
    what the trainer recorded beside `checkpoint`, then the weights' timm config: `input_size`, the size the
    weights are trained and validated at (EfficientNet-B3: 288 px, bicubic). timm's `test_input_size`
    (320 px for B3) is not used: a frozen CNN should see images as its own validation saw them."""
    recorded = recorded_input(checkpoint) if checkpoint else {}
    default = cnn.default_cfg
    side = image_size or recorded.get("image_size") or default["input_size"][-1]
    return int(side), interpolation or recorded.get("interpolation") or default.get(
        "interpolation", "bilinear"
    )


def cnn_data_config(cnn, image_size=None, checkpoint=None):
    """timm's data config (mean, std, crop, input_size, interpolation) for images fed to `cnn` from files,
    at cnn_input's size and interpolation."""
    from timm.data import resolve_data_config

    side, interpolation = cnn_input(cnn, image_size, checkpoint=checkpoint)
    return resolve_data_config({"input_size": (3, side, side), "interpolation": interpolation}, model=cnn)


@dataclass
class CheckpointClassifier:
    """The style CNN checkpoint's own classifier, kept (outside the state dict) to initialise the style
    head."""

    weight: torch.Tensor  # (num_classes, num_features)
    bias: torch.Tensor  # (num_classes,)
    class_names: list[str]


def read_class_names(path, num_classes, checkpoint):
    """The JSON list of the checkpoint classifier's class names, one per classifier row."""
    try:
        with open(path, encoding="utf-8") as f:
            names = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"model.style_encoder.class_names: cannot read {path}: {error}") from error
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path}: expected a JSON list of class names (strings)")
    if len(names) != num_classes:
        raise ValueError(
            f"{path} lists {len(names)} class names, but the classifier in {checkpoint} has "
            f"{num_classes} rows"
        )
    return names


class StyleEncoder(nn.Module):
    """Frozen timm CNN -> pooled feature (B, num_features)."""

    def __init__(
        self,
        arch="efficientnet_b3",
        image_size=None,
        interpolation=None,
        checkpoint=None,
        class_names=None,
        allow_random=False,
    ):
        super().__init__()
        import timm

        self.cnn = timm.create_model(arch, pretrained=False, num_classes=0)
        self.num_features = self.cnn.num_features
        # the size and interpolation its trainer used (cnn_input: the one rule)
        self.image_size, self.interpolation = cnn_input(self.cnn, image_size, interpolation, checkpoint)
        self.classifier = None
        if class_names and not checkpoint:
            raise ValueError(
                "model.style_encoder.class_names is set but model.style_encoder.checkpoint is not"
            )
        if checkpoint:
            self._load(checkpoint, class_names)
        elif not allow_random:
            raise ValueError(
                f"model.style_encoder.checkpoint is not set for {arch}: give the WikiArt-trained weights "
                "file, or set model.style_encoder.allow_random: true to use a random CNN on purpose"
            )
        else:
            warnings.warn(
                f"style encoder {arch} uses random weights (model.style_encoder.allow_random is true)",
                stacklevel=2,
            )
        for p in self.cnn.parameters():
            p.requires_grad = False
        self.cnn.eval()
        # NHWC: faster convolutions for this frozen CNN with oneDNN on CPU and cuDNN on GPU (fp16/bf16)
        self.cnn.to(memory_format=torch.channels_last)
        shift = torch.tensor(BLIP_MEAN) - torch.tensor(IMAGENET_MEAN)
        # x_imagenet = (x_blip * blip_std + blip_mean - imagenet_mean) / imagenet_std, as one affine map
        self.register_buffer(
            "scale", (torch.tensor(BLIP_STD) / torch.tensor(IMAGENET_STD)).view(1, 3, 1, 1), False
        )
        self.register_buffer("shift", (shift / torch.tensor(IMAGENET_STD)).view(1, 3, 1, 1), False)

    def _load(self, path, class_names=None):
        """timm weights from a plain state dict or one under `state_dict`/`model`, `module.` prefixes
        stripped; the classifier (timm's `classifier.*` or `fc.*`) is kept aside for the style head."""
        from lavis_gated.models.sources import load_weights_file

        state = load_weights_file(path)
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
        state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
        head = self.cnn.default_cfg.get("classifier", "classifier")
        weight, bias = state.pop(f"{head}.weight", None), state.pop(f"{head}.bias", None)
        architecture = f"timm {self.cnn.default_cfg.get('architecture')} (model.style_encoder.arch)"
        check_state_dict(state, self.cnn.state_dict(), f"style encoder checkpoint {path}", architecture)
        self.cnn.load_state_dict(state)
        logging.info("style encoder weights loaded from %s", path)
        if class_names:
            if weight is None or bias is None or weight.shape[-1] != self.num_features:
                raise ValueError(
                    f"model.style_encoder.class_names is set, but {path} has no classifier "
                    f"'{head}.weight'/'{head}.bias' over {self.num_features} features"
                )
            names = read_class_names(class_names, weight.shape[0], path)
            self.classifier = CheckpointClassifier(weight.float(), bias.float(), names)

    def train(self, mode=True):
        """The CNN stays in eval mode (frozen BatchNorm statistics) whatever the parent does."""
        super().train(mode)
        self.cnn.eval()
        return self

    @torch.no_grad()
    def forward(self, image):
        """image: (B, 3, H, W) BLIP-normalised -> (B, num_features) pooled CNN feature."""
        x = image.float() * self.scale + self.shift
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            smooth = self.interpolation in ("bilinear", "bicubic")  # align_corners exists only for these
            x = F.interpolate(
                x,
                size=(self.image_size, self.image_size),
                mode=self.interpolation,
                align_corners=False if smooth else None,
            )
        return self.cnn(x.contiguous(memory_format=torch.channels_last)).float()
