"""lavis-gated-app: serve the web demo of one checkpoint, or two side by side, on this machine.

    lavis-gated-app [--checkpoint PATH [--checkpoint PATH2]] [--device cuda] [--host 127.0.0.1] [--port 8501]
    python -m lavis_gated.app ...                                         # the same

Each checkpoint (default: the newest output/*/*/checkpoint_best.pth) is checked before the server starts:
none, one the safe loader refuses, or one without its run config is an error here, not a broken page.
Streamlit serves page.py with telemetry off and no file watcher; the page loads each model once, on
--device (app/inference.load_model).
"""

import os
import sys

from lavis_gated.app import checkpoint_files
from lavis_gated.common.command_line import add_flags, command_parser

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page.py")


def parse_args(argv=None):
    parser = command_parser(
        "lavis-gated-app",
        "Web demo of a lavis-gated checkpoint (or two side by side): answers with the K/V modulation on and "
        "off, under another style's control tokens, the style head's top-5 styles and the modulation "
        "heatmap.",
        "lavis-gated-app --checkpoint output/none/<job>/checkpoint_best.pth "
        "--checkpoint output/film/<job>/checkpoint_best.pth",
        "app.md",
    )
    add_flags(
        parser,
        "checkpoint",
        "device",
        "num-threads",
        checkpoint={
            "action": "append",
            "help": "a checkpoint written by lavis-gated's runner; give it twice to compare two side by side "
            f"(default: the newest {checkpoint_files.DEFAULT_PATTERN}; `bash run_scripts/demo.sh` makes one)",
        },
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 opens the demo to the network)",
    )
    parser.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    args = parser.parse_args(argv)
    if args.checkpoint and len(args.checkpoint) > 2:
        parser.error("--checkpoint: at most two checkpoints are shown side by side")
    return args


def streamlit_arguments(checkpoints, host, port, device=None, num_threads=None):
    """The `streamlit run` command line for page.py: bound to host:port, no telemetry, no browser opened,
    no file watcher (nothing reaches the network; the package does not change while serving)."""
    return [
        "run",
        PAGE,
        f"--server.address={host}",
        f"--server.port={port}",
        "--server.headless=true",
        "--server.fileWatcherType=none",
        "--server.runOnSave=false",
        "--browser.gatherUsageStats=false",
        "--global.developmentMode=false",
        "--client.toolbarMode=minimal",
        "--theme.base=light",
        "--",
        *[a for checkpoint in checkpoints for a in ("--checkpoint", os.path.abspath(checkpoint))],
        *(["--device", device] if device else []),
        *(["--num-threads", str(num_threads)] if num_threads else []),
    ]


def main(argv=None):
    args = parse_args(argv)
    from lavis_gated.common.checkpoints import UnsafeCheckpointError

    try:
        checkpoints = [checkpoint_files.choose_checkpoint(path)[0] for path in args.checkpoint or [None]]
    except (checkpoint_files.CheckpointChoiceError, UnsafeCheckpointError, RuntimeError) as err:
        print(f"lavis-gated-app: {err}", file=sys.stderr)
        return 2
    print(
        f"lavis-gated-app: serving {' and '.join(checkpoints)} on http://{args.host}:{args.port}", flush=True
    )
    from streamlit.web import cli

    arguments = streamlit_arguments(checkpoints, args.host, args.port, args.device, args.num_threads)
    return cli.main(arguments, prog_name="lavis-gated-app")


if __name__ == "__main__":
    sys.exit(main())
