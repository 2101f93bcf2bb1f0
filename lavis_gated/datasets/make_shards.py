"""Convert ArtQuest-format splits and their images into webdataset tar shards.

    lavis-gated-make-shards --cfg-path projects/gated/demo.yaml --output-dir data/demo_shards

The splits are built exactly as training would build them (datasets.artquest of the YAML: fields,
style source, missing-style and bad-image policies), so the shards hold validated rows with their
style resolved. A sample is `<index>.json` (the row) plus `<index>.<ext>` (the image file's bytes).
Each shard is written to a temporary file, synced and renamed. Prints the build_info lines to use.
"""

import json
import logging
import os

from lavis_gated.common.atomic_files import atomic_file
from lavis_gated.common.command_line import add_flags, command_parser
from lavis_gated.common.threads import set_num_threads

# webdataset, OmegaConf and the builder (which imports LAVIS) are imported where used, so that --help and
# a wrong flag answer before seconds of imports


def load_dataset_config(cfg_path, name="artquest"):
    """datasets.<name> of a project YAML over the builder's defaults, as LAVIS's Config merges them."""
    from omegaconf import OmegaConf

    from lavis_gated.datasets.artquest_builder import ArtQuestBuilder

    project = OmegaConf.load(cfg_path).get("datasets", {}).get(name)
    if project is None:
        raise KeyError(f"{cfg_path}: no datasets.{name} section")
    return OmegaConf.merge(
        OmegaConf.load(ArtQuestBuilder.DATASET_CONFIG_DICT["default"]).datasets[name], project
    )


def _sample(index, row):
    from lavis_gated.datasets.checks import ROW_KEYS  # lazily (numpy): --help stays fast

    with open(row["image_path"], "rb") as handle:
        image = handle.read()
    extension = os.path.splitext(row["image_path"])[1].lower().lstrip(".") or "img"
    payload = json.dumps({k: row[k] for k in ROW_KEYS}, ensure_ascii=False).encode("utf-8")
    return {"__key__": f"{index:09d}", "json": payload, extension: image}


def _write_shard(path, samples):
    import webdataset as wds

    with atomic_file(path) as handle:
        writer = wds.TarWriter(handle, encoder=False, mtime=0)  # fixed mtime: same input, same bytes
        for sample in samples:
            writer.write(sample)
        writer.close()


def write_shards(rows, out_dir, split, maxcount=1000):
    """Write rows (with "image_path") as <out_dir>/<split>-NNNNNN.tar; return the brace pattern."""
    os.makedirs(out_dir, exist_ok=True)
    existing = sorted(n for n in os.listdir(out_dir) if n.startswith(f"{split}-") and n.endswith(".tar"))
    if existing:
        raise FileExistsError(
            f"{out_dir} already holds {split} shards ({existing[:3]}...); remove them or choose another "
            "--output-dir"
        )
    count = max(1, -(-len(rows) // maxcount))
    for shard in range(count):
        chunk = rows[shard * maxcount : (shard + 1) * maxcount]
        samples = (_sample(shard * maxcount + i, row) for i, row in enumerate(chunk))
        _write_shard(os.path.join(out_dir, f"{split}-{shard:06d}.tar"), samples)
    return os.path.join(out_dir, f"{split}-{{000000..{count - 1:06d}}}.tar")


def make_shards(cfg_path, out_dir, maxcount=1000, name="artquest"):
    """Build the YAML's annotation splits and write each as shards; return {split: pattern}."""
    from lavis_gated.datasets.artquest_builder import ArtQuestBuilder

    cfg = load_dataset_config(cfg_path, name)
    if cfg.build_info.get("shards"):
        raise ValueError(
            f"{cfg_path}: datasets.{name}.build_info names shards already; give the annotation files"
        )
    datasets = ArtQuestBuilder(cfg).build()
    return {
        split: write_shards(dataset.annotation, out_dir, split, maxcount)
        for split, dataset in datasets.items()
    }


def main(argv=None):
    parser = command_parser(
        "lavis-gated-make-shards",
        "Write a project YAML's ArtQuest splits as webdataset shards (image bytes + checked row), for "
        "training on many nodes.",
        "lavis-gated-make-shards --cfg-path projects/gated/artquest.yaml --output-dir data/artquest_shards",
        "data.md",
    )
    add_flags(
        parser,
        "cfg-path",
        "output-dir",
        "num-threads",
        cfg_path={"required": True, "help": "project YAML whose datasets.<name> names the splits"},
        output_dir={"required": True, "help": "output folder for <split>-NNNNNN.tar"},
    )
    parser.add_argument("--maxcount", type=int, default=1000, help="rows per shard")
    parser.add_argument("--dataset", default="artquest", help="name of the datasets entry")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the builder's summary and skip counts
    set_num_threads({"num_threads": args.num_threads})
    patterns = make_shards(args.cfg_path, args.output_dir, args.maxcount, args.dataset)
    print(f"datasets.{args.dataset}.build_info:\n  shards:")
    for split, pattern in patterns.items():
        print(f"    {split}:\n      storage: {pattern}")


if __name__ == "__main__":
    main()
