"""TensorBoard event files of a run, under <run_dir>/tensorboard/ (rank 0 only; run.tensorboard: false turns
them off). View with `tensorboard --logdir output`.

Every scalar shares one x axis, the training steps done since the run's first epoch (common/progress.py's
global step): training values at each progress line (train/...), each validation at its epoch's last step
(<split>/... and modulation_<split>/...), the test phase at the run's last step. A resumed run purges the
events from the epoch it restarts, so each step appears once. The run's pictures (plots.py) come at the end.
"""

import logging
import os
import re
import tempfile

from lavis_gated.reports.tables import numeric_metrics

_TAG_UNSAFE = re.compile(r"[^-/\w.]")  # what TensorBoard would rename, with a warning per tag


def tag(*parts):
    """A TensorBoard tag from name parts: em[pop art] -> em/pop_art."""
    return "/".join(_TAG_UNSAFE.sub("_", p.replace("[", "/").replace("]", "")) for p in parts)


def modulation_by_layer(summary):
    """<split>_modulation.json -> {(parameter, Q-Former layer): mean strength over styles and heads}.

    Every style counts once (a rare style weighs as much as a frequent one), as in the heatmap's rows.
    """
    styles = [s["mean"] for s in summary["styles"].values()]  # each (L, P, H)
    out = {}
    for li, layer in enumerate(summary["qformer_layers"]):
        for pi, parameter in enumerate(summary["parameters"]):
            heads = [h for s in styles for h in s[li][pi]]
            out[parameter, layer] = sum(heads) / len(heads)
    return out


def parameter_tag(name):
    """'|gamma_k| (K scale)' -> 'gamma_k'; '|tanh g_k| (K gate)' -> 'tanh_g_k'."""
    return _TAG_UNSAFE.sub("_", name.split("(")[0].strip(" |")).strip("_")


class TensorBoardLog:
    """A SummaryWriter with the run's tags; every method does nothing when disabled (other ranks, or off)."""

    def __init__(self, log_dir=None, purge_step=None):
        self.log_dir, self.writer = log_dir, None
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when it is on

            self.writer = SummaryWriter(log_dir, purge_step=purge_step)

    def train_step(self, step, values):
        """values: means since the last progress line (loss parts, grad_norm, lr) and skipped_steps."""
        if self.writer is None:
            return
        for name, value in values.items():
            self.writer.add_scalar(tag("train", name), value, step)

    def evaluation(self, split, step, metrics):
        """A split's metrics (numbers and per-type values; agg_metrics when finite) at `step`."""
        if self.writer is None or not isinstance(metrics, dict):
            return
        for name, value in numeric_metrics(metrics).items():
            if name not in ("epoch", "best_epoch"):
                self.writer.add_scalar(tag(split, name), value, step)

    def modulation(self, split, step, summary_path):
        """Mean modulation strength per parameter and Q-Former layer, from <split>_modulation.json if any."""
        if self.writer is None or not os.path.isfile(summary_path):
            return
        import json

        with open(summary_path, encoding="utf-8") as f:
            summary = json.load(f)
        for (parameter, layer), value in modulation_by_layer(summary).items():
            self.writer.add_scalar(f"modulation_{split}/{parameter_tag(parameter)}/layer{layer}", value, step)

    def pictures(self, run_dir, step):
        """The run's training curves and modulation heatmaps (plots.py) as images; a failure only warns."""
        if self.writer is None:
            return
        try:
            import matplotlib.image

            from lavis_gated.reports import plots

            with tempfile.TemporaryDirectory() as tmp:
                log_path = plots.training_log_of(run_dir)
                drawn = (
                    [
                        (
                            "training_curves",
                            plots.plot_training_curves(log_path, os.path.join(tmp, "curves.png")),
                        )
                    ]
                    if log_path
                    else []
                )
                for name in sorted(os.listdir(run_dir)):
                    if name.endswith("_modulation.json"):
                        png = os.path.join(tmp, name.replace(".json", ".png"))
                        drawn.append(
                            (name[: -len(".json")], plots.plot_modulation(os.path.join(run_dir, name), png))
                        )
                for name, path in drawn:
                    pixels = matplotlib.image.imread(path)[..., :3]  # RGBA floats in [0, 1]
                    self.writer.add_image(f"pictures/{name}", pixels, step, dataformats="HWC")
        except Exception as err:  # pictures are a view of data already logged; never the reason a run fails
            logging.warning("TensorBoard pictures not drawn: %s: %s", type(err).__name__, err)

    def flush(self):
        if self.writer is not None:
            self.writer.flush()

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
