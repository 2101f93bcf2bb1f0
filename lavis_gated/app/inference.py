"""The demo's model logic, without a page: load a checkpoint, answer one image + question with the K/V
modulation on and off (the same weights), the style head's top styles, and the input's modulation strength.

Used by the web page (page.py) and lavis-gated-predict; tested directly (tests/test_app_inference.py).
"""

import threading
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from lavis_gated.reports.modulation_figure import input_modulation_figure
from lavis_gated.tasks.evaluation import PARAMETER_NAMES

REFERENCE_BATCH = 32
# LAVIS generate()'s beam width and predict_answers()' answer length
DEFAULT_NUM_BEAMS, DEFAULT_MAX_LENGTH = 5, 10


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


class DemoModel:
    """A lavis-gated checkpoint in eval mode with its LAVIS processors, answering one input at a time.

    reference_images: image paths (e.g. the run's test images) whose mean modulation strength for the same
    question is the 0 of the deviation heatmap. The strength depends on the question far more than on the
    image (in the demo checkpoint, style questions leave the K/V nearly unmodulated and shape questions do
    not), so the reference is recomputed per question: the deviation then shows what this image changes."""

    def __init__(self, model, vis_processor, text_processor, reference_images=()):
        self.model = model.eval()
        self.vis_processor, self.text_processor = vis_processor, text_processor
        self.reference_images = list(reference_images)
        self._reference_features = None
        # Streamlit serves each browser session from its own thread; modulation_bypassed() flips a flag on
        # the shared model, so one input is answered at a time.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, checkpoint, reference_images=()):
        """The model the checkpoint was trained as, with its weights, on the CPU (a checkpoint path is a
        model type)."""
        from lavis.models import load_model_and_preprocess

        import lavis_gated  # noqa: F401  (registers blip2_opt_gated with LAVIS)

        model, vis, text = load_model_and_preprocess(
            "blip2_opt_gated", model_type=checkpoint, is_eval=True, device="cpu"
        )
        return cls(model, vis["eval"], text["eval"], reference_images)

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
        """A batch of one: the RGB PIL image and the question through the checkpoint's eval processors."""
        return {
            "image": self.vis_processor(image).unsqueeze(0),
            "text_input": [self.text_processor(question)],
        }

    @torch.no_grad()
    def predict(self, image, question, num_beams=DEFAULT_NUM_BEAMS, max_length=DEFAULT_MAX_LENGTH, top_k=5):
        """Answer (modulation on, and off when the model has one), the top_k styles with probabilities
        (highest first), the modulation strength (L, P, H) and its reference, for one RGB PIL image and its
        question."""
        samples = self.samples(image, question)
        generation = {"num_beams": int(num_beams), "max_length": int(max_length)}
        with self._lock:
            answer = self.model.generate(samples, **generation)[0]
            unmodulated = reference = None
            if self.model.kv_modulation is not None:
                with self.model.modulation_bypassed():
                    unmodulated = self.model.generate(samples, **generation)[0]
                reference = self._reference_strength(samples["text_input"][0])
            probabilities = self.model.style_probabilities(samples)[0]
            strength = self.model.modulation_strength(samples)
        return Prediction(
            answer=answer,
            answer_unmodulated=unmodulated,
            styles=top_styles(probabilities.tolist(), self.style_names, top_k),
            strength=None if strength is None else strength[0].float().numpy(),
            reference=reference,
            reference_count=0 if reference is None else len(self._reference_features),
        )

    def _reference_strength(self, question):
        """(L, P, H) mean strength over the reference images for this (processed) question, or None. Their
        style features are computed once; per question only the prompt mapper and modulation MLP run."""
        if self._reference_features is None:
            self._reference_features = self._style_features(self.reference_images)
        features = self._reference_features
        if not len(features):
            return None
        strength = self.model.modulation_strength(
            {"style_features": features, "text_input": [question] * len(features)}
        )
        return strength.float().mean(0).numpy()

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
            self.model.style_encoder(torch.stack(images[i : i + REFERENCE_BATCH]))
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
