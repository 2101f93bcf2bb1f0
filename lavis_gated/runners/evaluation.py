"""The evaluate command's work: the eval config made from a checkpoint's saved run config (or the evaluated
checkpoint's model settings as defaults under a YAML), then LAVIS's evaluation of the chosen splits, then each
split's metrics table and the run folder's pictures."""

import json
import os

from lavis.common.config import Config
from omegaconf import OmegaConf

from lavis_gated import plots
from lavis_gated.atomic_files import atomic_file
from lavis_gated.checkpoint_io import load_checkpoint
from lavis_gated.report import format_table


def saved_model_config(path):
    """The model block of the config saved in a lavis-gated/LAVIS checkpoint file, or None."""
    if not os.path.isfile(path):
        return None  # a URL, or a missing file the model reports when it loads the checkpoint
    return (load_checkpoint(path, mmap=True).get("config") or {}).get("model")


class EvaluationConfig(Config):
    """LAVIS's Config whose model block starts from the one saved in the evaluated checkpoint.

    Precedence: model-type defaults < the checkpoint's model config < the YAML's model block < --options.
    """

    @staticmethod
    def build_model_config(config, **kwargs):
        built = Config.build_model_config(config, **kwargs)
        chosen = OmegaConf.merge(built.model, kwargs.get("model") or {})
        if not (chosen.get("load_finetuned") and chosen.get("finetuned")):
            return built
        saved = saved_model_config(chosen.finetuned)
        return OmegaConf.merge(built, {"model": saved}, {"model": config.model}) if saved else built


# run keys of a training run that mean nothing, or something wrong, when the run is evaluated
TRAINING_ONLY_RUN_KEYS = ("resume_ckpt_path",)


def checkpoint_eval_config(checkpoint, output_dir=None, data_dir=None, images=None, style_table=None):
    """Path of an eval YAML made from the run config saved in `checkpoint`: its model and datasets blocks
    (the train split left out: the style vocabulary travels in the checkpoint), its run block set to
    evaluate val and test into output_dir (default: the run's output_dir + "_eval"). data_dir re-roots every
    saved data file (split files, images, style table) by its file name; images / style_table set those
    two. The YAML is written into output_dir, named after the checkpoint's run folder.

    ValueError when the checkpoint holds no run config with a model and a datasets block."""
    saved = load_checkpoint(checkpoint, mmap=True).get("config") or {}
    missing = [block for block in ("model", "datasets", "run") if not saved.get(block)]
    if missing:
        raise ValueError(
            f"{checkpoint} holds no {'/'.join(missing)} block in its saved run config, so it cannot be "
            "evaluated from the checkpoint alone: pass --cfg-path with an eval YAML "
            "(projects/gated/artquest_eval.yaml, demo_eval.yaml)"
        )
    config = OmegaConf.create({key: saved[key] for key in ("model", "datasets", "run")})
    for name, dataset in config.datasets.items():
        info = dataset.get("build_info") or {}
        for kind in ("annotations", "shards"):
            if info.get(kind) and "train" in info[kind]:
                del info[kind]["train"]
        files = [block for kind in ("annotations", "shards") for block in (info.get(kind) or {}).values()]
        files += [info.get("images"), dataset.get("style_table")]
        for block in filter(None, files):
            if data_dir and isinstance(block.get("storage"), str):
                block.storage = os.path.join(data_dir, os.path.basename(block.storage.rstrip("/")))
        if images:
            info.images.storage = images
        if style_table:
            dataset.style_table = OmegaConf.merge(dataset.get("style_table") or {}, {"storage": style_table})
        splits = sorted({*(info.get("annotations") or {}), *(info.get("shards") or {})})
        if not splits:
            raise ValueError(f"{checkpoint}: datasets.{name} of its saved config has no val or test split")
    run = config.run
    for key in TRAINING_ONLY_RUN_KEYS:
        run.pop(key, None)
    output_dir = output_dir or f"{str(run.get('output_dir', 'output/run')).rstrip('/')}_eval"
    run.output_dir = output_dir
    run.evaluate = True
    run.test_splits = [s for s in ("val", "test") if s in splits] or splits
    os.makedirs(output_dir, exist_ok=True)
    run_folder = os.path.basename(os.path.dirname(os.path.abspath(checkpoint)))
    path = os.path.join(output_dir, f"eval_config_{run_folder}.yaml")
    with atomic_file(path, "w", encoding="utf-8") as f:
        f.write(f"# made by lavis-gated-eval from the run config saved in {os.path.abspath(checkpoint)}\n")
        f.write(OmegaConf.to_yaml(config))
    return path


def report(output_dir, splits):
    """Print each split's metrics table and draw the run folder's pictures."""
    for split in splits:
        path = os.path.join(output_dir, f"{split}_metrics.json")
        with open(path, encoding="utf-8") as f:
            print(f"{split}:\n{format_table(json.load(f))}")
        print(f"metrics: {path}")
    for path in plots.draw_run(output_dir):
        print(f"picture: {path}")
