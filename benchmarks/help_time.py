"""How long each lavis-gated command takes to print --help, in a fresh process (what a user waits for).

    python benchmarks/help_time.py [--repeat 5]

Runs `<command> --help` --repeat times per command and prints the median and the worst wall time, and
whether LAVIS or torch was imported on the way (they must not be: common/command_line.py, and
lavis_gated/__init__.py skips the registration for the commands). Commands come from pyproject.toml's
[project.scripts] and run from the environment's bin folder.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def commands():
    """The console commands declared in pyproject.toml, in its order."""
    names, inside = [], False
    for line in (REPO / "pyproject.toml").read_text().splitlines():
        if line.strip() == "[project.scripts]":
            inside = True
        elif line.startswith("["):
            inside = False
        elif inside and "=" in line:
            names.append(line.split("=")[0].strip())
    return names


def time_help(command, repeat):
    """(wall seconds per run, top-level modules imported by the last run)."""
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = subprocess.run([command, "--help"], capture_output=True, text=True, env=env, check=True)
        times.append(time.perf_counter() - start)
    modules = {
        line.split("|")[-1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    return times, modules


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (default 5)")
    args = parser.parse_args(argv)
    bin_dir = Path(sys.executable).parent
    print(f"{'command':32} {'median s':>9} {'worst s':>8}  heavy imports")
    for name in commands():
        times, modules = time_help(str(bin_dir / name), args.repeat)
        heavy = sorted({"lavis", "torch", "matplotlib", "timm"} & modules) or "-"
        print(f"{name:32} {statistics.median(times):9.2f} {max(times):8.2f}  {heavy}")


if __name__ == "__main__":
    main()
