"""The style CNN's own view of each image: the full image at the CNN's input size and normalisation.

The style CNN was trained, and made the style table's labels, on whole paintings at its own size (300 px for
the WikiArt EfficientNet-B3) and ImageNet normalisation. The ViT's image is a 224 px BLIP-normalised view,
randomly cropped in training; re-normalising and upsampling that crop would lose the brushwork the CNN reads.
So the image processors `blip_image_train_style` / `blip_image_eval_style` are LAVIS's blip_image_train /
blip_image_eval plus a second transform, `style_transform`, and each sample carries `style_image` beside
`image` (datasets/artquest_dataset.to_sample); the model feeds it to the CNN (StyleEncoder.encode_full_image).

    vis_processor:
      train: {name: blip_image_train_style, image_size: 224, style_image_size: 300}
      eval: {name: blip_image_eval_style, image_size: 224, style_image_size: 300}

style_image_size must be the CNN's input size (model.style_encoder.image_size); style_interpolation,
style_mean and style_std default to bicubic and ImageNet's mean and std (timm's EfficientNet and ResNet).
The style transform is deterministic (no crop, no flip), so the frozen-feature cache stores its feature.
"""

from lavis.common.registry import registry
from lavis.processors.blip_processors import BlipImageEvalProcessor, BlipImageTrainProcessor
from omegaconf import OmegaConf
from torchvision import transforms
from torchvision.transforms.functional import InterpolationMode

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STYLE_KEYS = ("style_image_size", "style_interpolation", "style_mean", "style_std")


def style_transform(size, interpolation="bicubic", mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """PIL image -> (3, size, size) tensor: the whole image resized (no crop), normalised by mean/std."""
    if not size or int(size) < 1:
        raise ValueError(
            f"vis_processor style_image_size is {size!r}: give the style CNN's input size "
            "(model.style_encoder.image_size, e.g. 300 for the WikiArt EfficientNet-B3)"
        )
    return transforms.Compose(
        [
            transforms.Resize((int(size), int(size)), interpolation=InterpolationMode(interpolation)),
            transforms.ToTensor(),
            transforms.Normalize(tuple(mean), tuple(std)),
        ]
    )


def _with_style_transform(processor, cfg):
    """The processor with its style_transform, from the processor block's style_* keys."""
    processor.style_transform = style_transform(
        cfg.get("style_image_size"),
        cfg.get("style_interpolation", "bicubic"),
        cfg.get("style_mean") or IMAGENET_MEAN,
        cfg.get("style_std") or IMAGENET_STD,
    )
    return processor


@registry.register_processor("blip_image_train_style")
class BlipImageTrainStyleProcessor(BlipImageTrainProcessor):
    """blip_image_train (random crop and flip for the ViT) + the style CNN's full-image transform."""

    @classmethod
    def from_config(cls, cfg=None):
        cfg = cfg if cfg is not None else OmegaConf.create()
        return _with_style_transform(super().from_config(cfg), cfg)


@registry.register_processor("blip_image_eval_style")
class BlipImageEvalStyleProcessor(BlipImageEvalProcessor):
    """blip_image_eval (deterministic resize for the ViT) + the style CNN's full-image transform."""

    @classmethod
    def from_config(cls, cfg=None):
        cfg = cfg if cfg is not None else OmegaConf.create()
        return _with_style_transform(super().from_config(cfg), cfg)
