"""Checkpoint files: atomic writes that survive SIGKILL and failed writes; loading that never runs code."""

import errno
import io
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.checkpoints import CodePayload

from lavis_gated.common import atomic_files
from lavis_gated.common.checkpoints import UnsafeCheckpointError, load_checkpoint, save_checkpoint
from lavis_gated.models.backbones import load_weights_file

REPO = Path(__file__).resolve().parent.parent

# Writes version 1, 2, 3, ... of an 8 MB checkpoint to one path, printing each finished version. The
# package is registered empty, so that its __init__ (and LAVIS) is not imported: the process starts fast.
WRITER = textwrap.dedent("""
    import sys, types, torch
    package = types.ModuleType("lavis_gated")
    package.__path__ = [sys.argv[1]]
    sys.modules["lavis_gated"] = package
    from lavis_gated.common import checkpoints
    version = 0
    while True:
        version += 1
        weights = torch.full((2_000_000,), float(version))
        checkpoints.save_checkpoint({"version": version, "weights": weights}, sys.argv[2])
        print(version, flush=True)
""")
PACKAGE = REPO / "lavis_gated"


def kill_writer_after(path, delay):
    """SIGKILL the writer `delay` s after it finished version 2; True when it died inside a write."""
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(PACKAGE), str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        for line in writer.stdout:
            if int(line) >= 2:
                break
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()
    return any(p.name.endswith(".tmp") for p in path.parent.iterdir())


def test_sigkill_while_writing_leaves_a_complete_checkpoint(tmp_path):
    path = tmp_path / "checkpoint_best.pth"
    interrupted_writes = 0
    for delay in (0.0, 0.008, 0.012, 0.02, 0.004, 0.016):
        interrupted_writes += kill_writer_after(path, delay)

        checkpoint = load_checkpoint(path)
        assert checkpoint["version"] >= 2
        assert torch.equal(checkpoint["weights"], torch.full((2_000_000,), float(checkpoint["version"])))
        if interrupted_writes >= 2:
            break
    assert interrupted_writes > 0, "no kill landed inside a write: the test proved nothing"

    save_checkpoint({"version": 0}, path)  # the next write clears what killed writes left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_best.pth"]


@pytest.mark.parametrize("failing", ["save", "fsync", "replace"])
def test_failed_write_raises_and_keeps_previous_file(tmp_path, monkeypatch, failing):
    path = tmp_path / "checkpoint_best.pth"
    save_checkpoint({"version": 1}, path)
    before = path.read_bytes()

    def no_space(*args, **kwargs):
        if failing == "save":
            args[1].write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    target = {"save": (torch, "save"), "fsync": (os, "fsync"), "replace": (os, "replace")}[failing]
    monkeypatch.setattr(*target, no_space)
    with pytest.raises(RuntimeError, match=r"checkpoint_best\.pth.*unchanged.*No space left on device"):
        save_checkpoint({"version": 2}, path)
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert load_checkpoint(path) == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_best.pth"]


class FullDiskFile(io.FileIO):
    """A file on a disk that fills up after 5000 bytes, failing as a real full disk does."""

    def write(self, data):
        if self.tell() + len(data) > 5000:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def test_full_disk_is_named_on_the_last_line(tmp_path, monkeypatch):
    """torch.save turns the failed write into '[enforce fail at inline_container.cc] unexpected pos';
    the message users read last must say why."""
    path = tmp_path / "checkpoint_best.pth"
    save_checkpoint({"version": 1}, path)
    monkeypatch.setattr(
        atomic_files, "open", lambda name, mode, **kw: FullDiskFile(name, mode), raising=False
    )
    with pytest.raises(RuntimeError) as failure:
        save_checkpoint({"w": torch.ones(100_000)}, path)
    last_line = traceback.format_exception(failure.value)[-1]
    assert "checkpoint_best.pth" in last_line and "No space left on device" in last_line, last_line
    assert "unexpected pos" not in last_line
    monkeypatch.undo()
    assert load_checkpoint(path) == {"version": 1}


class SystemCall:
    """Unpickling this calls os.system: the payload of a typical malicious pickle."""

    def __reduce__(self):
        return os.system, ("true",)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_refusal_names_the_global_and_gives_no_unsafe_advice(tmp_path, writer):
    path = tmp_path / "checkpoint.pth"
    if writer == "torch.save":
        torch.save({"model": {"w": torch.zeros(2)}, "scaler": SystemCall()}, path)
    else:
        path.write_bytes(pickle.dumps({"scaler": SystemCall()}, protocol=4))
    with pytest.raises(UnsafeCheckpointError) as refusal:
        load_checkpoint(path)
    shown = "".join(traceback.format_exception(refusal.value))
    assert f"{os.system.__module__}.system" in str(refusal.value)
    assert "weights_only" not in shown and "will likely succeed" not in shown, shown


def test_code_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload_ran"
    path = tmp_path / "checkpoint_best.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "optimizer": CodePayload(marker)}, path)

    with pytest.raises(
        UnsafeCheckpointError, match=r"Refusing to load checkpoint .*checkpoint_best\.pth.*exec"
    ):
        load_checkpoint(path)
    assert not marker.exists()

    # Control: the payload is live, an unrestricted unpickler does run it.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_numpy_scalars_are_allowed(tmp_path):
    path = tmp_path / "checkpoint.pth"
    torch.save({"best_agg_metric": np.float64(0.25), "epoch": np.int64(3), "w": torch.ones(1)}, path)
    checkpoint = load_checkpoint(path)
    assert checkpoint["best_agg_metric"] == 0.25 and checkpoint["epoch"] == 3


def test_truncated_and_missing_files_name_the_file(tmp_path):
    path = tmp_path / "checkpoint_last.pth"
    save_checkpoint({"w": torch.ones(1000)}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(RuntimeError, match=r"checkpoint_last\.pth \(truncated"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="nothing_here.pth"):
        load_checkpoint(tmp_path / "nothing_here.pth")


def test_model_weight_files_are_read_by_the_same_rules(tmp_path):
    """model.pretrained / model.finetuned / weight files go through load_checkpoint too."""
    marker = tmp_path / "payload_ran"
    unsafe = tmp_path / "finetuned.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": CodePayload(marker)}, unsafe)
    with pytest.raises(UnsafeCheckpointError, match=r"finetuned\.pth.*exec"):
        load_weights_file(str(unsafe))
    assert not marker.exists()

    with_numpy = tmp_path / "run_checkpoint.pth"
    torch.save({"model": {"w": torch.ones(2)}, "best_agg_metric": np.float64(0.5)}, with_numpy)
    assert load_weights_file(str(with_numpy))["best_agg_metric"] == 0.5


@pytest.mark.parametrize("zip_format", [True, False])
def test_mapped_read_gives_the_same_contents(tmp_path, zip_format):
    """mmap=True (config / vocabulary lookups) maps zip-format files and reads legacy ones whole."""
    path = tmp_path / "checkpoint.pth"
    saved = {"model": {"w": torch.arange(6.0)}, "config": {"model": {"arch": "blip2_opt_gated"}}, "epoch": 2}
    torch.save(saved, path, _use_new_zipfile_serialization=zip_format)
    mapped = load_checkpoint(path, mmap=True)
    assert mapped["config"] == saved["config"] and mapped["epoch"] == 2
    assert torch.equal(mapped["model"]["w"], saved["model"]["w"])
