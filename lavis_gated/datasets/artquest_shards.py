"""ArtQuest rows streamed from webdataset tar shards (written by make_shards), for data too large to
list and index on every node.

A sample is one row: `<key>.json` (the row) and `<key>.<ext>` (the image's encoded bytes). The rows
(not the images) are read once at build time, for validation, the style vocabulary and the summary.
While streaming, the kept rows, in shard order, are cut into one contiguous range per (rank, data-loader
worker), so that across a torch.distributed job every row is read exactly once per pass, and each
process opens only the shards that overlap its range.
"""

import json
import math
import os
import tarfile

import pandas as pd
import torch
import webdataset as wds
from torch.utils.data.dataloader import default_collate
from webdataset.shardlists import expand_urls
from webdataset.tariterators import base_plus_ext
from webdataset.utils import pytorch_worker_info

from lavis_gated.datasets.artquest_dataset import to_sample
from lavis_gated.datasets.checks import ROW_KEYS, apply_missing_style, check_rows, read_rgb
from lavis_gated.datasets.style_sources import describe_missing, style_label


def shard_urls(storage):
    """Local tar paths from a brace pattern ("train-{000000..000003}.tar") or a list of paths/patterns."""
    patterns = [storage] if isinstance(storage, str) else list(storage)
    urls = [os.path.abspath(url) for pattern in patterns for url in expand_urls(pattern)]
    missing = [url for url in urls if not os.path.isfile(url)]
    if not urls or missing:
        raise FileNotFoundError(f"shard files not found: {missing[:5] or storage} ({len(missing)} missing)")
    return urls


def read_shard_rows(url):
    """The JSON rows of one shard in order, without reading the images; every row needs an image."""
    rows, with_image = [], set()
    with tarfile.open(url) as tar:
        for member in tar:
            key, extension = base_plus_ext(member.name)
            if extension == "json":
                rows.append({**json.loads(tar.extractfile(member).read().decode("utf-8")), "__key__": key})
            elif member.isfile():
                with_image.add(key)
    without = [row["__key__"] for row in rows if row["__key__"] not in with_image]
    if without:
        raise ValueError(f"{url}: {len(without)} samples have no image; first keys: {without[:5]}")
    missing = sorted({k for row in rows for k in ROW_KEYS if k not in row})
    if missing:
        raise KeyError(f"{url}: rows without {missing} (write shards with lavis_gated.datasets.make_shards)")
    return rows


def slot_range(total, slot, slots):
    """[start, stop) of the contiguous share `slot` of `slots` in `total` rows (sizes differ by at most 1)."""
    return total * slot // slots, total * (slot + 1) // slots


class ArtQuestShards(wds.DataPipeline):
    """An IterableDataset over shards that splits itself across ranks and workers.

    len() is the number of rows per rank, rounded up, so that every rank runs the same number of
    training steps; a rank whose share is one row shorter starts its next pass one row early.
    """

    def __init__(
        self,
        storage,
        vis_processor,
        text_processor,
        missing_style="error",
        shuffle_buffer=0,
        duplicate_rows="error",
    ):
        self.urls = shard_urls(storage)
        self.source = storage if isinstance(storage, str) else f"{self.urls[0]} ... ({len(self.urls)} shards)"
        rows = [{**row, "shard": i} for i, url in enumerate(self.urls) for row in read_shard_rows(url)]
        if not rows:
            raise ValueError(f"{self.source}: no rows")
        frame = pd.DataFrame(rows).assign(position=range(len(rows)))
        frame, skipped = check_rows(frame, self.source, duplicate_rows=duplicate_rows)
        raw = frame["style"]
        frame["style"] = raw.map(style_label)
        # a shard row carries its label in its own style column, as a split's column does (label provenance)
        frame["style_source"] = frame["style"].where(frame["style"] == "", "column")
        unlabelled = frame["style"] == ""
        where = describe_missing(frame["image"][unlabelled], raw[unlabelled], "the shard rows' 'style'")
        frame, no_style = apply_missing_style(frame, self.source, missing_style, where)
        self.skipped = {**skipped, **no_style}
        self.annotation = [{**row, "instance_id": str(row["position"])} for row in frame.to_dict("records")]
        self.vis_processor, self.text_processor = vis_processor, text_processor
        self.shuffle_buffer = shuffle_buffer
        self.summary = None
        super().__init__(self._slot_samples, self._shuffled, wds.map(self._to_sample))

    def __len__(self):
        _, world_size, _, _ = pytorch_worker_info()
        return math.ceil(len(self.annotation) / world_size)

    def style_labels(self):
        return [row["style"] for row in self.annotation]

    def collater(self, samples):
        return default_collate(samples)

    def _slot_samples(self):
        """(row, raw sample) for this process's range of the kept rows, in shard order."""
        rank, world_size, worker, num_workers = pytorch_worker_info()
        start, stop = slot_range(len(self.annotation), rank * num_workers + worker, world_size * num_workers)
        rows = iter(self.annotation[start:stop])
        row = next(rows, None)
        while row is not None:
            shard = row["shard"]
            for sample in wds.tarfile_samples([{"url": self.urls[shard]}]):
                if sample["__key__"] == row["__key__"]:
                    yield row, sample
                    row = next(rows, None)
                    if row is None or row["shard"] != shard:
                        break
            else:
                raise RuntimeError(
                    f"{self.urls[shard]}: sample {row['__key__']} not found; the shard changed after "
                    "the dataset was built"
                )

    def _shuffled(self, samples):
        """A buffer shuffle for training, seeded from torch's generator (per worker, per pass,
        reproducible)."""
        if self.shuffle_buffer <= 1:
            return samples
        seed = int(torch.empty((), dtype=torch.int64).random_().item())
        return wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, seed=seed)(samples)

    def _to_sample(self, item):
        row, sample = item
        extension = next(k for k in sample if not k.startswith("__") and k != "json")
        try:
            image = read_rgb(sample[extension])
        except (OSError, SyntaxError, ValueError) as err:
            raise ValueError(
                f"{sample['__url__']}: image of sample {sample['__key__']} ({row['image']}) does not "
                f"decode: {err}"
            ) from err
        return to_sample(row, image, self.vis_processor, self.text_processor)
