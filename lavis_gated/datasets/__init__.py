"""ArtQuest-format data and caption files: files, shards, style sources, checks, the builders `artquest` and
`art_captions` (registered by importing lavis_gated), synthetic data and the frozen-feature cache."""
