"""lavis-gated: importing this package registers its model, builder, task and runner with LAVIS.

The one exception: the commands that only read a run's files (lavis-gated-report, -compare, -plots) and the
ablation harness, which only launches training processes (lavis-gated-ablate), skip the registration, which
imports LAVIS and torch (seconds) for nothing; their modules import neither. So does python -m on them.
"""

import os
import sys

__version__ = "0.2.0"

_FILE_ONLY_COMMANDS = ("lavis-gated-report", "lavis-gated-compare", "lavis-gated-plots", "lavis-gated-ablate")
_FILE_ONLY_MODULES = (
    "lavis_gated.reports.tables",
    "lavis_gated.reports.compare",
    "lavis_gated.reports.plots",
    "lavis_gated.ablation.harness",
)


def _file_only_command():
    """True when this process runs one of those commands, as a console script or as python -m MODULE."""
    script = os.path.basename(sys.argv[0] if sys.argv else "").split(".")[0].removesuffix("-script")
    if script in _FILE_ONLY_COMMANDS:
        return True
    # Under python -m, sys.argv[0] is "-m" while the package is imported; the interpreter's own arguments
    # (Python 3.10+) say which module: the one after -m among the options before any -c or script.
    argv, i = list(getattr(sys, "orig_argv", [])), 1
    while i < len(argv):
        if argv[i].startswith("-m"):
            module = argv[i][2:] or (argv[i + 1] if i + 1 < len(argv) else "")
            return module in _FILE_ONLY_MODULES
        if argv[i] in ("-c", "-") or not argv[i].startswith("-"):
            return False
        i += 2 if argv[i] in ("-X", "-W") else 1
    return False


if not _file_only_command():
    # registration by import: each module registers its class with LAVIS's registry
    from lavis_gated.datasets import artquest_builder  # noqa: F401
    from lavis_gated.models import blip2_opt_gated  # noqa: F401
    from lavis_gated.runners import runner_gated  # noqa: F401
    from lavis_gated.tasks import style_captioning  # noqa: F401
