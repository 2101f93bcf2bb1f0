"""Stand-in for decord (video decoding), which the air-gapped GPU host lacks.

LAVIS 1.0.2 imports it at module level in lavis/datasets/data_utils.py (reached by `import lavis`):
    line 15  import decord
    line 20  from decord import VideoReader
    line 25  decord.bridge.set_bridge("torch")
The image-only lavis_gated path never decodes video; VideoReader raises if anything tries to.
"""
from _gpu_host_stubs import missing

from . import bridge  # noqa: F401  (decord.bridge.set_bridge runs at LAVIS import time)


class VideoReader:
    def __init__(self, *args, **kwargs):
        raise missing("decord", "decord.VideoReader (LAVIS load_video)", "video datasets")


def __getattr__(name):
    raise AttributeError(f"module 'decord' (stand-in, benchmarks/gpu_host/stubs) has no attribute {name!r}")
