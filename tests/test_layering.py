"""The package's parts import downward only: the part-to-part import graph, built from the sources with ast,
has no cycle and follows the declared order (docs/design.md, "Layout").

A part is a folder of lavis_gated/ (common, datasets, models, ...) or one of its loose modules (styles.py);
the loose entry modules (__init__, train, evaluate) are the top. Every import counts, including those inside
functions: a lazy import still ties the two parts together.
"""

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lavis_gated"
# bottom to top: a part may import only the parts before it
ORDER = (
    "common",
    "styles",
    "configs",
    "reports",
    "datasets",
    "models",
    "tasks",
    "runners",
    "offline",
    "wikiart",
    "ablation",
    "app",
    "top",
)
TOP_MODULES = {"__init__", "train", "evaluate"}
MAX_LOOSE_MODULES = 6
MAX_LINES = 700


def part_of(module):
    """'lavis_gated.models.backbones' -> 'models'; the loose entry modules -> 'top'."""
    parts = module.split(".")
    if len(parts) == 1:
        return "top"
    first = parts[1]
    return "top" if first in TOP_MODULES else first


def module_name(path):
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    name = ".".join(relative.parts)
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def imported_modules(path):
    """The lavis_gated modules (or packages) a source file imports, wherever the import statement is."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "lavis_gated":
                yield from (f"lavis_gated.{alias.name}" for alias in node.names)
            elif node.module.startswith("lavis_gated."):
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("lavis_gated."))


def part_graph():
    """{part: {imported part: [(importing module, imported module), ...]}}, without a part's own imports."""
    graph = defaultdict(lambda: defaultdict(list))
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        for target in imported_modules(path):
            a, b = part_of(source), part_of(target)
            if a != b:
                graph[a][b].append((source, target))
    return graph


def find_cycle(graph):
    """One cycle of parts as a list (first == last), or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph.get(node, {}):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt] if nxt in stack else [node, nxt]
            if nxt not in state:
                found = visit(nxt, stack + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in list(graph):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def test_the_parts_import_graph_has_no_cycle():
    graph = part_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle between parts: " + " -> ".join(cycle)


def test_each_part_imports_only_parts_below_it():
    graph = part_graph()
    unknown = sorted((set(graph) | {b for edges in graph.values() for b in edges}) - set(ORDER))
    assert not unknown, f"parts missing from the declared order: {unknown}"
    upward = [
        f"{a} -> {b} ({', '.join(f'{s} imports {t}' for s, t in edges[:3])})"
        for a, targets in graph.items()
        for b, edges in targets.items()
        if ORDER.index(b) >= ORDER.index(a)
    ]
    assert not upward, "imports from a part at or above the importing one:\n" + "\n".join(upward)


def test_cycle_finder_finds_a_cycle():
    """The check above can fail: a graph with a two-part loop is caught."""
    assert find_cycle({"a": {"b": []}, "b": {"a": []}}) in (["a", "b", "a"], ["b", "a", "b"])
    assert find_cycle({"a": {"b": []}, "b": {"c": []}}) is None


def test_few_loose_modules_and_no_oversized_module():
    loose = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert len(loose) <= MAX_LOOSE_MODULES, loose
    too_long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not too_long, too_long
