"""Evaluate with LAVIS, lavis_gated's components registered (mirrors LAVIS's evaluate.py).

    python lavis_gated/evaluate.py --cfg-path CFG.yaml [--options ...]
    python -m lavis_gated.evaluate --cfg-path CFG.yaml
    python -m torch.distributed.run --nproc_per_node=2 lavis_gated/evaluate.py --cfg-path CFG.yaml

Runs run.test_splits with the weights the model was built with; see train.py for run.runner and
run.imports.
"""
import os
import sys

if not __package__:
    # Run as a file, Python puts lavis_gated/ first on sys.path, and its datasets/, models/ and
    # tasks/ then shadow top-level packages (transformers probes for `datasets`).
    import importlib.util

    _here = os.path.dirname(os.path.realpath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != _here]
    if importlib.util.find_spec("lavis_gated") is None:
        sys.path.insert(0, os.path.dirname(_here))

from lavis_gated.train import build_runner, parse_args  # noqa: E402


def main(argv=None):
    build_runner(parse_args(argv, description="Evaluation")).evaluate(skip_reload=True)


if __name__ == "__main__":
    main()
