"""The evaluate command's work: the evaluated checkpoint's model settings as defaults, then LAVIS's
evaluation of the chosen splits, then each split's metrics table and the run folder's pictures."""

import json
import os

from lavis.common.config import Config
from omegaconf import OmegaConf

from lavis_gated import plots
from lavis_gated.checkpoint_io import load_checkpoint
from lavis_gated.report import format_table
from lavis_gated.runners.run_setup import argument_parser


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


def parse_args(argv=None):
    parser = argument_parser("Evaluation")
    parser.add_argument(
        "--checkpoint", help="checkpoint to evaluate (sets model.load_finetuned and model.finetuned)"
    )
    parser.add_argument("--split", help="evaluate this split instead of run.test_splits (e.g. val or test)")
    args = parser.parse_args(argv)
    options = list(args.options or [])
    if args.checkpoint:
        if not os.path.isfile(args.checkpoint):
            parser.error(f"--checkpoint {args.checkpoint}: no such file")
        options += ["model.load_finetuned=True", f"model.finetuned={os.path.abspath(args.checkpoint)}"]
    if args.split:
        options.append(f"run.test_splits=[{args.split}]")
    args.options = options
    return args


def report(output_dir, splits):
    """Print each split's metrics table and draw the run folder's pictures."""
    for split in splits:
        path = os.path.join(output_dir, f"{split}_metrics.json")
        with open(path, encoding="utf-8") as f:
            print(f"{split}:\n{format_table(json.load(f))}")
        print(f"metrics: {path}")
    for path in plots.draw_run(output_dir):
        print(f"picture: {path}")
