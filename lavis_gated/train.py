"""Train with LAVIS's runner, lavis_gated's components registered (as LAVIS's train.py).

    lavis-gated-train --cfg-path CFG.yaml [--options run.max_epoch=3 ...]
    python lavis_gated/train.py --cfg-path CFG.yaml                   # also python -m lavis_gated.train
    python -m torch.distributed.run --nproc_per_node=2 lavis_gated/train.py --cfg-path CFG.yaml
    lavis-gated-train --cfg-path CFG.yaml --resume OUTPUT_DIR/JOB_ID/checkpoint_last.pth

--resume CKPT is run.resume_ckpt_path=CKPT: the run continues in CKPT's folder (see runners/runner_gated.py).
"""

import os
import sys


def parse_args(argv=None):
    from lavis_gated.runners.run_setup import argument_parser

    parser = argument_parser("Training")
    parser.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        help="continue the run saved in CHECKPOINT (e.g. its checkpoint_last.pth), in its folder; "
        "the same as --options run.resume_ckpt_path=CHECKPOINT.",
    )
    return parser.parse_args(argv)


def main(argv=None):
    from lavis_gated.runners.run_setup import build_runner

    build_runner(parse_args(argv)).train()


if __name__ == "__main__":
    if not __package__:
        # Run as a file (as LAVIS's train.py is, and as torchrun is told to), Python puts this folder first
        # on sys.path, where lavis_gated's datasets/ and models/ would shadow top-level packages of those
        # names; the folder that holds the package goes there instead.
        sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    main()
