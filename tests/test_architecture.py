"""The package's layers: a module imports only from its own package or from a layer below it.

Read as a newcomer reads the folder tree, from the bottom up: utilities, the detector geometry,
shower data, then three independent pillars (the simulator that makes showers, the metrics that
judge them, pure functions that know no models, and the surrogate families that learn them),
what trains and samples the surrogates, what judges and shows the samples (evaluation, plots,
the report), the orchestrators (the main job, the timing benchmark) and the command line that
nothing imports. Packages on one level are independent of each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "calosurrogate"

LAYERS: list[set[str]] = [
    {"__init__", "_io", "cluster", "devices", "layers", "memory"},  # utilities every layer may use
    {"geometry"},
    {"data"},
    {"simulate", "metrics", "models"},
    {"training", "sampling", "export", "inference", "correction"},
    {"evaluation"},
    {"plotting"},
    {"report"},
    {"benchmark", "pipeline"},
    {"cli"},
    {"__main__"},  # python -m calosurrogate: runs the command line
]
RANK = {name: level for level, names in enumerate(LAYERS) for name in names}


def _top(module: str) -> str | None:
    """``calosurrogate.data.hdf5`` -> ``data``; None for other packages."""
    parts = module.split(".")
    if parts[0] != "calosurrogate":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, calosurrogate package) of every import in a file, inside functions too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from calosurrogate import data`` names a package; ``... import __version__`` the root module
            root = node.module == "calosurrogate"
            names = [f"calosurrogate.{a.name}" if root and a.name in RANK else node.module for a in node.names]
        else:
            continue
        found += [(node.lineno, top) for top in map(_top, names) if top is not None]
    return found


def upward_imports(package: Path = PACKAGE) -> list[str]:
    """Every import that points to the same level (another package) or above, as ``file:line -> package``."""
    bad = []
    for path in sorted(package.rglob("*.py")):
        own = path.relative_to(package).parts[0].removesuffix(".py")
        assert own in RANK, f"{path}: package {own!r} has no layer in LAYERS: place it"
        for line, target in imports_of(path):
            if target == own or (target == "__init__" and own != "__init__"):
                continue
            assert target in RANK, f"{path}:{line}: imports calosurrogate.{target}, which has no layer"
            if RANK[target] >= RANK[own]:
                bad.append(f"{path.relative_to(package)}:{line} -> {target}")
    return bad


def test_no_import_points_up_the_layers() -> None:
    assert upward_imports() == []


def test_the_check_finds_an_upward_import(tmp_path) -> None:
    """The walker sees imports inside functions and of both forms."""
    fake = tmp_path / "calosurrogate"
    (fake / "models").mkdir(parents=True)
    (fake / "models" / "ok.py").write_text("from calosurrogate.data import ShowerFile\n")
    (fake / "models" / "bad.py").write_text("def f():\n    from calosurrogate.evaluation import x\n")
    (fake / "metrics").mkdir()
    (fake / "metrics" / "bad.py").write_text("import calosurrogate.simulate.spectra\n")
    assert upward_imports(fake) == ["metrics/bad.py:1 -> simulate", "models/bad.py:2 -> evaluation"]
