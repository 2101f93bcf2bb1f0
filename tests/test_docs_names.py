"""README.md and docs/ name only things that exist: every lavis-gated command, every flag given to one of
the package's commands or run_scripts, every file path in the repository, and every config key.

Names are read where the docs put names: inline code spans, fenced code blocks and links. Placeholders
(`<job>`, `*`, `{...}`) and the user's own files (output/, data/, checkpoints/) are not checked.
"""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
USER_FILES = ("output/", "data/", "checkpoints/", "test-artifacts/", "my_", "~", "/", "http", "node0")
REPO_FILE = re.compile(r"^[\w.-]+(/[\w.-]+)*/?$")
PATH_SUFFIXES = (".py", ".sh", ".yaml", ".md", ".toml", ".txt", ".cff", ".png", ".json")
CONFIG_KEY = re.compile(r"^(model|run|datasets)\.[\w.<>-]+$")
# the package's own commands, as scripts or modules, and the shell scripts
COMMAND = re.compile(
    r"(lavis-gated-[a-z-]+|lavis_gated/(?:train|evaluate)\.py|-m lavis_gated(?:\.[\w.]+)?|"
    r"run_scripts/[\w]+\.sh)"
)


def scripts():
    text = (REPO / "pyproject.toml").read_text()
    block = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    return {line.split("=")[0].strip(): line.split('"')[1] for line in block.splitlines() if "=" in line}


def code_of(page):
    """(inline code spans, fenced code lines with continuations joined, link targets) of a page."""
    text = page.read_text(encoding="utf-8")
    blocks = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    spans = re.findall(r"`([^`\n]+)`", prose)
    lines = []
    for block in blocks:
        lines += block.replace("\\\n", " ").splitlines()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", prose) + re.findall(r'src="([^"]+)"', prose)
    return spans, lines, links


def all_names():
    found = []
    for page in PAGES:
        spans, lines, links = code_of(page)
        found.append((page, spans, lines, links))
    return found


@pytest.fixture(scope="module")
def help_texts():
    """--help of each command (and the text of each run_scripts/*.sh): what accepts which flags."""
    texts = {}
    for command, target in scripts().items():
        # the pyproject.toml entry point, as its console script runs it (whatever the environment installed)
        module, function = target.split(":")
        code = (
            f"import sys; sys.argv[0] = {command!r}; from {module} import {function}; sys.exit({function}())"
        )
        result = subprocess.run(
            [sys.executable, "-c", code, "--help"], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr
        texts[command] = result.stdout
    texts["lavis_gated/train.py"] = texts["-m lavis_gated.train"] = texts["lavis-gated-train"]
    texts["lavis_gated/evaluate.py"] = texts["-m lavis_gated.evaluate"] = texts["lavis-gated-eval"]
    for module, command in (
        ("-m lavis_gated.app", "lavis-gated-app"),
        ("-m lavis_gated.ablation.harness", "lavis-gated-ablate"),
        ("-m lavis_gated.reports.tables", "lavis-gated-report"),
        ("-m lavis_gated.reports.plots", "lavis-gated-plots"),
        ("-m lavis_gated.datasets.make_shards", "lavis-gated-make-shards"),
        ("-m lavis_gated.datasets.synthetic_artquest", "lavis-gated-make-demo-data"),
    ):
        texts[module] = texts[command]
    for script in (REPO / "run_scripts").glob("*.sh"):
        texts[f"run_scripts/{script.name}"] = script.read_text()
    return texts


def test_every_command_named_exists():
    known = set(scripts())
    unknown = [
        f"{page.name}: {command}"
        for page, spans, lines, _ in all_names()
        for text in spans + lines
        for command in re.findall(r"\blavis-gated-[a-z][a-z-]*[a-z]", text)
        if command not in known
    ]
    assert not unknown, f"not commands ({sorted(known)}):\n" + "\n".join(unknown)


def test_every_flag_given_to_a_command_is_one_it_takes(help_texts):
    wrong = []
    for page, spans, lines, _ in all_names():
        for text in spans + lines:
            text = text.split(" # ")[0]
            for invocation in re.split(r"[;|]|&&", text):
                found = COMMAND.search(invocation)
                if not found or found.group(1) not in help_texts:
                    continue
                accepted = help_texts[found.group(1)]
                for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", invocation[found.end() :]):
                    if not re.search(rf"(?<![\w-]){flag}(?![\w-])", accepted):
                        wrong.append(f"{page.name}: {found.group(1)} takes no {flag}: {invocation.strip()}")
    assert not wrong, "\n".join(wrong)


def is_repo_path(token):
    if "..." in token:
        return False  # an elided name
    token = token.strip().rstrip(".,:;")
    if not token or any(c in token for c in "<>*{}$ =") or token.startswith(USER_FILES):
        return False
    if token.split("/")[0].isupper():
        return False  # a placeholder: OUT/ablation.json, DIR/<style>/
    # a file in a folder, or a folder below another (a lone `Images/` is the user's folder)
    return REPO_FILE.match(token) and "/" in token.rstrip("/") and token.endswith((*PATH_SUFFIXES, "/"))


def exists(token, page):
    token = token.strip().rstrip(".,:;")
    # LAVIS's own files (lavis/...) are named relative to its installed package's folder
    lavis = Path(importlib.util.find_spec("lavis").origin).parent.parent
    bases = (REPO, REPO / "lavis_gated", page.parent, REPO / "tests", lavis)
    return any((base / token).exists() for base in bases)


def test_every_file_path_named_exists():
    missing = []
    for page, spans, lines, links in all_names():
        for token in spans + [w for line in lines for w in line.split()]:
            if is_repo_path(token) and not exists(token, page):
                missing.append(f"{page.name}: `{token}`")
        for link in links:
            if not link.startswith(("http", "mailto")) and not (page.parent / link).exists():
                missing.append(f"{page.name}: link {link}")
    assert not missing, "named but not in the repository:\n" + "\n".join(missing)


def config_keys():
    """Every key of docs/configuration.md (generated from the config dataclasses and checked current)."""
    text = (REPO / "docs" / "configuration.md").read_text()
    return set(re.findall(r"\| `((?:model|run|datasets)\.[\w.]+)` \|", text))


def model_methods():
    """Names defined in lavis_gated/models/: `model.generate` and the like are the model's methods."""
    code = "".join(p.read_text() for p in (REPO / "lavis_gated" / "models").rglob("*.py"))
    return set(re.findall(r"def (\w+)\(", code))


def test_every_config_key_named_exists():
    keys = config_keys()
    methods = model_methods()
    assert "model.style_encoder.image_size" in keys and "run.max_len" in keys
    blocks = {".".join(k.split(".")[:i]) for k in keys for i in range(1, k.count(".") + 1)}
    unknown = []
    for page, spans, _, _ in all_names():
        for span in spans:
            key = span.split("=")[0].split(":")[0].strip().replace("datasets.<name>.", "datasets.artquest.")
            if key.startswith("model.") and key.split(".")[1].split("(")[0] in methods:
                continue
            if CONFIG_KEY.match(key) and "<" not in key and key not in keys and key not in blocks:
                unknown.append(f"{page.name}: `{span}`")
    assert not unknown, "not config keys or blocks:\n" + "\n".join(unknown)


def test_no_page_names_a_path_outside_the_repository():
    """A file a reader is sent to is in the repository (temporary folders a script makes are not sent to)."""
    machine = re.compile(r"(?<![\w.:/])/(?:work|home|root|mnt|srv|export)/[\w./-]+")
    found = [f"{p.name}: {m}" for p in PAGES for m in machine.findall(p.read_text(encoding="utf-8"))]
    assert not found, "paths outside the repository:\n" + "\n".join(found)
