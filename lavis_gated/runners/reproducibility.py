"""Seeds that make a run a function of its config, so that it can be repeated and resumed exactly.

Every epoch reseeds Python, numpy and torch from (run.seed, epoch, rank): the random numbers of epoch
e do not depend on what ran before, so a run resumed at epoch e draws the same ones as a run that
never stopped, without storing generator states in checkpoints.
"""

import random

import numpy as np
import torch


def seed_everything(seed):
    """Seed Python's, numpy's and torch's (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def epoch_seed(seed, epoch, rank):
    """A 32-bit seed for one rank's epoch, well mixed so that nearby triples give unrelated streams."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])
