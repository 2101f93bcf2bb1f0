"""The intra-op thread count: each process's share of the idle cores, unless the user says otherwise."""

import logging

import pytest
import torch

from lavis_gated.common import threads


@pytest.mark.parametrize(
    "cores, busy, processes, expected",
    [
        (2, 0, 1, 2),  # idle 2-core machine, one process: both cores
        (2, 1, 1, 1),  # another job holds a core: 2 threads would oversubscribe
        (2, 3, 1, 1),  # heavily loaded: still one thread
        (2, 0, 2, 1),  # two processes share the cores
        (16, 0, 4, 4),
        (16, 6, 4, 2),
        (16, 0, 32, 1),  # more processes than cores: one each
    ],
)
def test_choice_shares_the_idle_cores(cores, busy, processes, expected):
    assert threads.choose_num_threads(cores, busy, processes) == expected


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_precedence_run_key_then_omp_variable_then_choice(monkeypatch, caplog, restore_threads):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_cores", lambda: 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    caplog.set_level(logging.INFO)

    assert threads.set_num_threads({}) == 1 and torch.get_num_threads() == 1
    assert "intra-op threads: 1 (2 usable cores, about 1 busy" in caplog.text
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.set_num_threads({}) == 2 and torch.get_num_threads() == 2
    assert threads.set_num_threads({"num_threads": 1}) == 1 and torch.get_num_threads() == 1
    assert "intra-op threads: 1 (run.num_threads)" in caplog.text


@pytest.mark.parametrize(
    "env, expected", [({"LOCAL_WORLD_SIZE": "4"}, 4), ({"SLURM_NTASKS_PER_NODE": "2(x3)"}, 2), ({}, 1)]
)
def test_local_process_count_from_the_launcher(monkeypatch, env, expected):
    for name in ("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert threads.local_process_count() == expected
