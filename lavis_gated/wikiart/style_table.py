"""Write the image -> style table the artquest builder joins on (datasets.artquest.style_table).

The public ArtQuest release and SemArt have no style label, so the table is made here, one of two ways (a
third, SemArt's AUTHOR and TITLE joined with WikiArt's metadata, is wikiart/metadata_join.py), each row with
its `source`:
predicted by the trained style CNN (pseudo-labels, as good as the CNN; --min-confidence leaves out the
uncertain ones), or taken from a metadata table that has a style column (--from-metadata), checked for
images listed twice with different styles.
"""

import csv
import json
import logging
import os
from collections import Counter

from lavis_gated.common.atomic_files import atomic_file
from lavis_gated.common.command_line import add_flags, command_parser, resolve_device
from lavis_gated.common.threads import set_num_threads
from lavis_gated.styles import normalise_style

# torch, timm, pandas and the image modules are imported in the functions that use them, so that --help and
# a wrong flag answer before seconds of imports


def parse_args(argv=None):
    parser = command_parser(
        "lavis-gated-style-table",
        "Write the image -> style table that datasets.artquest.style_table joins on: styles predicted by the "
        "trained style CNN, or taken from a metadata table.",
        "lavis-gated-style-table --images data/artquest/images "
        "--checkpoint checkpoints/wikiart_b3/style_cnn.pth "
        "--class-names checkpoints/wikiart_b3/class_names.json --output data/artquest/image_styles.csv",
        "real_run.md",
    )
    parser.add_argument(
        "--output",
        required=True,
        metavar="CSV",
        help="the CSV to write (columns image,style[,confidence],source: cnn for predicted labels, metadata "
        "for a metadata table's)",
    )
    add_flags(parser, "num-threads")
    predicted = parser.add_argument_group("predicted styles")
    predicted.add_argument(
        "--images", help="folder of images (e.g. SemArt's Images/); names are relative to it"
    )
    add_flags(
        predicted, "checkpoint", checkpoint={"help": "style_cnn.pth written by lavis-gated-train-style-cnn"}
    )
    predicted.add_argument("--class-names", help="class_names.json written beside it")
    predicted.add_argument(
        "--arch", help="timm architecture (default: metrics.json beside the checkpoint, else efficientnet_b3)"
    )
    predicted.add_argument(
        "--image-size",
        type=int,
        help="input side (default: metrics.json beside the checkpoint, else the arch's timm input_size)",
    )
    predicted.add_argument(
        "--min-confidence",
        type=float,
        default=0.0,
        help="leave out images whose top class has a lower softmax probability (counted)",
    )
    add_flags(predicted, "batch-size", "device", "num-workers", batch_size={"default": 64})
    predicted.add_argument(
        "--skip-bad-images", action="store_true", help="leave out unreadable images (counted)"
    )
    metadata = parser.add_argument_group("styles from a metadata table")
    metadata.add_argument(
        "--from-metadata",
        metavar="CSV",
        help="a table (CSV/TSV/JSON) with an image and a style "
        "column, e.g. WikiArt metadata joined to your images",
    )
    metadata.add_argument("--image-column", default="image")
    metadata.add_argument("--style-column", default="style")
    metadata.add_argument(
        "--encoding", default="utf-8", help="of the metadata file (SemArt's CSVs are latin-1)"
    )
    args = parser.parse_args(argv)
    needed = ("images", "checkpoint", "class_names")
    if args.from_metadata is None and any(getattr(args, n) is None for n in needed):
        parser.error(
            "give --images, --checkpoint and --class-names (predicted styles), or --from-metadata CSV"
        )
    if args.from_metadata and (args.images or args.checkpoint):
        parser.error("--from-metadata takes the styles from the table; leave out --images/--checkpoint")
    if not 0 <= args.min_confidence <= 1:
        parser.error(f"--min-confidence {args.min_confidence} must be a probability in [0, 1]")
    return args


def read_class_names(path):
    with open(path, encoding="utf-8") as handle:
        names = json.load(handle)
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path}: expected a JSON list of class names (strings), one per classifier row")
    return names


def predict(model, paths, data_config, args):
    """(top class index, its softmax probability) per image, in the order of `paths`."""
    import torch
    from timm.data import create_transform
    from tqdm import tqdm

    from lavis_gated.wikiart.style_folders import ImageDataset

    dataset = ImageDataset(
        paths,
        list(range(len(paths))),
        create_transform(**data_config),
        draft_size=2 * data_config["input_size"][-1],
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, num_workers=args.num_workers)
    device = torch.device(args.device)
    model.to(device)
    tops, confidences = [], []
    for images, _ in tqdm(loader, desc="predicting styles", leave=False, dynamic_ncols=True):
        with (
            torch.no_grad(),
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"),
        ):
            probabilities = model(images.to(device)).float().softmax(-1)
        confidence, top = probabilities.max(-1)
        tops += top.tolist()
        confidences += confidence.tolist()
    return tops, confidences


def predicted_rows(args):
    """Rows (image, style, confidence) for the images under --images, and what was left out."""
    from lavis_gated.models.style_parts import cnn_data_config, recorded_input
    from lavis_gated.wikiart.style_folders import IMAGE_EXTENSIONS, drop_bad_images, list_images
    from lavis_gated.wikiart.timm_weights import load_classifier

    if not os.path.isdir(args.images):
        raise FileNotFoundError(f"image folder not found: {args.images} (--images)")
    names = read_class_names(args.class_names)
    arch = args.arch or recorded_input(args.checkpoint).get("arch", "efficientnet_b3")
    model = load_classifier(arch, args.checkpoint, names)
    data_config = cnn_data_config(model, args.image_size, checkpoint=args.checkpoint)
    paths, _ = list_images(args.images, recursive=True)
    if not paths:
        raise ValueError(f"{args.images} has no images ({', '.join(IMAGE_EXTENSIONS)})")
    paths, bad = drop_bad_images(paths, args.skip_bad_images, args.images, max(1, args.num_workers))
    tops, confidences = predict(model, paths, data_config, args)
    rows, low = [], 0
    for path, top, confidence in zip(paths, tops, confidences):
        if confidence < args.min_confidence:
            low += 1
            continue
        image = os.path.relpath(path, args.images).replace(os.sep, "/")
        rows.append((image, names[top], f"{confidence:.4f}", "cnn"))
    print(
        f"{arch} at {data_config['input_size'][-1]} px predicted the style of {len(paths)} images under "
        f"{args.images}; left out: {low} below --min-confidence {args.min_confidence}, {len(bad)} unreadable"
    )
    return ("image", "style", "confidence", "source"), rows


def metadata_rows(path, image_column, style_column, encoding="utf-8"):
    """Rows (image, style) of a metadata table, as written there; an image listed with two different styles
    (after normalisation, as StyleTable compares them) is an error naming the lines."""
    from lavis_gated.datasets.annotation_files import read_table

    frame = read_table(path, encoding)
    missing = [c for c in (image_column, style_column) if c not in frame.columns]
    if missing:
        raise KeyError(
            f"{path}: no column(s) {missing} (--image-column / --style-column); "
            f"columns found: {list(frame.columns)}"
        )
    # read_table's index is where each record is: the line it starts on, past blank lines and multi-line
    # fields (CSV, TSV, JSON lines), or its position in a JSON list
    line = "record" if os.path.splitext(path)[1].lower() == ".json" else "line"
    first, rows, conflicts, repeated, empty = {}, [], [], 0, 0
    for number, image, style in zip(frame.index, frame[image_column], frame[style_column]):
        image, style = image.strip(), style.strip()
        if not image or not normalise_style(style):
            empty += 1
        elif image not in first:
            first[image] = (number, style)
            rows.append((image, style, "metadata"))
        elif normalise_style(first[image][1]) == normalise_style(style):
            repeated += 1
        else:
            conflicts.append(
                f"{image!r} is {first[image][1]!r} on {line} {first[image][0]} "
                f"and {style!r} on {line} {number}"
            )
    if conflicts:
        raise ValueError(
            f"{path}: {len(conflicts)} images have two different styles: {'; '.join(conflicts[:10])}"
            f"{' ...' if len(conflicts) > 10 else ''}"
        )
    print(
        f"{path}: {len(frame)} rows; {len(rows)} images with a style; left out: {repeated} repeated images "
        f"(same style), {empty} rows without an image or a style"
    )
    return ("image", "style", "source"), rows


def write_table(columns, rows, path):
    """The CSV at `path`, written whole or not at all."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with atomic_file(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)


def main(argv=None):
    args = parse_args(argv)
    if not args.from_metadata:
        try:
            args.device = resolve_device(args.device)
        except ValueError as err:
            raise SystemExit(f"lavis-gated-style-table: {err}") from None
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the thread-count choice
    set_num_threads({"num_threads": args.num_threads})
    if args.from_metadata:
        columns, rows = metadata_rows(args.from_metadata, args.image_column, args.style_column, args.encoding)
    else:
        columns, rows = predicted_rows(args)
    if not rows:
        raise ValueError(f"no image has a style: nothing to write to {args.output}")
    write_table(columns, rows, args.output)
    counts = Counter(row[1] for row in rows)
    print(
        f"wrote {len(rows)} rows to {args.output}; per style: "
        + ", ".join(f"{style} {n}" for style, n in counts.most_common())
    )
    print(
        f"datasets:\n  artquest:\n    style_table:\n      storage: {os.path.abspath(args.output)}\n"
        "      key: image\n      style: style"
    )


if __name__ == "__main__":
    main()
