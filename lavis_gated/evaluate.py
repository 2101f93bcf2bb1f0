"""Evaluate with LAVIS, lavis_gated's components registered (mirrors LAVIS's evaluate.py).

    lavis-gated-eval --cfg-path CFG.yaml [--checkpoint CKPT] [--split test] [--options ...]
    python lavis_gated/evaluate.py --cfg-path CFG.yaml [--checkpoint CKPT]
    python -m lavis_gated.evaluate --cfg-path CFG.yaml
    python -m torch.distributed.run --nproc_per_node=2 lavis_gated/evaluate.py --cfg-path CFG.yaml

Runs run.test_splits (or --split) with the weights the model was built with (--checkpoint sets
model.load_finetuned and model.finetuned). The model settings saved in that checkpoint are the defaults
of the evaluated model, so a run trained with e.g. gating.type none is evaluated as it was trained; the
YAML's model block and --options still win. Rank 0 then prints each split's metrics table and draws the
run folder's pictures (runners/evaluation.py). See runners/run_setup.py for run.runner and run.imports.
"""

import os
import sys


def main(argv=None):
    from lavis.common.dist_utils import is_main_process

    from lavis_gated.runners.evaluation import EvaluationConfig, parse_args, report
    from lavis_gated.runners.run_setup import build_runner

    runner = build_runner(parse_args(argv), config_cls=EvaluationConfig)
    available = {split for splits in runner.datasets.values() for split in splits}
    missing = sorted(set(runner.test_splits) - available)
    if missing:
        raise ValueError(
            f"split(s) {missing} to evaluate are not in the datasets; available: {sorted(available)}"
        )
    # log.txt names the evaluated checkpoint, whose training log the curves are drawn from
    runner.log_config()
    runner.evaluate(skip_reload=True)
    if is_main_process():
        report(str(runner.output_dir), runner.test_splits)


if __name__ == "__main__":
    if not __package__:  # run as a file: see the same block in train.py
        sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    main()
