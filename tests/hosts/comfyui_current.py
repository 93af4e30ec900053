"""Unpack ComfyUI 0.3.64 from ../shared/hosts into the host cache, once (idempotent; CI calls this).

    python tests/hosts/comfyui_current.py            # prints the unpacked folder

The tree goes to ~/.cache/gfti-hosts/comfyui-0.3.64 (or $GFTI_HOSTS_CACHE/comfyui-0.3.64); a marker file
keyed by the tarball's size and mtime makes a second call a no-op, and unpacking into a temporary sibling
followed by a rename means an interrupted unpack never leaves a half tree behind. Its Python packages are in
the shared test venv (requirements-dev.txt: `av` and `comfyui-frontend-package`, the current frontend).
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

log = logging.getLogger("gfti.hosts")

ROOT = Path(__file__).resolve().parents[2]
TARBALL = ROOT.parent / "shared" / "hosts" / "ComfyUI.tar.xz"
VERSION = "0.3.64"


def cache_root() -> Path:
    return Path(os.environ.get("GFTI_HOSTS_CACHE") or Path.home() / ".cache" / "gfti-hosts")


def target() -> Path:
    return cache_root() / f"comfyui-{VERSION}"


def _stamp(tarball: Path) -> str:
    st = tarball.stat()
    return f"{tarball.name} {st.st_size} {int(st.st_mtime)}\n"


def ensure(tarball: Path = TARBALL) -> Path | None:
    """The unpacked ComfyUI folder, unpacking it first if needed; None when the tarball is absent."""
    dest, marker = target(), target() / ".gfti-unpacked"
    if marker.is_file() and tarball.is_file() and marker.read_text() == _stamp(tarball):
        return dest
    if not tarball.is_file():
        return dest if marker.is_file() else None
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    try:
        with tarfile.open(tarball) as tar:
            tar.extractall(tmp, filter="data")
        (tree,) = [p for p in tmp.iterdir() if p.is_dir()]  # the tarball holds one folder, ComfyUI/
        (tree / ".gfti-unpacked").write_text(_stamp(tarball))
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tree, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("unpacked %s into %s", tarball, dest)
    return dest


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = ensure()
    if path is None:
        log.warning("%s is absent: the current-ComfyUI tests will skip", TARBALL)
        sys.exit(0)
    print(path)
