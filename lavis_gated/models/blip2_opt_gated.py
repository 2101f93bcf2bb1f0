"""blip2_opt_gated: LAVIS BLIP-2 OPT whose Q-Former cross-attention K/V are modulated by a style signal.

Parts and their attribute names are LAVIS Blip2OPT's (visual_encoder, ln_vision, Qformer, query_tokens,
opt_model, opt_proj), so BLIP-2 checkpoints load unchanged; the new modules are style_encoder (frozen
CNN), style_head, style_to_qformer, prompt_mapper, kv_modulation and, optionally, LoRA adapters inside
the Q-Former's cross-attention key/value projections.
"""
import contextlib
import logging
import os
import re

import torch
import torch.nn as nn
import torch.nn.functional as F
from lavis.common.registry import registry
from lavis.models.blip2_models.blip2 import LayerNorm, disabled_train
from lavis.models.blip2_models.blip2_opt import Blip2OPT
from omegaconf import OmegaConf
from transformers import LogitsProcessor, LogitsProcessorList

from lavis_gated.datasets.style_vocabulary import NO_STYLE, StyleVocabulary, normalise_style
from lavis_gated.models import backbones
from lavis_gated.models import precision as precision_policy
from lavis_gated.models.cross_attention_lora import add_cross_attention_lora, remap_plain_kv_keys
from lavis_gated.models.kv_modulation import KVModulation
from lavis_gated.models.prompt_mapper import PromptMapper
from lavis_gated.models.style_encoder import StyleEncoder

MODEL_CONFIG_DIR = os.path.join(backbones.PACKAGE_CONFIG_DIR, "models", "blip2_opt_gated")
STYLE_VOCAB_KEY = "style_vocabulary._extra_state"
# what a batch may carry instead of "image": the frozen parts' outputs (see frozen_features, feature_cache)
FROZEN_FEATURE_KEYS = ("vit_features", "style_features")
# keys of BLIP-2 checkpoints (stage 1) for parts that Blip2OPT sets to None or never builds (blip2_opt.py:69-74)
UNUSED_BLIP2_KEYS = re.compile(
    r"^(Qformer\.cls\.|Qformer\.bert\.embeddings\.(word|position)_embeddings\."
    r"|Qformer\.bert\.encoder\.layer\.\d+\.(intermediate|output)\.|(vision_proj|text_proj|itm_head)\.|temp$)"
)


class _StyleVocabularyState(nn.Module):
    """Carries the style names in the model's state dict, so they travel with every checkpoint."""

    def __init__(self, vocabulary: StyleVocabulary):
        super().__init__()
        self.vocabulary = vocabulary

    def get_extra_state(self):
        return {"names": list(self.vocabulary.names)}

    def set_extra_state(self, state):
        if list(state["names"]) != self.vocabulary.names:
            raise ValueError(
                f"checkpoint style vocabulary {state['names']} differs from the model's {self.vocabulary.names}; "
                "build the model with the checkpoint's model.style_names"
            )


def style_names_in_checkpoint(checkpoint):
    """Style names stored in a lavis-gated checkpoint dict, or None."""
    state = checkpoint.get("model", checkpoint)
    if STYLE_VOCAB_KEY in state:
        return list(state[STYLE_VOCAB_KEY]["names"])
    names = checkpoint.get("config", {}).get("model", {}).get("style_names")
    return list(names) if names else None


def _answer_tpu_probe_once():
    """Let torch.compile trace the Q-Former in one graph.

    Its forward reads `self.dtype` (Qformer.py:799), and transformers 4.26's get_parameter_dtype then calls
    is_torch_tpu_available(), whose importlib.util.find_spec is untraceable: with torch 2.11 every call was a
    graph break. The answer cannot change within a process, so modeling_utils gets a function returning it.
    """
    import transformers.modeling_utils as modeling_utils

    probe = modeling_utils.is_torch_tpu_available
    if getattr(probe, "answered_once", False):
        return
    answer = probe()

    def is_torch_tpu_available(check_device=True):
        return answer

    is_torch_tpu_available.answered_once = True
    modeling_utils.is_torch_tpu_available = is_torch_tpu_available


def batch_size_of(samples):
    """Rows in a batch that carries images or their precomputed frozen features."""
    return (samples["image"] if "image" in samples else samples[FROZEN_FEATURE_KEYS[0]]).shape[0]


def _count_by_module(keys):
    """{"style_encoder": 122, ...}: a readable summary of a long key list."""
    counts = {}
    for key in keys:
        counts[key.split(".")[0]] = counts.get(key.split(".")[0], 0) + 1
    return counts


def _pad(sequences, pad_id, left=False, multiple=1):
    """List of id lists -> (ids (B, T), mask (B, T)) padded on the right, or the left for generation;
    T is the longest sequence rounded up to a multiple of `multiple`."""
    length = -(-max(len(s) for s in sequences) // multiple) * multiple
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, seq in enumerate(sequences):
        span = slice(length - len(seq), length) if left else slice(0, len(seq))
        ids[row, span] = torch.tensor(seq, dtype=torch.long)
        mask[row, span] = 1
    return ids, mask


class TokenizerIdsOnly(LogitsProcessor):
    """Generation never emits an id the tokenizer lacks: OPT's embedding has more rows than its tokenizer has
    tokens (50272 for 50265), batch_decode cannot turn the extra ids into text, and a random or briefly
    trained OPT may score them highest. scores (B, V) -> the same, -inf from column `size` on."""

    def __init__(self, size):
        self.size = size

    def __call__(self, input_ids, scores):
        scores[:, self.size:] = -float("inf")
        return scores


def _with_defaults(name, given, defaults):
    """A config block merged over its defaults; an unknown (e.g. misspelt) key is an error, not ignored."""
    unknown = sorted(set(given or {}) - set(defaults))
    if unknown:
        raise KeyError(f"model.{name}: unknown keys {unknown}; known: {sorted(defaults)}")
    return {**defaults, **(given or {})}


@registry.register_model("blip2_opt_gated")
class Blip2OPTGated(Blip2OPT):
    """BLIP-2 OPT + frozen style CNN + PromptMapper + K/V modulation of the Q-Former cross-attention.

    Model types: LAVIS's four BLIP-2 OPT types, with their dimensions, sources and defaults (EVA ViT-g,
    OPT-2.7B or OPT-6.7B, BLIP-2 pretrained or COCO-caption finetuned weights) plus an EfficientNet-B3 WikiArt
    checkpoint, and `tiny` (same code, toy sizes, random weights, offline).
    """

    PRETRAINED_MODEL_CONFIG_DICT = {
        name: os.path.join(MODEL_CONFIG_DIR, f"{name}.yaml")
        for name in ("pretrain_opt2.7b", "pretrain_opt6.7b", "caption_coco_opt2.7b", "caption_coco_opt6.7b",
                     "tiny")
    }

    def __init__(
        self,
        style_names,
        vit_model="eva_clip_g",
        vit_weights=backbones.EVA_VIT_G_URL,
        img_size=224,
        drop_path_rate=0,
        use_grad_checkpoint=False,
        vit_precision="fp16",
        freeze_vit=True,
        num_query_token=32,
        cross_attention_freq=2,
        qformer_bert="bert-base-uncased",
        qformer_random_init=False,
        freeze_qformer=False,
        opt_model="facebook/opt-2.7b",
        opt_random_init=False,
        opt_precision="fp16",
        prompt="Question: {} Answer:",
        max_txt_len=32,
        style_encoder=None,
        prompt_mapper=None,
        gating=None,
        lora=None,
        random_init_seed=0,
        compile_mode=None,
    ):
        # Blip2OPT.__init__ fetches hub names and a fixed URL (blip2.py:32-76, blip2_opt.py:77-78);
        # the same parts are built here from config values, under the same attribute names.
        super(Blip2OPT, self).__init__()
        gating = _with_defaults("gating", gating, {"type": "film", "per_head": True, "hidden_dim": 256, "init_scale": 0.0})
        lora = _with_defaults("lora", lora, {"enabled": False, "rank": 8, "alpha": 16, "dropout": 0.05})

        with backbones.loading_source("model.qformer_bert", qformer_bert):
            self.tokenizer = backbones.build_bert_tokenizer(qformer_bert)
        with backbones.seeded(random_init_seed), backbones.loading_source("model.vit_weights", vit_weights):
            self.visual_encoder = backbones.build_vision_encoder(
                vit_model, img_size, drop_path_rate, use_grad_checkpoint, vit_precision, vit_weights
            )
        self.ln_vision = LayerNorm(self.visual_encoder.num_features)
        if freeze_vit:
            self._freeze(self.visual_encoder)
            self.visual_encoder = self.visual_encoder.eval()
            self.visual_encoder.train = disabled_train

        with backbones.seeded(random_init_seed + 3), backbones.loading_source("model.qformer_bert", qformer_bert):
            self.Qformer, self.query_tokens = backbones.build_qformer(
                qformer_bert, num_query_token, self.visual_encoder.num_features, cross_attention_freq, qformer_random_init
            )
        self.Qformer.cls = None
        self.Qformer.bert.embeddings.word_embeddings = None
        self.Qformer.bert.embeddings.position_embeddings = None
        for layer in self.Qformer.bert.encoder.layer:
            layer.output = None
            layer.intermediate = None
        if freeze_qformer:
            self._freeze(self.Qformer)
            self.query_tokens.requires_grad = False

        with backbones.seeded(random_init_seed + 1), backbones.loading_source("model.opt_model", opt_model):
            self.opt_tokenizer, self.opt_model = backbones.build_opt(opt_model, opt_precision, opt_random_init)
        self._freeze(self.opt_model)
        self.eos_token_id = self.opt_tokenizer("\n", add_special_tokens=False).input_ids[0]
        qformer_width = self.Qformer.config.hidden_size
        self.opt_proj = nn.Linear(qformer_width, self.opt_model.config.hidden_size)
        self.max_txt_len = max_txt_len
        self.prompt = prompt
        self.vit_precision, self.opt_precision = vit_precision, opt_precision

        vocabulary = StyleVocabulary(style_names)
        self.style_vocabulary = _StyleVocabularyState(vocabulary)
        style_encoder = style_encoder or {}
        with backbones.seeded(random_init_seed + 2), \
                backbones.loading_source("model.style_encoder.checkpoint", style_encoder.get("checkpoint")):
            self.style_encoder = StyleEncoder(**style_encoder)
        self.style_head = nn.Linear(self.style_encoder.num_features, len(vocabulary))
        self._init_style_head_from_classifier()
        token_ids = vocabulary.token_ids(self.opt_tokenizer)
        style_tokens, style_token_mask = _pad(token_ids, pad_id=0)
        self.register_buffer("style_tokens", style_tokens, persistent=False)  # (S, L) token ids per style
        self.register_buffer("style_token_mask", style_token_mask.bool(), persistent=False)
        # (K,) sorted ids of every style token, once: the style losses' token set, not computed per step (with
        # torch.unique, that step would wait for the GPU, and shapes could not be checked on the meta device)
        style_token_set = torch.tensor(sorted({t for ids in token_ids for t in ids}), dtype=torch.long)
        self.register_buffer("style_token_set", style_token_set, persistent=False)

        self.gating_type = gating["type"]
        self.kv_modulation = None
        if self.gating_type != "none":
            mapper = _with_defaults("prompt_mapper", prompt_mapper,
                                    {"num_tokens": 4, "hidden_size": 256, "num_heads": 4, "dropout": 0.1})
            self.style_to_qformer = nn.Linear(self.style_encoder.num_features, qformer_width)
            self.prompt_mapper = PromptMapper(
                style_dim=qformer_width, prompt_dim=self.opt_model.get_input_embeddings().embedding_dim, **mapper
            )
            self.kv_modulation = KVModulation(
                control_dim=mapper["hidden_size"],
                num_control_tokens=mapper["num_tokens"],
                num_layers=len(self._cross_attention_layers()),
                num_heads=self.Qformer.config.num_attention_heads,
                width=qformer_width,
                gating_type=self.gating_type,
                per_head=gating["per_head"],
                hidden_dim=gating["hidden_dim"],
                init_scale=gating["init_scale"],
            )
        if lora["enabled"]:
            adapted = add_cross_attention_lora(self.Qformer, lora["rank"], lora["alpha"], lora["dropout"])
            logging.info("LoRA on %d cross-attention projections", len(adapted))
            self._register_load_state_dict_pre_hook(self._accept_plain_kv_keys)
        if self.kv_modulation is not None:
            self.kv_modulation.attach(
                [(layer.crossattention.self.key, layer.crossattention.self.value) for layer in self._cross_attention_layers()]
            )
        self.pad_multiple = 1
        if compile_mode:
            self.compile_trainable_path(mode=compile_mode)

    def compile_trainable_path(self, **options):
        """torch.compile(**options) the Q-Former and each OPT decoder layer, in place (state-dict keys unchanged).

        Small-batch BLIP-2 steps on a GPU are bound by kernel launches and Python overhead, not arithmetic;
        compiled (fused kernels; with mode="reduce-overhead", CUDA graphs) they launch far fewer kernels.
        OPT is compiled layer by layer because LAVIS's decoder loop draws a Python random number for LayerDrop
        (modeling_opt.py:741-742), a data-dependent branch that would split one whole-model graph anyway; the
        layers share one compiled graph. Training texts are padded to a multiple of 8 tokens, so that only a
        few shapes are compiled (the padding is masked: losses do not change).
        """
        _answer_tpu_probe_once()
        self.Qformer.bert.compile(**options)
        for layer in self.opt_model.model.decoder.layers:
            layer.compile(**options)
        self.pad_multiple = 8

    def _init_style_head_from_classifier(self):
        """Start the style head's row for each style the CNN was trained to classify from that class's
        classifier row (matched by normalised name); the other rows keep their random initialisation."""
        classifier = self.style_encoder.classifier
        if classifier is None:
            return
        rows = {normalise_style(name): row for row, name in enumerate(classifier.class_names)}
        matched = [(i, rows[name]) for i, name in enumerate(self.vocabulary.names) if name in rows]
        with torch.no_grad():
            for style_id, row in matched:
                self.style_head.weight[style_id] = classifier.weight[row]
                self.style_head.bias[style_id] = classifier.bias[row]
        logging.info("style head: %d of %d styles start from the CNN classifier's rows: %s; unmatched: %s",
                     len(matched), len(self.vocabulary), [self.vocabulary.names[i] for i, _ in matched],
                     [n for n in self.vocabulary.names if n not in rows])

    @staticmethod
    def _freeze(module):
        for p in module.parameters():
            p.requires_grad = False

    def _cross_attention_layers(self):
        return [layer for layer in self.Qformer.bert.encoder.layer if layer.has_cross_attention]

    @property
    def device(self):
        """The first parameter's device, as LAVIS's BaseModel.device, without listing every parameter first
        (that takes about 1 ms per call at `mid` size and 2.6 ms at full size, on each training step)."""
        return next(self.parameters()).device

    def _accept_plain_kv_keys(self, state_dict, prefix, *args):
        remap_plain_kv_keys(state_dict, prefix, set(self.state_dict().keys()))

    def frozen_autocast(self, precision):
        """The autocast a frozen part stored in `precision` computes under on this device (precision.py)."""
        return precision_policy.frozen_autocast(precision, self.device.type)

    def _frozen_parts_to_fp32_on_cpu(self, device):
        """Frozen ViT/OPT stored in fp16 (for CUDA) run in fp32 on CPU, converted once on first use, as
        LAVIS's load_model_and_preprocess does with model.float() on CPU; bf16 parts stay bf16
        (precision.py)."""
        for part, attribute in ((self.visual_encoder, "vit_precision"), (self.opt_model, "opt_precision")):
            if precision_policy.converted_to_fp32_on(device.type, getattr(self, attribute)):
                logging.info("on CPU: %s stored in fp16 converted to fp32", type(part).__name__)
                part.float()
                setattr(self, attribute, "fp32")

    @staticmethod
    def _fp32(device):
        """A block whose ops run in fp32 even under autocast (the small trainable style modules)."""
        return precision_policy.autocast_off(device.type)

    @property
    def vocabulary(self) -> StyleVocabulary:
        return self.style_vocabulary.vocabulary

    # ---- text ---------------------------------------------------------------------------------

    def format_prompts(self, samples):
        """Per-sample prompt strings: samples["prompt"] verbatim if given, else the template on each question."""
        batch_size = batch_size_of(samples)
        if "prompt" in samples:
            prompt = samples["prompt"]
            return [prompt] * batch_size if isinstance(prompt, str) else list(prompt)
        if "text_input" in samples:
            return [self.prompt.format(q) for q in samples["text_input"]]
        return [self.prompt.replace("{}", "").strip()] * batch_size

    def _prompt_ids(self, prompts, budgets):
        """Token ids per prompt (with BOS) within its budget; an over-long prompt keeps BOS and its tail
        ("... Answer:")."""
        ids = [self.opt_tokenizer(p).input_ids for p in prompts]
        return [s if len(s) <= b else s[:1] + s[len(s) - b + 1:] for s, b in zip(ids, budgets)]

    def _answer_ids(self, answers):
        """Target ids per answer: " <answer>" then the "\n" end token (as LAVIS's blip2_opt)."""
        limit = self.max_txt_len // 2  # the prompt keeps at least half of the budget
        return [self.opt_tokenizer(" " + a.strip(), add_special_tokens=False).input_ids[:limit] + [self.eos_token_id]
                for a in answers]

    # ---- image side -----------------------------------------------------------------------------

    def _modulation(self, style_feature, prompt_ids, prompt_mask):
        """A context in which the Q-Former's cross-attention K/V are modulated for this batch."""
        if self.kv_modulation is None:
            return contextlib.nullcontext()
        prompt_embeds = self.opt_model.get_input_embeddings()(prompt_ids).float()
        with self._fp32(style_feature.device):
            control = self.prompt_mapper(self.style_to_qformer(style_feature), prompt_embeds, prompt_mask)
            params = self.kv_modulation(control)
        return self.kv_modulation.conditioned(params)

    def frozen_features(self, image):
        """image (B, 3, H, W) -> {"vit_features": frozen ViT output (B, T, D_vit), before ln_vision (trainable),
        "style_features": frozen CNN pooled feature (B, F) fp32}.

        Only the frozen parts: what the frozen-feature cache stores, so a batch that carries these instead of
        "image" trains exactly as if its images were encoded here.
        """
        self._frozen_parts_to_fp32_on_cpu(image.device)
        with self.frozen_autocast(self.vit_precision):
            vit_features = self.visual_encoder(image)
        return {"vit_features": vit_features, "style_features": self.style_encoder(image)}

    def image_inputs(self, samples):
        """The batch's frozen features: precomputed ones if it carries them, else frozen_features(samples["image"])."""
        if FROZEN_FEATURE_KEYS[0] in samples:
            return {key: samples[key] for key in FROZEN_FEATURE_KEYS}
        return self.frozen_features(samples["image"])

    def encode_image(self, frozen, prompt_ids, prompt_mask):
        """frozen: frozen_features() of the batch; prompt ids/mask (B, T)
        -> (OPT prefix (B, Q, D_opt), style logits (B, S) fp32)."""
        vit_features, style_feature = frozen["vit_features"], frozen["style_features"]
        device = vit_features.device
        self._frozen_parts_to_fp32_on_cpu(device)
        with self.frozen_autocast(self.vit_precision):
            image_embeds = self.ln_vision(vit_features)
        image_atts = torch.ones(image_embeds.size()[:-1], dtype=torch.long, device=device)
        with self._fp32(device):
            image_style_logits = self.style_head(style_feature)
        query_tokens = self.query_tokens.expand(image_embeds.shape[0], -1, -1)
        with self._modulation(style_feature, prompt_ids, prompt_mask):
            query_output = self.Qformer.bert(
                query_embeds=query_tokens,
                encoder_hidden_states=image_embeds,
                encoder_attention_mask=image_atts,
                return_dict=True,
            )
        return self.opt_proj(query_output.last_hidden_state), image_style_logits

    def style_ids(self, samples, device):
        """(B,) style id per sample from samples["style"] names; NO_STYLE where missing or unknown."""
        names = samples.get("style") or [None] * batch_size_of(samples)
        return torch.tensor(self.vocabulary.ids(names), dtype=torch.long, device=device)

    # ---- training -------------------------------------------------------------------------------

    def forward(self, samples):
        """LM loss on the answer tokens only, plus what the task's style terms need.

        Returns loss / lm_loss (scalar), logits (B, T, V) fp32 predicting targets (B, T) (-100 where not
        an answer token), image_style_logits (B, S) and style_ids (B,).
        """
        frozen = self.image_inputs(samples)
        device = frozen["vit_features"].device
        answer_ids = self._answer_ids(samples["answer"])
        prompt_ids = self._prompt_ids(self.format_prompts(samples), [self.max_txt_len - len(a) for a in answer_ids])
        prompt_tokens, prompt_mask = (t.to(device) for t in _pad(prompt_ids, self.opt_tokenizer.pad_token_id))
        inputs_opt, image_style_logits = self.encode_image(frozen, prompt_tokens, prompt_mask)

        text_ids, text_mask = _pad([p + a for p, a in zip(prompt_ids, answer_ids)], self.opt_tokenizer.pad_token_id,
                                   multiple=self.pad_multiple)
        targets = torch.full_like(text_ids, -100)
        for row, (p, a) in enumerate(zip(prompt_ids, answer_ids)):  # on the host: no small copies on the device
            targets[row, len(p):len(p) + len(a)] = text_ids[row, len(p):len(p) + len(a)]
        text_ids, text_mask, targets = (t.to(device) for t in (text_ids, text_mask, targets))

        inputs_embeds = torch.cat([inputs_opt, self.opt_model.get_input_embeddings()(text_ids)], dim=1)
        attention_mask = torch.cat([torch.ones(inputs_opt.shape[:2], dtype=torch.long, device=device), text_mask], dim=1)
        num_query = inputs_opt.shape[1]
        with self.frozen_autocast(self.opt_precision):
            hidden = self.opt_model.model.decoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                                  return_dict=True).last_hidden_state
            # position t predicts token t+1: the text's tokens are predicted from positions Q-1 .. Q+T-2, and
            # only those go through the vocabulary projection (OPTForCausalLM.forward projects every position)
            logits = self.opt_model.lm_head(hidden[:, num_query - 1:-1]).float()
        lm_loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
        return {
            "loss": lm_loss,
            "lm_loss": lm_loss,
            "logits": logits,
            "targets": targets,
            "image_style_logits": image_style_logits,
            "style_ids": self.style_ids(samples, device),
        }

    # ---- generation -----------------------------------------------------------------------------

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
        """Answers/captions for samples["image"] (B, 3, H, W) (or its precomputed frozen features) and their
        questions; list of B * num_captions str.

        Prompts of different lengths are left-padded so every sample's answer starts right after its prompt.
        """
        frozen = self.image_inputs(samples)
        device = frozen["vit_features"].device
        prompts = self.format_prompts(samples)
        prompt_ids = self._prompt_ids(prompts, [self.max_txt_len] * len(prompts))
        input_ids, prompt_mask = (t.to(device) for t in _pad(prompt_ids, self.opt_tokenizer.pad_token_id, left=True))
        inputs_opt, _ = self.encode_image(frozen, input_ids, prompt_mask)
        attention_mask = torch.cat([torch.ones(inputs_opt.shape[:2], dtype=torch.long, device=device), prompt_mask], 1)
        expand = num_captions if use_nucleus_sampling else num_beams
        with self.frozen_autocast(self.opt_precision):
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
                logits_processor=LogitsProcessorList([TokenizerIdsOnly(len(self.opt_tokenizer))]),
            )
        texts = self.opt_tokenizer.batch_decode(outputs[:, input_ids.shape[1]:], skip_special_tokens=True)
        return [t.strip() for t in texts]

    def predict_answers(self, samples, num_beams=5, inference_method="generate", max_len=10, min_len=1,
                        num_ans_candidates=None, answer_list=None, prompt="", length_penalty=-1, **kwargs):
        """LAVIS's VQA interface: one generated answer per question in samples["text_input"]."""
        if inference_method != "generate":
            raise NotImplementedError(f"inference_method {inference_method!r}: blip2_opt_gated answers by generation")
        if prompt:
            samples = dict(samples, prompt=[prompt.format(q) for q in samples["text_input"]])
        return self.generate(samples, num_beams=num_beams, max_length=max_len, min_length=min_len,
                             length_penalty=length_penalty)

    # ---- construction ---------------------------------------------------------------------------

    CONFIG_KEYS = (
        "vit_model", "vit_weights", "drop_path_rate", "use_grad_checkpoint", "vit_precision", "freeze_vit",
        "num_query_token", "cross_attention_freq", "qformer_bert", "qformer_random_init", "freeze_qformer",
        "opt_model", "opt_random_init", "opt_precision", "prompt", "max_txt_len",
        "style_encoder", "prompt_mapper", "gating", "lora", "random_init_seed", "compile_mode",
    )

    @classmethod
    def from_config(cls, cfg):
        """Build from a model config; a `finetuned` checkpoint's style vocabulary wins over model.style_names."""
        cfg = OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg
        kwargs = {k: OmegaConf.to_container(cfg[k]) if OmegaConf.is_config(cfg[k]) else cfg[k]
                  for k in cls.CONFIG_KEYS if k in cfg}
        kwargs["img_size"] = cfg.get("image_size", 224)
        finetuned = None
        if cfg.get("load_finetuned", False):
            if not cfg.get("finetuned"):
                raise ValueError("model.load_finetuned is true but model.finetuned names no checkpoint")
            with backbones.loading_source("model.finetuned", cfg.finetuned):
                finetuned = cls.read_checkpoint(cfg.finetuned)
        names = (finetuned and style_names_in_checkpoint(finetuned)) or cfg.get("style_names")
        if not names:
            raise ValueError("model.style_names is empty and no checkpoint provides a style vocabulary")
        model = cls(style_names=list(names), **kwargs)
        model.load_checkpoint_from_config(cfg, finetuned_checkpoint=finetuned)
        return model

    def load_checkpoint_from_config(self, cfg, finetuned_checkpoint=None, **kwargs):
        """LAVIS's entry point, loading `pretrained` first (e.g. BLIP-2's Q-Former, which a run with
        freeze_qformer never saves) and then, with load_finetuned, the `finetuned` checkpoint on top
        (`finetuned_checkpoint`: that file's contents, when already read)."""
        if cfg.get("pretrained"):
            self.load_from_pretrained(cfg.pretrained)
        if cfg.get("load_finetuned", False):
            if finetuned_checkpoint is None:
                self.load_checkpoint(cfg.finetuned)
            else:
                self.load_trained_state(finetuned_checkpoint, cfg.finetuned)

    def load_from_pretrained(self, url_or_filename):
        """A BLIP-2 (or lavis-gated) checkpoint from a URL or local file: LAVIS's method, without
        executing pickled code and with every key accounted for."""
        with backbones.loading_source("model.pretrained", url_or_filename):
            checkpoint = self.read_checkpoint(url_or_filename)
        return self.load_trained_state(checkpoint, url_or_filename)

    def load_checkpoint(self, url_or_filename):
        """A finetuned checkpoint (LAVIS's method name; same loading rules as load_from_pretrained)."""
        with backbones.loading_source("model.finetuned", url_or_filename):
            checkpoint = self.read_checkpoint(url_or_filename)
        return self.load_trained_state(checkpoint, url_or_filename)

    @staticmethod
    def read_checkpoint(url_or_path):
        """A checkpoint dict from a URL or local file, loaded without executing any pickled code."""
        return backbones.load_weights_file(url_or_path)

    def new_module_names(self):
        """Top-level modules that BLIP-2 does not have."""
        return ("style_vocabulary", "style_encoder", "style_head", "style_to_qformer", "prompt_mapper", "kv_modulation")

    def load_trained_state(self, checkpoint, source="checkpoint"):
        """Load a LAVIS/BLIP-2 or lavis-gated checkpoint dict (plain, or under "model").

        Keys unknown to the model are an error, except the parts of a BLIP-2 stage-1 checkpoint that
        Blip2OPT itself drops (Q-Former text branch, ITC/ITM heads), which are listed and ignored.
        Missing keys are logged by module: the new modules, and frozen parts a trainable-only checkpoint
        (what LAVIS's runner saves) leaves out.
        """
        state_dict = checkpoint.get("model", checkpoint)
        unused = [k for k in state_dict if UNUSED_BLIP2_KEYS.match(k)]
        if unused:
            state_dict = {k: v for k, v in state_dict.items() if k not in set(unused)}
            logging.info("%s: %d keys of BLIP-2 parts that blip2_opt does not use are ignored (%s ...)",
                         source, len(unused), unused[:3])
        incompatible = self.load_state_dict(state_dict, strict=False)
        if incompatible.unexpected_keys:
            raise ValueError(f"{source}: {len(incompatible.unexpected_keys)} keys unknown to blip2_opt_gated: "
                             f"{incompatible.unexpected_keys[:20]}")
        missing = incompatible.missing_keys
        new = [k for k in missing if k.split(".")[0] in self.new_module_names()]
        # remove_duplicate=False also names tied aliases (OPT's lm_head.weight is embed_tokens.weight).
        frozen = {n for n, p in self.named_parameters(remove_duplicate=False) if not p.requires_grad}
        missing_frozen = [k for k in missing if k not in new and k in frozen]
        missing_trainable = [k for k in missing if k not in new and k not in frozen]
        logging.info("loaded %s: %d keys; new modules not in it: %s; frozen keys not in it: %d (%s); "
                     "other trainable keys not in it: %s", source, len(state_dict), _count_by_module(new),
                     len(missing_frozen), _count_by_module(missing_frozen), missing_trainable)
        logging.debug("new-module keys not in %s: %s", source, new)
        return incompatible

    # ---- inspection (read-only; evaluation's modulation heatmap) --------------------------------

    @torch.no_grad()
    def modulation_strength(self, samples):
        """How far each cross-attention layer's K/V modulation moves away from identity, per head.

        Returns (B, L, P, H) or None when gating.type is none. P rows: FiLM |gamma_k|, |gamma_v|, |beta_v|;
        gate |tanh g_k|, |tanh g_v|. Per-channel parameters are averaged over each head's channels. The
        parameters are those generate() conditions the Q-Former with (prompts without answers).
        """
        if self.kv_modulation is None:
            return None
        style_feature = samples["style_features"] if "style_features" in samples else self.style_encoder(samples["image"])
        prompts = self.format_prompts(samples)
        prompt_ids = self._prompt_ids(prompts, [self.max_txt_len] * len(prompts))
        ids, mask = (t.to(style_feature.device) for t in _pad(prompt_ids, self.opt_tokenizer.pad_token_id, left=True))
        control = self.prompt_mapper(self.style_to_qformer(style_feature),
                                     self.opt_model.get_input_embeddings()(ids), mask)
        params = self.kv_modulation(control)  # (B, L, P, units)
        deviation = params.abs() if self.kv_modulation.gating_type == "film" else torch.tanh(params).abs()
        return deviation.view(*deviation.shape[:3], self.kv_modulation.num_heads, -1).mean(-1)
