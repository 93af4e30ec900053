"""Load a diffusers pipeline from a LOCAL path (never a hub): a diffusers folder, a single-file checkpoint
with a local config folder, or a model registered by name (`toy`: the small model the `toyworld` package
ships registers itself under the `gfti.models` entry point group, so the engine never imports it)."""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import torch

from .errors import GFTIError

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


MODEL_GROUP = "gfti.models"  # entry points: a name -> a function returning that model's NamedModel


@dataclass(frozen=True)
class NamedModel:
    """A model known by name: its diffusers folder and the word lists that suit its world."""

    folder: Path
    display_name: str
    init_words: str = ""       # word list for the start vector, when the user gives none
    context_phrases: str = ""  # phrase list for auto context, when the user gives none


def named_model(name: str) -> NamedModel | None:
    """The model registered under `name` (see MODEL_GROUP), or None."""
    for ep in entry_points(group=MODEL_GROUP):
        if ep.name == name:
            return ep.load()()
    return None


def resolve_model_path(model: str) -> Path:
    path = Path(model).expanduser()
    if path.exists():
        return path
    named = named_model(model)
    if named is not None:
        return named.folder
    raise GFTIError(f"model path {model!r} does not exist; pass a diffusers model folder, a .safetensors "
                    "checkpoint (with --model-config), or 'toy' (installed with gfti: pip install .)")


def load_pipeline(model: str, *, config_dir: str | None = None, device: str = "cpu", dtype: str = "float32"):
    """→ (pipeline on device/dtype, display name, short hash)."""
    from diffusers import DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

    path, torch_dtype = resolve_model_path(model), DTYPES[dtype]
    if path.is_dir():
        if not (path / "model_index.json").exists():
            raise GFTIError(f"{path} has no model_index.json: not a diffusers model folder")
        pipe = DiffusionPipeline.from_pretrained(path, local_files_only=True, torch_dtype=torch_dtype)
    elif path.suffix == ".safetensors":
        if not config_dir or not Path(config_dir, "model_index.json").exists():
            raise GFTIError(f"{path.name} is a single-file checkpoint; also pass --model-config with a local "
                            "diffusers folder of the same architecture (its model_index.json and configs)")
        cls = StableDiffusionXLPipeline if _is_sdxl_checkpoint(path) else StableDiffusionPipeline
        pipe = cls.from_single_file(str(path), config=config_dir, local_files_only=True, torch_dtype=torch_dtype)
    else:
        raise GFTIError(f"{path} is neither a diffusers folder nor a .safetensors checkpoint")
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    named = None if Path(model).expanduser().exists() else named_model(model)
    return pipe, named.display_name if named else path.name, model_hash(path)


def _is_sdxl_checkpoint(path: Path) -> bool:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return any(k.startswith("conditioner.embedders.1") for k in f.keys())


def model_hash(path: Path) -> str:
    """sha256 (first 12 hex digits) of the first 64 MiB of the UNet weights + their size: cheap, stable."""
    if path.is_dir():
        files = sorted((path / "unet").glob("*.safetensors")) or sorted((path / "unet").glob("*.bin"))
        if not files:
            return ""
        path = files[0]
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(64 * 1024 * 1024))
    return digest.hexdigest()[:12]
