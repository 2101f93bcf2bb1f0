r"""Run under torchrun: every rank streams a shard split through a DataLoader with workers, and rank 0
writes what each rank saw (question ids, before any de-duplication) and each rank's len() to a JSON file.

    python -m torch.distributed.run --nproc_per_node=2 \
        tests/helpers/shard_partition.py PATTERN OUT.json NUM_WORKERS
"""

import json
import sys

import torch.distributed as dist
from lavis.common.registry import registry
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

import lavis_gated  # noqa: F401


def main(pattern, out_path, num_workers):
    dist.init_process_group("gloo")
    cfg = OmegaConf.create(
        {
            "data_type": "images",
            "vis_processor": {"eval": {"name": "blip_image_eval", "image_size": 16}},
            "text_processor": {"eval": {"name": "blip_question"}},
            "build_info": {"shards": {"val": {"storage": pattern}}},
        }
    )
    dataset = registry.get_builder_class("artquest")(cfg).build_datasets()["val"]
    loader = DataLoader(dataset, batch_size=3, num_workers=num_workers, collate_fn=dataset.collater)
    passes = [[qid for batch in loader for qid in batch["question_id"]] for _ in range(2)]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, {"passes": passes, "len": len(dataset)})
    if dist.get_rank() == 0:
        with open(out_path, "w") as handle:
            json.dump({"ranks": gathered, "all_ids": [r["question_id"] for r in dataset.annotation]}, handle)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
