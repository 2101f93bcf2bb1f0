"""Data loaders as LAVIS's RunnerBase makes them (runner_base.py:504-545), minus what breaks off CUDA.

- CUDA prefetching (PrefetchLoader, which needs a CUDA stream) only on CUDA;
- no 2 s sleep at every epoch (dataloader_utils.py:152), and an epoch's batch order that depends only on
  run.seed and the epoch, so a resumed epoch sees the batches it saw before;
- training batches cut from one seeded permutation for every process count: N processes with batch b
  split exactly the batches of one process with N * b;
- evaluation batches dealt out whole (BatchShardSampler below), never padded with repeats;
- webdataset pipelines, which split and shuffle themselves across ranks and workers, get a plain loader
  (runner_base.py:504 gives them iter(DataLoader): no len() for the training loop, and an evaluation
  split left empty from its second epoch on).

Evaluation sampler for several processes: whole batches of the one-process order, dealt out to ranks.

torch's DistributedSampler pads the data with repeats up to a multiple of the world size and interleaves
samples, so each rank's batches differ from those of one process and fp32 results differ in the last
bits. Dealing out whole batches instead evaluates every sample exactly once, in the very batch it has in
one process, so N processes give one process's numbers exactly.
"""

from dataclasses import dataclass

import webdataset as wds
from lavis.common.dist_utils import get_rank, get_world_size
from lavis.datasets.datasets.dataloader_utils import IterLoader, MultiIterLoader, PrefetchLoader
from torch.utils.data import ChainDataset, DataLoader, DistributedSampler, Sampler


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


class BatchShardSampler(Sampler):
    """Indices of batches rank, rank + world_size, ... of range(dataset_size) cut into batch_size pieces.

    Use with DataLoader(batch_size=batch_size, drop_last=False): each rank's loader then yields exactly
    those batches (only the dataset's last batch can be short, and it is the last of its rank).
    """

    def __init__(self, dataset_size, batch_size, num_replicas, rank):
        super().__init__()
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.dataset_size, self.batch_size = dataset_size, batch_size
        self.num_replicas, self.rank = num_replicas, rank

    def _starts(self):
        return range(self.rank * self.batch_size, self.dataset_size, self.batch_size * self.num_replicas)

    def __iter__(self):
        for start in self._starts():
            yield from range(start, min(start + self.batch_size, self.dataset_size))

    def __len__(self):
        return sum(min(self.batch_size, self.dataset_size - start) for start in self._starts())
