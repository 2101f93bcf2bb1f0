"""Running the product's entry points (train.py, evaluate.py, torchrun) in subprocesses, as the tests do."""

import glob
import os
import socket
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parent.parent.parent
# A hang guard, not a speed check: a busy 2-core machine can make one tiny epoch take minutes.
SUBPROCESS_TIMEOUT = 1800


def write_config(tmp_path, data_root, name, base="demo.yaml", **run):
    cfg = OmegaConf.load(REPO / "projects" / "gated" / base)
    for split in cfg.datasets.artquest.build_info.annotations:
        cfg.datasets.artquest.build_info.annotations[split].storage = str(data_root / f"artquest_{split}.csv")
    cfg.datasets.artquest.build_info.images.storage = str(data_root / "images")
    cfg.run.output_dir = str(tmp_path / name)
    cfg.run.update(run)
    path = tmp_path / f"{name}.yaml"
    OmegaConf.save(cfg, path)
    return path


def run(args, timeout=SUBPROCESS_TIMEOUT):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def only_run_dir(output_dir):
    runs = glob.glob(os.path.join(output_dir, "*", ""))
    assert len(runs) == 1, runs
    return Path(runs[0])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
