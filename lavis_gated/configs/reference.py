"""docs/configuration.md, generated from the config dataclasses, so that the reference cannot drift from
the code's defaults (a test checks the file is current).

    python -m lavis_gated.configs.reference > docs/configuration.md
"""

from lavis_gated.configs.dataset_config import BUILD_INFO_KEYS, ArtQuestConfig, CaptionsConfig
from lavis_gated.configs.model_config import ModelConfig
from lavis_gated.configs.run_config import LAVIS_RUN_KEYS, RunnerConfig, TaskConfig
from lavis_gated.configs.schema import rows

HEADER = """# Configuration reference

Generated from the config dataclasses in `lavis_gated/configs/` by
`python -m lavis_gated.configs.reference > docs/configuration.md`; do not edit by hand.

A project YAML has LAVIS's three blocks: `model`, `datasets` and `run`. Every key below has its default in
exactly one place, the dataclass field. An unknown key in any block is an error that names the key, its
block and the closest valid name (`unknown key run.save_lsat (did you mean run.save_last?)`). A value of the
wrong type for a key below, from the YAML or from `--options`, is an error that names the key, the value and
the type (`model.gating.per_head is 'maybe'; expected true or false`); text that reads as the type converts
(`'8'` for an integer). Booleans are spelt true or false: YAML's older yes/no/on/off are refused anywhere in
the file, naming its line. Model-type YAMLs (`lavis_gated/configs/models/blip2_opt_gated/<type>.yaml`)
set what differs for their type.
"""


def _cell(value):
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = str(value).lower()
    elif value == "" or value == []:
        text = repr(value)
    else:
        text = str(value)
    return f"`{text}`"


def table(title, intro, config_rows):
    lines = [f"## {title}", "", intro, "", "| key | default | meaning |", "|---|---|---|"]
    lines += [
        f"| `{key}` | {_cell(default)} | {help_text.replace('|', '/')} |"
        for key, default, help_text in config_rows
    ]
    return "\n".join(lines) + "\n"


def reference():
    return (
        "\n".join(
            [
                HEADER,
                table(
                    "model (`blip2_opt_gated`)",
                    "The `model:` block (`ModelConfig` and its parts, "
                    "`lavis_gated/configs/model_config.py`).",
                    rows(ModelConfig, "model."),
                ),
                table(
                    "datasets.artquest",
                    "The `datasets.artquest:` block (`ArtQuestConfig`, "
                    "`lavis_gated/configs/dataset_config.py`), beside LAVIS's `vis_processor`, "
                    "`text_processor` and `build_info`: "
                    + "; ".join(f"`build_info.{k}`: {v}" for k, v in BUILD_INFO_KEYS.items())
                    + ".",
                    rows(ArtQuestConfig, "datasets.artquest."),
                ),
                table(
                    "datasets.art_captions",
                    "The `datasets.art_captions:` block (`CaptionsConfig`, "
                    "`lavis_gated/configs/dataset_config.py`), beside LAVIS's `vis_processor`, "
                    "`text_processor` and `build_info` (`annotations` and `images`, as for artquest); the "
                    "layouts are in docs/data.md.",
                    rows(CaptionsConfig, "datasets.art_captions."),
                ),
                table(
                    "run: the style_captioning task",
                    "`TaskConfig` (`lavis_gated/configs/run_config.py`).",
                    rows(TaskConfig, "run."),
                ),
                table(
                    "run: the runner",
                    "`RunnerConfig` (`lavis_gated/configs/run_config.py`).",
                    rows(RunnerConfig, "run."),
                ),
                "## run: LAVIS's own keys\n\n"
                "Accepted as LAVIS defines them (its code holds their defaults).\n\n"
                "| key | meaning |\n|---|---|\n"
                + "\n".join(f"| `run.{k}` | {v} |" for k, v in sorted(LAVIS_RUN_KEYS.items())),
            ]
        )
        + "\n"
    )


if __name__ == "__main__":
    print(reference(), end="")
