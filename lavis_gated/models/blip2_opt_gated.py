"""blip2_opt_gated: LAVIS BLIP-2 OPT whose Q-Former cross-attention K/V are modulated by a style signal.

Data path: image -> frozen EVA ViT -> ln_vision, and image -> frozen style CNN -> pooled feature (style head:
image style logits; style_to_qformer + the prompt's OPT embeddings -> prompt_mapper -> control tokens ->
kv_modulation's per-layer factors) -> Q-Former whose cross-attention K/V are modulated -> opt_proj -> OPT
prefix before [prompt; answer].

Parts and their attribute names are LAVIS Blip2OPT's (visual_encoder, ln_vision, Qformer, query_tokens,
opt_model, opt_proj), so BLIP-2 checkpoints load unchanged; the new modules are style_encoder (frozen CNN),
style_head, style_to_qformer, prompt_mapper, kv_modulation and, optionally, LoRA adapters inside the
Q-Former's cross-attention key/value projections. Settings: configs/model_config.py.

Answers and captions from blip2_opt_gated: LAVIS's generate / predict_answers interface, with prompts
left-padded (every answer starts right after its prompt, so a batch answers as its samples do alone), OPT's
key/value cache reused (models/backbones.py) and no token id the tokenizer cannot decode
(text_inputs.TokenizerIdsOnly).
"""

import contextlib
import logging
import os
from dataclasses import asdict, replace

import torch
import torch.nn.functional as F
from lavis.common.registry import registry
from lavis.models.blip2_models.blip2_opt import Blip2OPT
from omegaconf import OmegaConf
from transformers import LogitsProcessorList

from lavis_gated.configs.model_config import ModelConfig, model_config
from lavis_gated.models import precision, text_inputs
from lavis_gated.models.backbones import (
    PACKAGE_CONFIG_DIR,
    build_blip2_parts,
    compile_trainable_path,
    convert_matmul_weights,
    convert_opt,
)
from lavis_gated.models.checkpoint_loading import (
    checkpoint_config,
    is_checkpoint_path,
    load_trained_state,
    read_checkpoint,
    style_names_in_checkpoint,
)
from lavis_gated.models.modulation import (
    attach_modulation,
    build_modulation_parts,
    cross_attention_layers,
    remap_plain_kv_keys,
)
from lavis_gated.models.style_parts import build_style_encoder, style_vocabulary_parts
from lavis_gated.models.style_probe import StyleProbe, scattered
from lavis_gated.models.text_inputs import FROZEN_FEATURE_KEYS, batch_size_of, pad

MODEL_CONFIG_DIR = os.path.join(PACKAGE_CONFIG_DIR, "models", "blip2_opt_gated")
MODEL_TYPES = ("pretrain_opt2.7b", "pretrain_opt6.7b", "caption_coco_opt2.7b", "caption_coco_opt6.7b", "tiny")


@registry.register_model("blip2_opt_gated")
class Blip2OPTGated(Blip2OPT):
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
        # the frozen parts are built before their device is known: auto is chosen here for storage, and
        # prepare_frozen_parts settles what they compute in at first use on a device
        stored = {
            key: precision.storage_precision(getattr(config, key), f"model.{key}")
            for key in ("vit_precision", "opt_precision")
        }
        blip2 = build_blip2_parts(replace(config, **stored))
        self.tokenizer = blip2.tokenizer
        self.visual_encoder, self.ln_vision = blip2.visual_encoder, blip2.ln_vision
        self.Qformer, self.query_tokens = blip2.Qformer, blip2.query_tokens
        self.opt_tokenizer, self.opt_model, self.opt_proj = (
            blip2.opt_tokenizer,
            blip2.opt_model,
            blip2.opt_proj,
        )
        self.eos_token_id = self.opt_tokenizer("\n", add_special_tokens=False).input_ids[0]
        self.max_txt_len, self.prompt = config.max_txt_len, config.prompt
        self.caption_prompt, self.max_caption_len = config.caption_prompt, config.max_caption_len
        self.vit_precision, self.opt_precision = stored["vit_precision"], stored["opt_precision"]
        self._frozen_parts_device = None  # the device type prepare_frozen_parts last settled them for

        style_encoder = build_style_encoder(config)
        carrier, style_head = style_vocabulary_parts(config.style_names, self.opt_tokenizer, style_encoder)
        # the vocabulary's carrier first, as in BLIP-2 checkpoints' key order of the new modules
        self.style_vocabulary = carrier
        self.style_encoder = style_encoder
        self.style_head = style_head
        self.style_probe = StyleProbe(self.opt_tokenizer, config.style_probe.prompt, self.eos_token_id)

        self.gating_type = config.gating.type
        # each None for gating.type none: then the model is LAVIS's Blip2OPT plus the style encoder and head
        self.style_to_qformer, self.prompt_mapper, self.kv_modulation = build_modulation_parts(
            config,
            self.Qformer,
            prompt_dim=self.opt_model.get_input_embeddings().embedding_dim,
            style_dim=self.style_encoder.num_features,
            opt_model=self.opt_model,
        )
        # LoRA, then the modulation (a ControlAttention for adapter / style_query / style_prefix)
        attach_modulation(self.Qformer, config, self.kv_modulation, opt_model=self.opt_model)
        if config.lora.enabled:
            self._register_load_state_dict_pre_hook(self._accept_plain_kv_keys)
        self.pad_multiple = 1
        if config.compile_mode:
            self.compile_trainable_path(mode=config.compile_mode)

    def compile_trainable_path(self, **options):
        """torch.compile(**options) the Q-Former and each OPT layer in place (models/backbones.py)."""
        self.pad_multiple = compile_trainable_path(self, **options)

    def cross_attention_layers(self):
        """The Q-Former layers whose cross-attention K/V are modulated (every cross_attention_freq-th)."""
        return cross_attention_layers(self.Qformer)

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

    def prepare_frozen_parts(self, device):
        """Store the frozen ViT and OPT in the precision they compute in on `device`'s type
        (precision.compute_precision: on CPU cpu_precision's choice, which fp16 parts built for CUDA
        become, and bf16 parts that LAVIS's load_model_and_preprocess turned to fp32 with model.float() go
        back to), converting them once per device type; vit_precision / opt_precision then name it. Called
        at first use (frozen_features, encode_image); returns the model."""
        device_type = torch.device(device).type
        if self._frozen_parts_device == device_type or not torch.amp.is_autocast_available(device_type):
            return (
                self  # settled already, or a device without autocast (meta: shapes only) computes as stored
            )
        for key, part, convert in (
            ("vit_precision", self.visual_encoder, convert_matmul_weights),
            ("opt_precision", self.opt_model, convert_opt),
        ):
            chosen = precision.compute_precision(getattr(self.config, key), device_type, f"model.{key}")
            stored = precision.stored_dtype(part)
            if stored != precision.dtype_of(chosen):
                logging.info("%s: %s converted to %s on %s", key, stored, chosen, device_type)
                convert(part, chosen)
            setattr(self, key, chosen)
        self._frozen_parts_device = device_type
        return self

    def frozen_autocast(self, computed_as):
        """The autocast a frozen part that computes in `computed_as` runs under on this device
        (precision.py)."""
        return precision.frozen_autocast(computed_as, self.device.type)

    # ---- inputs ---------------------------------------------------------------------------------------

    def prompt_batch(self, samples, budgets=None, left=True, questions=None):
        """(prompt token ids, their per-row id lists): (ids (B, T), mask (B, T)) padded on the left
        (generation, the modulation heatmap) or the right (training), and the ids within each row's budget.
        questions: per row, its question or None for a caption row (default: text_inputs.row_texts'
        generation rule)."""
        if questions is None:
            questions, _ = text_inputs.row_texts(samples, training=False)
        prompts = text_inputs.format_prompts(samples, self.prompt, self.caption_prompt, questions)
        ids = text_inputs.prompt_ids(
            self.opt_tokenizer, prompts, budgets or [self.max_txt_len] * len(prompts)
        )
        return pad(ids, self.opt_tokenizer.pad_token_id, left=left), ids

    def frozen_features(self, image, style_image=None):
        """image (B, 3, H, W), style_image (B, 3, H_cnn, W_cnn) or None -> {"vit_features": frozen ViT
        output (B, T, D_vit), before ln_vision (trainable), "style_features": frozen CNN pooled feature
        (B, F) fp32}: what the frozen-feature cache stores. The CNN reads style_image, the full image at its
        own size and normalisation (datasets/style_image.py), else the ViT's image (style_encoder.py)."""
        self.prepare_frozen_parts(image.device)
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
        self.prepare_frozen_parts(device)
        with self.frozen_autocast(self.vit_precision):
            image_embeds = self.ln_vision(vit_features)
        image_atts = torch.ones(image_embeds.size()[:-1], dtype=torch.long, device=device)
        with precision.autocast_off(device.type):
            image_style_logits = self.style_head(style_feature.float())
        with self.conditioned_on_style("qformer", style_feature, prompt_ids, prompt_mask):
            query_output = self.Qformer.bert(
                query_embeds=self.query_tokens.expand(image_embeds.shape[0], -1, -1),
                encoder_hidden_states=image_embeds,
                encoder_attention_mask=image_atts,
                return_dict=True,
            )
        return self.opt_proj(query_output.last_hidden_state), image_style_logits

    def conditioned_on_style(self, stage, style_feature, prompt_ids, prompt_mask):
        """The modulation's conditioning around `stage` ("qformer" or "opt"): a context manager, a no-op when
        the modulation acts at the other stage (style_prefix acts in OPT, every other kind in the Q-Former),
        there is none or it is bypassed."""
        modulation = self.kv_modulation
        acts_in = None if modulation is None else "opt" if modulation.site == "opt_self" else "qformer"
        if acts_in != stage or getattr(self, "_modulation_bypassed", False):
            return contextlib.nullcontext()
        return modulation.conditioned(self.modulation_params(style_feature, prompt_ids, prompt_mask))

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
        """LM loss on the target tokens only (answers of question rows, captions of caption rows), plus what
        the task's style terms need.

        Rows (text_inputs.row_texts): a question row's prompt is model.prompt on its question, and it keeps
        at most max_txt_len // 2 answer tokens, its prompt the rest of max_txt_len; a caption row's prompt is
        model.caption_prompt, counted apart, and it keeps at most max_caption_len caption tokens. Either
        target ends with the "\n" end token unless the budget cut it. The prompt is masked from the loss.

        Returns loss / lm_loss (scalar, the mean over target tokens), logits (B, T, V) fp32 predicting targets
        (B, T) (IGNORE where not a target token), image_style_logits (B, S), style_ids (B,) and, for the rows
        of samples["style_probe_rows"] (B,) bool if given, probe_name_log_probs (B, S) fp32: the style probe's
        log P(each style's name | image, probe prompt) (style_probe.py), 0 in the other rows.
        """
        frozen = self.image_inputs(samples)
        device = frozen["vit_features"].device
        questions, texts = text_inputs.row_texts(samples, training=True)
        captions = [q is None for q in questions]
        answers = text_inputs.target_ids(
            self.opt_tokenizer,
            texts,
            [self.max_caption_len if c else self.max_txt_len // 2 for c in captions],
            self.eos_token_id,
        )
        budgets = [
            text_inputs.UNLIMITED if c else self.max_txt_len - len(a) for c, a in zip(captions, answers)
        ]
        _, prompts = self.prompt_batch(samples, budgets, left=False, questions=questions)
        batch = len(prompts)
        # The probed rows ride along as extra rows of one Q-Former and one OPT pass: their image's frozen
        # features, the probe prompt and no target (style_probe.py). One pass of B + R rows costs less than a
        # pass of B rows and one of R, whose fixed cost is most of a small R's.
        probe_rows = [i for i, row in enumerate(samples.get("style_probe_rows") or []) if row]
        if probe_rows:
            index = torch.tensor(probe_rows, device=device)
            frozen = {key: torch.cat([value, value[index]]) for key, value in frozen.items()}
        prompts = prompts + [self.style_probe.prompt_ids] * len(probe_rows)
        answers = answers + [[]] * len(probe_rows)
        prompt_tokens, prompt_mask = (t.to(device) for t in pad(prompts, self.opt_tokenizer.pad_token_id))
        inputs_opt, image_style_logits = self.encode_image(frozen, prompt_tokens, prompt_mask)

        text = text_inputs.training_texts(
            prompts, answers, self.opt_tokenizer.pad_token_id, self.pad_multiple
        )
        text_ids, text_mask, targets = (t.to(device) for t in text)
        inputs_embeds = torch.cat([inputs_opt, self.opt_model.get_input_embeddings()(text_ids)], dim=1)
        prefix_mask = torch.ones(inputs_opt.shape[:2], dtype=torch.long, device=device)
        num_query = inputs_opt.shape[1]
        opt_conditioned = self.conditioned_on_style(  # style_prefix: the control tokens inside OPT
            "opt", frozen["style_features"], prompt_tokens, prompt_mask
        )
        with opt_conditioned, self.frozen_autocast(self.opt_precision):
            decoded = self.opt_model.model.decoder(
                inputs_embeds=inputs_embeds,
                attention_mask=torch.cat([prefix_mask, text_mask], dim=1),
                use_cache=bool(probe_rows),
                return_dict=True,
            )
            # position t predicts token t+1: the text's tokens are predicted from positions Q-1 .. Q+T-2, and
            # only those of the B rows go through the vocabulary projection (OPTForCausalLM.forward projects
            # every position)
            logits = self.opt_model.lm_head(decoded.last_hidden_state[:batch, num_query - 1 : -1]).float()
        targets = targets[:batch]
        lm_loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=text_inputs.IGNORE
        )
        probe = None
        if probe_rows:
            probe_ids, probe_mask = prompt_tokens[batch:], prompt_mask[batch:]
            in_opt = self.conditioned_on_style("opt", frozen["style_features"][batch:], probe_ids, probe_mask)
            with in_opt, self.frozen_autocast(self.opt_precision):
                scores = self.style_probe.name_log_probs(
                    self, decoded.past_key_values, decoded.last_hidden_state, batch, num_query
                )
            probe = scattered(scores, probe_rows, batch)
        image_style_logits = image_style_logits[:batch]
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
        |gamma_k|, |gamma_v|, |beta_v|; gate |tanh g_k|, |tanh g_v|; per-channel values averaged per head;
        adapter / style_query / style_prefix |tanh alpha| (the same for every sample)."""
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
        return self.kv_modulation.strength(params)

    @torch.no_grad()
    def style_probabilities(self, samples):
        """(B, S) the image style head's probabilities over self.vocabulary.names."""
        style_feature = self.image_inputs(samples)["style_features"]
        with precision.autocast_off(style_feature.device.type):
            return torch.softmax(self.style_head(style_feature.float()), -1)

    # ---- answers and captions (LAVIS's generate / predict_answers interface) -------------------------

    @torch.no_grad()
    def generate(
        self,
        samples,
        use_nucleus_sampling=False,
        num_beams=5,
        max_length=30,
        min_length=1,
        top_p=0.9,
        repetition_penalty=1.0,
        length_penalty=1.0,
        num_captions=1,
        temperature=1,
    ):
        """Answers/captions for samples["image"] (B, 3, H, W) (or its precomputed frozen features): an answer
        for a row with a question, a caption (after model.caption_prompt) for a row without one
        (text_inputs.row_texts); list of B * num_captions str. Prompts are left-padded, so each answer
        follows its prompt."""
        frozen = self.image_inputs(samples)
        device = frozen["vit_features"].device
        (input_ids, prompt_mask), _ = self.prompt_batch(samples)
        input_ids, prompt_mask = input_ids.to(device), prompt_mask.to(device)
        inputs_opt, _ = self.encode_image(frozen, input_ids, prompt_mask)
        attention_mask = torch.cat(
            [torch.ones(inputs_opt.shape[:2], dtype=torch.long, device=device), prompt_mask], 1
        )
        expand = num_captions if use_nucleus_sampling else num_beams
        opt_conditioned = self.conditioned_on_style("opt", frozen["style_features"], input_ids, prompt_mask)
        with opt_conditioned, self.frozen_autocast(self.opt_precision):
            outputs = self.opt_model.generate(
                input_ids=input_ids,
                query_embeds=inputs_opt.repeat_interleave(expand, dim=0),
                attention_mask=attention_mask,
                do_sample=use_nucleus_sampling,
                top_p=top_p,
                temperature=temperature,
                num_beams=1 if use_nucleus_sampling else num_beams,
                max_new_tokens=max_length,
                min_length=min_length,
                eos_token_id=self.eos_token_id,
                pad_token_id=self.opt_tokenizer.pad_token_id,
                repetition_penalty=repetition_penalty,
                length_penalty=length_penalty,
                num_return_sequences=num_captions,
                logits_processor=LogitsProcessorList([text_inputs.TokenizerIdsOnly(len(self.opt_tokenizer))]),
            )
        texts = self.opt_tokenizer.batch_decode(outputs[:, input_ids.shape[1] :], skip_special_tokens=True)
        return [t.strip() for t in texts]

    def predict_answers(
        self,
        samples,
        num_beams=5,
        inference_method="generate",
        max_len=10,
        min_len=1,
        num_ans_candidates=None,
        answer_list=None,
        prompt="",
        length_penalty=-1,
        **kwargs,
    ):
        """LAVIS's VQA interface: one generated answer per question in samples["text_input"] (a list, or one
        string for a batch of one)."""
        if inference_method != "generate":
            raise NotImplementedError(
                f"inference_method {inference_method!r}: blip2_opt_gated answers by generation"
            )
        if isinstance(samples.get("text_input"), str):
            samples = dict(samples, text_input=[samples["text_input"]])
        if prompt:
            samples = dict(samples, prompt=[prompt.format(q) for q in samples["text_input"]])
        return self.generate(
            samples,
            num_beams=num_beams,
            max_length=max_len,
            min_length=min_len,
            length_penalty=length_penalty,
        )

    # ---- LAVIS's model-loading entry points, with models/checkpoint_loading.py's rules ---------------

    @classmethod
    def default_config_path(cls, model_type):
        """A model type's YAML; a lavis-gated checkpoint path is a model type too (the model it was trained
        as, with its weights: load_model_and_preprocess("blip2_opt_gated", model_type=path))."""
        if is_checkpoint_path(model_type):
            return checkpoint_config(model_type, super().default_config_path)
        return super().default_config_path(model_type)

    @classmethod
    def type_config(cls, model_type):
        """A model type's whole model block (its YAML over the ModelConfig defaults), as an OmegaConf node."""
        settings = model_config(
            OmegaConf.load(cls.default_config_path(model_type)).model, where=str(model_type)
        )
        return OmegaConf.create(asdict(settings))

    @classmethod
    def from_checkpoint(cls, path, **model_settings):
        """The model a lavis-gated checkpoint was trained as, with its weights; model_settings override
        (e.g. vit_precision="fp32")."""
        cfg = OmegaConf.load(cls.default_config_path(path)).model
        return cls.from_config(OmegaConf.merge(cfg, model_settings))

    @staticmethod
    def check_config(cfg):
        """The model block's settings, checked (unknown keys are refused with the closest valid name)."""
        return model_config(cfg)

    @classmethod
    def from_config(cls, cfg):
        """Build from a model config; a `finetuned` checkpoint's style vocabulary wins over
        model.style_names."""
        config = model_config(cfg)
        finetuned = None
        if config.load_finetuned:
            if not config.finetuned:
                raise ValueError("model.load_finetuned is true but model.finetuned names no checkpoint")
            finetuned = read_checkpoint(config.finetuned, "model.finetuned")
            names = style_names_in_checkpoint(finetuned)
            config = replace(config, style_names=names or config.style_names)
        model = cls(config)
        model.load_checkpoint_from_config(config, finetuned_checkpoint=finetuned)
        return model

    def load_checkpoint_from_config(self, cfg, finetuned_checkpoint=None, **kwargs):
        """LAVIS's entry point: `pretrained` first (e.g. BLIP-2's Q-Former, which a run with freeze_qformer
        never saves), then, with load_finetuned, the `finetuned` checkpoint (its contents, when already
        read)."""
        config = cfg if isinstance(cfg, ModelConfig) else model_config(cfg)
        if config.pretrained:
            self.load_from_pretrained(config.pretrained)
        if config.load_finetuned:
            checkpoint = finetuned_checkpoint or read_checkpoint(config.finetuned, "model.finetuned")
            load_trained_state(self, checkpoint, config.finetuned)

    def load_from_pretrained(self, url_or_filename):
        """A BLIP-2 (or lavis-gated) checkpoint from a URL or file (LAVIS's method; checkpoint_loading's
        rules)."""
        checkpoint = read_checkpoint(url_or_filename, "model.pretrained")
        return load_trained_state(self, checkpoint, url_or_filename)

    def load_trained_state(self, checkpoint, source="checkpoint"):
        """Load a checkpoint dict already read (checkpoint_loading's rules); returns torch's
        missing/unexpected keys."""
        return load_trained_state(self, checkpoint, source)

    def load_checkpoint(self, url_or_filename):
        """A finetuned checkpoint (LAVIS's method name); its style vocabulary replaces the model's."""
        checkpoint = read_checkpoint(url_or_filename, "model.finetuned")
        return load_trained_state(self, checkpoint, url_or_filename)
