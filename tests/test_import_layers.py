"""The import layering of docs/architecture.md, read from the source with `ast` (nothing is
imported): no cycle among trimq/server's modules, the model and the protocol never reach up
to the I/O layers or to trio, and storage never imports trimq.

Imports under `if TYPE_CHECKING:` are left out (they never run); imports inside function
bodies count, since a function-local import is the usual way to hide a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(package: str) -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            yield from _import_nodes(ast.Module(body=child.orelse, type_ignores=[]))
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        yield from _import_nodes(child)


def imports(path: Path, module: str) -> set[str]:
    """Every module `module` (at `path`) may import when run: for `from X import Y` both X and
    X.Y (Y may be a submodule), relative imports resolved."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            base = f"{anchor}.{base}" if base else anchor
        found.add(base)
        found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_sees_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_imports_skip_type_checking_but_see_function_bodies(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from trimq.server import info\n"
        "if TYPE_CHECKING:\n    from trimq.server.app import ServerState\n"
        "def f():\n    from trimq.server.app import close_connections\n"
    )
    found = imports(source, "trimq.server.m")
    assert "trimq.server.info" in found
    assert "trimq.server.app.close_connections" in found
    assert "trimq.server.app.ServerState" not in found


def test_no_import_cycle_among_server_modules() -> None:
    modules = _modules("trimq/server")
    assert "trimq.server.app" in modules and "trimq.server.state" in modules
    graph = {
        name: {target for target in imports(path, name) if target in modules and target != name}
        for name, path in modules.items()
    }
    assert _find_cycle(graph) is None, " -> ".join(_find_cycle(graph) or [])
    # The process module is the top of the layer: nothing else in it imports app.py.
    assert [name for name, targets in graph.items() if "trimq.server.app" in targets] == []


def test_model_and_protocol_never_import_io_layers() -> None:
    forbidden = ("trio", "trimq.server", "trimq.cli", "storage.wal", "storage.committer")
    for package in ("trimq/broker", "trimq/amqp"):
        for name, path in _modules(package).items():
            bad = sorted(
                t for t in imports(path, name) if any(_under(t, prefix) for prefix in forbidden)
            )
            assert not bad, f"{name} imports {bad}"


def test_storage_never_imports_trimq() -> None:
    for name, path in _modules("storage").items():
        bad = sorted(t for t in imports(path, name) if _under(t, "trimq"))
        assert not bad, f"{name} imports {bad}"


def test_tests_never_import_one_another() -> None:
    """Shared helpers live in helper modules (ctl_helpers, codec_strategies, pika_helpers...):
    importing a test module would also collect its tests twice and tie unrelated files."""
    paths = sorted((ROOT / "tests").rglob("test_*.py"))
    stems = {path.stem for path in paths}
    assert "test_codec" in stems and "test_spec" in stems
    for path in paths:
        name = _module_name(path)
        bad = sorted(t for t in imports(path, name) if stems & set(t.split(".")))
        assert not bad, f"{name} imports {bad}"


def test_nothing_below_management_imports_it() -> None:
    """trimq/management sits above trimq/server: the server runs it as a service that
    trimq-server hands in (trimq/server/app.py's `services`), so only trimq/cli imports it."""
    for package in ("trimq/server", "trimq/broker", "trimq/amqp", "storage"):
        for name, path in _modules(package).items():
            bad = sorted(t for t in imports(path, name) if _under(t, "trimq.management"))
            assert not bad, f"{name} imports {bad}"
    assert _modules("trimq/management"), "the management package moved"
