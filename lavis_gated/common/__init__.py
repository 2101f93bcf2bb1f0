"""The bottom part of the package: modules that import nothing else of lavis_gated."""
