"""Stand-in for spaCy, which the air-gapped GPU host lacks.

LAVIS 1.0.2 imports it at module level in lavis/models/img2prompt_models/img2prompt_vqa.py:10
(`import spacy`, reached by `import lavis`), and only calls spacy.load(...) when an Img2PromptVQA
model is built (line 61) or when BLIP-2 T5 lemmatises answers (blip2_t5.py:334-336, which catches
ImportError). BLIP-2 OPT training never does.
"""
from _gpu_host_stubs import missing


def load(*args, **kwargs):
    raise missing("spacy", "spacy.load", "img2prompt_vqa and BLIP-2 T5 answer lemmatisation")


def __getattr__(name):
    raise AttributeError(f"module 'spacy' (stand-in, benchmarks/gpu_host/stubs) has no attribute {name!r}")
