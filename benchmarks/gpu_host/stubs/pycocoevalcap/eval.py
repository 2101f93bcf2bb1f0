"""pycocoevalcap.eval stand-in: COCOEvalCap raises when LAVIS's captioning/dialogue evaluation uses it."""
from _gpu_host_stubs import missing


class COCOEvalCap:
    def __init__(self, *args, **kwargs):
        raise missing("pycocoevalcap", "pycocoevalcap.eval.COCOEvalCap", "LAVIS's COCO caption metrics")
