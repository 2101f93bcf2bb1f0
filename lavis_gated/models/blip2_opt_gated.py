"""blip2_opt_gated: LAVIS BLIP-2 OPT whose Q-Former cross-attention K/V are modulated by a style signal.

Data path: image -> frozen EVA ViT -> ln_vision, and image -> frozen style CNN -> pooled feature (style head:
image style logits; style_to_qformer + the prompt's OPT embeddings -> prompt_mapper -> control tokens ->
kv_modulation's per-layer factors) -> Q-Former whose cross-attention K/V are modulated -> opt_proj -> OPT
prefix before [prompt; answer].

Parts and their attribute names are LAVIS Blip2OPT's (visual_encoder, ln_vision, Qformer, query_tokens,
opt_model, opt_proj), so BLIP-2 checkpoints load unchanged; the new modules are style_encoder (frozen CNN),
style_head, style_to_qformer, prompt_mapper, kv_modulation and, optionally, LoRA adapters inside the
Q-Former's cross-attention key/value projections. Settings: configs/model_config.py.
"""

import contextlib
import logging
import os

import torch
import torch.nn.functional as F
from lavis.common.registry import registry
from lavis.models.blip2_models.blip2_opt import Blip2OPT

from lavis_gated.configs.model_config import ModelConfig
from lavis_gated.datasets.style_vocabulary import StyleVocabulary
from lavis_gated.models import precision, style_name_scores, text_inputs
from lavis_gated.models.backbones import build_blip2_parts
from lavis_gated.models.checkpoint_loading import CheckpointEntryPoints
from lavis_gated.models.compile_support import compile_trainable_path
from lavis_gated.models.cross_attention_lora import remap_plain_kv_keys
from lavis_gated.models.generation import AnswerGeneration
from lavis_gated.models.modulation_parts import build_modulation_parts
from lavis_gated.models.sources import PACKAGE_CONFIG_DIR
from lavis_gated.models.style_parts import StyleVocabularyState, build_style_encoder, set_style_vocabulary
from lavis_gated.models.style_probe import StyleProbe
from lavis_gated.models.text_inputs import FROZEN_FEATURE_KEYS, batch_size_of, pad

MODEL_CONFIG_DIR = os.path.join(PACKAGE_CONFIG_DIR, "models", "blip2_opt_gated")
MODEL_TYPES = ("pretrain_opt2.7b", "pretrain_opt6.7b", "caption_coco_opt2.7b", "caption_coco_opt6.7b", "tiny")


@registry.register_model("blip2_opt_gated")
class Blip2OPTGated(AnswerGeneration, CheckpointEntryPoints, Blip2OPT):
    """BLIP-2 OPT + frozen style CNN + PromptMapper + K/V modulation of the Q-Former cross-attention.

    Model types: LAVIS's four BLIP-2 OPT types with their dimensions, sources and defaults (EVA ViT-g,
    OPT-2.7B or 6.7B, BLIP-2 pretrained or COCO-caption weights) plus an EfficientNet-B3 WikiArt checkpoint,
    and `tiny` (same code, toy sizes, random weights, offline). A lavis-gated checkpoint path is a model type
    too.
    """

    PRETRAINED_MODEL_CONFIG_DICT = {
        name: os.path.join(MODEL_CONFIG_DIR, f"{name}.yaml") for name in MODEL_TYPES
    }

    def __init__(self, config: ModelConfig):
        # Blip2OPT.__init__ fetches hub names and a fixed URL (blip2.py:32-76, blip2_opt.py:77-78); the same
        # parts are built from config values (backbones.py), under the same attribute names.
        super(Blip2OPT, self).__init__()
        if not config.style_names:
            raise ValueError("model.style_names is empty and no checkpoint provides a style vocabulary")
        self.config = config
        for name, part in build_blip2_parts(config).items():
            setattr(self, name, part)
        self.eos_token_id = self.opt_tokenizer("\n", add_special_tokens=False).input_ids[0]
        self.max_txt_len, self.prompt = config.max_txt_len, config.prompt
        self.vit_precision, self.opt_precision = config.vit_precision, config.opt_precision

        # the vocabulary's carrier first, as in BLIP-2 checkpoints' key order of the new modules
        self.style_vocabulary = StyleVocabularyState(StyleVocabulary(config.style_names))
        self.style_encoder = build_style_encoder(config)
        set_style_vocabulary(self, config.style_names)
        self.style_probe = StyleProbe(self.opt_tokenizer, config.style_probe.prompt, self.eos_token_id)

        self.gating_type = config.gating.type
        build_modulation_parts(self, config)  # style_to_qformer, prompt_mapper, kv_modulation, LoRA
        if config.lora.enabled:
            self._register_load_state_dict_pre_hook(self._accept_plain_kv_keys)
        self.pad_multiple = 1
        if config.compile_mode:
            self.compile_trainable_path(mode=config.compile_mode)

    def compile_trainable_path(self, **options):
        """torch.compile(**options) the Q-Former and each OPT layer in place (compile_support.py)."""
        self.pad_multiple = compile_trainable_path(self, **options)

    def cross_attention_layers(self):
        """The Q-Former layers whose cross-attention K/V are modulated (every cross_attention_freq-th)."""
        return [layer for layer in self.Qformer.bert.encoder.layer if layer.has_cross_attention]

    @property
    def device(self):
        """The first parameter's device, as LAVIS's BaseModel.device, without listing every parameter first
        (that takes about 1 ms per call at `mid` size and 2.6 ms at full size, on each training step)."""
        return next(self.parameters()).device

    @property
    def vocabulary(self):
        return self.style_vocabulary.vocabulary

    @property
    def style_tokens(self):
        """(S, L) token ids of each style's answer form, padded (style_parts.StyleVocabularyState)."""
        return self.style_vocabulary.form_tokens

    @property
    def style_token_mask(self):
        return self.style_vocabulary.form_token_mask

    @property
    def style_token_set(self):
        """(K,) sorted ids of the tokens that identify a style: the hit rate's token set."""
        return self.style_vocabulary.hit_tokens

    def _accept_plain_kv_keys(self, state_dict, prefix, *args):
        remap_plain_kv_keys(state_dict, prefix, set(self.state_dict().keys()))

    def _frozen_parts_to_fp32_on_cpu(self, device):
        """Frozen ViT/OPT stored in fp16 (for CUDA) run in fp32 on CPU, converted once on first use, as
        LAVIS's load_model_and_preprocess does with model.float() on CPU; bf16 parts stay bf16
        (precision.py)."""
        for part, attribute in ((self.visual_encoder, "vit_precision"), (self.opt_model, "opt_precision")):
            if precision.converted_to_fp32_on(device.type, getattr(self, attribute)):
                logging.info("on CPU: %s stored in fp16 converted to fp32", type(part).__name__)
                part.float()
                setattr(self, attribute, "fp32")

    def frozen_autocast(self, stored_as):
        """The autocast a frozen part stored in `stored_as` computes under on this device (precision.py)."""
        return precision.frozen_autocast(stored_as, self.device.type)

    # ---- inputs ---------------------------------------------------------------------------------------

    def prompt_batch(self, samples, budgets=None, left=True):
        """(prompt token ids, their per-row id lists): (ids (B, T), mask (B, T)) padded on the left
        (generation, the modulation heatmap) or the right (training), and the ids within each row's budget."""
        prompts = text_inputs.format_prompts(samples, self.prompt)
        ids = text_inputs.prompt_ids(
            self.opt_tokenizer, prompts, budgets or [self.max_txt_len] * len(prompts)
        )
        return pad(ids, self.opt_tokenizer.pad_token_id, left=left), ids

    def frozen_features(self, image, style_image=None):
        """image (B, 3, H, W), style_image (B, 3, H_cnn, W_cnn) or None -> {"vit_features": frozen ViT
        output (B, T, D_vit), before ln_vision (trainable), "style_features": frozen CNN pooled feature
        (B, F) fp32}: what the frozen-feature cache stores. The CNN reads style_image, the full image at its
        own size and normalisation (datasets/style_image.py), else the ViT's image (style_encoder.py)."""
        self._frozen_parts_to_fp32_on_cpu(image.device)
        with self.frozen_autocast(self.vit_precision):
            vit_features = self.visual_encoder(image)
        return {"vit_features": vit_features, "style_features": self.style_features(image, style_image)}

    def style_features(self, image, style_image=None):
        """(B, F) the frozen CNN's pooled feature of style_image if given, else of the ViT's image."""
        if style_image is not None:
            return self.style_encoder.encode_full_image(style_image)
        return self.style_encoder(image)

    def image_inputs(self, samples):
        """The batch's frozen features: precomputed ones if it carries them, else frozen_features(image)."""
        if FROZEN_FEATURE_KEYS[0] in samples:
            return {key: samples[key] for key in FROZEN_FEATURE_KEYS}
        return self.frozen_features(samples["image"], samples.get("style_image"))

    def style_ids(self, samples, device):
        """(B,) style id per sample from samples["style"] names; NO_STYLE where missing or unknown."""
        names = samples.get("style") or [None] * batch_size_of(samples)
        return torch.tensor(self.vocabulary.ids(names), dtype=torch.long, device=device)

    # ---- the modulated Q-Former --------------------------------------------------------------------------

    def modulation_params(self, style_feature, prompt_ids, prompt_mask):
        """style feature (B, F), prompt ids/mask (B, T) -> kv_modulation's parameters (B, L, P, units), fp32:
        the one place the modulation control is computed (training, generation, the heatmap)."""
        prompt_embeds = self.opt_model.get_input_embeddings()(prompt_ids).float()
        with precision.autocast_off(style_feature.device.type):
            control = self.prompt_mapper(
                self.style_to_qformer(style_feature.float()), prompt_embeds, prompt_mask
            )
            return self.kv_modulation(control)

    def encode_image(self, frozen, prompt_ids, prompt_mask):
        """frozen: frozen_features() of the batch; prompt ids/mask (B, T)
        -> (OPT prefix (B, Q, D_opt), style logits (B, S) fp32)."""
        vit_features, style_feature = frozen["vit_features"], frozen["style_features"]
        device = vit_features.device
        self._frozen_parts_to_fp32_on_cpu(device)
        with self.frozen_autocast(self.vit_precision):
            image_embeds = self.ln_vision(vit_features)
        image_atts = torch.ones(image_embeds.size()[:-1], dtype=torch.long, device=device)
        with precision.autocast_off(device.type):
            image_style_logits = self.style_head(style_feature.float())
        modulated = contextlib.nullcontext()
        if self.kv_modulation is not None and not getattr(self, "_modulation_bypassed", False):
            modulated = self.kv_modulation.conditioned(
                self.modulation_params(style_feature, prompt_ids, prompt_mask)
            )
        with modulated:
            query_output = self.Qformer.bert(
                query_embeds=self.query_tokens.expand(image_embeds.shape[0], -1, -1),
                encoder_hidden_states=image_embeds,
                encoder_attention_mask=image_atts,
                return_dict=True,
            )
        return self.opt_proj(query_output.last_hidden_state), image_style_logits

    @contextlib.contextmanager
    def modulation_bypassed(self):
        """The same weights with the K/V modulation switched off: the plain BLIP-2 Q-Former (for
        comparisons)."""
        self._modulation_bypassed = True
        try:
            yield self
        finally:
            self._modulation_bypassed = False

    # ---- training -------------------------------------------------------------------------------------

    def forward(self, samples):
        """LM loss on the answer tokens only, plus what the task's style terms need.

        Returns loss / lm_loss (scalar, the mean over answer tokens), logits (B, T, V) fp32 predicting targets
        (B, T) (IGNORE where not an answer token), image_style_logits (B, S), style_ids (B,) and, for the rows
        of samples["style_probe_rows"] (B,) bool if given, probe_name_log_probs (B, S) fp32: the style probe's
        log P(each style's name | image, probe prompt) (style_probe.py), 0 in the other rows.
        """
        frozen = self.image_inputs(samples)
        device = frozen["vit_features"].device
        answers = text_inputs.answer_ids(
            self.opt_tokenizer, samples["answer"], self.max_txt_len, self.eos_token_id
        )
        (prompt_tokens, prompt_mask), prompts = self.prompt_batch(
            samples, [self.max_txt_len - len(a) for a in answers], left=False
        )
        inputs_opt, image_style_logits = self.encode_image(
            frozen, prompt_tokens.to(device), prompt_mask.to(device)
        )

        text = text_inputs.training_texts(
            prompts, answers, self.opt_tokenizer.pad_token_id, self.pad_multiple
        )
        text_ids, text_mask, targets = (t.to(device) for t in text)
        inputs_embeds = torch.cat([inputs_opt, self.opt_model.get_input_embeddings()(text_ids)], dim=1)
        prefix_mask = torch.ones(inputs_opt.shape[:2], dtype=torch.long, device=device)
        num_query = inputs_opt.shape[1]
        with self.frozen_autocast(self.opt_precision):
            hidden = self.opt_model.model.decoder(
                inputs_embeds=inputs_embeds,
                attention_mask=torch.cat([prefix_mask, text_mask], dim=1),
                return_dict=True,
            ).last_hidden_state
            # position t predicts token t+1: the text's tokens are predicted from positions Q-1 .. Q+T-2, and
            # only those go through the vocabulary projection (OPTForCausalLM.forward projects every position)
            logits = self.opt_model.lm_head(hidden[:, num_query - 1 : -1]).float()
        lm_loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=text_inputs.IGNORE
        )
        probe_rows = [i for i, row in enumerate(samples.get("style_probe_rows") or []) if row]
        probe = None
        if probe_rows:
            probe = style_name_scores.scattered(
                self.style_probe.name_log_probs(self, frozen, probe_rows), probe_rows, len(prompts)
            )
        return {
            "loss": lm_loss,
            "lm_loss": lm_loss,
            "logits": logits,
            "targets": targets,
            "image_style_logits": image_style_logits,
            "style_ids": self.style_ids(samples, device),
            "probe_name_log_probs": probe,
        }

    # ---- inspection (read-only: evaluation's heatmap, the app) ---------------------------------------

    @torch.no_grad()
    def modulation_strength(self, samples):
        """How far each cross-attention layer's K/V modulation moves away from identity, per head, as
        generate() conditions the Q-Former: (B, L, P, H), or None when gating.type is none. P rows: FiLM
        |gamma_k|, |gamma_v|, |beta_v|; gate |tanh g_k|, |tanh g_v|; per-channel values averaged per head."""
        if self.kv_modulation is None:
            return None
        style_feature = (
            samples["style_features"]
            if "style_features" in samples
            else self.style_features(samples["image"], samples.get("style_image"))
        )
        (ids, mask), _ = self.prompt_batch(samples)
        params = self.modulation_params(
            style_feature, ids.to(style_feature.device), mask.to(style_feature.device)
        )
        deviation = params.abs() if self.kv_modulation.gating_type == "film" else torch.tanh(params).abs()
        return deviation.view(*deviation.shape[:3], self.kv_modulation.num_heads, -1).mean(-1)

    @torch.no_grad()
    def style_probabilities(self, samples):
        """(B, S) the image style head's probabilities over self.vocabulary.names."""
        style_feature = self.image_inputs(samples)["style_features"]
        with precision.autocast_off(style_feature.device.type):
            return torch.softmax(self.style_head(style_feature.float()), -1)
