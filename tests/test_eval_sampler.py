"""BatchShardSampler: every index once across ranks, in the batches one process would form."""

import pytest
from torch.utils.data import DataLoader

from lavis_gated.runners.loaders import BatchShardSampler


def batches(size, batch_size, world, rank):
    sampler = BatchShardSampler(size, batch_size, world, rank)
    loader = DataLoader(list(range(size)), batch_size=batch_size, sampler=sampler)
    return [b.tolist() for b in loader], len(sampler)


@pytest.mark.parametrize(
    "size, batch_size, world", [(24, 5, 2), (24, 5, 3), (10, 4, 4), (7, 64, 2), (0, 3, 2)]
)
def test_ranks_get_one_process_batches_without_repeats(size, batch_size, world):
    single, _ = batches(size, batch_size, 1, 0)
    shards = [batches(size, batch_size, world, rank) for rank in range(world)]
    for rank, (got, length) in enumerate(shards):
        assert got == single[rank::world]  # whole batches, dealt out in turn
        assert length == sum(map(len, got))
    everything = sorted(i for got, _ in shards for batch in got for i in batch)
    assert everything == list(range(size))  # each index exactly once: no padding


def test_example_by_hand():
    assert batches(24, 5, 2, 0)[0] == [[0, 1, 2, 3, 4], [10, 11, 12, 13, 14], [20, 21, 22, 23]]
    assert batches(24, 5, 2, 1)[0] == [[5, 6, 7, 8, 9], [15, 16, 17, 18, 19]]


def test_rank_out_of_range():
    with pytest.raises(ValueError, match=r"rank 2 is not in \[0, 2\)"):
        BatchShardSampler(10, 2, 2, 2)
