"""The rooms of convflow/ and the one way dependencies point between them (#16)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "convflow"

# Each room, and the rooms it may import.  Data flows config -> plan -> waves -> engine -> storage;
# higher rooms use lower ones, never the other way round.
ALLOWED = {
    "errors": set(),
    "engine": {"errors"},
    "kernels": {"errors"},
    "config": {"errors", "engine", "kernels"},
    "io": {"errors", "engine"},
    "pipeline": {"errors", "engine", "kernels", "config", "io"},
    "preview": {"errors", "engine", "config", "io", "pipeline"},
    "samples": set(),
    "signal": {"errors", "engine"},
    "cli": {"errors", "engine", "kernels", "config", "io", "pipeline", "preview"},
}


def room(path: Path) -> str:
    """The room of a module file: its subpackage, or its own name at the top."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def imported_rooms(path: Path) -> set[str]:
    """The convflow rooms a module imports, at any depth of the file (late imports included)."""
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "convflow" and len(parts) > 1 and parts[1] in ALLOWED:
                rooms.add(parts[1])
    return rooms


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if room(p) not in ("__init__", "__main__"))


def test_every_module_lives_in_a_known_room():
    assert {room(p) for p in MODULES} <= set(ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_one_way(path):
    own = room(path)
    assert imported_rooms(path) - {own} <= ALLOWED[own], (
        f"{path.relative_to(PACKAGE)} ({own}) may import only {sorted(ALLOWED[own])}"
    )


def test_the_engine_imports_nothing_from_config_pipeline_or_io():
    engine = [p for p in MODULES if room(p) == "engine"] + [PACKAGE / "engine" / "__init__.py"]
    for path in engine:
        assert not imported_rooms(path) & {"config", "pipeline", "io", "preview", "cli"}, path


def module_name(path: Path) -> str:
    """``convflow/engine/_halo.py`` -> ``convflow.engine._halo``; a package's face is the package."""
    return ".".join(("convflow", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")


def test_no_import_circles_between_modules():
    """Module imports, type-checking and late ones included, form a graph without cycles."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in modules:
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    graph[name].add(submodule if submodule in modules else node.module)
            elif isinstance(node, ast.Import):
                graph[name].update(alias.name for alias in node.names if alias.name in modules)
        graph[name].discard(name)
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        for target in sorted(graph[node]):
            assert target not in path, "import circle: " + " -> ".join((*path[path.index(target) :], target))
            if target not in done:
                visit(target, (*path, target))
        done.add(node)

    for name in sorted(graph):
        if name not in done:
            visit(name, (name,))


@pytest.mark.parametrize("package", ["engine", "kernels", "config", "io", "pipeline", "preview", "cli"])
def test_each_room_imports_alone(package):
    subprocess.run([sys.executable, "-c", f"import convflow.{package}"], check=True)
