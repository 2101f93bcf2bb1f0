"""The task style_captioning (registered by importing lavis_gated): losses, training loop, metrics,
outputs."""
