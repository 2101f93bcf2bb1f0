"""One vocabulary of flags for every lavis-gated command, and the layout of each command's --help.

A flag that means the same thing in two commands is defined once here (name, type, help), so
`--cfg-path`, `--options`, `--output-dir`, `--device`, `--num-threads`, `--max-len`, `--num-beams`,
`--checkpoint`, `--split`, `--nproc`, `--batch-size` and `--num-workers` read alike everywhere. Where a
flag stands for a run-config key (train, eval), `run_options` turns it into that key's `--options` entry,
so a flag and `--options run.KEY=...` can never disagree.

Only argparse is imported: every command builds its parser from here before anything heavy is imported,
so `--help` prints at once (benchmarks/help_time.py times it).
"""

import argparse

# name -> argparse keywords; `required` and `default` may be overridden per command
FLAGS = {
    "cfg-path": dict(metavar="YAML", help="project YAML with LAVIS's model / datasets / run blocks"),
    "options": dict(
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides merged into the YAML, e.g. run.max_epoch=3 model.gating.type=none",
    ),
    "output-dir": dict(metavar="DIR", help="folder the command writes into"),
    "checkpoint": dict(
        metavar="CKPT", help="a checkpoint_best.pth / checkpoint_last.pth written by the runner"
    ),
    "device": dict(default=None, help="cuda, cuda:1 or cpu (default: cuda when a GPU is visible, else cpu)"),
    "num-threads": dict(
        type=int,
        default=None,
        metavar="N",
        help="CPU threads of this process (default: chosen from the idle cores, run.num_threads)",
    ),
    "max-len": dict(type=int, metavar="N", help="most new tokens of an answer (run.max_len)"),
    "num-beams": dict(type=int, metavar="N", help="beam search width (run.num_beams)"),
    "split": dict(metavar="SPLIT", help="split to use: train, val or test"),
    "nproc": dict(type=int, default=1, metavar="N", help="processes per run on this node (torchrun)"),
    "batch-size": dict(type=int, metavar="N", help="rows per batch"),
    "num-workers": dict(type=int, default=4, metavar="N", help="data-loader processes"),
}

# flags that stand for a run-config key: flag dest -> key
RUN_KEYS = {
    "output_dir": "run.output_dir",
    "device": "run.device",
    "num_threads": "run.num_threads",
    "max_len": "run.max_len",
    "num_beams": "run.num_beams",
}

# names commands used to give these flags (--output-dir is a folder, --output a file);
# tests/test_commands.py checks that no command offers them
RETIRED = ("--cfg", "--max-length", "--out", "--data", "--num-thread", "--max_len")


def command_parser(prog, purpose, example, docs_page):
    """An ArgumentParser whose --help starts with a one-line purpose and ends with an example and the docs
    page to read (docs_page: a file under docs/, e.g. "app.md")."""
    return argparse.ArgumentParser(
        prog=prog,
        description=purpose,
        epilog=f"example:\n  {example}\n\ndocs: docs/{docs_page} in the lavis-gated repository",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_flags(parser, *names, **overrides):
    """Add the shared flags `names` (e.g. "cfg-path", "device") to parser; overrides: {dest: {keyword:
    value}} for one command (a default, required=True, a help text naming that command's use)."""
    for name in names:
        dest = name.replace("-", "_")
        parser.add_argument(f"--{name}", dest=dest, **{**FLAGS[name], **overrides.get(dest, {})})
    return parser


def run_options(args):
    """The `--options` entries of the run-config flags that were given ([] when none was)."""
    return [
        f"{key}={getattr(args, dest)}"
        for dest, key in RUN_KEYS.items()
        if getattr(args, dest, None) is not None
    ]


def resolve_device(requested=None):
    """The torch device name to run on: `requested` (checked), else cuda when a GPU is visible, else cpu.
    ValueError names the flag when cuda is asked for and none is visible."""
    import torch

    if requested is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(requested).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {requested}: no CUDA GPU is visible to torch here; use --device cpu")
    return str(requested)
