"""The web demo (lavis-gated-app) and the one-shot command (lavis-gated-predict) of a trained checkpoint.

launcher.py starts Streamlit on page.py; inference.py holds the model logic and inputs.py the input checks,
both usable without a browser; checkpoint_files.py finds the checkpoint and the files of its run.
"""
