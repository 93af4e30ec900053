"""Fixtures for the ComfyUI pack's tests: host folders, the tiny checkpoint, and subprocess runners.

Real ComfyUI is only ever imported in subprocesses: its top-level `nodes` module clashes with this repo's
`nodes/` folder and it parses sys.argv, patches torch and keeps global state.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from comfy_env import HOSTS, child_env, host_path  # noqa: E402
from tiny_checkpoint import RECIPE_VERSION  # noqa: E402


def require_host(kind: str) -> Path:
    path = host_path(kind)
    if path is None:
        pytest.skip(HOSTS[kind])
    return path


@pytest.fixture(scope="session", params=list(HOSTS))
def comfy_host(request) -> tuple[str, Path]:
    return request.param, require_host(request.param)


@pytest.fixture(scope="session")
def comfy2024() -> Path:
    return require_host("2024")


@pytest.fixture(scope="session")
def tiny_ckpt(comfy2024) -> Path:
    """The tiny SD1.5 checkpoint, built once and cached across sessions in $GFTI_TEST_CACHE
    (default: the system temp folder), keyed by the recipe version; ~290 MB, ~20 s to build."""
    cache = Path(os.environ.get("GFTI_TEST_CACHE") or Path(tempfile.gettempdir()) / "gfti-test-cache")
    digest = hashlib.sha256((HERE / "tiny_checkpoint.py").read_bytes()).hexdigest()[:10]
    path = cache / f"tiny_sd15_r{RECIPE_VERSION}_{digest}.safetensors"
    if not path.exists():
        out = subprocess.run([sys.executable, str(HERE / "tiny_checkpoint.py"), str(comfy2024), str(path)],
                             env=child_env(), capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
    return path
