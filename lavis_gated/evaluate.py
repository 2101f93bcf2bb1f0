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
was trained); the YAML's model block and --options still win (runners/evaluation.py). Rank 0 then prints
each split's metrics table and draws the run folder's pictures.
"""

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


def main(argv=None):
    args = parse_args(argv)
    import lavis_gated

    lavis_gated.register()
    from lavis.common.dist_utils import is_main_process

    from lavis_gated.runners.evaluation import EvaluationConfig, checkpoint_eval_config, report
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
    runner = build_runner(args, config_cls=EvaluationConfig)
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
