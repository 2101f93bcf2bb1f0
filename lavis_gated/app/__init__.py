"""The web demo (lavis-gated-app) and the one-shot command (lavis-gated-predict) of a trained checkpoint.

launcher.py starts Streamlit on page.py; inference.py holds the model logic and inputs.py the input checks,
both usable without a browser; checkpoint_files.py finds the checkpoint and the files of its run.
"""

# the demo's and lavis-gated-predict's generation defaults: LAVIS generate()'s beam width and
# predict_answers()' answer length (here, not in inference.py, so that --help reads them without torch)
DEFAULT_NUM_BEAMS, DEFAULT_MAX_LENGTH = 5, 10
