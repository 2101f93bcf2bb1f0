"""Evaluation sampler for several processes: whole batches of the one-process order, dealt out to ranks.

torch's DistributedSampler pads the data with repeats up to a multiple of the world size and interleaves
samples, so each rank's batches differ from those of one process and fp32 results differ in the last
bits. Dealing out whole batches instead evaluates every sample exactly once, in the very batch it has in
one process, so N processes give one process's numbers exactly.
"""

from torch.utils.data import Sampler


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
