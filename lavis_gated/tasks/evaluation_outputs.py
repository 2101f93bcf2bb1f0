"""What an evaluated split leaves in the run folder, written atomically (readers never see half a file):
<split>_metrics.json, <split>_predictions.json, <split>_modulation.json (gated models), and every
validation's predictions under result/<split>_epoch<N>_predictions.json."""

import json
import os

from lavis_gated.atomic_files import atomic_file
from lavis_gated.tasks.modulation_summary import summarise_modulation


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
        write_json(
            os.path.join(output_dir, f"{split_name}_modulation.json"),
            summarise_modulation(records, **modulation_layout),
        )
