"""Registered on import by lavis_gated/__init__.py."""
from lavis_gated.runners import runner_gated  # noqa: F401  (registers "runner_gated")
