"""lavis-gated: importing this package registers its model, builder, task and runner with LAVIS.

The one exception: the package's own commands (lavis-gated-*, and python -m on their modules). They parse
their arguments first, so that --help and a wrong flag answer at once instead of after importing LAVIS and
torch (seconds, and third-party deprecation warnings); those that need LAVIS then call register().
"""

import os
import sys
import warnings

__version__ = "0.2.0"

COMMAND_PREFIX = "lavis-gated-"
# python -m MODULE forms of the commands (and their packages' __main__)
_COMMAND_MODULES = (
    "lavis_gated.train",
    "lavis_gated.evaluate",
    "lavis_gated.reports.tables",
    "lavis_gated.reports.compare",
    "lavis_gated.reports.plots",
    "lavis_gated.ablation.harness",
    "lavis_gated.app",
    "lavis_gated.app.launcher",
    "lavis_gated.app.predict",
    "lavis_gated.datasets.synthetic_artquest",
    "lavis_gated.datasets.make_shards",
    "lavis_gated.wikiart.train_style_cnn",
    "lavis_gated.wikiart.style_table",
)
# third-party modules whose import-time FutureWarnings/DeprecationWarnings (torch API changes seen by LAVIS,
# fairscale, timm, transformers) are not ours to fix and are silenced while register() imports them
_QUIET_IMPORTS = r"(lavis|fairscale|timm|transformers|torch|torchvision|huggingface_hub|webdataset)(\.|$)"


def _command_process():
    """True when this process runs one of the package's commands, as a console script or python -m."""
    script = os.path.basename(sys.argv[0] if sys.argv else "").split(".")[0].removesuffix("-script")
    if script.startswith(COMMAND_PREFIX):
        return True
    # Under python -m, sys.argv[0] is "-m" while the package is imported; the interpreter's own arguments
    # (Python 3.10+) say which module: the one after -m among the options before any -c or script.
    argv, i = list(getattr(sys, "orig_argv", [])), 1
    while i < len(argv):
        if argv[i].startswith("-m"):
            module = argv[i][2:] or (argv[i + 1] if i + 1 < len(argv) else "")
            return module in _COMMAND_MODULES
        if argv[i] in ("-c", "-") or not argv[i].startswith("-"):
            return False
        i += 2 if argv[i] in ("-X", "-W") else 1
    return False


def register():
    """Register blip2_opt_gated, artquest, style_captioning and runner_gated with LAVIS's registry (once;
    importing the modules registers them). Third-party warnings raised while importing are not shown."""
    with warnings.catch_warnings():
        for category in (FutureWarning, DeprecationWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category, module=_QUIET_IMPORTS)
        from lavis_gated.datasets import artquest_builder, caption_builder  # noqa: F401
        from lavis_gated.models import blip2_opt_gated  # noqa: F401
        from lavis_gated.runners import runner_gated  # noqa: F401
        from lavis_gated.tasks import style_captioning  # noqa: F401


if not _command_process():
    register()
