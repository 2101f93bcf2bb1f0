"""Seeded ablations: every variant x seed trained and tested by the ordinary training command, then the
comparison with its intervals (docs/ablation.md).

    lavis-gated-ablate --cfg-path projects/gated/demo.yaml --variants projects/gated/ablation_demo.yaml \
        --seeds 3
    python -m lavis_gated.ablation.harness ... [--nproc N] [--output-dir DIR] [--reference none]
                                               [--split test] [--options k=v ...]

Each run is a subprocess (lavis-gated-train, or torchrun --standalone --no-python lavis-gated-train with
--nproc > 1) with run.seed=k and run.output_dir=OUT/runs/<variant>/seed<k>. A run whose metrics file exists
is not run again; an unfinished one (a stopped harness) is cleared and run afresh, so running the same
command again resumes the ablation. This module only launches processes and reads files: it imports neither
LAVIS nor torch (lavis_gated/__init__.py skips the registration for it).
"""

import dataclasses
import difflib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time

import yaml

from lavis_gated.ablation.stats import RECOMMENDED_SEEDS
from lavis_gated.common.atomic_files import atomic_file
from lavis_gated.common.command_line import add_flags, command_parser

# The report and the config dataclasses are imported where they are used, so that --help prints at once
# (benchmarks/help_time.py).

VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*$")  # it names a folder
OPTION = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+=")


def load_variants(path):
    """{name: [option, ...]} from a variants YAML (`variants:` mapping names to lists of key=value)."""
    try:
        with open(path, encoding="utf-8") as f:
            document = yaml.safe_load(f)
    except OSError as err:
        raise FileNotFoundError(f"--variants {path}: {err.strerror}") from err
    variants = document.get("variants") if isinstance(document, dict) else None
    if not isinstance(variants, dict) or not variants:
        raise ValueError(
            f"{path}: needs a `variants:` mapping of variant names to lists of --options overrides"
        )
    for name, options in variants.items():
        if not VARIANT_NAME.match(str(name)):
            raise ValueError(
                f"{path}: variants.{name}: a variant name must be letters, digits, _ . - (it names a folder)"
            )
        if options is None:
            variants[name] = options = []
        if not isinstance(options, list) or not all(isinstance(o, str) and OPTION.match(o) for o in options):
            raise ValueError(
                f"{path}: variants.{name} must be a list of key=value overrides such as "
                f"model.gating.type=gate, got {options!r}"
            )
    return {str(name): list(options) for name, options in variants.items()}


def _settings(cls, prefix):
    """{dotted key: its choices or None} of a config dataclass, nested blocks flattened."""
    out = {}
    for field in dataclasses.fields(cls):
        default = (
            field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        )
        if dataclasses.is_dataclass(default):
            out.update(_settings(type(default), f"{prefix}{field.name}."))
        else:
            out[f"{prefix}{field.name}"] = field.metadata.get("choices")
    return out


def _yaml_paths(node, prefix=""):
    """Every dotted path of a YAML document, inner nodes too."""
    if not isinstance(node, dict):
        return set()
    paths = set()
    for key, value in node.items():
        path = f"{prefix}{key}"
        paths |= {path} | _yaml_paths(value, f"{path}.")
    return paths


def check_options(cfg_path, command_options, variants):
    """Refuse, before anything is launched, an override whose key neither the config dataclasses nor the
    project YAML know, or a value outside a setting's choices: a misspelt key in the variants file would
    otherwise surface only when its first run starts, maybe hours in. Raises ValueError naming the variant
    (or --options), the key and the closest known one."""
    from lavis_gated.configs.dataset_config import ArtQuestConfig
    from lavis_gated.configs.model_config import ModelConfig
    from lavis_gated.configs.run_config import LAVIS_RUN_KEYS, RunnerConfig, TaskConfig

    settings = {
        **_settings(ModelConfig, "model."),
        **_settings(ArtQuestConfig, "datasets.artquest."),
        **_settings(TaskConfig, "run."),
        **_settings(RunnerConfig, "run."),
        **{f"run.{key}": None for key in LAVIS_RUN_KEYS},
    }
    with open(cfg_path, encoding="utf-8") as f:
        known = set(settings) | _yaml_paths(yaml.safe_load(f) or {})
    for where, options in [
        ("--options", command_options),
        *((f"variants.{n}", o) for n, o in variants.items()),
    ]:
        for option in options:
            key, _, value = option.partition("=")
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]}?" if close else ""
                raise ValueError(f"{where}: unknown key {key!r} in {option!r}{hint}")
            choices = settings.get(key)
            if choices and yaml.safe_load(value) not in choices:
                raise ValueError(f"{where}: {key}={value} is not one of {list(choices)}")


def git_commit(folder=None):
    """(commit, uncommitted changes) of the checkout holding this code: ("unknown", None) outside one."""
    folder = folder or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(
            ["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=60
        )
        if commit.returncode != 0:
            return "unknown", None
        dirty = subprocess.run(
            ["git", "-C", folder, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return commit.stdout.strip(), bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return "unknown", None


def train_command(nproc):
    """The training command: the lavis-gated-train beside this Python, else this Python's -m (never another
    environment's script found on PATH)."""
    script = shutil.which("lavis-gated-train", path=os.path.dirname(sys.executable))
    if nproc <= 1:
        return [script] if script else [sys.executable, "-m", "lavis_gated.train"]
    # --standalone: torchrun's own rendezvous on a port the OS assigns as its store binds it, handed to the
    # workers; a free port probed here could be taken by another run before torchrun bound it.
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return launcher + (["--no-python", script] if script else ["-m", "lavis_gated.train"])


def run_options(args, variant_options, seed, seed_dir):
    """--options of one run: the thread count, the command's, the variant's, then what the harness owns."""
    return [
        f"run.num_threads={args.num_threads}",
        *args.options,
        *variant_options,
        f"run.seed={seed}",
        f"run.output_dir={os.path.abspath(seed_dir)}",
        f"run.test_splits=[{args.split}]",
    ]


def launch(args, name, options, seed, provenance):
    """Train and test one variant x seed in a fresh OUT/runs/<variant>/seed<k>; returns its exit status."""
    from lavis_gated.ablation import report as ablation_report

    seed_dir = ablation_report.seed_folder(args.output_dir, name, seed)
    if os.path.isdir(seed_dir):
        logging.info("%s seed %d: clearing the unfinished run in %s", name, seed, seed_dir)
        shutil.rmtree(seed_dir)
    os.makedirs(seed_dir)
    command = [
        *train_command(args.nproc),
        "--cfg-path",
        os.path.abspath(args.cfg_path),
        "--options",
        *run_options(args, options, seed, seed_dir),
    ]
    with atomic_file(os.path.join(seed_dir, ablation_report.PROVENANCE), "w", encoding="utf-8") as f:
        json.dump({"variant": name, "seed": seed, **provenance, "command": command}, f, indent=2)
    sys.stdout.flush()
    return subprocess.run(command).returncode


def run_all(args, variants, provenance):
    """Every variant x seed, seed by seed (an ablation stopped early still compares every variant); returns
    the runs that failed."""
    from lavis_gated.ablation import report as ablation_report

    jobs = [(name, seed) for seed in range(args.seeds) for name in variants]
    failed = []
    for number, (name, seed) in enumerate(jobs, 1):
        where = ablation_report.seed_folder(args.output_dir, name, seed)
        if ablation_report.finished_run(where, args.split):
            logging.info(
                "[%d/%d] %s seed %d: finished before, skipped (%s)", number, len(jobs), name, seed, where
            )
            continue
        logging.info("[%d/%d] %s seed %d: training in %s", number, len(jobs), name, seed, where)
        start = time.time()
        status = launch(args, name, variants[name], seed, provenance)
        took = time.strftime("%H:%M:%S", time.gmtime(time.time() - start))
        if status == 0 and ablation_report.finished_run(where, args.split):
            logging.info("[%d/%d] %s seed %d: done in %s", number, len(jobs), name, seed, took)
        else:
            logging.error(
                "[%d/%d] %s seed %d: failed after %s (exit status %d); its output is above, its folder %s",
                number,
                len(jobs),
                name,
                seed,
                took,
                status,
                where,
            )
            failed.append((name, seed))
    return failed


def parse_args(argv=None):
    parser = command_parser(
        "lavis-gated-ablate",
        "Seeded ablations: train and test every variant x seed with lavis-gated-train, then report each "
        "metric with its interval and the paired comparison against a reference variant.",
        "lavis-gated-ablate --cfg-path projects/gated/demo.yaml --variants projects/gated/ablation_demo.yaml "
        "--seeds 5",
        "ablation.md",
    )
    add_flags(
        parser,
        "cfg-path",
        "output-dir",
        "nproc",
        "num-threads",
        "split",
        "options",
        cfg_path={"required": True, "help": "project YAML every run starts from"},
        output_dir={"help": "ablation folder (default: output/ablation/<variants file name>)"},
        nproc={"help": "processes per run (torchrun; default 1)"},
        num_threads={
            "help": "run.num_threads of every run (default: the machine's cores / --nproc; runs go one at a "
            "time), fixed so that no run's speed or numerics depend on how busy the machine was when it "
            "started"
        },
        split={"default": "test", "help": "split each run tests its best checkpoint on (default test)"},
        options={"help": "key=value overrides for every run (before the variant's own)"},
    )
    parser.add_argument("--variants", required=True, help="YAML: variants: {name: [key=value, ...]}")
    parser.add_argument(
        "--seeds",
        type=int,
        default=RECOMMENDED_SEEDS,
        help=f"seeds per variant: run.seed = 0 .. N-1 (default {RECOMMENDED_SEEDS})",
    )
    parser.add_argument(
        "--reference",
        default="none",
        help="variant the others are paired against (default: the variant named none); "
        "'' for no paired comparison",
    )
    parser.add_argument("--report-only", action="store_true", help="train nothing; report the finished runs")
    args = parser.parse_args(argv)
    args.num_threads = args.num_threads or max(1, (os.cpu_count() or 1) // args.nproc)
    if args.seeds < 1 or args.nproc < 1 or args.num_threads < 1:
        parser.error("--seeds, --nproc and --num-threads must be at least 1")
    if not os.path.isfile(args.cfg_path):
        parser.error(f"--cfg-path {args.cfg_path}: no such file")
    args.output_dir = args.output_dir or os.path.join(
        "output", "ablation", os.path.splitext(os.path.basename(args.variants))[0]
    )
    return args


def main(argv=None):
    from lavis_gated.ablation import report as ablation_report

    logging.basicConfig(level=logging.INFO, format="%(asctime)s [ablate] %(message)s")
    args = parse_args(argv)
    try:
        variants = load_variants(args.variants)
        check_options(args.cfg_path, args.options, variants)
    except (OSError, ValueError) as err:
        raise SystemExit(f"lavis-gated-ablate: {err}") from err
    reference = args.reference or None
    if reference is not None and reference not in variants:
        raise SystemExit(f"--reference {reference}: not a variant of {args.variants} ({', '.join(variants)})")
    commit, dirty = git_commit()
    if dirty:
        logging.warning(
            "the checkout at %s has uncommitted changes: the commit recorded does not hold all the "
            "code that runs",
            commit,
        )
    os.makedirs(args.output_dir, exist_ok=True)
    provenance = {"commit": commit, "uncommitted_changes": dirty}
    failed = [] if args.report_only else run_all(args, variants, provenance)
    report = ablation_report.build_report(
        args.output_dir,
        variants,
        args.seeds,
        args.split,
        reference,
        commit,
        cfg=os.path.abspath(args.cfg_path),
        options=args.options,
    )
    report["uncommitted_changes"] = dirty  # of the code making this report; each run's commit is in its row
    print(ablation_report.format_markdown(report))
    for path in ablation_report.write_report(args.output_dir, report):
        print(f"ablation: {os.path.abspath(path)}")
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed: " + ", ".join(f"{n} seed {s}" for n, s in failed))


if __name__ == "__main__":
    main()
