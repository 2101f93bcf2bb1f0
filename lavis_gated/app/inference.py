"""The demo's model logic, without a page: load a checkpoint once on a device, answer one image + question
with the K/V modulation on (and optionally off: the same weights), the style head's top styles, the input's
modulation strength, the answer under another style's control tokens (the style swap), and batches of
inputs for lavis-gated-predict --input.

Used by the web page (page.py) and lavis-gated-predict; tested directly (tests/test_app_inference.py).
"""

import threading
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from lavis_gated.app import DEFAULT_MAX_LENGTH, DEFAULT_NUM_BEAMS
from lavis_gated.reports.modulation_figure import input_modulation_figure
from lavis_gated.tasks.evaluation import PARAMETER_NAMES

REFERENCE_BATCH = 32
# train images per style whose mean CNN feature stands for the style in the style swap: enough for a stable
# mean (the feature varies far less within a style than the answer does), few enough to compute in seconds
SWAP_IMAGES_PER_STYLE = 32


@dataclass(frozen=True)
class Prediction:
    """One input's results. strength: (L, P, H) modulation strength per cross-attention layer, modulated
    parameter and head; reference: (L, P, H) its mean over the reference images asked the same question.
    None (as answer_unmodulated) when the model has no modulation (gating.type none); reference is None
    without reference images."""

    answer: str
    answer_unmodulated: Optional[str]
    styles: list[tuple[str, float]]
    strength: Optional[np.ndarray]
    reference: Optional[np.ndarray] = None
    reference_count: int = 0


@dataclass(frozen=True)
class SwapPrediction:
    """The answer to one input when the control tokens come from `style`'s mean CNN feature over
    `image_count` train images instead of the image's own feature (the ViT features stay the image's)."""

    style: str
    answer: str
    image_count: int


def load_model(checkpoint, device=None):
    """(model in eval mode, eval image processor, eval text processor, device name) of a checkpoint: the one
    place predict and the app choose the device and precision.

    device: None -> cuda when a GPU is visible, else cpu. Precision as LAVIS's load_model_and_preprocess:
    on CUDA the frozen ViT and OPT stay in the precision they are stored in (model.vit_precision /
    opt_precision: fp16 by default, as LAVIS) and compute under autocast in it; on CPU the frozen parts
    compute in fp32, or in bf16 where the CPU does bf16 natively (models/precision.py: emulated bf16 is many
    times slower than fp32). A checkpoint path is a model type."""
    from lavis_gated.common.command_line import resolve_device

    device = resolve_device(device)
    import lavis_gated

    lavis_gated.register()
    from lavis.models import load_model_and_preprocess

    model, vis, text = load_model_and_preprocess(
        "blip2_opt_gated", model_type=checkpoint, is_eval=True, device=device
    )
    # on CPU: the frozen parts in the precision this CPU computes them in (models/precision.py): undoes
    # LAVIS's model.float() for parts the CPU computes natively in bf16
    model.prepare_frozen_parts(model.device)
    return model, vis["eval"], text["eval"], device


class DemoModel:
    """A lavis-gated checkpoint in eval mode with its LAVIS processors, answering one input at a time.

    reference_images: image paths (e.g. the run's test images) whose mean modulation strength for the same
    question is the 0 of the deviation heatmap. The strength depends on the question far more than on the
    image (in the demo checkpoint, style questions leave the K/V nearly unmodulated and shape questions do
    not), so the reference is recomputed per question: the deviation then shows what this image changes."""

    def __init__(self, model, vis_processor, text_processor, reference_images=(), swap_images=None):
        """swap_images: {style name: [train image paths]} whose mean CNN feature is that style in the style
        swap (computed once, on first use); None or {}: no swap."""
        self.model = model.eval()
        self.vis_processor, self.text_processor = vis_processor, text_processor
        self.reference_images = list(reference_images)
        self.swap_images = dict(swap_images or {})
        self._reference_features = None
        self._style_means = None
        # Streamlit serves each browser session from its own thread; modulation_bypassed() flips a flag on
        # the shared model, so one input is answered at a time.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, checkpoint, reference_images=(), swap_images=None, device=None):
        """The model the checkpoint was trained as, with its weights, on `device` (load_model)."""
        model, vis, text, _ = load_model(checkpoint, device)
        return cls(model, vis, text, reference_images, swap_images)

    @property
    def device(self):
        return self.model.device

    @property
    def style_names(self):
        return list(self.model.vocabulary.names)

    @property
    def gating_type(self):
        modulation = self.model.kv_modulation
        return None if modulation is None else modulation.gating_type

    @property
    def parameters(self):
        """Names of the modulated parameters (the P axis of strength), as in <split>_modulation.json."""
        return PARAMETER_NAMES.get(self.gating_type, [])

    @property
    def qformer_layers(self):
        """Q-Former layer index of each modulated cross-attention layer (the L axis of strength)."""
        layers = self.model.Qformer.bert.encoder.layer
        return [i for i, layer in enumerate(layers) if layer.has_cross_attention]

    def samples(self, image, question):
        """A batch of one: the RGB PIL image and the question through the checkpoint's eval processors;
        without a question (None or blank) the image alone, which the model captions (row_texts)."""
        return self.batch_samples([image], [question])

    def batch_samples(self, images, questions):
        """A batch: RGB PIL images and their questions through the checkpoint's eval processors, the images
        (B, 3, H, W) on the model's device. A row without a question (None or blank) is captioned: its
        text_input is "", which the model reads as a caption row."""
        return {
            "image": torch.stack([self.vis_processor(image) for image in images]).to(self.device),
            "text_input": [self.text_processor(q) if q and q.strip() else "" for q in questions],
        }

    @torch.no_grad()
    def predict(
        self,
        image,
        question,
        num_beams=DEFAULT_NUM_BEAMS,
        max_length=DEFAULT_MAX_LENGTH,
        top_k=5,
        unmodulated=True,
    ):
        """Answer (modulation on; off too when `unmodulated` and the model has a modulation), the top_k
        styles with probabilities (highest first), the modulation strength (L, P, H) and its reference, for
        one RGB PIL image and its question; with question None (or blank), its caption in place of the
        answer."""
        samples = self.samples(image, question)
        generation = {"num_beams": int(num_beams), "max_length": int(max_length)}
        with self._lock:
            answer = self.model.generate(samples, **generation)[0]
            answer_off = reference = None
            if self.model.kv_modulation is not None:
                if unmodulated:
                    with self.model.modulation_bypassed():
                        answer_off = self.model.generate(samples, **generation)[0]
                reference = self._reference_strength(samples["text_input"][0] or None)
            probabilities = self.model.style_probabilities(samples)[0]
            strength = self.model.modulation_strength(samples)
        return Prediction(
            answer=answer,
            answer_unmodulated=answer_off,
            styles=top_styles(probabilities.tolist(), self.style_names, top_k),
            strength=None if strength is None else strength[0].float().cpu().numpy(),
            reference=reference,
            reference_count=0 if reference is None else len(self._reference_features),
        )

    @torch.no_grad()
    def predict_batch(
        self,
        images,
        questions,
        num_beams=DEFAULT_NUM_BEAMS,
        max_length=DEFAULT_MAX_LENGTH,
        top_k=5,
        unmodulated=False,
    ):
        """[Prediction without strength] for B images and their questions in one batch: one generation
        (two with `unmodulated`), the style head's top_k per image. Prompts are left-padded, so each answer
        is the one the input gets alone."""
        samples = self.batch_samples(images, questions)
        generation = {"num_beams": int(num_beams), "max_length": int(max_length)}
        with self._lock:
            # the frozen features once, shared by both generations and the style head
            frozen = self.model.frozen_features(samples["image"])
            batch = {**frozen, "text_input": samples["text_input"]}
            answers = self.model.generate(batch, **generation)
            answers_off = [None] * len(answers)
            if unmodulated and self.model.kv_modulation is not None:
                with self.model.modulation_bypassed():
                    answers_off = self.model.generate(batch, **generation)
            probabilities = self.model.style_probabilities(batch).tolist()
        return [
            Prediction(answer, off, top_styles(p, self.style_names, top_k), None)
            for answer, off, p in zip(answers, answers_off, probabilities)
        ]

    @property
    def swap_styles(self):
        """Styles of the vocabulary the style swap can use (those with train images), in vocabulary order."""
        return [name for name in self.style_names if self.swap_images.get(name)]

    @torch.no_grad()
    def predict_swapped(
        self, image, question, style, num_beams=DEFAULT_NUM_BEAMS, max_length=DEFAULT_MAX_LENGTH
    ):
        """The answer for this image and question when the style feature, and so the control tokens that
        modulate the Q-Former's K/V, is `style`'s mean CNN feature over its train images; the frozen ViT
        features stay this image's. Answers "does the style signal change what the model says?".

        ValueError when `style` has no train images here."""
        means = self.style_means()
        if style not in means:
            raise ValueError(f"no train images of style {style!r} to take its mean feature from")
        mean, count = means[style]
        samples = self.samples(image, question)
        with self._lock:
            frozen = self.model.frozen_features(samples["image"])
            batch = {
                "vit_features": frozen["vit_features"],
                "style_features": mean.to(frozen["style_features"]).unsqueeze(0),
                "text_input": samples["text_input"],
            }
            answer = self.model.generate(batch, num_beams=int(num_beams), max_length=int(max_length))[0]
        return SwapPrediction(style, answer, count)

    def style_means(self):
        """{style: ((F,) mean CNN feature over its swap images, image count)}, computed once."""
        if self._style_means is None:
            means = {}
            for style, paths in self.swap_images.items():
                features = self._style_features(paths)
                if len(features):
                    means[style] = (features.float().mean(0), len(features))
            self._style_means = means
        return self._style_means

    def _reference_strength(self, question):
        """(L, P, H) mean strength over the reference images for this (processed) question (None: captioning),
        or None. Their
        style features are computed once; per question only the prompt mapper and modulation MLP run."""
        if self._reference_features is None:
            self._reference_features = self._style_features(self.reference_images)
        features = self._reference_features
        if not len(features):
            return None
        asked = {} if not question else {"text_input": [question] * len(features)}
        strength = self.model.modulation_strength({"style_features": features, **asked})
        return strength.float().mean(0).cpu().numpy()

    def _style_features(self, paths):
        """(N, F) the frozen style CNN's features of the readable images among paths."""
        from lavis_gated.app.inputs import InputError, read_image_file

        images = []
        for path in paths:
            try:
                images.append(self.vis_processor(read_image_file(path)))
            except InputError:
                continue  # a run file that is gone or broken just leaves the reference
        chunks = [
            self.model.style_encoder(torch.stack(images[i : i + REFERENCE_BATCH]).to(self.device))
            for i in range(0, len(images), REFERENCE_BATCH)
        ]
        return torch.cat(chunks) if chunks else torch.zeros(0)

    def modulation_figure(self, prediction):
        """The input's heatmap (modulation_figure.py): its deviation from the reference images' mean for the
        same question (when there is one) above its absolute strength; None without modulation."""
        if prediction.strength is None:
            return None
        name = f"mean over {prediction.reference_count} test images, same question"
        return input_modulation_figure(
            prediction.strength, self.parameters, self.qformer_layers, prediction.reference, name
        )


def top_styles(probabilities, names, k):
    """[(name, probability)] of the k most probable styles, highest first (ties: vocabulary order)."""
    order = sorted(range(len(names)), key=lambda i: -probabilities[i])[:k]
    return [(names[i], float(probabilities[i])) for i in order]
