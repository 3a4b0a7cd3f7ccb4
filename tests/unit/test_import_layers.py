"""The layers point inward, checked on the import graph rather than remembered (DESIGN §2, §7.1).

Every import statement of our packages counts, those inside functions too (the CLI imports the HTTP edge
lazily, and that is still a dependency)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OURS = ("app", "domain", "eventstore", "projections", "reactors", "scim", "migrations")


def _module_of(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> Iterator[tuple[str, str]]:
    """(importer, imported) for every import of one of our modules by one of our modules."""
    for package in OURS:
        for path in sorted((REPO / package).rglob("*.py")):
            importer = _module_of(path)
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    # `from app.http import audit_routes` imports app.http.audit_routes: count the submodules too.
                    names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
                else:
                    continue
                for name in names:
                    if name.split(".")[0] in OURS:
                        yield importer, name


IMPORTS = sorted(set(_imports()))


def _within(module: str, *packages: str) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


def _violations(importers: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{importer} imports {imported}"
        for importer, imported in IMPORTS
        if _within(importer, *importers) and _within(imported, *forbidden)
    ]


def test_the_graph_is_read_at_all() -> None:
    assert ("app.http.app", "app.bootstrap") in IMPORTS
    assert ("app.cli.operations_commands", "app.cli.server") in IMPORTS  # a lazy import counts


@pytest.mark.parametrize("package", ["domain", "scim"])
def test_the_pure_packages_import_nothing_of_ours_but_themselves(package: str) -> None:
    others = tuple(name for name in OURS if name != package)
    assert _violations((package,), others) == []


def test_nothing_below_the_service_imports_the_service() -> None:
    assert _violations(("eventstore", "projections", "reactors", "migrations"), ("app",)) == []


def test_only_the_cli_imports_the_http_edge_from_outside_it() -> None:
    below = ("app.bootstrap", "app.services", "app.infrastructure")
    assert _violations(below, ("app.http", "app.cli")) == []


def test_the_http_edge_does_not_import_the_cli() -> None:
    assert _violations(("app.http",), ("app.cli",)) == []


def test_services_and_infrastructure_do_not_import_the_composition_root() -> None:
    assert _violations(("app.services", "app.infrastructure"), ("app.bootstrap",)) == []


def test_infrastructure_does_not_import_the_application_services() -> None:
    assert _violations(("app.infrastructure",), ("app.services",)) == []
