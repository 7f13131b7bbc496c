"""The package's shape: the root shows the data flow and the entry points; the layers
below (adapters to external tools, plumbing) never import a stage; nothing imports in a
circle. Read from the source with ast, so a new import that breaks it fails here."""

from __future__ import annotations

import ast
import sys
import types
from pathlib import Path

from tests.walk import Walk

ROOT = Path(__file__).resolve().parents[2] / "src" / "basefactory"
LOWER = {"adapters", "plumbing"}
MAX_ROOT_MODULES = 8


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = ("basefactory", *path.relative_to(root).with_suffix("").parts)
    return ".".join(parts).removesuffix(".__init__")


def resolve(name: str, modules: set[str]) -> str | None:
    """The module an import names (`from basefactory.x import y` may import module x.y)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    modules = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("basefactory"):
                for alias in node.names:
                    dep = resolve(f"{node.module}.{alias.name}", modules)
                    if dep:
                        deps.add(dep)
            elif isinstance(node, ast.Import):
                deps.update(d for a in node.names if a.name.startswith("basefactory")
                            and (d := resolve(a.name, modules)))
        # a package's __init__ is imported with any of its modules: not an edge of its own
        graph[name] = {d for d in deps if d != name and d != "basefactory"}
    return graph


def layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_root_holds_only_entry_points_and_the_data_flow() -> None:
    modules = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(modules) <= MAX_ROOT_MODULES, modules
    stages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert {"platforms", "wheels", "index", "images", "catalog", "daemons", "proofs",
            "adapters", "plumbing", "config"} <= stages


def test_adapters_and_plumbing_never_import_upward() -> None:
    graph = import_graph()
    upward = sorted((m, d) for m, deps in graph.items() if layer(m) in LOWER
                    for d in deps if layer(d) not in LOWER)
    assert upward == []
    plumbing_to_adapters = sorted((m, d) for m, deps in graph.items() if layer(m) == "plumbing"
                                  for d in deps if layer(d) == "adapters")
    assert plumbing_to_adapters == []


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The import graph between the packages (and root modules) below basefactory."""
    packages: dict[str, set[str]] = {}
    for module, deps in graph.items():
        packages.setdefault(layer(module) or module, set()).update(
            layer(d) or d for d in deps if (layer(d) or d) != (layer(module) or module))
    return packages


def test_no_import_circles() -> None:
    assert cycles(import_graph()) == []


def test_no_circles_between_packages() -> None:
    """A module-level circle hides behind a function-local import; a package-level one
    means two rooms each need the other (daemons <-> index before the devpi API moved to
    adapters, audit <-> images before `images audit` moved to images)."""
    assert cycles(package_graph(import_graph())) == []


def test_imports_are_at_the_top_outside_the_cli() -> None:
    """A function-local import of the package hides a circle from the reader; only the
    CLI imports late (each command its own stage, for a fast start)."""
    late = []
    for path in ROOT.rglob("*.py"):
        if path.name in ("cli.py", "abi_script.py", "fit_script.py", "sbom_script.py",
                         "torch_state.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                late += [f"{path.relative_to(ROOT)}:{n.lineno}" for n in ast.walk(node)
                         if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("basefactory")]
    assert late == []


def test_the_checks_see_a_circle_and_an_upward_import() -> None:
    # the checks themselves can fail: a made-up graph with both defects
    graph = {"basefactory.plumbing.a": {"basefactory.plumbing.b"},
             "basefactory.plumbing.b": {"basefactory.plumbing.a", "basefactory.images.x"},
             "basefactory.images.x": set()}
    assert cycles(graph) == [["basefactory.plumbing.a", "basefactory.plumbing.b"]]
    # no module circle, but a package one: images.x -> index.y -> images.z
    split = {"basefactory.images.x": {"basefactory.index.y"},
             "basefactory.index.y": {"basefactory.images.z"}, "basefactory.images.z": set()}
    assert cycles(split) == []
    assert cycles(package_graph(split)) == [["images", "index"]]
    assert layer("basefactory.images.x") not in LOWER and layer("basefactory.plumbing.b") in LOWER


def unit_test_imports(folder: Path) -> set[str]:
    """Every basefactory module a unit test file imports (`from a.b import c` counts as
    importing a.b and, when it is one, the module a.b.c)."""
    found: set[str] = set()
    for path in folder.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("basefactory"):
                found.add(node.module or "")
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("basefactory"))
    return found


def untested_modules(root: Path, imported: set[str]) -> list[str]:
    """Modules that define a function and that no unit test file imports."""
    missing = []
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        if name in imported or path.name == "__main__.py":
            continue
        tree = ast.parse(path.read_text())
        if any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(tree)):
            missing.append(name)
    return missing


def test_every_module_with_logic_has_a_unit_test_that_imports_it() -> None:
    """The integration tier runs everything, but at minutes a try; a module whose logic
    no unit test reaches is changed blind between two CI runs."""
    assert untested_modules(ROOT, unit_test_imports(Path(__file__).parent)) == []


def test_the_coverage_check_sees_a_module_no_test_imports(tmp_path: Path) -> None:
    (tmp_path / "tested.py").write_text("def f():\n    pass\n")
    (tmp_path / "untested.py").write_text("def g():\n    pass\n")
    (tmp_path / "constants.py").write_text("X = 1\n")
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_x.py").write_text("from basefactory.tested import f\n")
    imported = unit_test_imports(tests)
    assert imported == {"basefactory.tested", "basefactory.tested.f"}
    assert untested_modules(tmp_path, imported) == ["basefactory.untested"]


def test_the_walk_counts_each_entry_into_a_room_and_carries_methods() -> None:
    """tests/walk.py, which the integration tier runs on a real image build: a module that
    calls into another three times enters it three times; a method of that module's class
    is carried (not a visit, and what it calls in its own module is no visit either),
    unless methods are counted."""
    b = types.ModuleType("basefactory.images.fake_b")
    exec("def step():\n    return 1\n\nclass Box:\n    def size(self):\n        return step()\n",
         b.__dict__)
    a = types.ModuleType("basefactory.images.fake_a")
    a.__dict__["b"] = b
    exec("def run():\n    b.step(); b.step()\n    box = b.Box(); box.size(); box.size()\n"
         "    b.step()\n", a.__dict__)

    def walked(methods: bool) -> Walk:
        walk = Walk("basefactory.images.fake_a:run", methods=methods)
        sys.setprofile(walk)
        try:
            a.run()
        finally:
            sys.setprofile(None)
        return walk

    plain = walked(False)
    assert plain.visits() == {"images.fake_a": 1, "images.fake_b": 3}
    assert plain.path == ["images.fake_a", "images.fake_b", "(images.fake_a)", "images.fake_b",
                          "(images.fake_a)", "images.fake_b", "(images.fake_a)"]
    assert walked(True).visits()["images.fake_b"] == 5
