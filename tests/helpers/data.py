"""Annotation files, images and `artquest` builder configs written by data tests."""

import csv
import os

import numpy as np
from lavis.common.registry import registry
from omegaconf import OmegaConf
from PIL import Image

import lavis_gated  # noqa: F401  (registers the `artquest` builder)

PUBLIC_COLUMNS = ["image", "question", "answer", "question_type"]  # the public ArtQuest release: no style


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def save_image(path, seed=0, size=16):
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    return str(path)


def builder_cfg(tmp_path, annotations, **extra):
    return OmegaConf.create(
        {
            "data_type": "images",
            "vis_processor": {
                "train": {"name": "blip_image_eval", "image_size": 16},
                "eval": {"name": "blip_image_eval", "image_size": 16},
            },
            "text_processor": {"train": {"name": "blip_question"}, "eval": {"name": "blip_question"}},
            "build_info": {
                "annotations": {split: {"storage": str(path)} for split, path in annotations.items()},
                "images": {"storage": str(tmp_path / "images")},
            },
            **extra,
        }
    )


def build(cfg):
    return registry.get_builder_class("artquest")(cfg).build_datasets()
