"""lavis-gated: importing this package registers its model, builder, task and runner with LAVIS.

The one exception: the commands that only read a run's files (lavis-gated-report, -compare, -plots) skip
the registration, which imports LAVIS and torch (seconds) for nothing; their modules import neither.
"""

import os
import sys

__version__ = "0.2.0"

_FILE_ONLY_COMMANDS = ("lavis-gated-report", "lavis-gated-compare", "lavis-gated-plots")

if (
    os.path.basename(sys.argv[0] if sys.argv else "").split(".")[0].removesuffix("-script")
    not in _FILE_ONLY_COMMANDS
):
    # registration by import: each module registers its class with LAVIS's registry
    from lavis_gated.datasets import artquest_builder  # noqa: F401
    from lavis_gated.models import blip2_opt_gated  # noqa: F401
    from lavis_gated.runners import runner_gated  # noqa: F401
    from lavis_gated.tasks import style_captioning  # noqa: F401
