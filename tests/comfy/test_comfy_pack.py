"""The pack without a running ComfyUI: registration, inputs from the config, import safety, install.py,
example workflows, the browser script's syntax."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from comfy_env import ROOT, child_env, load_pack
from workflows import OUT, examples, is_widget, render

PACK = load_pack()


def test_nodes_are_namespaced_and_every_input_has_a_tooltip():
    assert set(PACK.NODE_CLASS_MAPPINGS) == {"GFTILoadTrainingImages", "GFTISettings", "GFTIInitializeInversion",
                                             "GFTIESOptimizeStep", "GFTISaveEmbedding", "GFTIEncodeWithInversion"}
    assert PACK.WEB_DIRECTORY == "./web"
    for key, cls in PACK.NODE_CLASS_MAPPINGS.items():
        assert key.startswith("GFTI") and cls.CATEGORY == "GFTI"
        assert PACK.NODE_DISPLAY_NAME_MAPPINGS[key].startswith("GFTI ")
        for part, inputs in cls.INPUT_TYPES().items():
            for name, spec in inputs.items():
                assert part == "hidden" or spec[1].get("tooltip"), f"{key}.{name} has no tooltip"


def test_node_inputs_come_from_the_config():
    from gfti_pack.gfti_core.config import InversionConfig, field_specs
    from gfti_pack.nodes.config_inputs import ALIASES, HIDDEN_FIELDS

    init = PACK.NODE_CLASS_MAPPINGS["GFTIInitializeInversion"].INPUT_TYPES()["required"]
    settings = PACK.NODE_CLASS_MAPPINGS["GFTISettings"].INPUT_TYPES()["required"]
    step = PACK.NODE_CLASS_MAPPINGS["GFTIESOptimizeStep"].INPUT_TYPES()["required"]
    assert not set(init) & set(settings)
    for f in field_specs():
        if f.name in HIDDEN_FIELDS:
            continue
        name = ALIASES.get(f.name, f.name)
        spec = init.get(name) or settings.get(name) or step[name]
        assert spec[1]["tooltip"].startswith(f.metadata["help"]), name
        if f.metadata.get("choices") and name in init:
            assert spec[0] == list(f.metadata["choices"])
    assert "seed" not in init and init["run_seed"][0] == "INT"  # "seed" would randomise on every queue
    field_of = {alias: name for name, alias in ALIASES.items()}
    InversionConfig(**{field_of.get(k, k): s[1]["default"] for k, s in {**init, **settings}.items() if is_widget(s)})


def test_initialize_shows_at_most_twelve_inputs_and_takes_the_rest_from_gfti_settings():
    import torch

    from gfti_pack.nodes.config_inputs import ESSENTIAL_INIT_FIELDS

    spec = PACK.NODE_CLASS_MAPPINGS["GFTIInitializeInversion"].INPUT_TYPES()
    shown = [*spec["required"], *spec.get("optional", {})]
    assert len(shown) <= 12 and spec["optional"]["settings"][0] == "GFTI_SETTINGS", shown
    assert set(ESSENTIAL_INIT_FIELDS) == {"token", "num_vectors", "init_mode", "init_text", "seed"}
    settings_cls = PACK.NODE_CLASS_MAPPINGS["GFTISettings"]
    defaults = {k: s[1]["default"] for k, s in settings_cls.INPUT_TYPES()["required"].items()}
    (out,) = settings_cls().execute(**{**defaults, "subspace_dim": 12})
    assert out["subspace_dim"] == 12 and len(out) == len(defaults)
    with pytest.raises(TypeError):
        out["subspace_dim"] = 3  # the cached output is read-only: no consumer can change another's settings


def test_importing_without_cma_exports_no_nodes_and_says_how_to_install():
    script = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'cma':
            raise ImportError('blocked')
sys.meta_path.insert(0, Block())
import importlib.util
importlib.util.find_spec = (lambda f: lambda n, *a: None if n == 'cma' else f(n, *a))(importlib.util.find_spec)
sys.path.insert(0, {str(Path(__file__).parent)!r})
from comfy_env import load_pack
pack = load_pack()
print(len(pack.NODE_CLASS_MAPPINGS), pack.WEB_DIRECTORY)
"""
    out = subprocess.run([sys.executable, "-c", script], env=child_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["0", "./web"]
    assert "pip install cma" in out.stderr


def test_pack_import_starts_no_threads_and_touches_no_host():
    script = f"""
import sys, threading
sys.path.insert(0, {str(Path(__file__).parent)!r})
from comfy_env import load_pack
before = threading.active_count()
pack = load_pack()
hosts = sorted(m for m in sys.modules if m.split('.')[0] in ('comfy', 'folder_paths', 'server', 'nodes', 'execution'))
print(len(pack.NODE_CLASS_MAPPINGS), threading.active_count() - before, hosts)
"""
    out = subprocess.run([sys.executable, "-c", script], env=child_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "6 0 []"


def test_install_py_installs_only_a_missing_cma(monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("gfti_install", ROOT / "install.py")
    install = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(install)
    calls = []
    monkeypatch.setattr(install.subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    assert install.main() == 0 and calls == []  # cma is installed here
    monkeypatch.setattr(install.importlib.util, "find_spec", lambda name: None)
    assert install.main() == 0
    assert calls == [[sys.executable, "-m", "pip", "install", "cma>=4.0"]]


def test_example_workflows_are_current_and_consistent():
    for name, data in examples(PACK).items():
        path = OUT / name
        assert path.read_text() == render(data), f"{path} is stale: run python tests/comfy/workflows.py"
        loaded = json.loads(path.read_text())
        for node in loaded["nodes"]:
            cls = PACK.NODE_CLASS_MAPPINGS.get(node["type"])
            if cls is None:
                continue
            specs = [s for part in ("required", "optional") for s in cls.INPUT_TYPES().get(part, {}).values()
                     if is_widget(s)]
            assert len(specs) == len(node["widgets_values"]), node["type"]
            for spec, value in zip(specs, node["widgets_values"]):
                assert value in spec[0] if isinstance(spec[0], list) else True
        ids = {n["id"] for n in loaded["nodes"]}
        assert all(l[1] in ids and l[3] in ids for l in loaded["links"])


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed (apt-get install nodejs)")
def test_browser_script_is_valid_javascript(tmp_path):
    module = tmp_path / "gfti.mjs"
    module.write_text((ROOT / "web" / "gfti.js").read_text())
    out = subprocess.run(["node", "--check", str(module)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = module.read_text()
    assert 'api.addEventListener("gfti.loss"' in text and "addDOMWidget" in text
    assert "prototype.onDrawForeground =" not in text  # Nodes 2.0 never calls it: the chart must not depend on canvas drawing


def test_install_py_uses_the_webui_launcher_when_a1111_runs_it(monkeypatch):
    import importlib.util
    import sys
    import types

    spec = importlib.util.spec_from_file_location("gfti_install_webui", ROOT / "install.py")
    install = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(install)
    calls = []
    fake = types.SimpleNamespace(is_installed=lambda name: False, run_pip=lambda args, desc: calls.append(args))
    monkeypatch.setitem(sys.modules, "launch", fake)
    monkeypatch.setattr(install.subprocess, "call", lambda cmd: (_ for _ in ()).throw(AssertionError(cmd)))
    assert install.main() == 0 and calls == ["install cma>=4.0"]
