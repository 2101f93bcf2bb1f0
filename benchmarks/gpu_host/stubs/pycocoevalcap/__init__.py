"""Stand-in for pycocoevalcap (COCO caption metrics), which the air-gapped GPU host lacks.

LAVIS 1.0.2 imports `from pycocoevalcap.eval import COCOEvalCap` at module level in
lavis/tasks/captioning.py:104 and lavis/tasks/dialogue.py:88 (reached by `import lavis`); only
LAVIS's own captioning/dialogue tasks call it. lavis_gated's style_captioning task does not.
"""
