"""lavis-gated: importing this package registers its model, builder, task and runner with LAVIS.

Nothing heavy happens here beyond importing LAVIS itself.
"""
from lavis_gated import datasets, models, runners, tasks  # noqa: F401  (registration by import)

__version__ = "0.1.0"
