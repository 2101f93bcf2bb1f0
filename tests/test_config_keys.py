"""One config dataclass per block: a misspelt key in any block is an error naming the key, its block and the
closest valid name; the generated reference in docs/ is current."""

import argparse
from pathlib import Path

import pytest
from helpers.runs import REPO, write_config
from omegaconf import OmegaConf

from lavis_gated.configs.reference import reference
from lavis_gated.configs.schema import ConfigKeyError
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


def test_the_packaged_model_types_and_project_yamls_use_only_known_keys():
    from lavis_gated.configs.dataset_config import artquest_config
    from lavis_gated.configs.model_config import model_config
    from lavis_gated.configs.run_config import task_config

    for path in sorted((REPO / "lavis_gated" / "configs" / "models" / "blip2_opt_gated").glob("*.yaml")):
        model_config(OmegaConf.load(path).model, where=path.name)
    for path in sorted((REPO / "projects" / "gated").glob("*.yaml")):
        cfg = OmegaConf.load(path)
        if "datasets" in cfg:
            artquest_config(cfg.datasets.artquest, where=f"{path.name}: datasets.artquest")
        if "run" in cfg and cfg.run.get("task") == "style_captioning":
            task_config(cfg.run, where=f"{path.name}: run")


def test_the_configuration_reference_is_current():
    assert (Path(REPO) / "docs" / "configuration.md").read_text() == reference(), (
        "regenerate it: python -m lavis_gated.configs.reference > docs/configuration.md"
    )
