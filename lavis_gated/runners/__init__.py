"""The runner runner_gated (registered by importing lavis_gated) and what starts a run: process group,
threads, loaders, logs."""
