"""Datasets; importing registers the `artquest` builder with LAVIS."""
from lavis_gated.datasets.artquest_builder import ArtQuestBuilder  # noqa: F401
