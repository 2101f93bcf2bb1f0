"""Evaluate with LAVIS, lavis_gated's components registered (mirrors LAVIS's evaluate.py).

    lavis-gated-eval --cfg-path CFG.yaml [--checkpoint CKPT] [--split test] [--options ...]
    python lavis_gated/evaluate.py --cfg-path CFG.yaml [--checkpoint CKPT]
    python -m lavis_gated.evaluate --cfg-path CFG.yaml
    python -m torch.distributed.run --nproc_per_node=2 lavis_gated/evaluate.py --cfg-path CFG.yaml

Runs run.test_splits (or --split) with the weights the model was built with (--checkpoint sets
model.load_finetuned and model.finetuned). The model settings saved in that checkpoint are the defaults
of the evaluated model, so a run trained with e.g. gating.type none is evaluated as it was trained; the
YAML's model block and --options still win. Rank 0 then prints each split's metrics table and draws the
run folder's pictures (evaluate.py). See runners/run_setup.py for run.runner and run.imports.

The evaluate command's work: the evaluated checkpoint's model settings as defaults, then LAVIS's
evaluation of the chosen splits, then each split's metrics table and the run folder's pictures.
"""

import os
import sys

if __name__ == "__main__" and not __package__:
    # run as a file: see the same block in train.py. Here before the imports below, which would otherwise
    # find lavis_gated's datasets/ and models/ in place of the top-level packages of those names.
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import json  # noqa: E402

from lavis.common.config import Config  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from lavis_gated.common.checkpoints import load_checkpoint  # noqa: E402
from lavis_gated.reports import plots  # noqa: E402
from lavis_gated.reports.tables import format_table  # noqa: E402
from lavis_gated.runners.run_setup import argument_parser  # noqa: E402


def main(argv=None):
    from lavis.common.dist_utils import is_main_process

    from lavis_gated.runners.run_setup import build_runner

    runner = build_runner(parse_args(argv), config_cls=EvaluationConfig)
    available = {split for splits in runner.datasets.values() for split in splits}
    missing = sorted(set(runner.test_splits) - available)
    if missing:
        raise ValueError(
            f"split(s) {missing} to evaluate are not in the datasets; available: {sorted(available)}"
        )
    # log.txt names the evaluated checkpoint, whose training log the curves are drawn from
    runner.log_config()
    runner.evaluate(skip_reload=True)
    if is_main_process():
        report(str(runner.output_dir), runner.test_splits)


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


if __name__ == "__main__":
    main()
