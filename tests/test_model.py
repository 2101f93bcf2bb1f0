"""blip2_opt_gated (tiny): offline construction, frozen parts, identity at init, gating variants, LoRA."""

import re

import pytest
import torch
from helpers.tiny_model import STYLES, batch, build_tiny
from lavis.common.registry import registry
from lavis.models import load_model_and_preprocess
from omegaconf import OmegaConf

import lavis_gated  # noqa: F401  (registration)
from lavis_gated.models.text_inputs import format_prompts
from lavis_gated.styles import identifying_tokens


def qformer_output(model, samples, prompts):
    ids = [model.opt_tokenizer(p).input_ids for p in prompts]
    length = max(map(len, ids))
    tokens = torch.tensor([s + [model.opt_tokenizer.pad_token_id] * (length - len(s)) for s in ids])
    mask = torch.tensor([[1] * len(s) + [0] * (length - len(s)) for s in ids])
    with torch.no_grad():
        return model.encode_image(model.frozen_features(samples["image"]), tokens, mask)[0]


@pytest.fixture(scope="module")
def tiny():
    return build_tiny()


def test_load_model_and_preprocess_offline():
    model, vis_processors, txt_processors = load_model_and_preprocess(
        "blip2_opt_gated", model_type="tiny", is_eval=True
    )
    assert type(model).__name__ == "Blip2OPTGated"
    assert not model.training
    assert set(vis_processors) == {"train", "eval"} and set(txt_processors) == {"train", "eval"}
    from PIL import Image

    image = vis_processors["eval"](Image.new("RGB", (64, 64), (200, 30, 30))).unsqueeze(0)
    answers = model.generate(
        {"image": image, "text_input": [txt_processors["eval"]("What style?")]}, num_beams=2, max_length=3
    )
    assert len(answers) == 1 and isinstance(answers[0], str)


def test_frozen_parts_get_no_gradient(tiny):
    tiny.train()
    tiny.zero_grad(set_to_none=True)
    tiny(batch())["loss"].backward()
    for name, module in [("ViT", tiny.visual_encoder), ("OPT", tiny.opt_model), ("CNN", tiny.style_encoder)]:
        params = list(module.parameters())
        assert params and all(not p.requires_grad for p in params), name
        assert all(p.grad is None for p in params), f"{name} received a gradient"
    assert tiny.opt_proj.weight.grad is not None and tiny.query_tokens.grad is not None
    assert tiny.kv_modulation.net[-1].weight.grad.abs().sum() > 0, (
        "the zero-initialised modulation must still learn"
    )


def test_loss_covers_answer_tokens_only(tiny):
    out = tiny(batch())
    targets = out["targets"]
    for row, answer in enumerate(batch()["answer"]):
        answer_ids = tiny.opt_tokenizer(" " + answer, add_special_tokens=False).input_ids + [
            tiny.eos_token_id
        ]
        assert targets[row][targets[row] != -100].tolist() == answer_ids


def test_fresh_modulation_ignores_style_input(tiny):
    tiny.eval()
    samples = batch()
    a = qformer_output(tiny, samples, ["Question: what style is this painting Answer:"] * 4)
    b = qformer_output(tiny, samples, ["Question: which shape is it Answer:"] * 4)
    assert torch.equal(a, b)
    plain = build_tiny(gating={"type": "none"})
    plain.load_state_dict(tiny.state_dict(), strict=False)
    plain.eval()
    assert torch.equal(
        a, qformer_output(plain, samples, ["Question: what style is this painting Answer:"] * 4)
    )


def test_perturbed_modulation_depends_on_style_input():
    model = build_tiny()
    model.eval()
    with torch.no_grad():
        model.kv_modulation.net[-1].weight.normal_(std=0.5)
    samples = batch()
    a = qformer_output(model, samples, ["Question: what style is this painting Answer:"] * 4)
    b = qformer_output(model, samples, ["Question: which shape is it Answer:"] * 4)
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("gating_type", ["film", "gate"])
@pytest.mark.parametrize("per_head", [True, False])
def test_each_gating_variant_trains_a_step(gating_type, per_head):
    model = build_tiny(gating={"type": gating_type, "per_head": per_head})
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    last = model.kv_modulation.net[-1].weight
    units = model.Qformer.config.num_attention_heads if per_head else model.Qformer.config.hidden_size
    assert last.shape[0] == len(model.cross_attention_layers()) * (3 if gating_type == "film" else 2) * units
    before = last.detach().clone()
    loss = model(batch())["loss"]
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    assert not torch.equal(before, last.detach()), "the modulation did not move"
    model.eval()
    a = qformer_output(model, batch(), ["Question: what style Answer:"] * 4)
    b = qformer_output(model, batch(), ["Question: which shape Answer:"] * 4)
    assert not torch.allclose(a, b), "after a step the Q-Former output should depend on the prompt"


@pytest.mark.parametrize("gating_type", ["adapter", "style_query", "style_prefix"])
def test_each_control_attention_variant_trains_a_step(gating_type):
    """One gate per layer and head where each kind reads the control tokens; it opens in one step (its
    gradient at alpha = 0 is not zero), and then the answer loss depends on the control path."""
    model = build_tiny(gating={"type": gating_type})
    layers = {
        "adapter": (len(model.cross_attention_layers()), model.Qformer.config.num_attention_heads),
        "style_query": (len(model.Qformer.bert.encoder.layer), model.Qformer.config.num_attention_heads),
        "style_prefix": (
            len(model.opt_model.model.decoder.layers),
            model.opt_model.config.num_attention_heads,
        ),
    }
    alpha = model.kv_modulation.alpha
    assert tuple(alpha.shape) == layers[gating_type] and not alpha.any()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = model(batch())["loss"]
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    assert alpha.detach().abs().min() > 0, "every gate should have moved"
    model.eval()
    with torch.no_grad():
        with model.modulation_bypassed():
            plain = model(batch())["lm_loss"]
        # bypassed is exactly the BLIP-2 path, so any difference at all comes through the opened gates
        assert plain.item() != model(batch())["lm_loss"].item()
    strength = model.modulation_strength(batch())
    assert strength.shape == (4, *layers[gating_type][:1], 1, layers[gating_type][1])


def test_gating_none_has_no_modulation():
    model = build_tiny(gating={"type": "none"})
    assert model.kv_modulation is None
    assert not any(n.startswith(("prompt_mapper", "style_to_qformer")) for n, _ in model.named_parameters())
    assert torch.isfinite(model(batch())["loss"])


def test_lora_only_on_cross_attention_key_value():
    model = build_tiny(lora={"enabled": True})
    lora = [n for n, p in model.named_parameters() if "lora_" in n]
    assert lora, "no LoRA parameters"
    assert all(re.search(r"crossattention\.self\.(key|value)\.lora_[AB]\.", n) for n in lora), lora
    layers = {re.search(r"layer\.(\d+)\.crossattention\.self\.(key|value)", n).groups() for n in lora}
    assert len(layers) == 2 * len(model.cross_attention_layers())
    assert all(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)
    # LoRA B starts at zero: the adapted model equals the plain one with the same weights
    plain = build_tiny()
    plain.eval(), model.eval()
    samples = batch()
    prompts = ["Question: what style Answer:"] * 4
    assert torch.allclose(
        qformer_output(plain, samples, prompts), qformer_output(model, samples, prompts), atol=1e-6
    )


def test_lora_model_loads_plain_checkpoint_keys():
    plain = build_tiny()
    adapted = build_tiny(lora={"enabled": True})
    state = {k: v for k, v in plain.state_dict().items()}
    incompatible = adapted.load_state_dict(state, strict=False)
    assert not incompatible.unexpected_keys
    assert all("lora_" in k for k in incompatible.missing_keys)


def test_style_vocabulary_travels_in_state_dict(tiny):
    state = tiny.state_dict()
    carried = state["style_vocabulary._extra_state"]
    assert carried["names"] == sorted(STYLES) and carried["forms"] == sorted(STYLES)
    assert carried["form_token_ids"] == [
        tiny.opt_tokenizer(" " + name, add_special_tokens=False).input_ids for name in sorted(STYLES)
    ]
    assert carried["hit_tokens"] == tiny.style_token_set.tolist()
    other = build_tiny(style_names=["baroque", "rococo", "realism"])
    with pytest.raises(ValueError, match="style vocabulary"):
        other.load_state_dict(state, strict=False)


def test_style_token_set_is_the_identifying_tokens_once(tiny):
    """The hit rate's token set: the tokens of the styles' forms that identify a style, sorted, once."""
    ids = [
        tiny.opt_tokenizer(" " + name, add_special_tokens=False).input_ids for name in tiny.vocabulary.names
    ]
    assert tiny.style_token_set.tolist() == identifying_tokens(tiny.opt_tokenizer, ids)[0]
    assert set(tiny.style_token_set.tolist()) <= set(tiny.style_tokens[tiny.style_token_mask].tolist())


def test_predict_answers_takes_one_question_as_a_string(tiny):
    """Finding 8: a plain string question made one prompt per character (LAVIS's blip2_t5 wraps it)."""
    tiny.eval()
    image = batch(1)["image"]
    as_string = tiny.predict_answers({"image": image, "text_input": "what style is this painting"}, max_len=3)
    as_list = tiny.predict_answers({"image": image, "text_input": ["what style is this painting"]}, max_len=3)
    assert len(as_string) == 1 and as_string == as_list


def one_sample(samples, i):
    return {k: v[i : i + 1] for k, v in samples.items()}


@pytest.mark.parametrize("num_beams", [1, 3])
def test_generation_batch_equals_single_samples(tiny, num_beams):
    """Questions of different lengths: left padding must not change any sample's answer."""
    tiny.eval()
    samples = batch()
    together = tiny.generate(samples, num_beams=num_beams, max_length=4)
    alone = [tiny.generate(one_sample(samples, i), num_beams=num_beams, max_length=4)[0] for i in range(4)]
    assert together == alone


def test_num_captions_are_grouped_per_sample(tiny):
    tiny.eval()
    samples = batch()
    together = tiny.generate(samples, num_beams=3, num_captions=2, max_length=4)
    assert len(together) == 8
    for i in range(4):
        assert together[2 * i : 2 * i + 2] == tiny.generate(
            one_sample(samples, i), num_beams=3, num_captions=2, max_length=4
        )
    torch.manual_seed(0)
    sampled = tiny.generate(samples, use_nucleus_sampling=True, num_captions=3, max_length=4)
    assert len(sampled) == 12 and all(isinstance(t, str) for t in sampled)


def test_prompt_template_is_configurable():
    model = build_tiny(prompt="Q: {} A:")
    model.eval()
    samples = batch()
    questions = samples["text_input"]
    assert format_prompts(samples, model.prompt, "", questions)[0] == "Q: what style is this painting A:"
    explicit = dict(samples, prompt=[f"Q: {q} A:" for q in samples["text_input"]])
    assert model.generate(samples, num_beams=2, max_length=4) == model.generate(
        explicit, num_beams=2, max_length=4
    )
    assert model.predict_answers(samples, num_beams=2, max_len=4, prompt="Q: {} A:") == model.generate(
        explicit, num_beams=2, max_length=4
    )


def frozen_state(model):
    """Every tensor (parameters and buffers) of the frozen parts, copied."""
    return {
        k: v.clone()
        for k, v in model.state_dict().items()
        if k.startswith(("visual_encoder.", "opt_model.", "style_encoder."))
    }


def test_frozen_parts_stay_bit_identical_and_out_of_the_optimizer():
    """Training with the optimizer LAVIS's runner builds: ViT, OPT and CNN never change and never get
    .grad."""
    import types

    from lavis.runners.runner_base import RunnerBase

    model = build_tiny()
    model.train()
    before = frozen_state(model)
    runner = types.SimpleNamespace(
        _optimizer=None,
        model=model,
        config=types.SimpleNamespace(run_cfg=OmegaConf.create({"init_lr": 1e-2, "weight_decay": 0.05})),
    )
    optimizer = RunnerBase.optimizer.fget(runner)
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    frozen = [
        p
        for n, p in model.named_parameters()
        if n.startswith(("visual_encoder.", "opt_model.", "style_encoder."))
    ]
    assert frozen and not optimized & {id(p) for p in frozen}
    for _ in range(3):
        optimizer.zero_grad(set_to_none=True)
        model(batch())["loss"].backward()
        assert all(p.grad is None for p in frozen), "memory was allocated for a frozen part's gradient"
        optimizer.step()
    after = frozen_state(model)
    assert all(torch.equal(before[k], after[k]) for k in before), [
        k for k in before if not torch.equal(before[k], after[k])
    ]
    assert not torch.equal(model.opt_proj.weight, build_tiny().opt_proj.weight), (
        "the trainable parts did not train"
    )


def in_fp32(model):
    """A tiny fp32 model holding `model`'s weights (as they are stored, rounded to fp16/bf16)."""
    reference = build_tiny()
    reference.load_state_dict(
        {
            k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
            for k, v in model.state_dict().items()
        }
    )
    return reference


def test_fp16_frozen_parts_run_in_fp32_on_cpu():
    model = build_tiny(vit_precision="fp16", opt_precision="fp16")
    # stored as for CUDA, like LAVIS's ViT
    assert model.visual_encoder.blocks[0].mlp.fc1.weight.dtype == torch.float16
    assert model.opt_model.lm_head.weight.dtype == torch.float16
    reference = in_fp32(model)
    loss = model(batch())["loss"]
    assert model.visual_encoder.blocks[0].mlp.fc1.weight.dtype == torch.float32
    assert model.opt_model.lm_head.weight.dtype == torch.float32
    assert loss.item() == pytest.approx(reference(batch())["loss"].item(), abs=1e-5)


def test_bf16_frozen_parts_stay_bf16_on_cpu_and_compute_under_autocast():
    """Half of fp32's memory on CPU: the bf16 parts are not converted, their matmuls run in bf16, gradients
    reach the Q-Former through them, and the loss is fp32's with the same weights up to bf16 arithmetic."""
    model = build_tiny(vit_precision="bf16", opt_precision="bf16")
    reference = in_fp32(model)
    computed = {}
    decoder = model.opt_model.model.decoder
    parts = {"vit": model.visual_encoder.blocks[0].mlp.fc1, "opt": decoder.layers[0].fc1}
    hooks = [
        module.register_forward_hook(lambda m, i, out, name=name: computed.__setitem__(name, out.dtype))
        for name, module in parts.items()
    ]
    try:
        out = model(batch())
    finally:
        for hook in hooks:
            hook.remove()
    out["loss"].backward()
    assert computed == {"vit": torch.bfloat16, "opt": torch.bfloat16}
    assert model.visual_encoder.blocks[0].mlp.fc1.weight.dtype == torch.bfloat16
    assert model.opt_model.lm_head.weight.dtype == torch.bfloat16
    assert decoder.final_layer_norm.weight.dtype == torch.float32, "norms are kept in fp32"
    assert out["logits"].dtype == torch.float32 and model.query_tokens.grad.abs().sum() > 0
    assert out["loss"].item() == pytest.approx(reference(batch())["loss"].item(), abs=0.05)
    model.eval()
    assert len(model.generate(batch(), num_beams=2, max_length=3)) == 4


def test_style_modules_run_in_fp32_under_autocast(tiny):
    seen = {}
    hooks = [
        module.register_forward_hook(lambda m, i, out, name=name: seen.__setitem__(name, out.dtype))
        for name, module in [("mapper", tiny.prompt_mapper.ffn), ("modulation", tiny.kv_modulation)]
    ]
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = tiny(batch())
    finally:
        for hook in hooks:
            hook.remove()
    assert seen == {"mapper": torch.float32, "modulation": torch.float32}
    assert out["image_style_logits"].dtype == torch.float32 and out["logits"].dtype == torch.float32


def test_deepcopy_keeps_the_modulation():
    import copy

    model = build_tiny()
    model.eval()
    with torch.no_grad():
        model.kv_modulation.net[-1].weight.normal_(std=0.5)
    clone = copy.deepcopy(model)
    with torch.no_grad():  # only the clone's modulation changes: its hooks must use its own parameters
        clone.kv_modulation.net[-1].weight.mul_(2)
    samples, prompts = batch(), ["Question: what style Answer:"] * 4
    assert not torch.allclose(
        qformer_output(model, samples, prompts), qformer_output(clone, samples, prompts)
    )


def test_one_long_answer_does_not_truncate_the_other_prompts(tiny):
    samples = batch()
    samples["answer"] = ["pop art " * 40, "circle", "cubism", "square"]
    targets = tiny(samples)["targets"]
    short = samples["text_input"][1]
    prompt_length = len(tiny.opt_tokenizer(tiny.prompt.format(short)).input_ids)
    assert (targets[1] != -100).nonzero()[0].item() == prompt_length, "row 1 lost part of its prompt"


def test_randomly_initialised_parts_do_not_depend_on_the_global_seed():
    model_cls = registry.get_model_class("blip2_opt_gated")
    cfg = OmegaConf.merge(OmegaConf.load(model_cls.default_config_path("tiny")).model, {"image_size": 32})
    states = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = model_cls.from_config(cfg)
        states.append(
            {
                k: v
                for k, v in model.state_dict().items()
                if k.startswith(
                    ("Qformer.", "query_tokens", "visual_encoder.", "opt_model.", "style_encoder.")
                )
            }
        )
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_misspelt_gating_key_is_an_error():
    with pytest.raises(
        KeyError, match=r"unknown key model.gating.perhead \(did you mean model.gating.per_head\?\)"
    ):
        build_tiny(gating={"perhead": False})


def test_compiled_training_path_gives_the_eager_losses_and_gradients():
    """What torch.compile captures (backend aot_eager: its graphs, without generating kernels) computes the
    eager losses and gradients, without graph breaks; texts padded to multiples of 8; state-dict keys
    unchanged."""
    import copy

    from torch._dynamo.utils import counters

    eager = build_tiny()
    compiled = copy.deepcopy(eager)
    compiled.compile_trainable_path(backend="aot_eager")
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    counters.clear()
    for seed, answers in ((0, None), (1, ["a much longer answer about the painting"] * 4)):
        samples = batch(seed=seed)
        samples["answer"] = answers or samples["answer"]
        losses = []
        for model in (eager, compiled):
            model.zero_grad(set_to_none=True)
            out = model(samples)
            out["loss"].backward()
            losses.append((out["loss"], out["targets"].shape[1], model.query_tokens.grad.clone()))
        (loss, length, grad), (compiled_loss, compiled_length, compiled_grad) = losses
        assert compiled_length % 8 == 0 and compiled_length >= length
        assert compiled_loss.item() == pytest.approx(loss.item(), abs=1e-5)
        torch.testing.assert_close(compiled_grad, grad, atol=1e-5, rtol=1e-4)
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] > 0, "nothing was compiled"


def test_compile_mode_config_compiles_the_trainable_path_lazily():
    model = build_tiny(compile_mode="max-autotune")
    assert model.pad_multiple == 8
    assert model.Qformer.bert._compiled_call_impl is not None
    assert all(layer._compiled_call_impl is not None for layer in model.opt_model.model.decoder.layers)
    assert build_tiny().Qformer.bert._compiled_call_impl is None
