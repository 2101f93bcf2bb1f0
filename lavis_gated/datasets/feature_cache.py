"""Frozen-feature cache (`run.frozen_feature_cache: <folder>`): the frozen ViT's output and the style CNN's
pooled feature, computed once per image and read back from memory-mapped files.

With a deterministic (eval-style) image transform the frozen parts map an image to the same features in
every epoch and for every question about it, so encoding it again is wasted work: the ViT alone is 20-47 %
of a BLIP-2 step. Batches of a cached dataset carry `vit_features` / `style_features` instead of `image`,
and the model (Blip2OPTGated.image_inputs) skips its frozen encoders.

A store lives in <folder>/<signature hash>/: the signature names the transform, the frozen parts (a digest of
their weights, their precision), the device type and the autocast they ran under, so changing any of them
selects another store instead of reading stale features. Features keep the dtype they were computed in
(fp16 for the real model on CUDA, fp32 on CPU), so cached training computes exactly what uncached does.
A store is written in a temporary folder and renamed into place; images whose file changed (size or
modification time) are encoded again, the other rows are copied from the previous store.
"""

import hashlib
import json
import logging
import os
import shutil
import tempfile

import numpy as np
import torch
import torch.distributed as dist
from lavis.common.dist_utils import is_dist_avail_and_initialized, is_main_process
from torch.utils.data import DataLoader, Dataset

from lavis_gated.datasets.checks import read_rgb

DETERMINISTIC_PROCESSORS = ("BlipImageEvalProcessor", "BlipImageEvalStyleProcessor")
META = "meta.json"
# numpy has no bfloat16: such features are stored as their raw 16 bits
_STORAGE_DTYPES = {torch.float32: np.float32, torch.float16: np.float16, torch.bfloat16: np.uint16}
_DTYPE_NAMES = {str(t): t for t in _STORAGE_DTYPES}


def weights_digest(module, samples_per_tensor=64):
    """A short hash of a module's weights, from evenly spaced values of every tensor (fast even for ViT-g on
    a GPU; a retrained or replaced checkpoint changes it). Storage precision does not change it."""
    digest = hashlib.sha1()
    for name, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // samples_per_tensor)
        values = flat[::step][:samples_per_tensor].float().cpu().numpy()
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()


def transform_signature(processor, where):
    """The processor's transform as text; an error for random (training-style) transforms, whose output
    differs at every epoch and so cannot be cached."""
    name = type(processor).__name__
    if name not in DETERMINISTIC_PROCESSORS:
        raise ValueError(
            f"run.frozen_feature_cache needs deterministic image transforms, but {where} uses {name}; use "
            f"blip_image_eval for it (datasets.<name>.vis_processor) or unset run.frozen_feature_cache"
        )
    style = getattr(processor, "style_transform", None)
    signature = f"{name}: {getattr(processor, 'transform', processor)!r}"
    return signature if style is None else f"{signature}; style CNN: {style!r}"


class FeatureStore:
    """Read side of one store: feature rows looked up by image key, memory-mapped in each process."""

    def __init__(self, folder):
        self.folder = folder
        with open(os.path.join(folder, META), encoding="utf-8") as f:
            self.meta = json.load(f)
        self.index = self.meta["index"]  # key -> [row, file size, file mtime_ns]
        self._arrays = None

    def __getstate__(self):  # DataLoader workers open their own maps
        return {**self.__dict__, "_arrays": None}

    def _open(self):
        if self._arrays is None:
            count = len(self.index)
            self._arrays = {
                name: np.memmap(
                    os.path.join(self.folder, f"{name}.bin"),
                    mode="r",
                    dtype=_STORAGE_DTYPES[_DTYPE_NAMES[spec["dtype"]]],
                    shape=(count, *spec["shape"]),
                )
                for name, spec in self.meta["features"].items()
            }
        return self._arrays

    def is_current(self, key):
        """Whether the store holds the image file `key` as it is now (same size and modification time)."""
        entry = self.index.get(key)
        return entry is not None and os.path.exists(key) and entry[1:] == _file_stamp(key)

    def get(self, key):
        """{feature name: tensor} of one image."""
        row = self.index[key][0]
        out = {}
        for name, array in self._open().items():
            tensor = torch.from_numpy(np.array(array[row]))
            out[name] = tensor.view(_DTYPE_NAMES[self.meta["features"][name]["dtype"]])
        return out


def _file_stamp(path):
    stat = os.stat(path)
    return [stat.st_size, stat.st_mtime_ns]


class _Images(Dataset):
    """Distinct image files through one processor (the build's input): the ViT's image, and with a
    style_transform (datasets/style_image.py) also the style CNN's full-image view."""

    def __init__(self, paths, processor):
        self.paths, self.processor = paths, processor

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        image = read_rgb(self.paths[i])  # closed at once: a build opens every distinct image
        style = getattr(self.processor, "style_transform", None)
        return self.processor(image) if style is None else (self.processor(image), style(image))


def _create_arrays(folder, count, features):
    """Writable memory maps for `count` rows of each feature ({name: {"dtype": str, "shape": list}})."""
    return {
        name: np.memmap(
            os.path.join(folder, f"{name}.bin"),
            mode="w+",
            shape=(count, *spec["shape"]),
            dtype=_STORAGE_DTYPES[_DTYPE_NAMES[spec["dtype"]]],
        )
        for name, spec in features.items()
    }


def build_store(folder, signature, paths, processor, encode, batch_size=64, num_workers=0):
    """Make `folder` hold the features of every image path (the key is the absolute path), encoded by
    `encode` in batches of `batch_size` (that of the training step).

    Encodes only the images that the existing store lacks or that changed since; keeps its other current
    rows, so stores shared by several splits or configs only grow. encode(images) or, for a processor with a
    style_transform, encode(images, style_images). Returns the FeatureStore.
    """
    old = FeatureStore(folder) if os.path.isfile(os.path.join(folder, META)) else None
    current = {key for key in old.index if old.is_current(key)} if old else set()
    needed = set(paths)
    if needed <= current:
        return old
    keys, todo = sorted(needed | current), sorted(needed - current)
    logging.info(
        "frozen-feature cache %s: encoding %d images, %d already cached", folder, len(todo), len(current)
    )
    rows = {key: row for row, key in enumerate(keys)}
    stamps = {
        key: _file_stamp(key) for key in keys
    }  # before encoding: a file changed meanwhile is stale next time
    tmp = tempfile.mkdtemp(prefix=".building-", dir=os.path.dirname(os.path.abspath(folder)))
    try:
        features = old.meta["features"] if current else None
        arrays = _create_arrays(tmp, len(keys), features) if features else None
        for key in current:
            for name, array in old._open().items():
                arrays[name][rows[key]] = array[old.index[key][0]]
        loader = DataLoader(_Images(todo, processor), batch_size=batch_size, num_workers=num_workers)
        done = 0
        for batch in loader:
            views = list(batch) if isinstance(batch, (list, tuple)) else [batch]
            count = len(views[0])
            # always full batches: convolution and GEMM kernels are chosen by batch size, so features come out
            # bit-identical to the training step's only when encoded at its batch size
            views = [torch.cat([v, v[:1].expand(batch_size - count, *v.shape[1:])]) for v in views]
            encoded = {name: values[:count].detach().cpu() for name, values in encode(*views).items()}
            if arrays is None:
                features = {
                    name: {"dtype": str(encoded[name].dtype), "shape": list(encoded[name].shape[1:])}
                    for name in encoded
                }
                arrays = _create_arrays(tmp, len(keys), features)
            for name, values in encoded.items():
                values = values.view(torch.uint16) if values.dtype == torch.bfloat16 else values
                for i, key in enumerate(todo[done : done + len(values)]):
                    arrays[name][rows[key]] = values[i].numpy()
            done += count
        for name, array in arrays.items():
            array.flush()
            with open(os.path.join(tmp, f"{name}.bin"), "rb+") as f:
                os.fsync(f.fileno())
        index = {key: [rows[key], *stamps[key]] for key in keys}
        with open(os.path.join(tmp, META), "w", encoding="utf-8") as f:
            json.dump({"signature": signature, "features": features, "index": index}, f)
            f.flush()
            os.fsync(f.fileno())
        _replace_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FeatureStore(folder)


def _replace_folder(new, target):
    """Rename `new` to `target`; a previous `target` is moved aside first and then deleted."""
    if os.path.exists(target):
        trash = tempfile.mkdtemp(prefix=".stale-", dir=os.path.dirname(os.path.abspath(target)))
        os.replace(target, os.path.join(trash, "store"))
        os.replace(new, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(new, target)


class CachedFeatureDataset(Dataset):
    """A dataset whose samples carry the cached frozen features instead of the image (same other fields)."""

    def __init__(self, dataset, store):
        self.dataset, self.store = dataset, store

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        return {
            **self.dataset.fields(index),
            **self.store.get(os.path.abspath(self.dataset.image_path(index))),
        }

    def collater(self, samples):
        return self.dataset.collater(samples)

    def __getattr__(self, name):  # annotation, style_labels(), ... of the wrapped dataset
        if name in ("dataset", "store"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


def frozen_signature(model, device, autocast_dtype):
    """What the frozen parts' outputs depend on, besides the image and its transform."""
    return {
        "visual_encoder": weights_digest(model.visual_encoder),
        "style_encoder": weights_digest(model.style_encoder),
        "vit_precision": model.vit_precision,
        "device": torch.device(device).type,
        "autocast": str(autocast_dtype) if autocast_dtype is not None else None,
    }


def _build_stores(plan, root, encode, batch_size, num_workers):
    """One store per distinct signature, over the images of every split that uses it."""
    os.makedirs(root, exist_ok=True)
    by_folder = {}
    for folder, signature, paths, processor in plan.values():
        by_folder.setdefault(folder, (signature, set(), processor))[1].update(paths)
    for folder, (signature, paths, processor) in by_folder.items():
        build_store(folder, signature, sorted(paths), processor, encode, batch_size, num_workers)


def attach_feature_cache(datasets, model, root, device, autocast_dtype=None, batch_size=16, num_workers=0):
    """{name: {split: dataset}} with every dataset replaced by a CachedFeatureDataset reading from a store
    under `root` (built first where missing; by rank 0 only under torch.distributed, the others wait).

    model: has frozen_features(image) and the frozen parts; features are computed on `device` under
    autocast in `autocast_dtype` (None: none), in batches of `batch_size`, as the training step computes them.
    """
    trained = [name for name, p in model.visual_encoder.named_parameters() if p.requires_grad]
    if trained:
        raise ValueError(
            f"run.frozen_feature_cache stores the frozen ViT's output, but this model trains its ViT "
            f"(model.freeze_vit is false, as in the caption_coco_* types; {len(trained)} ViT parameters "
            "require grad): set model.freeze_vit true or unset run.frozen_feature_cache"
        )
    device = torch.device(device)
    # the signature names the precision the ViT computes in on this device (auto: chosen by the CPU)
    model.to(device).prepare_frozen_parts(device)
    frozen = frozen_signature(model, device, autocast_dtype)
    plan = {}  # (name, split) -> (store folder, signature, image paths, processor)
    for name, splits in datasets.items():
        for split, dataset in splits.items():
            where = f"datasets.{name} split {split!r}"
            if not (hasattr(dataset, "fields") and hasattr(dataset, "image_path")):
                raise TypeError(
                    f"run.frozen_feature_cache: {where} ({type(dataset).__name__}) does not support the "
                    "frozen-feature cache (it needs fields(index) and image_path(index))"
                )
            signature = {"transform": transform_signature(dataset.vis_processor, where), **frozen}
            digest = hashlib.sha1(json.dumps(signature, sort_keys=True).encode()).hexdigest()[:16]
            paths = [os.path.abspath(dataset.image_path(i)) for i in range(len(dataset))]
            plan[name, split] = (os.path.join(root, digest), signature, paths, dataset.vis_processor)

    def encode(images, style_images=None):
        with (
            torch.no_grad(),
            torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None),
        ):
            style = None if style_images is None else style_images.to(device)
            return model.frozen_features(images.to(device), style)

    # fork_rng: building draws no numbers from the training's random stream (DataLoader iterators do)
    with torch.random.fork_rng(devices=[]):
        if is_main_process():
            _build_stores(plan, root, encode, batch_size, num_workers)
    if is_dist_avail_and_initialized():  # NCCL wants the barrier's device named
        dist.barrier(**({"device_ids": [torch.cuda.current_device()]} if device.type == "cuda" else {}))
    stores = {}
    cached = {name: {} for name in datasets}
    for (name, split), (folder, _, _, _) in plan.items():
        store = stores.setdefault(folder, FeatureStore(folder))
        cached[name][split] = CachedFeatureDataset(datasets[name][split], store)
        logging.info("datasets.%s %s: frozen features from %s", name, split, folder)
    return cached
