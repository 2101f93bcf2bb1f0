"""What evaluating a split produces: one record per question (the generated answer, the reference, every
loss part, the style ids and hits, and for gated models the modulation strength), gathered on rank 0 once per
question_id. split_metrics turns the records into the reported numbers; evaluation_outputs writes them."""

import logging

import torch.distributed as dist
from lavis.common.dist_utils import get_world_size, is_dist_avail_and_initialized, is_main_process
from lavis.datasets.data_utils import prepare_sample
from tqdm import tqdm

from lavis_gated.tasks import loss_terms


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
            **{k: float(parts[k][i]) for k in loss_terms.TERMS},
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
