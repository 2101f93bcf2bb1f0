"""Tasks; importing registers `style_captioning` with LAVIS."""
from lavis_gated.tasks.style_captioning import StyleCaptioningTask  # noqa: F401
