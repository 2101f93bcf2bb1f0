"""Builder `artquest`: ArtQuest-format splits (CSV/TSV/JSON/JSON-lines files plus an image root, or
webdataset shards) from the datasets YAML; see the README for the keys.

What a built split holds: rows per question_type and per style, the rows left out and why, and how
many name their image by an absolute path (used as given, wherever it lies).
"""

import logging
import os
from collections import Counter
from dataclasses import asdict

from lavis.common.registry import registry
from lavis.datasets.builders.base_dataset_builder import BaseDatasetBuilder

from lavis_gated.configs.dataset_config import artquest_config
from lavis_gated.datasets import style_image  # noqa: F401  (registers the *_style image processors)
from lavis_gated.datasets.artquest_dataset import ArtQuestDataset, read_split
from lavis_gated.datasets.artquest_shards import ArtQuestShards
from lavis_gated.datasets.checks import ImageCheck, check_split_overlap
from lavis_gated.datasets.style_sources import StyleTable

CONFIG_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "datasets", "artquest"
)


@registry.register_builder("artquest")
class ArtQuestBuilder(BaseDatasetBuilder):
    train_dataset_cls = ArtQuestDataset
    eval_dataset_cls = ArtQuestDataset
    DATASET_CONFIG_DICT = {"default": os.path.join(CONFIG_DIR, "defaults.yaml")}

    @staticmethod
    def check_config(block, where="datasets.artquest"):
        """The block's settings (ArtQuestConfig), checked: unknown keys are refused."""
        return artquest_config(block, where)

    def _download_data(self):
        """Data is local; LAVIS's _download_ann needs a `url` per split (base_dataset_builder.py:145)."""

    def _processors(self, split):
        stage = "train" if split == "train" else "eval"
        return self.vis_processors[stage], self.text_processors[stage]

    def build(self):
        """{split: dataset} for the splits in build_info.shards (streamed) or build_info.annotations;
        relative paths are relative to the working directory. Logs a summary of every split."""
        self.settings = artquest_config(self.config)
        self.build_processors()
        info = self.config.get("build_info")
        if info and info.get("shards"):
            datasets = self._build_shards(info.shards)
        elif info and info.get("annotations") and info.get("images"):
            datasets = self._build_files(info.annotations, info.images.storage)
        else:
            raise KeyError(
                "datasets.artquest.build_info needs annotations.<split>.storage and images.storage, "
                "or shards.<split>.storage"
            )
        check_split_overlap(
            {split: d.annotation for split, d in datasets.items()},
            self._sources(info),
            self.settings.split_overlap,
            self.settings.split_overlap_key,
        )
        for dataset in datasets.values():
            dataset.summary = summarise(dataset.annotation, dataset.skipped)
        log_summary("artquest", {split: d.summary for split, d in datasets.items()})
        return datasets

    @staticmethod
    def _sources(info):
        """{split: its annotation file or shards}, as messages name them."""
        entries = info.get("shards") or info.get("annotations")
        return {
            split: os.path.abspath(str(e.storage)) if isinstance(e.storage, str) else str(e.storage)
            for split, e in entries.items()
        }

    def _build_files(self, annotations, image_root):
        image_root = os.path.abspath(image_root)
        if not os.path.isdir(image_root):
            raise FileNotFoundError(
                f"image root does not exist: {image_root} (datasets.*.build_info.images.storage)"
            )
        cfg = self.settings
        style_table = StyleTable.from_config(cfg.style_table, cfg.encoding, cfg.delimiter)
        images = ImageCheck(image_root, cfg.bad_image, cfg.image_check, cfg.allow_outside_root)
        datasets = {}
        for split, annotation in annotations.items():
            path = os.path.abspath(annotation.storage)
            records, skipped = read_split(
                path,
                asdict(cfg.fields),
                split,
                cfg.missing_style,
                style_table,
                cfg.encoding,
                cfg.delimiter,
                cfg.duplicate_rows,
                images,
                lines=True,
            )
            if not records:
                raise ValueError(f"{path}: every row was left out ({skipped})")
            datasets[split] = ArtQuestDataset(*self._processors(split), image_root, records, skipped)
        return datasets

    def _build_shards(self, shards):
        cfg = self.settings
        return {
            split: ArtQuestShards(
                entry.storage,
                *self._processors(split),
                cfg.missing_style,
                cfg.shuffle_buffer if split == "train" else 0,
                cfg.duplicate_rows,
            )
            for split, entry in shards.items()
        }


NO_STYLE_LABEL = "(no style)"


def summarise(rows, skipped=None):
    """{"rows", "question_type", "style", "skipped", "absolute_image_paths"} of a split's rows (dicts
    with image, question_type, style)."""
    return {
        "rows": len(rows),
        "question_type": dict(sorted(Counter(r["question_type"] or "(none)" for r in rows).items())),
        "style": dict(sorted(Counter(r["style"] or NO_STYLE_LABEL for r in rows).items())),
        "skipped": dict(skipped or {}),
        "absolute_image_paths": sum(os.path.isabs(r["image"]) for r in rows),
    }


def log_summary(dataset_name, summaries):
    """One block in the log per dataset: a line per split."""
    lines = [f"dataset {dataset_name}:"]
    for split, s in summaries.items():
        skipped = ", ".join(f"{n} {why}" for why, n in s["skipped"].items()) or "none"
        absolute = s.get("absolute_image_paths", 0)
        lines.append(
            f"  {split}: {s['rows']} rows; skipped: {skipped}; "
            + (f"absolute image paths: {absolute}; " if absolute else "")
            + f"question_type {s['question_type']}; style {s['style']}"
        )
    logging.info("\n".join(lines))
