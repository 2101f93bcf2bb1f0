"""One config dataclass per block: a misspelt key in any block is an error naming the key, its block and the
closest valid name; a value of the wrong type is an error naming the key, the value and the type, whether
it comes from the YAML or from --options; the generated reference in docs/ is current."""

import argparse
from pathlib import Path

import pytest
from helpers.runs import REPO, write_config
from omegaconf import OmegaConf

from lavis_gated.configs.reference import reference
from lavis_gated.configs.schema import ConfigKeyError, ConfigTypeError, check_boolean_spellings
from lavis_gated.runners.run_setup import build_runner

MISSPELT = [
    ("model.gatting.type=gate", "model.gatting", "model.gating"),
    ("model.gating.tpye=gate", "model.gating.tpye", "model.gating.type"),
    ("model.prompt_mapper.num_token=2", "model.prompt_mapper.num_token", "model.prompt_mapper.num_tokens"),
    ("model.lora.rnak=4", "model.lora.rnak", "model.lora.rank"),
    (
        "model.style_encoder.alow_random=true",
        "model.style_encoder.alow_random",
        "model.style_encoder.allow_random",
    ),
    ("model.num_query_tokens=8", "model.num_query_tokens", "model.num_query_token"),
    ("datasets.artquest.bad_imgae=skip", "datasets.artquest.bad_imgae", "datasets.artquest.bad_image"),
    (
        "datasets.artquest.fields.styel=school",
        "datasets.artquest.fields.styel",
        "datasets.artquest.fields.style",
    ),
    (
        "datasets.artquest.style_table.storag=x.csv",
        "datasets.artquest.style_table.storag",
        "datasets.artquest.style_table.storage",
    ),
    ("run.save_lsat=true", "run.save_lsat", "run.save_last"),
    ("run.style_kl_wieght=0.5", "run.style_kl_wieght", "run.style_kl_weight"),
    ("run.init_lrr=0.1", "run.init_lrr", "run.init_lr"),  # one of LAVIS's own keys
]


@pytest.mark.parametrize("option, key, closest", MISSPELT)
def test_a_misspelt_key_in_any_block_is_refused_before_anything_runs(tmp_path, option, key, closest):
    cfg = write_config(tmp_path, tmp_path / "no_data", "run")  # nothing is read before the check
    with pytest.raises(ConfigKeyError) as refused:
        build_runner(argparse.Namespace(cfg_path=str(cfg), options=[option]))
    assert str(refused.value).startswith(f"unknown key {key} (did you mean {closest}?)")


WRONG_TYPES = [
    ("model.gating.per_head=maybe", "model.gating.per_head is 'maybe'; expected true or false"),
    ("model.gating.init_scale=abc", "model.gating.init_scale is 'abc'; expected a number"),
    ("model.gating.per_head=1", "model.gating.per_head is 1; expected true or false"),  # OmegaConf takes 1
    ("model.prompt_mapper.num_tokens=2.5", "model.prompt_mapper.num_tokens is 2.5; expected an integer"),
    ("model.style_names=pop-art", "model.style_names is 'pop-art'; expected a list of str"),
    (
        "model.style_encoder.image_size=big",
        "model.style_encoder.image_size is 'big'; expected an integer or null",
    ),
    ("datasets.artquest.fields.style=false", "datasets.artquest.fields.style is False; expected text"),
    ("run.save_last=maybe", "run.save_last is 'maybe'; expected true or false"),
    ("run.max_grad_norm=abc", "run.max_grad_norm is 'abc'; expected a number or null"),
    ("run.style_kl_weight=[1]", "run.style_kl_weight is [1]; expected a number"),
]


@pytest.mark.parametrize("option, message", WRONG_TYPES)
def test_a_value_of_the_wrong_type_is_refused_before_anything_runs(tmp_path, option, message):
    cfg = write_config(tmp_path, tmp_path / "no_data", "run")
    with pytest.raises(ConfigTypeError) as refused:
        build_runner(argparse.Namespace(cfg_path=str(cfg), options=[option]))
    assert str(refused.value) == message


def test_a_value_of_the_wrong_type_in_the_yaml_is_refused_too(tmp_path):
    cfg = write_config(tmp_path, tmp_path / "no_data", "run")
    text = cfg.read_text()
    assert "  save_last: false\n" in text and "  model_type: tiny\n" in text
    for changed, message in (
        (
            ("  save_last: false\n", "  save_last: maybe\n"),
            r"^run\.save_last is 'maybe'; expected true or false$",
        ),
        # quoted, it is text rather than YAML 1.1's boolean, and the type check refuses it
        (
            ("  save_last: false\n", "  save_last: 'on'\n"),
            r"^run\.save_last is 'on'; expected true or false$",
        ),
        (
            ("  model_type: tiny\n", "  model_type: tiny\n  gating:\n    init_scale: abc\n"),
            r"^model\.gating\.init_scale is 'abc'; expected a number$",
        ),
    ):
        cfg.write_text(text.replace(*changed))
        with pytest.raises(ConfigTypeError, match=message):
            build_runner(argparse.Namespace(cfg_path=str(cfg), options=None))


def test_booleans_are_spelt_true_or_false(tmp_path):
    cfg = write_config(tmp_path, tmp_path / "no_data", "run")
    text = cfg.read_text()
    # YAML 1.1 (OmegaConf's loader) reads these as booleans before any type check could see them
    cfg.write_text(text.replace("  save_last: false\n", "  save_last: yes\n"))
    line = 1 + cfg.read_text().splitlines().index("  save_last: yes")
    with pytest.raises(ConfigTypeError) as refused:
        build_runner(argparse.Namespace(cfg_path=str(cfg), options=None))
    assert str(refused.value).startswith(f"{cfg}, line {line}: run.save_last is spelt 'yes'; write true")
    cfg.write_text(text)
    for options in (
        ["model.gating.per_head=Off"],
        ["model.gating.per_head", "on"],  # LAVIS's other form of --options
        ["run.test_splits=[test, no]"],
    ):
        with pytest.raises(ConfigTypeError, match=r"^--options .* is spelt '(Off|on|no)'"):
            build_runner(argparse.Namespace(cfg_path=str(cfg), options=options))


def test_values_are_converted_to_their_fields_types():
    from lavis_gated.configs.model_config import model_config
    from lavis_gated.configs.run_config import runner_config, task_config

    config = model_config({"gating": {"per_head": "False", "init_scale": "1e-3", "hidden_dim": "8"}})
    assert (config.gating.per_head, config.gating.init_scale, config.gating.hidden_dim) == (False, 0.001, 8)
    assert type(config.gating.init_scale) is float and type(config.gating.hidden_dim) is int
    assert model_config({"style_encoder": {"image_size": None}}).style_encoder.image_size is None
    task = task_config({"lm_weight": 1, "style_question_types": ("artist", "school")})
    assert task.style_question_types == ["artist", "school"] and type(task.lm_weight) is float
    assert type(runner_config({"dist_timeout_minutes": 30}).dist_timeout_minutes) is float


def test_the_packaged_model_types_and_project_yamls_use_only_known_keys_and_typed_values():
    from lavis_gated.configs.dataset_config import artquest_config, captions_config
    from lavis_gated.configs.model_config import model_config
    from lavis_gated.configs.run_config import runner_config, task_config

    model_types = REPO / "lavis_gated" / "configs" / "models" / "blip2_opt_gated"
    for path in sorted(model_types.glob("*.yaml")):
        check_boolean_spellings(path)
        model_config(OmegaConf.load(path).model, where=path.name)
    for path in sorted((REPO / "lavis_gated" / "configs" / "datasets").glob("*/*.yaml")):
        check_boolean_spellings(path)
        for name, block in OmegaConf.load(path).datasets.items():
            {"artquest": artquest_config, "art_captions": captions_config}[name](block, where=path.name)
    for path in sorted((REPO / "projects" / "gated").glob("*.yaml")):
        check_boolean_spellings(path)
        cfg = OmegaConf.load(path)
        if "model" in cfg:  # over its model type's YAML, as LAVIS's Config merges them
            type_yaml = OmegaConf.load(model_types / f"{cfg.model.model_type}.yaml")
            model_config(OmegaConf.merge(type_yaml.model, cfg.model), where=f"{path.name}: model")
        for name, block in (cfg.get("datasets") or {}).items():
            check = {"artquest": artquest_config, "art_captions": captions_config}[name]
            check(block, where=f"{path.name}: datasets.{name}")
        if "run" in cfg and cfg.run.get("task") == "style_captioning":
            task_config(cfg.run, where=f"{path.name}: run")
            runner_config(cfg.run, where=f"{path.name}: run")


def test_the_configuration_reference_is_current():
    assert (Path(REPO) / "docs" / "configuration.md").read_text() == reference(), (
        "regenerate it: python -m lavis_gated.configs.reference > docs/configuration.md"
    )
