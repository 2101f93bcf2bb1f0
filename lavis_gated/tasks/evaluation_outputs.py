"""What an evaluated split leaves in the run folder, written atomically (readers never see half a file):
<split>_metrics.json, <split>_predictions.json, <split>_modulation.json (gated models): the latest
evaluation of the split, whose epoch the metrics and modulation files name ("epoch"); every validation's
predictions under result/<split>_epoch<N>_predictions.json; and <split>_best_metrics.json,
<split>_best_predictions.json, <split>_best_modulation.json: copies made when an epoch becomes the best
(the epoch of checkpoint_best.pth)."""

import json
import os
import shutil

from lavis_gated.atomic_files import atomic_file
from lavis_gated.tasks.modulation_summary import summarise_modulation

KINDS = ("metrics", "predictions", "modulation")


def write_json(path, obj):
    with atomic_file(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)


def write_split_outputs(output_dir, result_dir, split_name, epoch, records, metrics, modulation_layout=None):
    """The split's files; records carry "modulation" (cross-attention layer x parameter x head) when gated."""
    predictions = [{k: v for k, v in r.items() if k != "modulation"} for r in records]
    write_json(os.path.join(result_dir, f"{split_name}_epoch{epoch}_predictions.json"), predictions)
    write_json(os.path.join(output_dir, f"{split_name}_predictions.json"), predictions)
    write_json(os.path.join(output_dir, f"{split_name}_metrics.json"), metrics)
    if modulation_layout and records:
        summary = {"epoch": epoch, **summarise_modulation(records, **modulation_layout)}
        write_json(os.path.join(output_dir, f"{split_name}_modulation.json"), summary)


def keep_best_outputs(output_dir, split_name):
    """Copy the split's latest files to <split>_best_<kind>.json: called when that evaluation's epoch has just
    become the best. Returns the paths written."""
    written = []
    for kind in KINDS:
        source = os.path.join(output_dir, f"{split_name}_{kind}.json")
        if os.path.isfile(source):
            target = os.path.join(output_dir, f"{split_name}_best_{kind}.json")
            with open(source, "rb") as src, atomic_file(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            written.append(target)
    return written
