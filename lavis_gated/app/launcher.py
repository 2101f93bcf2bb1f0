"""lavis-gated-app: serve the web demo of a checkpoint on this machine.

    lavis-gated-app [--checkpoint PATH] [--host 127.0.0.1] [--port 8501]
    python -m lavis_gated.app ...                                         # the same

The checkpoint (default: the newest output/*/*/checkpoint_best.pth) is checked before the server starts:
none, one the safe loader refuses, or one without its run config is an error here, not a broken page.
Streamlit serves page.py with telemetry off and no file watcher.
"""

import argparse
import os
import sys

from lavis_gated.app import checkpoint_files
from lavis_gated.common.checkpoints import UnsafeCheckpointError

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page.py")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="lavis-gated-app",
        description="Web demo of a lavis-gated checkpoint: answers with the K/V modulation on and off, the "
        "style head's top-5 styles, and the input's modulation heatmap.",
    )
    parser.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="a checkpoint written by lavis-gated's runner (default: the newest "
        f"{checkpoint_files.DEFAULT_PATTERN}; `bash run_scripts/demo.sh` makes one)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 opens the demo to the network)",
    )
    parser.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    return parser.parse_args(argv)


def streamlit_arguments(checkpoint, host, port):
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
        "--checkpoint",
        os.path.abspath(checkpoint),
    ]


def main(argv=None):
    args = parse_args(argv)
    try:
        checkpoint, _ = checkpoint_files.choose_checkpoint(args.checkpoint)
    except (checkpoint_files.CheckpointChoiceError, UnsafeCheckpointError, RuntimeError) as err:
        print(f"lavis-gated-app: {err}", file=sys.stderr)
        return 2
    print(f"lavis-gated-app: serving {checkpoint} on http://{args.host}:{args.port}", flush=True)
    from streamlit.web import cli

    return cli.main(streamlit_arguments(checkpoint, args.host, args.port), prog_name="lavis-gated-app")


if __name__ == "__main__":
    sys.exit(main())
