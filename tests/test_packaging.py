"""What `pip install .` ships, and how the project's modules depend on each other.

The wheel must carry what `gfti train --model toy` and the demo need (the toy world and its model files), and the
engine must find the toy model by name (an entry point), never by importing it. The install test, slower, puts
the wheel into a fresh virtual environment and trains from a folder outside the repository.
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gfti_core", "nodes", "gfti_webui", "toyworld")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:  # relative: resolved against the importing module's package
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - node.level + 1]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    return [prefix] + [f"{prefix}.{a.name}" for a in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body (imports inside functions count too:
    they are still a dependency, only a later one)."""
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}

    def project_module(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in files.items():
        targets = {project_module(t) for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                   for t in _imported(node, module, path.name == "__init__.py")}
        graph[module] = {t for t in targets if t and t != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle_between_modules_or_packages():
    graph = import_graph()
    assert {"gfti_core.cli", "gfti_core.finish", "toyworld.demo", "nodes.save_embedding"} <= set(graph)
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"
    packages = {}
    for module, targets in graph.items():
        packages.setdefault(module.split(".")[0], set()).update(t.split(".")[0] for t in targets)
    packages = {p: t - {p} for p, t in packages.items()}
    assert find_cycle(packages) is None, f"package cycle: {' -> '.join(find_cycle(packages))}"
    assert packages["gfti_core"] == set(), "the engine imports no other package of the project"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip install .` would install, built from a copy (the build leaves files behind)."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for pkg in ("gfti_core", "toyworld"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("gfti-*.whl")
    return path


def test_wheel_carries_the_engine_the_toy_world_and_its_model(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    needed = {"gfti_core/finish.py", "gfti_core/backends/diffusers_backend.py", "gfti_core/data/concept_words.txt",
              "toyworld/__init__.py", "toyworld/demo.py", "toyworld/concept_words.txt",
              "toyworld/context_phrases.txt", "toyworld/classifier.safetensors", "toyworld/example_concept/00.png"}
    model = {str(p.relative_to(ROOT)) for p in (ROOT / "toyworld" / "model").rglob("*")
             if p.is_file() and p.suffix in (".json", ".safetensors")}
    assert needed | model <= names, sorted((needed | model) - names)
    assert not any(n.startswith(("tests/", "nodes/", "gfti_webui/", "benchmarks/")) for n in names)
    info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    entry_points = zipfile.ZipFile(wheel).read(info).decode()
    assert "[gfti.models]" in entry_points and "toy = toyworld:gfti_model" in entry_points
    assert "gfti = gfti_core.cli:main" in entry_points


@pytest.mark.skipif(not os.environ.get("GFTI_INSTALL_TEST"),
                    reason="installs the wheel into a new virtual environment and trains one generation (minutes): "
                           "set GFTI_INSTALL_TEST=1")
def test_installed_gfti_trains_the_toy_model_from_another_folder(wheel, tmp_path):
    """A new venv (its dependencies borrowed from this one's site-packages, the project itself only from the
    wheel), then `gfti train --model toy` in an empty folder."""
    import sysconfig

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site),
                    str(wheel)], check=True, timeout=300)
    (site / "borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    python = venv / "bin" / "python"
    where = subprocess.run([str(python), "-c", "import gfti_core, toyworld; print(gfti_core.__file__); "
                            "print(toyworld.__file__)"], cwd=work, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0 and all(line.startswith(str(site)) for line in where.stdout.split()), where
    images = site / "toyworld" / "example_concept"
    train = [str(python), "-m", "gfti_core.cli", "train", "--model", "toy", "--images", str(images), "--token",
             "sks-star", "--out", "star", "--generations", "1", "--popsize", "4", "--subspace-dim", "4",
             "--samples-per-candidate", "2", "--holdout-samples", "2", "--init-mode", "word", "--init-text", "star",
             "--no-auto-context"]
    done = subprocess.run(train, cwd=work, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (work / "star.safetensors").exists() and (work / "star.loss.png").exists()
