"""Run folders cannot collide: runs started in the same second get folders of their own, a live run's folder
is held by a lock naming it, --resume is the only way into an existing run folder, and a stopped run says
where to resume from. The tiny demo model on a few synthetic images, in subprocesses (tens of seconds)."""

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lavis_gated.datasets.synthetic_artquest import generate
from lavis_gated.runners.run_setup import (
    LOCK_FILE,
    RunFolderError,
    claim_run_folder,
    make_job_id,
    release_run_lock,
)

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 1800  # a hang guard: a busy 2-core machine can make one tiny epoch take minutes

# Imports everything a training run needs, then waits for a line on stdin before it starts: two of these
# told "go" together start at once. Both read the same second from the clock (argv[1]) for their job ids:
# started together they often do; this makes it certain rather than a matter of machine load.
STARTER = """
import sys
import time
real_strftime = time.strftime
time.strftime = lambda fmt, *t: sys.argv[1] if fmt == "%Y%m%d%H%M%S" else real_strftime(fmt, *t)
import lavis_gated.train as train
import lavis_gated.runners.run_setup  # noqa: F401  (the heavy imports, before the start signal)
print("ready", flush=True)
sys.stdin.readline()
train.main(sys.argv[2:])
"""


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate(str(root), {"train": 4, "val": 2, "test": 2}, seed=3)
    return root


def write_config(tmp_path, data_root, output_dir, name="run", **run):
    cfg = OmegaConf.load(REPO / "projects" / "gated" / "demo.yaml")
    for split in cfg.datasets.artquest.build_info.annotations:
        cfg.datasets.artquest.build_info.annotations[split].storage = str(data_root / f"artquest_{split}.csv")
    cfg.datasets.artquest.build_info.images.storage = str(data_root / "images")
    cfg.run.output_dir = str(output_dir)
    cfg.run.update(run)
    path = tmp_path / f"{name}.yaml"
    OmegaConf.save(cfg, path)
    return path


def environment():
    return dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")


def run_dirs(output_dir):
    return sorted(Path(p) for p in glob.glob(os.path.join(output_dir, "*", "")))


def test_two_runs_started_together_into_one_output_dir_keep_apart(tmp_path, small_data):
    output_dir = tmp_path / "runs"
    configs = [
        write_config(tmp_path, small_data, output_dir, f"run{i}", max_epoch=1, warmup_steps=1, seed=i)
        for i in range(2)
    ]
    second = time.strftime("%Y%m%d%H%M%S")
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, second, "--cfg-path", str(config)],
            cwd=REPO,
            env=environment(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for config in configs
    ]
    try:
        for starter in starters:
            assert starter.stdout.readline().strip() == "ready", starter.stderr.read()[-3000:]
        for starter in starters:
            starter.stdin.write("go\n")
            starter.stdin.flush()
        outputs = [starter.communicate(timeout=TIMEOUT) for starter in starters]
    finally:
        for starter in starters:
            starter.kill()
    for starter, (_, err) in zip(starters, outputs):
        assert starter.returncode == 0, err[-5000:]

    folders = run_dirs(output_dir)
    assert len(folders) == 2, folders
    seeds = set()
    for folder in folders:
        log = (folder / "log.txt").read_text()
        assert log.count('    "run": {') == 1  # one config each
        seeds.add(json.loads(log[: log.index("\n}\n") + 3])["run"]["seed"])
        assert (folder / "checkpoint_best.pth").is_file() and (folder / "test_metrics.json").is_file()
        assert not (folder / LOCK_FILE).exists()  # released when the run ended
    assert seeds == {0, 1}


def test_job_ids_differ_within_one_second():
    ids = {make_job_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(job_id.split("-")[0]) == 14 for job_id in ids)  # still sorted by time stamp first


def test_a_live_runs_folder_is_refused_and_a_dead_runs_lock_is_taken_over(tmp_path, caplog):
    folder = tmp_path / "20260101000000-abcdef"
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        os.makedirs(folder)
        (folder / LOCK_FILE).write_text(
            json.dumps(
                {
                    "host": os.uname().nodename,
                    "pid": owner.pid,
                    "started": "2026-01-01 00:00:00",
                    "command": "x",
                }
            )
        )
        with pytest.raises(RunFolderError, match=rf"is held by another run: process {owner.pid} on "):
            claim_run_folder(str(folder), resuming=True)
    finally:
        owner.kill()
        owner.wait()
    # its owner is gone: a resume takes the folder over, with a warning naming the old owner
    lock = claim_run_folder(str(folder), resuming=True)
    assert json.loads(Path(lock).read_text())["pid"] == os.getpid()
    assert f"taking over the lock of a run that has ended (process {owner.pid}" in caplog.text
    release_run_lock(str(folder))
    assert not os.path.exists(lock)


def test_only_resume_enters_an_existing_run_folder(tmp_path):
    folder = tmp_path / "20260101000000-abcdef"
    claim_run_folder(str(folder), resuming=False)
    release_run_lock(str(folder))
    with pytest.raises(RunFolderError, match=r"exists already: .*pass --resume"):
        claim_run_folder(str(folder), resuming=False)


def test_a_resume_into_a_live_runs_folder_is_refused_and_sigterm_says_where_to_resume(tmp_path, small_data):
    output_dir = tmp_path / "runs"
    config = write_config(tmp_path, small_data, output_dir, max_epoch=200, save_last=True, warmup_steps=1)
    first = subprocess.Popen(
        [sys.executable, "lavis_gated/train.py", "--cfg-path", str(config)],
        cwd=REPO,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not glob.glob(str(output_dir / "*" / "checkpoint_last.pth")):
            assert first.poll() is None, first.communicate()[1][-5000:]
            assert time.monotonic() < deadline
            time.sleep(0.5)
        folder = run_dirs(output_dir)[0]
        assert json.loads((folder / LOCK_FILE).read_text())["pid"] == first.pid

        # a second process resuming the same run while the first still writes there
        second = subprocess.run(
            [sys.executable, "lavis_gated/train.py", "--cfg-path", str(config)]
            + ["--resume", str(folder / "checkpoint_last.pth")],
            cwd=REPO,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert second.returncode != 0
        assert f"{folder} is held by another run: process {first.pid} on " in second.stderr
        assert first.poll() is None

        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=TIMEOUT)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == -signal.SIGTERM  # stopped by the signal, as the scheduler expects
    last = [line for line in err.splitlines() if "SIGTERM: stopping in epoch" in line]
    assert len(last) == 1, err[-3000:]
    assert f"resume from {folder / 'checkpoint_last.pth'} (epoch " in last[0]
    assert f"--resume {folder / 'checkpoint_last.pth'}" in last[0]
    assert not (folder / LOCK_FILE).exists()


def test_resuming_with_another_gating_type_names_the_key(tmp_path, small_data):
    output_dir = tmp_path / "runs"
    config = write_config(tmp_path, small_data, output_dir, max_epoch=1, warmup_steps=1)
    subprocess.run(
        [sys.executable, "lavis_gated/train.py", "--cfg-path", str(config)],
        cwd=REPO,
        env=environment(),
        check=True,
        capture_output=True,
        timeout=TIMEOUT,
    )
    checkpoint = run_dirs(output_dir)[0] / "checkpoint_best.pth"
    resumed = subprocess.run(
        [sys.executable, "lavis_gated/train.py", "--cfg-path", str(config), "--resume", str(checkpoint)]
        + ["--options", "run.max_epoch=2", "model.gating.type=gate"],
        cwd=REPO,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert resumed.returncode != 0
    assert (
        f"{checkpoint} was trained with other model settings than this run: model.gating.type is 'film' "
        "there and 'gate' here" in resumed.stderr
    ), resumed.stderr[-3000:]
    assert "--options model.gating.type=film" in resumed.stderr
