"""Builder `art_captions`: caption files (ArtCap-style CSV/JSON, SemArt TSV, LAVIS coco_caption JSON) plus an
image root, from the datasets YAML; the keys are CaptionsConfig's (docs/configuration.md), the layouts
docs/data.md's."""

import os
from dataclasses import asdict

from lavis.common.registry import registry

from lavis_gated.configs.dataset_config import captions_config
from lavis_gated.datasets.artquest_builder import ArtQuestBuilder, log_summary, summarise
from lavis_gated.datasets.caption_dataset import CaptionDataset, read_caption_split
from lavis_gated.datasets.checks import ImageCheck
from lavis_gated.datasets.style_sources import StyleTable

CONFIG_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "datasets", "art_captions"
)


@registry.register_builder("art_captions")
class CaptionBuilder(ArtQuestBuilder):
    """ArtQuestBuilder's processors and checks over caption files: a row per caption in the train split, a
    row per image (with all its references) in the others."""

    train_dataset_cls = CaptionDataset
    eval_dataset_cls = CaptionDataset
    DATASET_CONFIG_DICT = {"default": os.path.join(CONFIG_DIR, "defaults.yaml")}

    @staticmethod
    def check_config(block, where="datasets.art_captions"):
        """The block's settings (CaptionsConfig), checked: unknown keys are refused."""
        return captions_config(block, where)

    def build(self):
        """{split: dataset} for the splits in build_info.annotations; relative paths are relative to the
        working directory. Logs a summary of every split."""
        self.settings = captions_config(self.config)
        self.build_processors()
        info = self.config.get("build_info")
        if info and info.get("shards"):
            raise KeyError("datasets.art_captions reads annotation files; shards are the artquest builder's")
        if not (info and info.get("annotations") and info.get("images")):
            raise KeyError(
                "datasets.art_captions.build_info needs annotations.<split>.storage and images.storage"
            )
        image_root = os.path.abspath(info.images.storage)
        if not os.path.isdir(image_root):
            raise FileNotFoundError(
                f"image root does not exist: {image_root} (datasets.art_captions.build_info.images.storage)"
            )
        cfg = self.settings
        style_table = StyleTable.from_config(cfg.style_table, cfg.encoding, cfg.delimiter)
        images = ImageCheck(image_root, cfg.bad_image, cfg.image_check, cfg.allow_outside_root)
        datasets = {}
        for split, annotation in info.annotations.items():
            path = os.path.abspath(annotation.storage)
            found, skipped = read_caption_split(
                path,
                asdict(cfg.fields),
                split,
                cfg.missing_style,
                style_table,
                cfg.encoding,
                cfg.delimiter,
                cfg.duplicate_rows,
                images,
                cfg.max_caption_words,
            )
            if not found:
                raise ValueError(f"{path}: every image was left out ({skipped})")
            datasets[split] = CaptionDataset(
                *self._processors(split), image_root, found, skipped, training=split == "train"
            )
        for dataset in datasets.values():
            dataset.summary = summarise(dataset.annotation, dataset.skipped)
        log_summary("art_captions", {split: d.summary for split, d in datasets.items()})
        return datasets
