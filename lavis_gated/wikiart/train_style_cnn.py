"""Fine-tune a timm CNN on WikiArt-format style folders: the frozen style CNN of the real run.

Writes to --out: style_cnn.pth (a plain timm state dict, classifier included: the weights of the epoch
with the best validation top-1), class_names.json (the classifier rows' names, i.e. the folder names)
and metrics.json (per-epoch train loss and validation top-1, the best epoch, and how it was trained).
"""

import argparse
import json
import logging
import math
import os
import random
from collections import Counter

import timm
import torch
import torch.nn.functional as F
from timm.data import create_transform, resolve_data_config
from tqdm import tqdm

from lavis_gated.common.atomic_files import atomic_file
from lavis_gated.common.checkpoints import save_checkpoint
from lavis_gated.common.threads import set_num_threads
from lavis_gated.wikiart.style_folders import ImageDataset, scan_style_folders, split_per_class
from lavis_gated.wikiart.timm_weights import load_backbone


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", required=True, help="WikiArt-format folder: ROOT/<style name>/<image files>"
    )
    parser.add_argument(
        "--out", required=True, help="output folder for style_cnn.pth, class_names.json, metrics.json"
    )
    parser.add_argument(
        "--arch", default="efficientnet_b3", help="timm architecture (default: efficientnet_b3)"
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="input side in pixels (default: the arch's timm default, 288 for efficientnet_b3)",
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--lr", type=float, default=3e-4, help="AdamW peak learning rate (cosine decay per step)"
    )
    parser.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of each style's images held out for validation (seeded); 0: none, keep the last epoch",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--pretrained-weights",
        default=None,
        help="timm weights file to start from (e.g. ImageNet); its classifier is not used. "
        "Default: random initialisation (nothing is downloaded)",
    )
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available)")
    parser.add_argument("--num-workers", type=int, default=4, help="data-loader processes")
    parser.add_argument(
        "--limit-per-class", type=int, default=None, help="at most this many images per style"
    )
    parser.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="leave out unreadable images (counted) instead of stopping",
    )
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        parser.error("--epochs and --batch-size must be at least 1")
    if args.limit_per_class is not None and args.limit_per_class < 1:
        parser.error("--limit-per-class must be at least 1")
    if not 0 <= args.val_fraction < 1:
        parser.error(f"--val-fraction {args.val_fraction} must be in [0, 1)")
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here; use --device cpu")
    return args


def make_loaders(data, train_index, val_index, data_config, args):
    """Training batches (timm's augmentation, shuffled, seeded) and validation batches (eval transform)."""
    size = data_config["input_size"][-1]
    loaders = []
    for index, training in ((train_index, True), (val_index, False)):
        dataset = ImageDataset(
            [data.paths[i] for i in index],
            [data.labels[i] for i in index],
            create_transform(**data_config, is_training=training),
            draft_size=2 * size,
        )
        loaders.append(
            torch.utils.data.DataLoader(
                dataset,
                batch_size=args.batch_size,
                shuffle=training,
                drop_last=False,
                num_workers=args.num_workers,
                pin_memory=args.device.startswith("cuda"),
                generator=torch.Generator().manual_seed(args.seed),
                persistent_workers=args.num_workers > 0,
            )
        )
    return loaders


def autocast(device):
    """bf16 autocast on CUDA (weights stay fp32, no loss scaling needed); plain fp32 on CPU."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def train_one_epoch(model, loader, optimizer, scheduler, device, description):
    """Mean cross-entropy over the epoch's training images."""
    model.train()
    total, count = 0.0, 0
    for images, labels in tqdm(loader, desc=description, leave=False, dynamic_ncols=True):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with autocast(device):
            loss = F.cross_entropy(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(labels)
        count += len(labels)
    return total / max(count, 1)


@torch.no_grad()
def top1_accuracy(model, loader, device):
    """Share of the loader's images whose highest-scoring class is their label."""
    model.eval()
    correct, count = 0, 0
    for images, labels in loader:
        with autocast(device):
            logits = model(images.to(device, non_blocking=True))
        correct += (logits.argmax(1).cpu() == labels).sum().item()
        count += len(labels)
    return correct / max(count, 1)


def write_json(obj, path):
    with atomic_file(path, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=2, ensure_ascii=False)
        handle.write("\n")


def describe(data, train_index, val_index):
    counts = Counter(data.labels)
    print(
        f"{len(data.classes)} styles, {len(data.paths)} images "
        f"({len(train_index)} train, {len(val_index)} val): "
        + ", ".join(f"{name} {counts[i]}" for i, name in enumerate(data.classes))
    )
    if data.skipped:
        print(
            f"left out {len(data.skipped)} unreadable images (--skip-bad-images), e.g. "
            + "; ".join(f"{p}: {why}" for p, why in list(data.skipped.items())[:3])
        )
    if data.ignored:
        print(f"ignored {len(data.ignored)} files without an image extension, e.g. {data.ignored[0]}")


def train(args):
    """Train, keeping the best validation epoch's weights in --out; returns the metrics written."""
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    data = scan_style_folders(
        args.data, args.limit_per_class, args.seed, args.skip_bad_images, threads=max(1, args.num_workers)
    )
    train_index, val_index = split_per_class(data.labels, args.val_fraction, args.seed)
    describe(data, train_index, val_index)
    model = timm.create_model(args.arch, pretrained=False, num_classes=len(data.classes))
    if args.pretrained_weights:
        load_backbone(model, args.pretrained_weights)
    overrides = {"input_size": (3, args.image_size, args.image_size)} if args.image_size else {}
    data_config = resolve_data_config(overrides, model=model)
    train_loader, val_loader = make_loaders(data, train_index, val_index, data_config, args)
    device = torch.device(args.device)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * len(train_loader))
    os.makedirs(args.out, exist_ok=True)
    write_json(data.classes, os.path.join(args.out, "class_names.json"))
    metrics = {
        "arch": args.arch,
        "image_size": data_config["input_size"][-1],
        "interpolation": data_config["interpolation"],
        "data": os.path.abspath(args.data),
        "class_names": data.classes,
        "train_images": len(train_index),
        "val_images": len(val_index),
        "skipped_bad_images": len(data.skipped),
        "val_fraction": args.val_fraction,
        "seed": args.seed,
        "pretrained_weights": args.pretrained_weights,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "epochs": [],
        "best_epoch": None,
        "best_val_top1": None,
    }
    for epoch in range(1, args.epochs + 1):
        loss = train_one_epoch(
            model, train_loader, optimizer, scheduler, device, f"epoch {epoch}/{args.epochs}"
        )
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"epoch {epoch}: the training loss is {loss}; lower --lr. {args.out} keeps "
                f"the best epoch so far ({metrics['best_epoch']})"
            )
        top1 = top1_accuracy(model, val_loader, device) if val_index else None
        best = metrics["best_val_top1"]
        improved = top1 is None or best is None or top1 > best
        metrics["epochs"].append({"epoch": epoch, "train_loss": loss, "val_top1": top1})
        if improved:
            metrics["best_epoch"], metrics["best_val_top1"] = epoch, top1
            save_checkpoint(
                {k: v.detach().cpu() for k, v in model.state_dict().items()},
                os.path.join(args.out, "style_cnn.pth"),
            )
        write_json(metrics, os.path.join(args.out, "metrics.json"))
        shown = "n/a" if top1 is None else f"{top1:.4f}"
        print(
            f"epoch {epoch}/{args.epochs}: train loss {loss:.4f}, val top-1 {shown}"
            + (" (best)" if improved else "")
        )
    return metrics


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the thread-count choice
    set_num_threads()
    metrics = train(args)
    out = os.path.abspath(args.out)
    best = metrics["best_val_top1"]
    print(
        f"best epoch {metrics['best_epoch']}"
        + ("" if best is None else f", val top-1 {best:.4f}")
        + f"; wrote {out}/style_cnn.pth, class_names.json, metrics.json"
    )
    print(
        "model:\n  style_encoder:\n"
        f"    arch: {args.arch}\n    image_size: {metrics['image_size']}\n"
        f"    checkpoint: {out}/style_cnn.pth\n    class_names: {out}/class_names.json"
    )


if __name__ == "__main__":
    main()
