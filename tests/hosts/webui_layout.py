"""Lay out the real A1111 1.10.1 and Forge webuis from ../shared/hosts for the live tests, cached.

    python tests/hosts/webui_layout.py [a1111] [forge] [--only venv]

Each host goes to ~/.cache/gfti-hosts/<host>/ (override with GFTI_HOSTS_CACHE):
    webui/        the unpacked source tree, with repositories/ as its launch_utils expects (under
                  /var/tmp/gfti-hosts/<host>/, GFTI_WEBUI_TREES: Gradio serves nothing from a dot-folder)
    venv/         its own venv from the package index with its requirements_versions.txt pins
    hf/           an offline model-hub cache with the CLIP tokenizer (A1111 looks it up by name)
    models/       a tiny random SD1 checkpoint built by the host's own classes, in the host's venv
    webui/extensions/gfti  this checkout's extension files (copied again before every boot)
Every stage is skipped when its stamp (a hash of what it was built from) is current, so a second run only
checks. Booting is `webui_server.py`'s job. Nothing here is imported by the product.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("webui_layout")

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("GFTI_SHARED_HOSTS", REPO.parent / "shared" / "hosts"))
CACHE = Path(os.environ.get("GFTI_HOSTS_CACHE", Path.home() / ".cache" / "gfti-hosts"))
# The source trees live outside any dot-folder: Gradio refuses to serve a file with a path part starting with
# "." (routes.py `is_dotfile`), so a webui under ~/.cache would get none of its own JavaScript.
TREES = Path(os.environ.get("GFTI_WEBUI_TREES", "/var/tmp/gfti-hosts"))
PYTHON = os.environ.get("GFTI_HOST_PYTHON", shutil.which("python3.11") or sys.executable)
TORCH = ["torch==2.14.1", "torchvision==0.29.1"]  # on local disk; the index's torchvision does not match it


@dataclass(frozen=True)
class HostSpec:
    name: str
    tarball: str
    repositories: dict[str, str]           # folder under repositories/ -> tarball
    replace_pins: dict[str, str] = field(default_factory=dict)   # package -> replacement requirement
    extra: tuple[str, ...] = ()            # installed with their dependencies
    no_deps: tuple[str, ...] = ()          # installed --no-deps

    @property
    def root(self) -> Path:
        return CACHE / self.name

    @property
    def webui(self) -> Path:
        return TREES / self.name / "webui"

    @property
    def venv_python(self) -> Path:
        return self.root / "venv" / "bin" / "python"


HOSTS = {
    "a1111": HostSpec(
        "a1111", "stable-diffusion-webui.tar.xz",
        {"stable-diffusion-stability-ai": "stable-diffusion-stability-ai.tar.xz",
         "generative-models": "generative-models.tar.xz", "k-diffusion": "k-diffusion.tar.xz",
         "BLIP": "BLIP.tar.xz", "stable-diffusion-webui-assets": "stable-diffusion-webui-assets.tar.xz"},
        # torch >= 2.x needs setuptools >= 77 to import its cpp_extension helpers; A1111 still imports pkg_resources
        replace_pins={"setuptools": "setuptools==80.9.0"},
        # k-diffusion imports `clip`, which A1111 normally installs from a git URL
        no_deps=("openai-clip==1.0.1",)),
    "forge": HostSpec(
        "forge", "stable-diffusion-webui-forge.tar.xz",
        {"huggingface_guess": "huggingface_guess.tar.xz", "BLIP": "BLIP.tar.xz",
         "stable-diffusion-webui-assets": "stable-diffusion-webui-assets.tar.xz"},
        replace_pins={"setuptools": "setuptools==80.9.0"},
        extra=("joblib",)),  # a built-in extension imports it
}


def digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
    return h.hexdigest()[:16]


def stamped(stamp: Path, key: str) -> bool:
    return stamp.is_file() and stamp.read_text().strip() == key


def unpack(tarball: Path, dest: Path) -> None:
    """Unpack a tarball's single top folder as `dest` (replacing an older copy)."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(tmp, filter="tar")
    (top,) = list(tmp.iterdir())
    shutil.rmtree(dest, ignore_errors=True)
    top.rename(dest)
    tmp.rmdir()


def lay_out_source(spec: HostSpec) -> None:
    tarballs = [spec.tarball, *spec.repositories.values()]
    key = digest(*[(SHARED / t).read_bytes() for t in tarballs])  # CI's copy of shared/ has other mtimes
    stamp = spec.webui.parent / "source.stamp"
    if stamped(stamp, key) and spec.webui.is_dir():
        return
    log.info("%s: unpacking %s", spec.name, spec.tarball)
    unpack(SHARED / spec.tarball, spec.webui)
    for folder, tarball in spec.repositories.items():
        unpack(SHARED / tarball, spec.webui / "repositories" / folder)
    stamp.write_text(key)


def requirements(spec: HostSpec) -> list[str]:
    """The host's own pins, with the few replacements it needs on this Python/torch; torch itself is ours."""
    out = []
    for line in (spec.webui / "requirements_versions.txt").read_text().splitlines():
        req = line.split("#")[0].strip()
        name = req.split("==")[0].strip().lower()
        if not req or name in ("torch", "torchvision"):
            continue
        out.append(spec.replace_pins.get(name, req))
    return out


def build_venv(spec: HostSpec) -> None:
    reqs = requirements(spec)
    key = digest(PYTHON, *TORCH, *reqs, *spec.extra, *spec.no_deps)
    venv = spec.root / "venv"
    stamp = venv / "gfti.stamp"
    if stamped(stamp, key):
        return
    log.info("%s: building its venv (several minutes)", spec.name)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True)
    pip = [str(spec.venv_python), "-m", "pip", "install", "-q", "--no-input"]
    subprocess.run(pip + TORCH, check=True)
    reqfile = spec.root / "requirements.gfti.txt"
    reqfile.write_text("\n".join(reqs + list(spec.extra)) + "\n")
    subprocess.run(pip + [*TORCH, "-r", str(reqfile)], check=True)
    if spec.no_deps:
        subprocess.run(pip + ["--no-deps", *spec.no_deps], check=True)
    stamp.write_text(key)


CLIP_HUB_NAME = "openai/clip-vit-large-patch14"  # A1111's FrozenCLIPEmbedder asks the hub for this by name
FORGE_SD15 = ("backend", "huggingface", "runwayml", "stable-diffusion-v1-5")


def clip_files() -> dict[str, Path]:
    """CLIP-L tokenizer files and text config: Forge's tree ships them (the same BPE vocabulary)."""
    src = HOSTS["forge"].webui.joinpath(*FORGE_SD15)
    if not src.is_dir():
        lay_out_source(HOSTS["forge"])
    files = {p.name: p for p in (src / "tokenizer").iterdir()}
    files["config.json"] = src / "text_encoder" / "config.json"
    return files


def build_hf_cache(spec: HostSpec) -> None:
    """A model-hub cache entry (hub/models--org--name/snapshots/<rev>/) that transformers finds offline."""
    files = clip_files()
    key = digest(*[f"{n}:{p.read_bytes()}" for n, p in sorted(files.items())])
    entry = spec.root / "hf" / "hub" / ("models--" + CLIP_HUB_NAME.replace("/", "--"))
    snapshot = entry / "snapshots" / key
    if snapshot.is_dir() and (entry / "refs" / "main").read_text() == key:
        return
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, path in files.items():
        shutil.copyfile(path, snapshot / name)
    (entry / "refs").mkdir(exist_ok=True)
    (entry / "refs" / "main").write_text(key)


def checkpoint_path() -> Path:
    return CACHE / "models" / "tiny-sd1.safetensors"


def build_checkpoint(spec: HostSpec) -> None:
    """One tiny SD1 checkpoint for both hosts, built by A1111's pinned ldm in A1111's venv, linked in."""
    builder = Path(__file__).with_name("tiny_sd1.py")
    a1111 = HOSTS["a1111"]
    key = digest(builder.read_bytes(), (a1111.webui / "configs" / "v1-inference.yaml").read_bytes()) \
        if a1111.webui.is_dir() else ""
    ckpt = checkpoint_path()
    stamp = ckpt.with_suffix(".stamp")
    if not key or not stamped(stamp, key):
        for stage in (lay_out_source, build_venv):
            stage(a1111)
        key = digest(builder.read_bytes(), (a1111.webui / "configs" / "v1-inference.yaml").read_bytes())
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=str(a1111.webui / "repositories" / "stable-diffusion-stability-ai"),
                   OMP_NUM_THREADS="1")
        subprocess.run([str(a1111.venv_python), str(builder), str(ckpt)], cwd=a1111.webui, env=env, check=True)
        stamp.write_text(key)
    models = spec.webui / "models" / "Stable-diffusion"
    models.mkdir(parents=True, exist_ok=True)
    for src in (ckpt, ckpt.with_suffix(".yaml")):
        link = models / src.name
        if not link.is_symlink():
            link.unlink(missing_ok=True)
            link.symlink_to(src)


def extension_requirements() -> list[str]:
    """What the extension's install.py would install (the live boots pass --skip-install)."""
    import ast

    tree = ast.parse((REPO / "install.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "REQUIREMENTS":
            return list(ast.literal_eval(node.value).values())
    raise RuntimeError("install.py has no REQUIREMENTS")


# What a user's clone in extensions/ holds that the webui uses. Copied, not linked: the webui serves an
# extension's javascript/ only from inside its own folders (Gradio's allowed paths), as for a real clone.
EXTENSION_PARTS = ("install.py", "scripts", "javascript", "gfti_webui", "gfti_core")


def copy_extension(spec: HostSpec) -> Path:
    """extensions/gfti as a fresh copy of this checkout's extension files (run before every boot)."""
    dest = spec.webui / "extensions" / "gfti"
    if dest.is_symlink():
        dest.unlink()
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for part in EXTENSION_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dest / part)
    return dest


def install_extension(spec: HostSpec) -> None:
    reqs = extension_requirements()
    stamp = spec.root / "venv" / "gfti-extension.stamp"
    if not stamped(stamp, digest(*reqs)):
        subprocess.run([str(spec.venv_python), "-m", "pip", "install", "-q", *TORCH, *reqs], check=True)
        stamp.write_text(digest(*reqs))
    copy_extension(spec)


STAGES = {"source": lay_out_source, "venv": build_venv, "hf": build_hf_cache, "checkpoint": build_checkpoint,
          "extension": install_extension}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("hosts", nargs="*", default=list(HOSTS), choices=list(HOSTS))
    ap.add_argument("--only", choices=list(STAGES), action="append")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    specs = [HOSTS[name] for name in args.hosts]
    for spec in specs:
        spec.root.mkdir(parents=True, exist_ok=True)
        lay_out_source(spec)
    if not args.only or "venv" in args.only:  # the venvs are mostly downloads: build them side by side
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(specs)) as pool:
            list(pool.map(build_venv, specs))
    for spec in specs:
        name = spec.name
        for stage, run in STAGES.items():
            if args.only and stage not in args.only and stage != "source":
                continue
            t0 = time.monotonic()
            run(spec)
            log.info("%s: %s ready (%.0f s)", name, stage, time.monotonic() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
