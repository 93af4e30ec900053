"""gfti_core must never import a host (nor the toy world, which depends on it): it is imported here with every
host module and toyworld made unimportable."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOSTS = ["comfy", "comfy_extras", "comfy_api", "folder_paths", "server", "nodes", "execution", "modules",
         "gradio", "backend", "launch", "toyworld"]

SCRIPT = f"""
import importlib, importlib.abc, sys, pkgutil
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {HOSTS!r}:
            raise ImportError('host module ' + name + ' is blocked')
sys.meta_path.insert(0, Block())
import gfti_core
names = [m.name for m in pkgutil.walk_packages(gfti_core.__path__, 'gfti_core.')]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def test_gfti_core_imports_without_any_host():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert int(out.stdout.strip().splitlines()[-1]) >= 10  # really walked the package


def test_no_host_import_statements_in_source():
    pattern = tuple(f"import {h}" for h in HOSTS) + tuple(f"from {h} " for h in HOSTS) + tuple(
        f"from {h}." for h in HOSTS)
    offenders = [f"{p}:{i}" for p in (ROOT / "gfti_core").rglob("*.py")
                 for i, line in enumerate(p.read_text().splitlines(), 1) if line.strip().startswith(pattern)]
    assert not offenders, offenders


FACES = ("__init__.py", "nodes", "gfti_webui", "scripts")  # ComfyUI pack, A1111/Forge extension


def test_only_gfti_batch_imports_ray():
    """Ray is the batch command's optional extra: every gfti_core module imports with Ray unimportable, and no
    ComfyUI or A1111/Forge file imports it (nor the batch modules that would)."""
    blocked = SCRIPT.replace(repr(HOSTS), repr(["ray"]))
    out = subprocess.run([sys.executable, "-c", blocked], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    files = [p for face in FACES for p in ((ROOT / face).rglob("*.py") if (ROOT / face).is_dir() else [ROOT / face])]
    offenders = [f"{p}:{i}" for p in files for i, line in enumerate(p.read_text().splitlines(), 1)
                 if line.strip().startswith(("import ray", "from ray", "from gfti_core.batch", "from gfti_core import batch"))]
    assert len(files) > 5 and not offenders, offenders
