"""Builder `artquest`: ArtQuest-format CSV splits plus an image root, from the datasets YAML."""
import os

from lavis.common.registry import registry
from lavis.datasets.builders.base_dataset_builder import BaseDatasetBuilder

from lavis_gated.datasets.artquest_dataset import ArtQuestDataset, read_split

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "datasets", "artquest")


@registry.register_builder("artquest")
class ArtQuestBuilder(BaseDatasetBuilder):
    train_dataset_cls = ArtQuestDataset
    eval_dataset_cls = ArtQuestDataset
    DATASET_CONFIG_DICT = {"default": os.path.join(CONFIG_DIR, "defaults.yaml")}

    def _download_data(self):
        """Data is local; LAVIS's _download_ann needs a `url` per split (base_dataset_builder.py:145)."""

    def build(self):
        """{split: ArtQuestDataset} for the splits in build_info.annotations; relative paths are relative
        to the working directory."""
        self.build_processors()
        info = self.config.get("build_info")
        if not info or not info.get("annotations") or not info.get("images"):
            raise KeyError("datasets.artquest.build_info needs annotations.<split>.storage and images.storage")
        image_root = os.path.abspath(info.images.storage)
        if not os.path.isdir(image_root):
            raise FileNotFoundError(f"image root does not exist: {image_root} (datasets.*.build_info.images.storage)")
        fields = dict(self.config.get("fields") or {})
        missing_style = self.config.get("missing_style", "error")
        datasets = {}
        for split, annotation in info.annotations.items():
            is_train = split == "train"
            records = read_split(os.path.abspath(annotation.storage), fields, split, missing_style)
            datasets[split] = ArtQuestDataset(
                vis_processor=self.vis_processors["train" if is_train else "eval"],
                text_processor=self.text_processors["train" if is_train else "eval"],
                vis_root=image_root,
                records=records,
            )
        return datasets
