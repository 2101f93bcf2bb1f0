"""How many intra-op threads a process computes with, chosen on purpose.

PyTorch's default is one OpenMP thread per core the machine has, whatever else runs there. On a shared
2-core machine that oversubscribes the cores: OpenMP threads spin-wait for each other while another
process holds a core, and a tiny-model epoch took 1.8-3.4 min with 2 threads against 18-25 s with 1.
So each process takes its share of the cores it may use (CPU affinity and cgroup quota) that other
work does not already keep busy, split between the processes of its node (torchrun's LOCAL_WORLD_SIZE).
Precedence: run.num_threads, then an OMP_NUM_THREADS the user set, then that choice.
"""

import logging
import math
import os
import re

import torch


def usable_cores():
    """Cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota if one is set."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def busy_cores():
    """Cores other work keeps busy: the 1-minute load average, rounded (0 where the OS has none)."""
    try:
        return int(os.getloadavg()[0] + 0.5)
    except (AttributeError, OSError):
        return 0


def choose_num_threads(cores, busy, local_processes):
    """Threads per process: the idle cores (at least one per process) shared by the node's processes."""
    idle = max(cores - busy, local_processes)
    return max(1, min(cores, idle) // max(1, local_processes))


def local_process_count():
    """Processes of this run on this node: torchrun's LOCAL_WORLD_SIZE, or SLURM's tasks per node."""
    value = os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("SLURM_NTASKS_PER_NODE") or "1"
    digits = re.match(r"\d+", value)  # SLURM may write e.g. "2(x3)"
    return max(1, int(digits.group())) if digits else 1


def set_num_threads(run_cfg=None):
    """Apply the thread count (see the module docstring) and log the choice; returns it."""
    requested = (run_cfg or {}).get("num_threads")
    local_processes = local_process_count()
    if requested:
        threads, why = int(requested), "run.num_threads"
    elif os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        threads, why = int(os.environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"
    else:
        cores, busy = usable_cores(), busy_cores()
        threads = choose_num_threads(cores, busy, local_processes)
        why = (
            f"{cores} usable cores, about {busy} busy with other work (load average), "
            f"{local_processes} process(es) on this node; run.num_threads overrides"
        )
    torch.set_num_threads(threads)
    logging.info("intra-op threads: %d (%s)", threads, why)
    return threads
