"""Models; importing registers `blip2_opt_gated` with LAVIS."""
from lavis_gated.models.blip2_opt_gated import Blip2OPTGated  # noqa: F401
