"""ArtQuest-format data: files, shards, style sources, checks, the builder `artquest` (registered by importing
lavis_gated), synthetic data and the frozen-feature cache."""
