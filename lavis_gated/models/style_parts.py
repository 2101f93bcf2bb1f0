"""The model's style side: the vocabulary it carries in every checkpoint, the frozen style CNN, the style
head, and the token ids of the styles' answer forms that the style losses read (styles.py).

The vocabulary is part of the state dict (extra state), so a trained checkpoint carries its own styles into
whatever loads it; a model built with other style names adopts the checkpoint's (adopt_style_vocabulary).

The frozen style CNN: a timm EfficientNet seeing the full painting at its own size. It was trained, and made
the style table's labels, on whole images at its own resolution with ImageNet normalisation. Batches from the
*_style image processors (datasets/style_image.py) carry that view as `style_image` (encode_full_image).
Without it (LAVIS's plain processors, the app) the CNN falls back to the ViT's image, BLIP-normalised at the
ViT's size (and randomly cropped in training): re-normalised and resized here (forward), which loses fine
brushwork.

The style probe's name scores (the style terms' text side) are models/style_probe.py's.
"""

import json
import logging
import os
import warnings
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lavis_gated.common.checkpoints import check_state_dict, unwrapped_state_dict
from lavis_gated.models.backbones import loading_source, seeded
from lavis_gated.models.text_inputs import pad
from lavis_gated.styles import StyleVocabulary, form_token_ids, identifying_tokens, normalise_style


class StyleVocabularyState(nn.Module):
    """Carries the style names in the model's state dict, so they travel with every checkpoint, with the
    token ids the style losses read (buffers, not saved as tensors: they are rebuilt from the extra state):
    form_tokens (S, L) / form_token_mask (S, L), each style's answer form " <form>" padded, and form_ids
    (the same, unpadded host lists: the style probe's trie); hit_tokens (K,), sorted, the tokens that
    identify a style (style_tokens.identifying_tokens)."""

    def __init__(self, vocabulary: StyleVocabulary):
        super().__init__()
        self.vocabulary = vocabulary
        self.forms = list(vocabulary.names)
        self.set_tokens(self.forms, [[0]] * len(self.forms), [])

    def set_tokens(self, forms, form_ids, hit_tokens):
        """Each style's answer form, its token ids, and the identifying token ids."""
        device = self.form_tokens.device if hasattr(self, "form_tokens") else None
        if len(forms) != len(self.vocabulary) or len(form_ids) != len(self.vocabulary):
            raise ValueError(f"{len(forms)} answer forms for {len(self.vocabulary)} styles")
        self.forms = list(forms)
        form_tokens, form_token_mask = pad([list(ids) for ids in form_ids], pad_id=0)
        self.form_ids = [list(ids) for ids in form_ids]  # host lists: the probe's trie needs no GPU wait
        self.register_buffer("form_tokens", form_tokens.to(device), persistent=False)
        self.register_buffer("form_token_mask", form_token_mask.bool().to(device), persistent=False)
        # sorted once here, not per step: torch.unique would make the step wait for the GPU, and shapes could
        # not be checked on the meta device
        hit = torch.tensor(sorted(set(hit_tokens)), dtype=torch.long)
        self.register_buffer("hit_tokens", hit.to(device), persistent=False)

    def use_forms(self, tokenizer, forms, other_answers=(), max_share=1.0):
        """Tokenise the styles' answer forms and choose the identifying tokens (style_tokens' rule); returns
        {reason: token texts left out}."""
        form_ids = form_token_ids(tokenizer, forms)
        hit, left_out = identifying_tokens(tokenizer, form_ids, other_answers, max_share)
        self.set_tokens(forms, form_ids, hit)
        return left_out

    def get_extra_state(self):
        return {
            "names": list(self.vocabulary.names),
            "forms": list(self.forms),
            "form_token_ids": [
                ids[mask].tolist() for ids, mask in zip(self.form_tokens.cpu(), self.form_token_mask.cpu())
            ],
            "hit_tokens": self.hit_tokens.tolist(),
        }

    def set_extra_state(self, state):
        if list(state["names"]) != self.vocabulary.names:
            raise ValueError(
                f"checkpoint style vocabulary {state['names']} differs from the model's "
                f"{self.vocabulary.names}; load it with the model's load_checkpoint, which adopts it"
            )
        if "form_token_ids" in state:  # older checkpoints carry the names only: their forms are the names
            self.set_tokens(state["forms"], state["form_token_ids"], state["hit_tokens"])


def build_style_encoder(config):
    """The frozen style CNN of a ModelConfig, its random weights (if allowed) drawn from its own seed."""
    settings = config.style_encoder
    with (
        seeded(config.random_init_seed + 2),
        loading_source("model.style_encoder.checkpoint", settings.checkpoint),
    ):
        return StyleEncoder(**asdict(settings))


def style_vocabulary_parts(names, opt_tokenizer, style_encoder):
    """The parts of the vocabulary `names`: (the extra-state carrier with the names' token ids, a style head
    of that many rows). The names are the answer forms until set_answer_forms gives the train split's; the
    head's rows start from the CNN's classifier rows where the names match."""
    vocabulary = StyleVocabulary(names)
    carrier = StyleVocabularyState(vocabulary)
    carrier.use_forms(opt_tokenizer, vocabulary.names)
    style_head = nn.Linear(style_encoder.num_features, len(vocabulary))
    init_style_head_from_classifier(style_head, style_encoder.classifier, vocabulary)
    return carrier, style_head


def set_answer_forms(model, forms, other_answers, max_share):
    """The styles' forms in the train split's answers and its answers that name no style -> the token ids the
    style losses read (carried by every checkpoint from then on); logs what the rule left out."""
    state = model.style_vocabulary
    left_out = state.use_forms(model.opt_tokenizer, forms, other_answers, max_share)
    tokenizer = model.opt_tokenizer
    logging.info(
        "style answer forms: %s; tokens that identify a style: %s; left out: %s",
        dict(zip(state.vocabulary.names, forms)),
        [tokenizer.decode([t]) for t in state.hit_tokens.tolist()],
        left_out,
    )
    hit = set(state.hit_tokens.tolist())
    without = [
        n
        for n, ids in zip(state.vocabulary.names, state.get_extra_state()["form_token_ids"])
        if not hit & set(ids)
    ]
    if without:
        logging.warning(
            "styles with no token that identifies them (their rows are left out of the style hit-rate "
            "term): %s",
            without,
        )


def adopt_style_vocabulary(model, names):
    """Replace `model`'s vocabulary with a checkpoint's before its weights load: a new style head of the
    checkpoint's size (its weights come from the checkpoint), on the old head's device."""
    device = model.style_head.weight.device
    logging.info(
        "adopting the checkpoint's style vocabulary (%d styles) instead of the model's (%d)",
        len(names),
        len(model.vocabulary),
    )
    carrier, style_head = style_vocabulary_parts(names, model.opt_tokenizer, model.style_encoder)
    model.style_vocabulary, model.style_head = carrier.to(device), style_head.to(device)


def init_style_head_from_classifier(style_head, classifier, vocabulary):
    """Start the style head's row for each style the CNN was trained to classify from that class's classifier
    row (matched by normalised name); the other rows keep their random initialisation."""
    if classifier is None:
        return
    rows = {normalise_style(name): row for row, name in enumerate(classifier.class_names)}
    matched = [(i, rows[name]) for i, name in enumerate(vocabulary.names) if name in rows]
    with torch.no_grad():
        for style_id, row in matched:
            style_head.weight[style_id] = classifier.weight[row]
            style_head.bias[style_id] = classifier.bias[row]
    logging.info(
        "style head: %d of %d styles start from the CNN classifier's rows: %s; unmatched: %s",
        len(matched),
        len(vocabulary),
        [vocabulary.names[i] for i, _ in matched],
        [n for n in vocabulary.names if n not in rows],
    )


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
        from lavis_gated.models.backbones import load_weights_file

        state = unwrapped_state_dict(load_weights_file(path), f"style encoder checkpoint {path}")
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
