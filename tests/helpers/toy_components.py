"""A toy model, dataset builder and task for runner tests, registered on import.

Imported by helpers/runner.py and, through run.imports (as `helpers.toy_components`, with tests/ on
PYTHONPATH), by the train.py processes the runner tests launch.
Registry names start with "toy_runner_" so they cannot collide with real components.
"""

import os
import time

import torch
import torch.nn.functional as F
from lavis.common.registry import registry
from lavis.datasets.builders.base_dataset_builder import BaseDatasetBuilder
from lavis.models.base_model import BaseModel
from lavis.tasks.base_task import BaseTask
from torch import nn
from torch.utils.data import Dataset, default_collate

# The run YAML holds the whole config, so the "default" configs LAVIS merges under it are empty.
EMPTY_DEFAULT_CONFIG = os.devnull


class VersionTag(nn.Module):
    """Holds only extra state, to check that checkpoints keep `*._extra_state` entries."""

    def __init__(self):
        super().__init__()
        self.version = 1

    def get_extra_state(self):
        return {"version": self.version}

    def set_extra_state(self, state):
        self.version = state["version"]


@registry.register_model("toy_runner_model")
class ToyModel(BaseModel):
    """x (B, D) -> frozen Linear(D, D) -> trainable Linear(D, 1); MSE against y (B,)."""

    PRETRAINED_MODEL_CONFIG_DICT = {"default": EMPTY_DEFAULT_CONFIG}

    def __init__(self, dim=4):
        super().__init__()
        self.frozen = nn.Linear(dim, dim).requires_grad_(False)
        self.head = nn.Linear(dim, 1)
        self.tag = VersionTag()
        self.register_buffer("train_steps", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_config(cls, cfg):
        return cls(dim=cfg.get("dim", 4))

    def predict(self, x):
        return self.head(self.frozen(x)).squeeze(-1)

    def forward(self, samples):
        if self.training:
            self.train_steps += 1
        return {"loss": F.mse_loss(self.predict(samples["x"]), samples["y"])}


class ToyDataset(Dataset):
    """n samples of x ~ N(0, 1) in D dims with target y = sum(x), fixed by the seed."""

    # LAVIS's ConcatDataset collates through the first dataset's collater (base_dataset.py:68).
    collater = staticmethod(default_collate)

    def __init__(self, n=16, dim=4, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, dim, generator=g)
        self.y = self.x.sum(-1)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i], "question_id": i}


@registry.register_builder("toy_runner_data")
class ToyBuilder(BaseDatasetBuilder):
    DATASET_CONFIG_DICT = {"default": EMPTY_DEFAULT_CONFIG}

    def build_datasets(self):
        n, dim = self.config.get("n", 16), self.config.get("dim", 4)
        return {split: ToyDataset(n, dim, seed) for seed, split in enumerate(("train", "val", "test"))}


@registry.register_task("toy_runner_task")
class ToyTask(BaseTask):
    """agg_metrics of epoch e is run.toy_agg_schedule[e]; afterwards, and in tests, it is -MSE.

    Each training step prints "toy step <epoch> <iteration>" and then sleeps run.toy_step_seconds, so
    that a test can kill the process in the middle of a known epoch.
    """

    RUN_KEYS = ("toy_agg_schedule", "toy_step_seconds")

    def __init__(self, agg_schedule=(), step_seconds=0.0):
        super().__init__()
        self.agg_schedule = list(agg_schedule)
        self.step_seconds = step_seconds
        self.cuda_enabled_seen = []

    @classmethod
    def setup_task(cls, cfg):
        run = cfg.run_cfg
        return cls(run.get("toy_agg_schedule", None) or [], run.get("toy_step_seconds", 0.0))

    def train_epoch(
        self,
        epoch,
        model,
        data_loader,
        optimizer,
        lr_scheduler,
        scaler=None,
        cuda_enabled=False,
        log_freq=50,
        accum_grad_iters=1,
    ):
        losses = []
        for i in range(len(data_loader)):
            samples = next(data_loader)
            lr_scheduler.step(cur_epoch=epoch, cur_step=i)
            loss = model(samples)["loss"]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            if self.step_seconds:
                print(f"toy step {epoch} {i}", flush=True)
                time.sleep(self.step_seconds)
        return {"loss": f"{sum(losses) / len(losses):.4f}"}

    def valid_step(self, model, samples):
        errors = (model.predict(samples["x"]) - samples["y"]) ** 2
        return [{"question_id": int(q), "sq_error": float(e)} for q, e in zip(samples["question_id"], errors)]

    def evaluation(self, model, data_loader, cuda_enabled=True):
        self.cuda_enabled_seen.append(cuda_enabled)
        return [r for samples in data_loader for r in self.valid_step(model, samples)]

    def after_evaluation(self, val_result, split_name, epoch, **kwargs):
        if isinstance(epoch, int) and epoch < len(self.agg_schedule):
            return {"agg_metrics": float(self.agg_schedule[epoch])}
        return {"agg_metrics": -sum(r["sq_error"] for r in val_result) / len(val_result)}
