"""The library's shape: no loose modules at blend/'s root, no import circles, and imports
that run one way, from the command line down to the cost model (docs/architecture.md).

The import graph is read from the source (every import statement, at module level, in
functions and under TYPE_CHECKING alike: each ties the modules together), so the checks
need nothing imported."""

from __future__ import annotations

import ast
from pathlib import Path

BLEND = Path(__file__).resolve().parents[1] / "blend"

# Top-level packages of blend/, from the top: a module may import its own package and the
# packages below its own, never one above (the stages in pipeline order come first, each
# free to use what an earlier stage left; the store and the cost model are at the bottom).
LAYERS = (
    "cli",  # the command line
    "pipeline",  # the stages chained
    "execute",  # stage 4: run a plan (warm-up, re-plan, the rest), one engine or a Ray fleet
    "plan",  # stage 3: estimates, order, engine settings; capacity
    "profile",  # stage 2: tokens, lengths, prefix sharing, classes
    "ingest",  # stage 1: prompts into the store
    "simulate",  # the engine simulator, the bounds, the settings search
    "scale",  # engines' shares of a plan, their parts
    "admission",  # who enters the engine next
    "control",  # request classes, the fluid LP, the fleet policies
    "calibration",  # measured CPU step models
    "planners",  # the order and its estimates, the prefix tree
    "engines",  # vLLM and hetegen behind one protocol, their settings and tokenizer
    "hetegen",  # split CPU+GPU layers at run time
    "store",  # DuckDB, locks, names, runs, results, lineage, read-only queries
    "cost",  # specs, per-request costs, the step model, offload pricing
    "demo",  # the bundled dataset and the tiny model
)


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path = BLEND) -> dict[str, set[str]]:
    """Module -> the package modules it imports (an import of a.b.c also runs a and a.b)."""
    files = {module_name(root, path): path for path in root.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            for target in targets:
                parts = target.split(".")
                for i in range(1, len(parts) + 1):  # the module and the packages above it
                    prefix = ".".join(parts[:i])
                    if prefix in files and prefix != name and not name.startswith(prefix + "."):
                        graph[name].add(prefix)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    rank = {package: i for i, package in enumerate(LAYERS)}

    def layer(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else None

    offenders = []
    for module, imported in sorted(graph.items()):
        for target in sorted(imported):
            a, b = layer(module), layer(target)
            if a is None or b is None or a == b:
                continue
            if a not in rank or b not in rank:
                offenders.append(f"{module} -> {target}: a package not in LAYERS")
            elif rank[b] < rank[a]:
                offenders.append(f"{module} -> {target}: {a} sits below {b}")
    return offenders


def test_no_loose_modules_at_the_root() -> None:
    loose = sorted(p.name for p in BLEND.glob("*.py") if p.name != "__init__.py")
    assert loose == []


def test_every_package_has_a_layer() -> None:
    packages = sorted(p.name for p in BLEND.iterdir() if (p / "__init__.py").is_file())
    assert sorted(LAYERS) == packages


def test_no_import_circles() -> None:
    assert circles(import_graph()) == []


def test_imports_run_down_the_layers() -> None:
    assert upward_imports(import_graph()) == []


def test_the_checks_see_a_circle_and_an_upward_import(tmp_path: Path) -> None:
    """The checks above can fail: a planted circle and a store module importing the CLI."""
    root = tmp_path / "blend"
    for package in ("store", "cli"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "store" / "a.py").write_text("from blend.store import b\n")
    (root / "store" / "b.py").write_text("def f():\n    from blend.store.a import x\n")
    (root / "store" / "c.py").write_text("from blend.cli.main import app\n")
    (root / "cli" / "main.py").write_text("")
    graph = import_graph(root)
    assert circles(graph) == [["blend.store.a", "blend.store.b"]]
    assert upward_imports(graph) == [
        "blend.store.c -> blend.cli: store sits below cli",  # the package runs first
        "blend.store.c -> blend.cli.main: store sits below cli",
    ]
