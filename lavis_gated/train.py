"""Train with LAVIS's runner, lavis_gated's components registered (as LAVIS's train.py).

    lavis-gated-train --cfg-path CFG.yaml [--options run.max_epoch=3 ...]
    python lavis_gated/train.py --cfg-path CFG.yaml                   # also python -m lavis_gated.train
    python -m torch.distributed.run --nproc_per_node=2 lavis_gated/train.py --cfg-path CFG.yaml
    lavis-gated-train --cfg-path CFG.yaml --resume OUTPUT_DIR/JOB_ID/checkpoint_last.pth
    lavis-gated-train --cfg-path CFG.yaml --output-dir output/x --device cpu --num-threads 2

--output-dir, --device and --num-threads are run.output_dir, run.device and run.num_threads
(common/command_line.py).

--resume CKPT is run.resume_ckpt_path=CKPT: the run continues in CKPT's folder (see runners/runner_gated.py).
"""

import os
import sys


def parse_args(argv=None):
    # imports inside the functions: run as a file, the package is importable only once __main__ below has
    # fixed sys.path
    from lavis_gated.common.command_line import add_flags, command_parser, run_options

    parser = command_parser(
        "lavis-gated-train",
        "Train (or fine-tune) blip2_opt_gated with LAVIS's runner from a project YAML; one process, or one "
        "per GPU under torchrun.",
        "lavis-gated-train --cfg-path projects/gated/demo.yaml --options run.max_epoch=2",
        "reliability.md",
    )
    add_flags(
        parser, "cfg-path", "options", "output-dir", "device", "num-threads", cfg_path={"required": True}
    )
    parser.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        help="continue the run saved in CHECKPOINT (e.g. its checkpoint_last.pth), in its folder; "
        "the same as --options run.resume_ckpt_path=CHECKPOINT.",
    )
    args = parser.parse_args(argv)
    args.options = [*args.options, *run_options(args)]
    return args


def main(argv=None):
    args = parse_args(argv)
    import lavis_gated

    lavis_gated.register()
    from lavis_gated.runners.run_setup import build_runner

    build_runner(args).train()


if __name__ == "__main__":
    if not __package__:
        # Run as a file (as LAVIS's train.py is, and as torchrun is told to), Python puts this folder first
        # on sys.path, where lavis_gated's datasets/ and models/ would shadow top-level packages of those
        # names; the folder that holds the package goes there instead.
        sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    main()
