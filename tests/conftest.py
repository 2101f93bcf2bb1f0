"""Shared fixtures: the network is blocked for every test (only loopback is allowed, for
torch.distributed); fixtures that several test files use; under pytest-xdist each worker's share of the
cores. Shared helper code is in helpers/."""

import ipaddress
import os
import socket

import pytest


def pytest_configure(config):
    """Under pytest-xdist (run_scripts/test.sh runs 2 workers), each worker and the commands it starts
    compute with its share of the usable cores, through OMP_NUM_THREADS, which the commands and torchrun
    honour (lavis_gated/common/threads.py). Without it every process would take a thread per idle core and
    the workers' OpenMP threads would spin-wait on each other. An OMP_NUM_THREADS set by the user stands."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not workers or os.environ.get("OMP_NUM_THREADS"):
        return
    from lavis_gated.common.threads import usable_cores

    share = max(1, usable_cores() // int(workers))
    os.environ["OMP_NUM_THREADS"] = str(share)
    import torch

    torch.set_num_threads(share)


def _is_loopback(address):
    host = address[0] if isinstance(address, tuple) else address
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def block_network(monkeypatch):
    """Any attempt to reach a non-loopback address fails the test loudly."""
    real_connect = socket.socket.connect

    def guarded_connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
            raise RuntimeError(f"test tried to reach the network: {address}")
        return real_connect(sock, address)

    def no_lookup(host, *args, **kwargs):
        if not _is_loopback((host,)):
            raise RuntimeError(f"test tried to resolve a host name: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", no_lookup)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """A small synthetic ArtQuest set (4/2/2 images per style), once per test module."""
    from lavis_gated.datasets.synthetic_artquest import generate

    root = tmp_path_factory.mktemp("synthetic")
    generate(str(root), {"train": 4, "val": 2, "test": 2}, seed=3)
    return root


@pytest.fixture
def single_process(monkeypatch):
    """No torchrun variables: a runner built in the test process is a single process. Not autouse: the
    files that build runners in-process ask for it with `pytestmark = pytest.mark.usefixtures(...)`."""
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(var, raising=False)
