"""The repository stands alone and its tests stay independent of each other.

- No test module imports another test module (shared helpers live in tests/support, fixtures in
  conftest.py files, which pytest provides without imports).
- Code, docs and help texts cite no document outside the repository.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("blend", "flows", "bench", "tests", "docs", "deployments", "sql", ".ci")
# Names of documents that exist only beside the repository, never in it.
OUTSIDE_DOCUMENTS = re.compile(r"\.\./shared|ARCHITECTURE\.md|STYLE\.md|ENV-NOTES\.md|CONTRACT")


def _imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            names.append("tests.(relative)." + (node.module or ""))  # only tests/support may
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def test_no_test_module_imports_another() -> None:
    offenders = [
        f"{path.relative_to(REPO)} imports {module}"
        for path in sorted((REPO / "tests").rglob("*.py"))
        for module in _imported_modules(path)
        if module.startswith("tests.") and not module.startswith("tests.support")
    ]
    assert offenders == []


def test_the_check_above_sees_a_test_import(tmp_path: Path) -> None:
    module = tmp_path / "test_x.py"
    module.write_text("from tests.flows.conftest import REPO\nfrom .x import y\n", encoding="utf-8")
    assert _imported_modules(module) == ["tests.flows.conftest", "tests.(relative).x"]


def test_nothing_cites_documents_outside_the_repository() -> None:
    files = [REPO / "README.md", REPO / "pyproject.toml"] + [
        path
        for folder in SOURCE_DIRS
        for path in sorted((REPO / folder).rglob("*"))
        if path.is_file() and path.suffix in {".py", ".md", ".sql", ".sh", ".yaml", ".toml", ""}
    ]
    this_file = Path(__file__).resolve()
    offenders = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in files
        if path.resolve() != this_file and "data" not in path.relative_to(REPO).parts
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if OUTSIDE_DOCUMENTS.search(line)
    ]
    assert offenders == []


def test_help_texts_cite_no_outside_document() -> None:
    from typer.testing import CliRunner

    from blend.cli import app

    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "blend" in result.output.lower()
    assert not OUTSIDE_DOCUMENTS.search(result.output)
