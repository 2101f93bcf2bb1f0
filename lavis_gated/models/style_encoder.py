"""The frozen style CNN: a timm EfficientNet seeing the same image as the ViT.

The batch arrives normalised for BLIP (CLIP mean/std) at the ViT's resolution; the CNN was trained
on ImageNet-normalised images at its own resolution, so the image is re-normalised and resized here
rather than loaded twice.
"""
import logging
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

BLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
BLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class StyleEncoder(nn.Module):
    """Frozen timm CNN -> pooled feature (B, num_features)."""

    def __init__(self, arch="efficientnet_b3", image_size=300, checkpoint=None, allow_random=False):
        super().__init__()
        import timm

        self.cnn = timm.create_model(arch, pretrained=False, num_classes=0)
        self.num_features = self.cnn.num_features
        self.image_size = image_size
        if checkpoint:
            self._load(checkpoint)
        elif not allow_random:
            raise ValueError(
                f"model.style_encoder.checkpoint is not set for {arch}: give the WikiArt-trained weights file, "
                "or set model.style_encoder.allow_random: true to use a random CNN on purpose"
            )
        else:
            warnings.warn(f"style encoder {arch} uses random weights (model.style_encoder.allow_random is true)")
        for p in self.cnn.parameters():
            p.requires_grad = False
        self.cnn.eval()
        shift = torch.tensor(BLIP_MEAN) - torch.tensor(IMAGENET_MEAN)
        # x_imagenet = (x_blip * blip_std + blip_mean - imagenet_mean) / imagenet_std, as one affine map
        self.register_buffer("scale", (torch.tensor(BLIP_STD) / torch.tensor(IMAGENET_STD)).view(1, 3, 1, 1), False)
        self.register_buffer("shift", (shift / torch.tensor(IMAGENET_STD)).view(1, 3, 1, 1), False)

    def _load(self, path):
        from lavis_gated.models.backbones import load_weights_file

        state = load_weights_file(path)
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        incompatible = self.cnn.load_state_dict(state, strict=False)
        if incompatible.missing_keys or incompatible.unexpected_keys:
            raise ValueError(
                f"style encoder checkpoint {path} does not match the timm architecture: "
                f"missing {incompatible.missing_keys[:10]}, unexpected {incompatible.unexpected_keys[:10]}"
            )
        logging.info("style encoder weights loaded from %s", path)

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
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return self.cnn(x).float()
