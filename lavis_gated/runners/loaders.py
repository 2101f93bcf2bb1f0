"""Data loaders as LAVIS's RunnerBase makes them (runner_base.py:504-545), minus what breaks off CUDA.

- CUDA prefetching (PrefetchLoader, which needs a CUDA stream) only on CUDA;
- no 2 s sleep at every epoch (dataloader_utils.py:152), and an epoch's batch order that depends only on
  run.seed and the epoch, so a resumed epoch sees the batches it saw before;
- training batches cut from one seeded permutation for every process count: N processes with batch b
  split exactly the batches of one process with N * b;
- evaluation batches dealt out whole (eval_sampler), never padded with repeats;
- webdataset pipelines, which split and shuffle themselves across ranks and workers, get a plain loader
  (runner_base.py:504 gives them iter(DataLoader): no len() for the training loop, and an evaluation
  split left empty from its second epoch on).
"""

from dataclasses import dataclass

import webdataset as wds
from lavis.common.dist_utils import get_rank, get_world_size
from lavis.datasets.datasets.dataloader_utils import IterLoader, MultiIterLoader, PrefetchLoader
from torch.utils.data import ChainDataset, DataLoader, DistributedSampler

from lavis_gated.runners.eval_sampler import BatchShardSampler


@dataclass
class LoaderOptions:
    seed: int
    cuda: bool
    distributed: bool
    shard_evaluation: bool  # LAVIS's run.use_dist_eval_sampler


class EpochIterLoader(IterLoader):
    """LAVIS's infinite loader without the sleep, whose batch order is a function of the epoch number."""

    def set_epoch(self, epoch):
        """Restart at the first batch of `epoch`."""
        self._epoch = epoch
        if hasattr(self._dataloader.sampler, "set_epoch"):
            self._dataloader.sampler.set_epoch(epoch)
        self.iter_loader = iter(self._dataloader)

    def __next__(self):
        try:
            return next(self.iter_loader)
        except StopIteration:
            self.set_epoch(self._epoch + 1)
            return next(self.iter_loader)


def create_loader(dataset, batch_size, is_train, collate_fn, num_workers, options, dataset_ratios=None):
    """The loader of one split (several datasets: LAVIS's MultiIterLoader over one loader each)."""
    if isinstance(dataset, (list, tuple)):
        return MultiIterLoader(
            loaders=[
                create_loader(d, batch_size, is_train, collate_fn[i], num_workers, options)
                for i, d in enumerate(dataset)
            ],
            ratios=dataset_ratios,
        )
    streamed = isinstance(dataset, (ChainDataset, wds.DataPipeline))
    sampler = None
    if is_train and not streamed:
        sampler = DistributedSampler(
            dataset,
            shuffle=True,
            num_replicas=get_world_size(),
            rank=get_rank(),
            seed=options.seed,
            drop_last=True,
        )
    elif not streamed and options.distributed and options.shard_evaluation:
        sampler = BatchShardSampler(len(dataset), batch_size, get_world_size(), get_rank())
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=options.cuda,
        sampler=sampler,
        collate_fn=collate_fn,
        drop_last=is_train and not streamed,
    )
    if options.cuda:
        loader = PrefetchLoader(loader)
    if is_train:
        loader = EpochIterLoader(loader, use_distributed=options.distributed)
    return loader
