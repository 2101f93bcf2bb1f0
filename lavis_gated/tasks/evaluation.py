"""What evaluating a split produces: one record per question or captioned image (the generated text, the
reference(s), every loss part, the style ids and hits, and for gated models the modulation strength),
gathered on rank 0 once per question_id. tasks/metrics.py turns the records into the reported numbers;
write_split_outputs writes them.

What an evaluated split leaves in the run folder, written atomically (readers never see half a file):
<split>_metrics.json, <split>_predictions.json, <split>_modulation.json (gated models): the latest
evaluation of the split, whose epoch the metrics and modulation files name ("epoch"); every validation's
predictions under result/<split>_epoch<N>_predictions.json; and <split>_best_metrics.json,
<split>_best_predictions.json, <split>_best_modulation.json: copies made when an epoch becomes the best
(the epoch of checkpoint_best.pth).

Mean K/V modulation strength per style: which Q-Former heads does each style move?

Evaluation records carry the model's per-sample modulation strength (cross-attention layer x parameter
x head, see Blip2OPTGated.modulation_strength); this averages it per style label into the JSON that the
modulation heatmap is drawn from.
"""

import json
import logging
import os
import shutil
from collections import defaultdict

import numpy as np
import torch.distributed as dist
from lavis.common.dist_utils import get_world_size, is_dist_avail_and_initialized, is_main_process
from lavis.datasets.data_utils import prepare_sample
from tqdm import tqdm

from lavis_gated.common.atomic_files import atomic_file
from lavis_gated.datasets.caption_dataset import REFERENCE_SEPARATOR
from lavis_gated.styles import normalise_style
from lavis_gated.tasks.metrics import TERMS


def batch_records(model, samples, parts, generation, with_modulation):
    """Records of one batch: parts are the task's per-sample loss parts of it; generation the settings of
    model.generate; with_modulation adds the strength (cross-attention layer x parameter x head)."""
    predictions = model.generate(samples, **generation)
    core = model.module if hasattr(model, "module") else model
    strength = core.modulation_strength(samples) if with_modulation else None
    return [
        {
            "question_id": str(samples["question_id"][i]),
            "image": samples["image_file"][i],
            "question": samples["text_input"][i],
            "prediction": predictions[i],
            "answer": samples["answer"][i],
            **(
                {"references": samples["references"][i].split(REFERENCE_SEPARATOR)}
                if "references" in samples
                else {}
            ),
            "question_type": samples["question_type"][i],
            "style": samples["style"][i],
            "style_source": (samples.get("style_source") or [""] * len(predictions))[i],
            "style_id": int(parts["style_ids"][i]),
            "probe_row": bool(parts["probe_rows"][i]),
            "probe_prediction": int(parts["probe_prediction"][i]),
            "style_head_prediction": int(parts["style_head_prediction"][i]),
            "style_hits": int(parts["style_hits"][i]),
            "style_positions": int(parts["style_positions"][i]),
            "lm_tokens": int(parts["lm_tokens"][i]),
            **{k: float(parts[k][i]) for k in TERMS},
            **({} if strength is None else {"modulation": strength[i].tolist()}),
        }
        for i in range(len(predictions))
    ]


def evaluate_split(task, model, data_loader, cuda_enabled=True):
    """Every rank evaluates its batches (task.valid_step under task.autocast); rank 0 gets all records, once
    per question_id (runner_gated's evaluation sampler never repeats one; LAVIS's DistributedSampler pads with
    repeats), sorted by question_id."""
    records = []
    total = len(data_loader) if hasattr(data_loader, "__len__") else None
    progress = tqdm(
        data_loader,
        total=total,
        desc="Evaluation (loss + generation)",
        unit="batch",
        disable=not is_main_process(),
        dynamic_ncols=True,
    )
    for samples in progress:
        samples = prepare_sample(samples, cuda_enabled=cuda_enabled)
        with task.autocast(cuda_enabled):
            records.extend(task.valid_step(model=model, samples=samples))
    if is_dist_avail_and_initialized():
        gathered = [None] * get_world_size()
        dist.all_gather_object(gathered, records)
        records = [r for part in gathered for r in part]
    unique = {}
    for r in records:
        unique.setdefault(r["question_id"], r)
    if len(unique) < len(records):
        logging.info("evaluation: %d repeated records (sampler padding) dropped", len(records) - len(unique))
    return [unique[k] for k in sorted(unique)]


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


NO_STYLE_LABEL = "(no style)"
PARAMETER_NAMES = {
    "film": ["|gamma_k| (K scale)", "|gamma_v| (V scale)", "|beta_v| (V shift)"],
    "gate": ["|tanh g_k| (K gate)", "|tanh g_v| (V gate)"],
    **{kind: ["|tanh alpha| (control gate)"] for kind in ("adapter", "style_query", "style_prefix")},
}


def summarise_modulation(records, gating_type, qformer_layers):
    """records: dicts with "style" and "modulation" (L, P, H) nested lists -> a JSON-ready dict

    {"gating_type", "parameters": P names, "qformer_layers": L Q-Former layer indices,
     "styles": {style: {"count": n, "mean": (L, P, H) nested lists}}}, styles sorted by name.
    """
    groups = defaultdict(list)
    for r in records:
        groups[normalise_style(r["style"]) or NO_STYLE_LABEL].append(r["modulation"])
    return {
        "gating_type": gating_type,
        "parameters": PARAMETER_NAMES[gating_type],
        "qformer_layers": list(qformer_layers),
        "styles": {
            style: {"count": len(values), "mean": np.asarray(values, dtype=np.float64).mean(0).tolist()}
            for style, values in sorted(groups.items())
        },
    }
