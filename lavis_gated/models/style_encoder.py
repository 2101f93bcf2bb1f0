"""The frozen style CNN: a timm EfficientNet seeing the full painting at its own size.

The CNN was trained, and made the style table's labels, on whole images at its own resolution with ImageNet
normalisation. Batches from the *_style image processors (datasets/style_image.py) carry that view as
`style_image` (encode_full_image). Without it (LAVIS's plain processors, the app) the CNN falls back to the
ViT's image, BLIP-normalised at the ViT's size (and randomly cropped in training): re-normalised and resized
here (forward), which loses fine brushwork.
"""

import json
import logging
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
        # the weights' own preprocessing when not set: timm's config of the architecture (EfficientNet-B3:
        # bicubic, 288 px for training, 320 px for testing; a frozen CNN is always testing)
        default = self.cnn.default_cfg
        self.image_size = image_size or (default.get("test_input_size") or default["input_size"])[-1]
        self.interpolation = interpolation or default.get("interpolation", "bilinear")
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
    def encode_full_image(self, style_image):
        """style_image: (B, 3, H, W) the full image normalised for this CNN, at its input size (resized here
        only if it is not) -> (B, num_features) pooled CNN feature."""
        return self._pooled(style_image.float())

    def _pooled(self, x):
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            smooth = self.interpolation in ("bilinear", "bicubic")  # align_corners exists only for these
            x = F.interpolate(
                x,
                size=(self.image_size, self.image_size),
                mode=self.interpolation,
                align_corners=False if smooth else None,
            )
        return self.cnn(x.contiguous(memory_format=torch.channels_last)).float()

    @torch.no_grad()
    def forward(self, image):
        """image: (B, 3, H, W) BLIP-normalised (the ViT's view) -> (B, num_features) pooled CNN feature."""
        return self._pooled(image.float() * self.scale + self.shift)
