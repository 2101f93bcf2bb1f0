"""The model blip2_opt_gated and its parts (registered by importing lavis_gated)."""
