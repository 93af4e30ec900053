"""Embedding files every host loads: reading, validating, writing, describing.

Formats (the layouts the hosts' own loaders accept):

* ``"safetensors"`` (default): SD1/SD2 ``{"emb_params": [N, D]}``; SDXL ``{"clip_l": [N, 768],
  "clip_g": [N, 1280]}``. Run facts live in the safetensors *metadata* (str -> str), never as extra
  tensors, because ComfyUI falls back to the *first* tensor of a dict it does not recognise.
* ``"diffusers"``: ``{"<token>": [N, D]}`` safetensors (SD1/SD2 only; diffusers wants SDXL as two files).
* ``"a1111-pt"``: ``torch.save`` of the A1111 dict ``{"string_to_token", "string_to_param", "name", "step",
  "sd_checkpoint", "sd_checkpoint_name"}`` (SD1/SD2 only).

The reader accepts all of these plus diffusers ``.bin`` files and bare tensors, loads pickled files only
with ``torch.load(weights_only=True)``, and turns every failure into `EmbeddingFileError`.
"""
from __future__ import annotations

import io
import json
import logging
import math
import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from .backend import FAMILY_WIDTHS
from .errors import EmbeddingFileError, GFTIError
from .safe_io import atomic_write_bytes, display_path

__all__ = [
    "FAMILY_WIDTHS",
    "FORMATS",
    "FORMAT_SUFFIXES",
    "MAX_VECTORS",
    "Embedding",
    "family_of",
    "family_label",
    "embedding_path",
    "write_embedding",
    "read_embedding",
    "describe",
]

logger = logging.getLogger(__name__)

_FAMILY_NAMES = {"sd1": "SD1", "sd2": "SD2", "sdxl": "SDXL"}
ENCODERS = ("clip_l", "clip_h", "clip_g")  # known encoder keys, in display order

FORMATS = ("safetensors", "diffusers", "a1111-pt")
FORMAT_SUFFIXES = {"safetensors": ".safetensors", "diffusers": ".safetensors", "a1111-pt": ".pt"}
_EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin", ".ckpt")

MAX_VECTORS = 75  # CLIP context (77) minus BOS/EOS: more vectors can never fit into a prompt
MAX_WIDTH = 8192  # far above any CLIP width; larger tensors mean the file is not an embedding
MAX_PICKLE_BYTES = 64 * 1024 * 1024  # torch.load reads everything; a 2 GB checkpoint must not be loaded
A1111_STAR_TOKEN_ID = 265  # what A1111 itself writes for "*" (string_to_token)

# Metadata keys the writer derives from the tensors; the reader checks them against the shapes, then
# drops them (they are regenerated on write, so they can never go stale inside an Embedding).
_META_TOKEN = "gfti.token"
_META_FAMILY = "gfti.family"
_META_NUM_VECTORS = "gfti.num_vectors"
_META_ENCODERS = "gfti.encoders"
_META_FORMAT_VERSION = "gfti.format_version"
_DERIVED_META = (_META_TOKEN, _META_FAMILY, _META_NUM_VECTORS, _META_ENCODERS, _META_FORMAT_VERSION)
_A1111_META_KEY = "gfti_metadata"  # str->str dict inside our .pt files (A1111/ComfyUI ignore extra keys)
_MAX_TOKEN_CHARS = 120


@dataclass
class Embedding:
    """One textual-inversion embedding.

    vectors: encoder name -> float32 CPU tensor [N, D]; SD1 ``{"clip_l": [N, 768]}``, SD2
        ``{"clip_h": [N, 1024]}``, SDXL ``{"clip_l": [N, 768], "clip_g": [N, 1280]}`` (same N). Toy models
        use small widths (e.g. ``{"clip_l": [N, 32]}``).
    token: the pseudo-word (A1111 ``name``, diffusers key, or the file stem).
    metadata: run facts, str -> str (``gfti.steps``, ``gfti.seed``, ``gfti.model_hash``, ...).
    source_format: "safetensors" | "diffusers" | "a1111-pt" | "bin" | "tensor" (how it was read), or "".
    """

    vectors: dict[str, torch.Tensor]
    token: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    source_format: str = ""

    @property
    def family(self) -> str:
        """"sd1" | "sd2" | "sdxl", or "unknown family (width W)" for other widths (toy models)."""
        return family_of(self.widths)

    @property
    def num_vectors(self) -> int:
        """N, the number of vectors per encoder (equal across encoders for a valid embedding)."""
        return int(next(iter(self.vectors.values())).shape[0])

    @property
    def widths(self) -> dict[str, int]:
        """Encoder name -> D."""
        return {name: int(t.shape[-1]) for name, t in self.vectors.items()}


# --------------------------------------------------------------------------------------------- families

def family_of(widths: Mapping[str, int]) -> str:
    """Family of encoder widths: exact match with `FAMILY_WIDTHS`, else "unknown family (...)".

    Single-encoder families are matched by width only, because a bare ``emb_params`` tensor carries no
    encoder name (a [N, 1024] tensor is SD2 whatever key it was given).
    """
    widths = dict(widths)
    for family, known in FAMILY_WIDTHS.items():
        if widths == known:
            return family
    if len(widths) == 1:
        width = next(iter(widths.values()))
        for family, known in FAMILY_WIDTHS.items():
            if len(known) == 1 and width in known.values():
                return family
        return f"unknown family (width {width})"
    return f"unknown family ({_widths_text(widths)})"


def family_label(widths: Mapping[str, int]) -> str:
    """Human label used in errors: "SD1 (768)", "SDXL (clip_l 768 + clip_g 1280)", "unknown family (width 32)"."""
    family = family_of(widths)
    if family not in _FAMILY_NAMES:
        return family
    if len(widths) == 1:
        return f"{_FAMILY_NAMES[family]} ({next(iter(widths.values()))})"
    return f"{_FAMILY_NAMES[family]} ({_widths_text(widths)})"


def _widths_text(widths: Mapping[str, int]) -> str:
    return " + ".join(f"{name} {width}" for name, width in _ordered(widths))


def _ordered(mapping: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Known encoders first in canonical order (clip_l before clip_g), others after, by name."""
    rank = {name: i for i, name in enumerate(ENCODERS)}
    return sorted(mapping.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))


def _encoder_for_width(width: int) -> str:
    """Default encoder key for a lone tensor: 1024 is SD2's clip_h; everything else is SD1-like clip_l."""
    return "clip_h" if width == FAMILY_WIDTHS["sd2"]["clip_h"] else "clip_l"


# ---------------------------------------------------------------------------------------------- writing

def write_embedding(path: os.PathLike | str, emb: Embedding, fmt: str = "safetensors",
                    overwrite: bool = False) -> Path:
    """Write `emb` atomically to `path` in format `fmt`; return the final path.

    A path without an embedding suffix gets the format's suffix; a wrong one is refused (hosts pick the loader by
    suffix). Tensors are written detached, CPU, float32, contiguous. Never overwrites unless `overwrite`.
    Raises `EmbeddingFileError` for an invalid embedding or a format that cannot hold it, `OutputExistsError`
    for an existing file, `GFTIError` for an unwritable folder.
    """
    path = embedding_path(path, fmt)
    vectors = {name: _clean_tensor(t) for name, t in emb.vectors.items()}
    _validate_vectors(vectors, where=f"cannot write {display_path(path)}")
    token = _writable_token(emb.token, path)
    metadata = _metadata_for_write(emb.metadata, vectors, token)
    if fmt == "a1111-pt":
        _require_single_encoder(vectors, fmt, path)
        data = _torch_bytes(_a1111_payload(next(iter(vectors.values())), token, metadata))
    elif fmt == "diffusers":
        _require_single_encoder(vectors, fmt, path)
        data = _safetensors_bytes({token: next(iter(vectors.values()))}, metadata)
    else:
        data = _safetensors_bytes(_safetensors_layout(vectors), metadata)
    # Serialised in memory (embeddings are < 1 MB) so that disk-full/permission problems surface as plain
    # OSErrors from Python's own write, which safe_io turns into one-line GFTIErrors.
    return atomic_write_bytes(path, data, overwrite=overwrite)


def embedding_path(path: os.PathLike | str, fmt: str = "safetensors") -> Path:
    """The path `write_embedding` writes for `path` and `fmt`: the format's suffix is appended unless the name
    already ends in an embedding suffix ("sks.v2" -> "sks.v2.pt"); another format's suffix is refused."""
    if fmt not in FORMATS:
        raise EmbeddingFileError(f"unknown embedding format {fmt!r}; use one of {', '.join(FORMATS)}")
    path, suffix = Path(path), FORMAT_SUFFIXES[fmt]
    if path.suffix.lower() not in _EMBEDDING_SUFFIXES:
        return path.with_name(path.name + suffix)
    if path.suffix.lower() != suffix:
        raise EmbeddingFileError(f"{display_path(path)}: format {fmt!r} must be saved as {suffix} (hosts choose "
                                 f"the loader by suffix); rename it to {display_path(path.stem)}{suffix}")
    return path


def _clean_tensor(t: Any) -> torch.Tensor:
    """Detached, CPU, float32, contiguous copy ([D] becomes [1, D]); non-tensors pass through to validation."""
    if not isinstance(t, torch.Tensor):
        return t
    t = t.detach().to(device="cpu")
    if t.is_floating_point():
        t = t.to(torch.float32)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    return t.contiguous().clone()


def _writable_token(token: str, path: Path) -> str:
    token = (token or "").strip()
    return token if token else path.stem


def _require_single_encoder(vectors: dict[str, torch.Tensor], fmt: str, path: Path) -> None:
    if len(vectors) == 1:
        return
    if fmt == "diffusers":
        hint = ("the diffusers format needs two files for SDXL (one per text encoder); use the default "
                "'safetensors' format, which diffusers loads with one load_textual_inversion call per encoder")
    else:
        hint = ("A1111 .pt files hold one encoder; A1111 loads SDXL embeddings from the clip_l/clip_g "
                "safetensors, so use the default 'safetensors' format")
    raise EmbeddingFileError(f"cannot write {display_path(path)} as {fmt!r}: {hint}")


def _metadata_for_write(user: Mapping[str, Any], vectors: dict[str, torch.Tensor], token: str) -> dict[str, str]:
    """User metadata (values coerced to str) plus the shape-derived keys the reader will check."""
    metadata = {str(k): _meta_value(v) for k, v in (user or {}).items()}
    widths = {name: int(t.shape[1]) for name, t in vectors.items()}
    metadata.update({
        _META_TOKEN: token,
        _META_FAMILY: family_of(widths),
        _META_NUM_VECTORS: str(next(iter(vectors.values())).shape[0]),
        _META_ENCODERS: ",".join(f"{name}:{width}" for name, width in _ordered(widths)),
        _META_FORMAT_VERSION: "1",
    })
    return metadata


def _meta_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _safetensors_layout(vectors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SD1/SD2 -> {"emb_params": t} (kohya; every host); SDXL-like -> one key per encoder."""
    if len(vectors) == 1:
        return {"emb_params": next(iter(vectors.values()))}
    return dict(_ordered(vectors))


def _safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    from safetensors.torch import save  # local: keeps `import gfti_core` light for hosts

    return save(tensors, metadata=metadata)


def _torch_bytes(payload: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def _a1111_payload(t: torch.Tensor, token: str, metadata: dict[str, str]) -> dict[str, Any]:
    """The dict A1111 writes; only str/int/None/tensor values, so restricted unpicklers accept it."""
    return {
        "string_to_token": {"*": A1111_STAR_TOKEN_ID},
        "string_to_param": {"*": t},
        "name": token,
        "step": _int_or_zero(metadata.get("gfti.steps")),
        "sd_checkpoint": metadata.get("gfti.model_hash") or None,
        "sd_checkpoint_name": metadata.get("gfti.model_name") or None,
        _A1111_META_KEY: dict(metadata),
    }


def _int_or_zero(text: str | None) -> int:
    try:
        return int(text) if text is not None else 0
    except ValueError:
        return 0


# ---------------------------------------------------------------------------------------------- reading

@dataclass
class _Parsed:
    """What a file held before validation. `lone` is a tensor whose encoder is not named by the file."""

    named: dict[str, Any]
    lone: Any = None
    token: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    source_format: str = ""


def read_embedding(path: os.PathLike | str, expect: Mapping[str, int] | None = None) -> Embedding:
    """Read and validate an embedding file of any supported format.

    expect: the model's encoder widths (e.g. ``{"clip_l": 768}``, or ``{"clip_l": 32}`` for a toy model);
        when given, the file must fit exactly, else the error names the file's and the model's family.
    Returns vectors as float32 CPU [N, D] tensors, 1 <= N <= 75. Raises only `EmbeddingFileError`.
    """
    path = Path(path)
    try:
        return _read_embedding(path, dict(expect) if expect is not None else None)
    except EmbeddingFileError:
        raise
    except GFTIError as exc:
        raise EmbeddingFileError(str(exc)) from exc
    except Exception as exc:  # any parser failure on hostile bytes is a bad file, never a crash
        raise EmbeddingFileError(f"cannot read embedding {display_path(path)}: {type(exc).__name__}: "
                                 f"{_one_line(exc)}; the file is corrupt or not an embedding") from exc


def _read_embedding(path: Path, expect: dict[str, int] | None) -> Embedding:
    size = _check_file(path)
    parsed = _load_safetensors(path) if _looks_like_safetensors(path, size) else _load_pickled(path, size)
    vectors = _assign_encoders(parsed, path, expect)
    vectors = {name: _clean_tensor(t) for name, t in vectors.items()}
    _validate_vectors(vectors, where=f"embedding {display_path(path)}")
    if expect is not None:
        _check_expected(vectors, expect, path)
    metadata = _checked_metadata(parsed.metadata, vectors, path)
    token = _readable_token(parsed.token, metadata.pop(_META_TOKEN, None), path)
    for key in _DERIVED_META:
        metadata.pop(key, None)
    return Embedding(vectors=dict(_ordered(vectors)), token=token, metadata=metadata,
                     source_format=parsed.source_format)


def _check_file(path: Path) -> int:
    if not path.exists():
        raise EmbeddingFileError(f"embedding file {display_path(path)} does not exist; check the path")
    if not path.is_file():
        raise EmbeddingFileError(f"{display_path(path)} is not a file; pass the embedding file itself")
    size = path.stat().st_size
    if size == 0:
        raise EmbeddingFileError(f"embedding file {display_path(path)} is empty; re-create or re-download it")
    return size


def _looks_like_safetensors(path: Path, size: int) -> bool:
    """Safetensors = 8-byte little-endian header length + JSON header starting with '{'."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return path.suffix.lower() == ".safetensors"
    header_len = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 2 <= header_len <= size - 8


def _load_safetensors(path: Path) -> _Parsed:
    """Check shapes from the header first, then load only small tensors (a checkpoint is never read)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as fh:
        metadata = dict(fh.metadata() or {})
        keys = list(fh.keys())
        _check_tensor_count(keys, path)
        for key in keys:
            _check_shape(list(fh.get_slice(key).get_shape()), key, path)
        tensors = {key: fh.get_tensor(key) for key in keys}
    parsed = _parse_mapping(tensors, path)
    parsed.metadata = {**metadata, **parsed.metadata}
    if parsed.source_format == "":
        parsed.source_format = "safetensors"
    return parsed


def _load_pickled(path: Path, size: int) -> _Parsed:
    """`torch.load(weights_only=True)` only: a pickle that wants Python objects is refused, not run."""
    if size > MAX_PICKLE_BYTES:
        raise EmbeddingFileError(f"{display_path(path)} is {size / 2**20:.0f} MiB, far too large for an embedding "
                                 "(is it a model checkpoint?); pass a textual-inversion file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protocol/legacy-format chatter is not the user's concern
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise EmbeddingFileError(_unpickling_message(exc, path)) from None
    if isinstance(obj, torch.Tensor):
        return _Parsed(named={}, lone=obj, source_format="tensor")
    if not isinstance(obj, Mapping):
        raise EmbeddingFileError(f"{display_path(path)} holds a {type(obj).__name__}, not an embedding dict; "
                                 "pass an A1111 .pt, diffusers .bin or .safetensors embedding")
    parsed = _parse_mapping(obj, path)
    if parsed.source_format == "":
        parsed.source_format = "bin"
    return parsed


def _unpickling_message(exc: pickle.UnpicklingError, path: Path) -> str:
    """torch wraps the real reason in __context__; 'GLOBAL ... blocked' means code/objects were requested."""
    inner = _one_line(exc.__context__) if exc.__context__ is not None else ""
    if "GLOBAL" in inner.upper():
        reason = "it contains Python objects beyond tensors"
    else:
        reason = "it is corrupt, or it contains Python objects beyond tensors"
    return (f"refusing to load {display_path(path)}: {reason} ({inner or 'not a weights-only file'}); "
            "use a .safetensors or plain-tensor .pt embedding")


def _parse_mapping(obj: Mapping[Any, Any], path: Path) -> _Parsed:
    """Recognise the layout of a loaded dict: A1111, our/kohya keys, or a diffusers {token: tensor}."""
    if "string_to_param" in obj:
        return _parse_a1111(obj, path)
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    _check_tensor_count(list(tensors), path)
    encoders = {k: v for k, v in tensors.items() if k in ENCODERS}
    if encoders:
        return _Parsed(named=encoders, source_format="safetensors")
    if "emb_params" in tensors:
        return _Parsed(named={}, lone=tensors["emb_params"], source_format="safetensors")
    if len(tensors) == 1:
        token, tensor = next(iter(tensors.items()))
        return _Parsed(named={}, lone=tensor, token=str(token), source_format="diffusers")
    raise EmbeddingFileError(f"{display_path(path)} has no embedding tensor (keys: {_keys_text(obj)}); expected "
                             "string_to_param, emb_params, clip_l/clip_g/clip_h, or a single {token: tensor}")


def _parse_a1111(obj: Mapping[Any, Any], path: Path) -> _Parsed:
    params = obj["string_to_param"]
    if not isinstance(params, Mapping) or not params:
        raise EmbeddingFileError(f"{display_path(path)}: string_to_param is empty or not a dict; "
                                 "the A1111 embedding is damaged, re-create it")
    tensor = next(iter(params.values()))  # A1111 and ComfyUI take the first value too
    name = obj.get("name")
    metadata = _string_dict(obj.get(_A1111_META_KEY), path)
    # A foreign A1111 file has no gfti metadata: keep its run facts under a1111.* (ours already has them).
    for key in ("step", "sd_checkpoint", "sd_checkpoint_name") if not metadata else ():
        value = obj.get(key)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            metadata.setdefault(f"a1111.{key}", str(value))
    return _Parsed(named={}, lone=tensor, token=name if isinstance(name, str) else None,
                   metadata=metadata, source_format="a1111-pt")


def _string_dict(value: Any, path: Path) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return dict(value)
    logger.warning("%s: ignoring %s (not a str->str dict)", display_path(path), _A1111_META_KEY)
    return {}


def _check_tensor_count(keys: list[Any], path: Path) -> None:
    """Embeddings hold 1-3 tensors; hundreds mean a model checkpoint was picked by mistake."""
    if len(keys) > 8:
        raise EmbeddingFileError(f"{display_path(path)} holds {len(keys)} tensors, so it is a model or LoRA, "
                                 "not an embedding; pass a textual-inversion file")
    if not keys:
        raise EmbeddingFileError(f"{display_path(path)} holds no tensors; re-create or re-download it")


def _check_shape(shape: list[int], key: str, path: Path) -> None:
    """Reject absurd shapes before any tensor data is loaded."""
    ok = len(shape) in (1, 2) and all(d >= 1 for d in shape) and shape[-1] <= MAX_WIDTH
    if len(shape) == 2:
        ok = ok and shape[0] <= MAX_VECTORS
    if not ok:
        raise EmbeddingFileError(f"{display_path(path)}: tensor {key!r} has shape {shape}, expected [N, D] with "
                                 f"1 <= N <= {MAX_VECTORS}; this is not a textual-inversion embedding")


def _keys_text(obj: Mapping[Any, Any]) -> str:
    keys = [str(k)[:40] for k in list(obj)[:8]]
    return ", ".join(keys) + (", ..." if len(obj) > 8 else "") if keys else "none"


def _assign_encoders(parsed: _Parsed, path: Path, expect: dict[str, int] | None) -> dict[str, Any]:
    """Give a lone tensor its encoder key: the model's (single) encoder if the width fits, else by width."""
    if parsed.lone is None:
        return dict(parsed.named)
    lone = parsed.lone
    width = int(lone.shape[-1]) if isinstance(lone, torch.Tensor) and lone.dim() >= 1 else 0
    if expect is not None and len(expect) == 1 and next(iter(expect.values())) == width:
        return {next(iter(expect)): lone}
    hinted = _encoder_hint(parsed.metadata, width)
    return {hinted or _encoder_for_width(width): lone}


def _encoder_hint(metadata: Mapping[str, str], width: int) -> str | None:
    """The encoder our writer recorded (e.g. "clip_h:32" for a toy SD2), used only if its width matches."""
    entries = dict(item.split(":", 1) for item in metadata.get(_META_ENCODERS, "").split(",") if ":" in item)
    if len(entries) == 1:
        name, recorded = next(iter(entries.items()))
        if name in ENCODERS and recorded == str(width):
            return name
    return None


def _validate_vectors(vectors: dict[str, Any], where: str) -> None:
    """Every tensor floating, [N, D], finite, 1 <= N <= 75; all encoders share N. Raises EmbeddingFileError."""
    if not vectors:
        raise EmbeddingFileError(f"{where}: no vectors; an embedding needs at least one [N, D] tensor")
    for name, t in vectors.items():
        _validate_tensor(name, t, where)
    counts = {name: int(t.shape[0]) for name, t in vectors.items()}
    if len(set(counts.values())) > 1:
        raise EmbeddingFileError(f"{where}: encoders have different vector counts ({counts}); every encoder "
                                 "needs the same N, re-create the embedding")


def _validate_tensor(name: str, t: Any, where: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise EmbeddingFileError(f"{where}: {name!r} is a {type(t).__name__}, not a tensor; re-create the embedding")
    if not t.is_floating_point():
        raise EmbeddingFileError(f"{where}: {name!r} has dtype {t.dtype}, not floating point; "
                                 "it is not an embedding")
    if t.dim() != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise EmbeddingFileError(f"{where}: {name!r} has shape {list(t.shape)}, expected [N, D]; "
                                 "it is not a textual-inversion embedding")
    if t.shape[0] > MAX_VECTORS:
        raise EmbeddingFileError(f"{where}: {name!r} has {t.shape[0]} vectors, more than the {MAX_VECTORS} that "
                                 "fit in a prompt; use fewer vectors")
    if t.shape[1] > MAX_WIDTH:
        raise EmbeddingFileError(f"{where}: {name!r} is {t.shape[1]} wide; no text encoder is that wide, so "
                                 "it is not an embedding")
    if not bool(torch.isfinite(t).all()):
        raise EmbeddingFileError(f"{where}: {name!r} contains NaN or Inf values; the file is damaged or the run "
                                 "diverged, use an earlier checkpoint")


def _check_expected(vectors: dict[str, torch.Tensor], expect: dict[str, int], path: Path) -> None:
    widths = {name: int(t.shape[1]) for name, t in vectors.items()}
    if widths == expect:
        return
    model_family = family_of(expect)
    wanted = (f"an {_FAMILY_NAMES[model_family]} embedding" if model_family in _FAMILY_NAMES
              else f"an embedding made for this model ({_widths_text(expect)})")
    raise EmbeddingFileError(f"{display_path(path)}: this embedding is for {family_label(widths)} but the model "
                             f"is {family_label(expect)}; use {wanted}")


def _checked_metadata(metadata: Mapping[str, str], vectors: dict[str, torch.Tensor], path: Path) -> dict[str, str]:
    """Keep string metadata; derived keys that disagree with the tensors are dropped with a warning."""
    clean = {str(k): v for k, v in metadata.items() if isinstance(v, str)}
    widths = {name: int(t.shape[1]) for name, t in vectors.items()}
    actual = {
        _META_NUM_VECTORS: str(next(iter(vectors.values())).shape[0]),
        _META_FAMILY: family_of(widths),
    }
    for key, truth in actual.items():
        if key in clean and clean[key] != truth:
            logger.warning("%s: metadata %s=%r disagrees with the tensors (%s); ignoring it",
                           display_path(path), key, clean[key][:60], truth)
            del clean[key]
    return clean


def _readable_token(from_content: str | None, from_metadata: str | None, path: Path) -> str:
    """First sane candidate of: A1111 name / diffusers key, gfti.token metadata, the file stem."""
    for candidate in (from_content, from_metadata):
        if candidate is None:
            continue
        cleaned = candidate.strip()
        if cleaned and len(cleaned) <= _MAX_TOKEN_CHARS and cleaned.isprintable():
            return cleaned
        logger.warning("%s: ignoring unusable token name %r", display_path(path), candidate[:60])
    return path.stem


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] + ("..." if len(text) > 200 else "")


# --------------------------------------------------------------------------------------------- describe

def describe(emb: Embedding) -> str:
    """Multi-line human summary for `gfti info`: format, family, vectors, widths, norms, metadata."""
    lines = [
        f"token:    {emb.token or '(none)'}",
        f"format:   {emb.source_format or '(in memory)'}",
        f"family:   {family_label(emb.widths)}",
        f"vectors:  {emb.num_vectors}",
    ]
    for name, t in _ordered(emb.vectors):
        norms = t.detach().float().norm(dim=-1).tolist()
        shown = " ".join(f"{n:.4g}" for n in norms[:8]) + (" ..." if len(norms) > 8 else "")
        mean = sum(norms) / len(norms) if norms else math.nan
        lines.append(f"{name + ':':9} [{t.shape[0]}, {t.shape[1]}]  norms {shown}  (mean {mean:.4g})")
    if emb.metadata:
        lines.append("metadata:")
        for key in sorted(emb.metadata):
            value = " ".join(str(emb.metadata[key]).split())
            lines.append(f"  {key} = {value[:200]}{'...' if len(value) > 200 else ''}")
    else:
        lines.append("metadata: (none)")
    return "\n".join(lines)
