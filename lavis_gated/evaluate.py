"""Evaluate with LAVIS, lavis_gated's components registered (mirrors LAVIS's evaluate.py).

    lavis-gated-eval --checkpoint CKPT [--data-dir DIR] [--split test]       # the checkpoint's own settings
    lavis-gated-eval --cfg-path CFG.yaml --checkpoint CKPT [--split test] [--options ...]
    python -m torch.distributed.run --nproc_per_node=2 lavis_gated/evaluate.py --checkpoint CKPT

With --checkpoint alone, the run config saved in the checkpoint is the config: its model block (weights
sources, gating, style CNN) and its datasets block (the val/test files, images, style source), evaluated
on --split (default: the run's val and test). --data-dir, --images and --style-table point those files
elsewhere (another machine); the resulting YAML is written to the output folder and named on stdout, so it
can be edited and passed back with --cfg-path.

With --cfg-path, the YAML's datasets and run blocks are used, and the model settings saved in the
checkpoint are the defaults of the evaluated model (a run trained with gating.type none is evaluated as it
was trained); the YAML's model block and --options still win (evaluation_config_class). Rank 0 then prints
each split's metrics table and draws the run folder's pictures.
"""

import json
import os
import sys


def parse_args(argv=None):
    # imports inside the functions: run as a file, the package is importable only once __main__ below has
    # fixed sys.path
    from lavis_gated.common.command_line import add_flags, command_parser, run_options

    parser = command_parser(
        "lavis-gated-eval",
        "Evaluate a checkpoint on val/test: metrics JSON, predictions JSON, metrics table and pictures; "
        "with --checkpoint alone, its own saved model and dataset settings are used.",
        "lavis-gated-eval --checkpoint output/artquest/<job>/checkpoint_best.pth --split test",
        "evaluation.md",
    )
    add_flags(
        parser,
        "checkpoint",
        "cfg-path",
        "split",
        "options",
        "output-dir",
        "device",
        "num-threads",
        "max-len",
        "num-beams",
        checkpoint={"help": "checkpoint to evaluate (sets model.load_finetuned and model.finetuned)"},
        cfg_path={"help": "eval YAML (default: the run config saved in --checkpoint)"},
        split={"help": "evaluate this split instead of run.test_splits (val or test)"},
    )
    data = parser.add_argument_group("data paths (with --checkpoint alone: where the saved ones moved)")
    data.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder now holding the run's split files, image folder and style table (same file names)",
    )
    data.add_argument("--images", metavar="DIR", help="image folder (build_info.images.storage)")
    data.add_argument("--style-table", metavar="CSV", help="image -> style table (style_table.storage)")
    args = parser.parse_args(argv)
    if not (args.cfg_path or args.checkpoint):
        parser.error("give --checkpoint (its saved settings are the config), --cfg-path, or both")
    if args.checkpoint and not os.path.isfile(args.checkpoint):
        parser.error(f"--checkpoint {args.checkpoint}: no such file")
    if args.cfg_path and (args.data_dir or args.images or args.style_table):
        parser.error(
            "--data-dir, --images and --style-table go with --checkpoint alone; with --cfg-path "
            "set the paths in the YAML or with --options"
        )
    options = list(args.options)
    if args.checkpoint:
        options += ["model.load_finetuned=True", f"model.finetuned={os.path.abspath(args.checkpoint)}"]
    if args.split:
        options.append(f"run.test_splits=[{args.split}]")
    args.options = options + run_options(args)
    return args


def saved_model_config(path):
    """The model block of the config saved in a lavis-gated/LAVIS checkpoint file, or None."""
    from lavis_gated.common.checkpoints import load_checkpoint

    if not os.path.isfile(path):
        return None  # a URL, or a missing file the model reports when it loads the checkpoint
    return (load_checkpoint(path, mmap=True).get("config") or {}).get("model")


def evaluation_config_class():
    """EvaluationConfig: LAVIS's Config whose model block starts from the one saved in the evaluated
    checkpoint. Precedence: model-type defaults < the checkpoint's model config < the YAML's model block <
    --options. Made on call, so that importing this module (--help) does not import LAVIS."""
    from lavis.common.config import Config
    from omegaconf import OmegaConf

    class EvaluationConfig(Config):
        @staticmethod
        def build_model_config(config, **kwargs):
            built = Config.build_model_config(config, **kwargs)
            chosen = OmegaConf.merge(built.model, kwargs.get("model") or {})
            if not (chosen.get("load_finetuned") and chosen.get("finetuned")):
                return built
            saved = saved_model_config(chosen.finetuned)
            return OmegaConf.merge(built, {"model": saved}, {"model": config.model}) if saved else built

    return EvaluationConfig


# run keys of a training run that mean nothing, or something wrong, when the run is evaluated
TRAINING_ONLY_RUN_KEYS = ("resume_ckpt_path",)


def checkpoint_eval_config(checkpoint, output_dir=None, data_dir=None, images=None, style_table=None):
    """Path of an eval YAML made from the run config saved in `checkpoint`: its model and datasets blocks
    (the train split left out: the style vocabulary travels in the checkpoint), its run block set to
    evaluate val and test into output_dir (default: the run's output_dir + "_eval"). data_dir re-roots every
    saved data file (split files, images, style table) by its file name; images / style_table set those
    two. The YAML is written into output_dir, named after the checkpoint's run folder.

    ValueError when the checkpoint holds no run config with a model and a datasets block."""
    from omegaconf import OmegaConf

    from lavis_gated.common.atomic_files import atomic_file
    from lavis_gated.common.checkpoints import load_checkpoint

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
    from lavis_gated.reports import plots
    from lavis_gated.reports.tables import format_table

    for split in splits:
        path = os.path.join(output_dir, f"{split}_metrics.json")
        with open(path, encoding="utf-8") as f:
            print(f"{split}:\n{format_table(json.load(f))}")
        print(f"metrics: {path}")
    for path in plots.draw_run(output_dir):
        print(f"picture: {path}")


def main(argv=None):
    args = parse_args(argv)
    import lavis_gated

    lavis_gated.register()
    from lavis.common.dist_utils import is_main_process

    from lavis_gated.runners.run_setup import build_runner

    if not args.cfg_path:
        args.cfg_path = checkpoint_eval_config(
            args.checkpoint, args.output_dir, args.data_dir, args.images, args.style_table
        )
        used = f"{args.cfg_path} (the run config saved in {args.checkpoint})"
    else:
        used = args.cfg_path
    if os.environ.get("RANK", "0") == "0":  # once under torchrun
        print(f"lavis-gated-eval: config {used}", flush=True)
    runner = build_runner(args, config_cls=evaluation_config_class())
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


if __name__ == "__main__":
    if not __package__:  # run as a file: see the same block in train.py
        sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    main()
